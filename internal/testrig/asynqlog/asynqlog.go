// Package asynqlog provides an asynq logger that drops every line, for
// tests that run a real asynq server and do not want its own log lines.
package asynqlog

// Discard is an asynq.Logger that drops what it is given. Its zero value
// is ready to use.
type Discard struct{}

// Debug drops args.
func (Discard) Debug(...any) {}

// Info drops args.
func (Discard) Info(...any) {}

// Warn drops args.
func (Discard) Warn(...any) {}

// Error drops args.
func (Discard) Error(...any) {}

// Fatal drops args; unlike asynq's default logger it does not exit.
func (Discard) Fatal(...any) {}
