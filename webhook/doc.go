// Package webhook is the receiver's HTTP surface: Tencent Cloud Chat's
// webhook protocol (authentication with [VerifySign], strict parsing with
// [Parse]) and the device-registration API, served by the handler that
// [NewServer] returns. routes.go lists every route.
//
// A follow callback is answered 200 only after one task per followed user is
// stored in Redis (through an [Enqueuer]); an unfollow records a
// cancellation (through a [Canceller]); every other callback command is
// answered 200 and ignored, because one webhook URL receives every callback
// an app enables.
package webhook
