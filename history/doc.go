// Package history is each followee's follow history, "a follow's story":
// every follow and unfollow the receiver accepts for a user, and every
// decision and attempt a worker makes about it (the task's result, the
// devices it reached with masked tokens and FCM message names, the FCM
// outcome of each failed device and when the retry is due, the dead tokens
// it removed, the summary a follow was folded into and the followers a
// summary named), kept in Redis and served to the app backend by [API]:
//
//	GET /v1/users/{userID}/notifications?from=<UserID>&limit=50
//
// It is a product view beside asynqmon's queue view: every entry names the
// asynq task id it is about.
//
// # Key layout
//
// One capped Redis Stream per followee, under the same hash tag as the
// followee's delivery state (package delivery), so it lives on the same
// Redis Cluster slot:
//
//	{prefix}{ag:<followee>}:hist   STREAM  XADD ... MAXLEN ~ Options.MaxEvents; PEXPIRE Options.TTL after every write
//
// Every entry has the same four fields (a stream stores the field names
// once per node when they repeat, see BENCHMARKS.md for the bytes):
//
//	e  what happened: "follow" and "unfollow" (the receiver), else the task's result as the worker's metrics name it
//	   (sent, undelivered, retry, cooldown, aggregated, ... and whatever result a later version adds)
//	u  the follower ("" for a summary)
//	t  the asynq task id ("follow:<id>" or "digest:<id>"; "" for an unfollow, which has no task)
//	d  details, JSON ([Detail]), "" when there are none
//
// # Writes never hold up a push
//
// The receiver queues its entries on the pipeline that stores the follow
// tasks (or records the unfollows), so a webhook costs no extra round trip
// ([Store.QueueFollows], [Store.QueueUnfollows]). The worker hands its
// entries to an [Async] writer, which writes them in the background, many
// per pipeline. A write that fails is counted in
// followpush_history_write_failures_total and dropped, never retried, and
// never fails or delays the webhook or the push it describes.
//
// The package lives at the top level, beside delivery and devices, because
// both programs write it (the receiver its follows, the worker its results)
// and the receiver serves it; neither webhook nor notifier owns it.
package history
