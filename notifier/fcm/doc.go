// Package fcm is the worker's side of Firebase Cloud Messaging (FCM HTTP v1),
// over firebase-admin-go:
//
//   - [Sender] sends messages ([NewSender] authenticates with a service
//     account file, explicit project settings or application default
//     credentials; [Config.Endpoint] points it at another FCM-compatible
//     server, as the tests do), and [LogSender] stands in for it when no FCM
//     setting is given (standalone), writing each push to the log;
//   - [MessageOptions.FollowMessage] and [MessageOptions.SummaryMessage]
//     build the message a device gets: notification, data payload and the
//     per-platform parts (Android, APNs, web push), with a collapse
//     identity per follow ([CollapseID]) or per followee's summary
//     ([SummaryCollapseID]);
//   - [Classify] turns a send's error into an [Outcome] (sent, a dead token,
//     our bug, a retryable failure, ...), and [RetryAfter] reads FCM's
//     Retry-After from it.
//
// What the worker does with each outcome is package notifier's business;
// docs/fcm-errors.md describes both in prose.
package fcm
