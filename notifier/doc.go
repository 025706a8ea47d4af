// Package notifier is the worker side of followpush: the asynq handler of
// follow tasks ([Handler]), the FCM sender built on firebase-admin-go
// ([fcm.Sender]) with the classification of FCM's errors ([fcm.Classify]), a
// sender that only logs ([fcm.LogSender]), and the retry policy the asynq server
// is configured with ([RetryDelay], [IsFailure]).
//
// The notification policies (cooldown, per-recipient cap, aggregation into
// summary pushes; [HandlerOptions].Policy, state in delivery.Store) decide
// whether a follow is pushed at once; folded follows go out in a summary
// sent by [Handler.ProcessSummary]. pushtext.Texts are per device locale
// ([pushtext.Templates]), per-platform settings in [fcm.MessageOptions], and a send
// budget shared by all workers in [RateLimit]. Tokens FCM answers
// SENDER_ID_MISMATCH for are deleted only while the [MismatchBreaker], also
// shared by all workers, is closed.
//
// The error a handler returns is the retry policy: nil completes the task,
// an error wrapping asynq.SkipRetry archives it, a [*RetryError] retries it
// after the delay it asks for, and a quota RetryError is not counted against
// the task's retry budget.
package notifier
