// Package rediskey holds the one fact every package that writes
// followpush's own Redis keys shares: the default prefix of those keys
// (the setting REDIS_KEY_PREFIX). asynq keeps its own "asynq:" keys.
package rediskey

// DefaultPrefix starts every key followpush itself writes, unless
// REDIS_KEY_PREFIX says otherwise.
const DefaultPrefix = "followpush:"
