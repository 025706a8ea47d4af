// Package webhook is the receiving side of followpush: it takes Tencent
// Cloud Chat's callbacks in ([NewHandler], POST /webhook), authenticates
// and parses them with package tencent, and stores them: a follow
// callback is answered 200 only after one task per followed user is in
// Redis (through an [Enqueuer]); an unfollow records a cancellation
// (through a [Canceller]); every other callback command is answered 200
// and ignored, because one webhook URL receives every callback an app
// enables. When Redis cannot take an event in time and a [Spool] is
// configured, the event goes to the local spool, and a [Drainer] moves it
// into Redis later.
//
// The receiver's other routes (the device API, health, metrics) and its
// route table are wired in internal/app.
package webhook
