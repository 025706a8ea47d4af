package config

import (
	"strings"
	"time"

	"github.com/followpush/followpush/history"
)

// HistorySettings are the follow history's settings, read by every program: the
// receiver writes follows and unfollows and serves the history API, the
// worker writes its results.
type HistorySettings struct {
	// Enabled is FOLLOW_HISTORY (on or off; default history.DefaultEnabled).
	Enabled bool
	// MaxEvents is FOLLOW_HISTORY_MAX_EVENTS (default
	// history.DefaultMaxEvents): entries kept per followee.
	MaxEvents int
	// TTL is FOLLOW_HISTORY_TTL (default history.DefaultTTL): how long a
	// followee's history lives after its last entry.
	TTL time.Duration
}

// onOff is FOLLOW_HISTORY's text of b.
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// history reads FOLLOW_HISTORY, FOLLOW_HISTORY_MAX_EVENTS and
// FOLLOW_HISTORY_TTL.
func (l *loader) history() HistorySettings {
	h := HistorySettings{Enabled: history.DefaultEnabled}
	switch v := strings.ToLower(strings.TrimSpace(l.raw("FOLLOW_HISTORY", ""))); v {
	case "":
	case "on", "true", "1":
		h.Enabled = true
	case "off", "false", "0":
		h.Enabled = false
	default:
		l.fail("FOLLOW_HISTORY", "%q is not on or off", v)
	}
	h.MaxEvents = l.intRange("FOLLOW_HISTORY_MAX_EVENTS", history.DefaultMaxEvents, history.MinMaxEvents, history.MaxMaxEvents)
	h.TTL = l.duration("FOLLOW_HISTORY_TTL", history.DefaultTTL, history.MinTTL, history.MaxTTL)
	return h
}

// Options are the history.Options of h for keys under prefix
// (REDIS_KEY_PREFIX).
func (h HistorySettings) Options(prefix string) history.Options {
	return history.Options{Prefix: prefix, MaxEvents: h.MaxEvents, TTL: h.TTL}
}
