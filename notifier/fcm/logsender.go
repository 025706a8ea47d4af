package fcm

import (
	"context"
	"fmt"
	"log/slog"

	"firebase.google.com/go/v4/messaging"
)

// LogSender "sends" pushes by logging them, for running without FCM.
type LogSender struct {
	// Logger receives one line per message (default slog.Default()).
	Logger *slog.Logger
}

// Send logs each message at info level, message "push sent", with the
// attributes backend="log", task_id (the asynq task's id, from the
// message's follow_id or digest_id), from_account and to_account (from the
// message's data), token (masked by [MaskToken]), title and body, and returns nil for
// it. A nil message gets an error that [Classify] reports as
// [OutcomeInvalidMessage].
func (s LogSender) Send(ctx context.Context, msgs []*messaging.Message) []error {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		if m == nil {
			errs[i] = fmt.Errorf("%w: message %d is nil", errInvalidMessage, i)
			continue
		}
		var title, body string
		if m.Notification != nil {
			title, body = m.Notification.Title, m.Notification.Body
		}
		log.LogAttrs(ctx, slog.LevelInfo, "push sent",
			slog.String("backend", "log"),
			slog.String("task_id", messageTaskID(m)),
			slog.String("from_account", m.Data[DataFromAccount]),
			slog.String("to_account", m.Data[DataToAccount]),
			slog.String("token", MaskToken(m.Token)),
			slog.String("title", title),
			slog.String("body", body),
		)
	}
	return errs
}

// messageTaskID returns the id of the asynq task that built m, from the ids
// in its data ("" if it carries neither).
func messageTaskID(m *messaging.Message) string {
	if id := m.Data[DataFollowID]; id != "" {
		return "follow:" + id
	}
	if id := m.Data[DataSummaryID]; id != "" {
		return "digest:" + id
	}
	return ""
}

// maskKeep* are how many characters of a token [MaskToken] shows.
const (
	maskKeepHead = 6
	maskKeepTail = 4
	// maskMinLen is the shortest token MaskToken shows any of: below it,
	// 10 characters would give too much of the token away.
	maskMinLen = 20
)

// MaskToken returns a form of an FCM registration token fit for logs: its
// first 6 and last 4 characters around "…" (a real token has some 150). A
// token shorter than 20 characters is masked entirely, as "***"; "" stays "".
func MaskToken(token string) string {
	if token == "" {
		return ""
	}
	r := []rune(token)
	if len(r) < maskMinLen {
		return "***"
	}
	return string(r[:maskKeepHead]) + "…" + string(r[len(r)-maskKeepTail:])
}
