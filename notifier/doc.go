// Package notifier is the sending side of followpush: the asynq handlers of
// the worker's tasks ([Handler]: follow tasks, and summary tasks when
// notification policies fold follows together), on a ServeMux whose
// middleware counts and logs every task's result ([Handler.NewServeMux],
// [Handler.Report]), and the retry policy the asynq server is configured
// with ([RetryDelay], [IsFailure]).
//
// A push goes through the same steps for a follow or a summary: read the
// record and the devices, commit to the push (the policies' verdict and the
// pair's claim: package delivery), send it (subpackage fcm, over
// firebase-admin-go, with texts per device locale from subpackage
// pushtext), settle the attempt. Beside them: a send budget shared by all
// workers ([RateLimit]), display names from Tencent's REST API, cached
// ([TencentProfiles]), and a breaker shared by all workers that stops
// deleting tokens FCM answers SENDER_ID_MISMATCH for when the credentials,
// not the tokens, are wrong ([MismatchBreaker]).
//
// The error a handler returns is the retry policy: nil completes the task,
// an error wrapping asynq.SkipRetry archives it, a [*RetryError] retries it
// after the delay it asks for, and a quota RetryError is not counted against
// the task's retry budget.
package notifier
