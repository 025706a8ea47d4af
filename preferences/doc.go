// Package preferences holds each user's own notification settings, as the
// app backend sets them through the preference API:
//
//	PUT    /v1/users/{userID}/preferences   {"follow_pushes": "all"|"summary"|"off", "quiet_hours": {...}}
//	GET    /v1/users/{userID}/preferences
//	DELETE /v1/users/{userID}/preferences
//
// [Preferences] is the value and its rules, [Store] keeps it in Redis
// (one small string per user who has any; a user without one has the
// defaults: every follow pushed, no quiet hours), [API] serves it. The
// worker reads a followee's preferences in the round trip that loads the
// follow's record (see [Store.QueueGet]) and applies them: off sends
// nothing, summary folds every follow into the followee's summary push,
// and a follow inside quiet hours is held for one summary when they end
// ([QuietHours.At]).
package preferences
