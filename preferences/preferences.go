package preferences

// The IANA time zone database is built in, so that quiet hours work in
// images without one (distroless, scratch).
import _ "time/tzdata"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Modes of [Preferences.FollowPushes].
const (
	// ModeAll pushes every follow as the worker's policies allow (the
	// default).
	ModeAll = "all"
	// ModeSummary folds every follow into the user's summary push, even
	// when aggregation is off for everyone.
	ModeSummary = "summary"
	// ModeOff sends no follower push at all: follows are counted
	// (result preference_off), not sent, and start no cooldown.
	ModeOff = "off"
)

// ErrInvalid is wrapped by every error of [Preferences.Validate] and
// [QuietHours.Validate].
var ErrInvalid = errors.New("invalid preferences")

// Preferences are one user's notification settings. The zero value is
// the default: every follow pushed, no quiet hours.
type Preferences struct {
	// FollowPushes is [ModeAll], [ModeSummary] or [ModeOff]; "" is
	// ModeAll.
	FollowPushes string `json:"follow_pushes"`
	// QuietHours, when set, holds the follows that arrive inside them for
	// one summary push when they end.
	QuietHours *QuietHours `json:"quiet_hours,omitempty"`
}

// Mode returns FollowPushes, with "" read as [ModeAll].
func (p Preferences) Mode() string {
	if p.FollowPushes == "" {
		return ModeAll
	}
	return p.FollowPushes
}

// IsDefault reports whether p is the default (nothing to store).
func (p Preferences) IsDefault() bool { return p.Mode() == ModeAll && p.QuietHours == nil }

// Validate reports the first thing wrong with p, naming the field; the
// error wraps [ErrInvalid].
func (p Preferences) Validate() error {
	switch p.Mode() {
	case ModeAll, ModeSummary, ModeOff:
	default:
		return fmt.Errorf("%w: follow_pushes: %q is not one of all, summary, off", ErrInvalid, p.FollowPushes)
	}
	if p.QuietHours != nil {
		return p.QuietHours.Validate()
	}
	return nil
}

// QuietHours is a daily period, in the user's time zone, during which no
// follower push is sent: the follows that arrive are held and sent as one
// summary push when the period ends. End before Start spans midnight
// ("22:00" to "07:30").
type QuietHours struct {
	// Start is when the period begins each day: a local time of day,
	// "HH:MM" on a 24-hour clock.
	Start string `json:"start"`
	// End is when it ends, likewise; before Start, the next day.
	End string `json:"end"`
	// TimeZone is an IANA time zone name ("Asia/Shanghai", "UTC").
	TimeZone string `json:"time_zone"`
}

// MaxQuiet is the longest quiet period: a day less a minute (Start and
// End one minute apart across midnight).
const MaxQuiet = 24*time.Hour - time.Minute

// Validate reports the first thing wrong with q, naming the field; the
// error wraps [ErrInvalid].
func (q QuietHours) Validate() error {
	_, _, _, err := q.parse()
	return err
}

// parse returns q's start and end as minutes of the day, and its zone.
func (q QuietHours) parse() (start, end int, loc *time.Location, err error) {
	if start, err = minuteOfDay("quiet_hours.start", q.Start); err != nil {
		return
	}
	if end, err = minuteOfDay("quiet_hours.end", q.End); err != nil {
		return
	}
	if start == end {
		return 0, 0, nil, fmt.Errorf("%w: quiet_hours: start and end are both %s: give a period", ErrInvalid, q.Start)
	}
	loc, err = zone(q.TimeZone)
	return
}

// minuteOfDay reads "HH:MM" (00:00 to 23:59).
func minuteOfDay(field, v string) (int, error) {
	t, err := time.Parse("15:04", v)
	if err != nil || len(v) != 5 {
		return 0, fmt.Errorf("%w: %s: %q is not a time of day as HH:MM (00:00 to 23:59)", ErrInvalid, field, v)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// zones caches the time zones loaded, by name: a worker reads a zone for
// every follow of a user with quiet hours.
var zones sync.Map

// zone loads an IANA time zone by name. "Local" and "" are refused: they
// would mean the server's zone, not the user's.
func zone(name string) (*time.Location, error) {
	if name == "" || name == "Local" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") || len(name) > 64 {
		return nil, fmt.Errorf("%w: quiet_hours.time_zone: %q is not an IANA time zone name (such as Asia/Shanghai)", ErrInvalid, name)
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err == nil {
		zones.Store(name, loc)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: quiet_hours.time_zone: %q is not an IANA time zone name (such as Asia/Shanghai)", ErrInvalid, name)
	}
	return loc, nil
}

// Length is the length of q's period on a day without a daylight-saving
// change (0 for an invalid q).
func (q QuietHours) Length() time.Duration {
	sm, em, _, err := q.parse()
	if err != nil {
		return 0
	}
	d := em - sm
	if d <= 0 {
		d += 24 * 60
	}
	return time.Duration(d) * time.Minute
}

// At reports whether t falls inside the quiet hours and, if so, when the
// period that holds t began and ends. Times are wall-clock times of the
// zone on the day they fall on: across a daylight-saving change the
// period is an hour shorter or longer in real time, and a start or end
// inside a skipped hour moves to the end of that hour (the instant the
// clocks jump). An
// invalid q is never quiet.
func (q QuietHours) At(t time.Time) (quiet bool, start, end time.Time) {
	sm, em, loc, err := q.parse()
	if err != nil {
		return false, time.Time{}, time.Time{}
	}
	local := t.In(loc)
	y, m, d := local.Date()
	for _, day := range []int{d - 1, d} {
		s := wallClock(y, m, day, sm, loc)
		endDay := day
		if em <= sm {
			endDay++
		}
		e := wallClock(y, m, endDay, em, loc)
		if !t.Before(s) && t.Before(e) {
			return true, s, e
		}
	}
	return false, time.Time{}, time.Time{}
}

// wallClock returns the instant the clocks of loc show minute min of the
// given day (day may be out of range, as for time.Date), or, when they
// never show it (a daylight-saving change skips it), the first instant
// after it: the end of the skipped hour.
func wallClock(y int, m time.Month, day, min int, loc *time.Location) time.Time {
	t := time.Date(y, m, day, min/60, min%60, 0, 0, loc)
	want := time.Date(y, m, day, min/60, min%60, 0, 0, time.UTC) // the wall time, as a comparable value
	wall := func(t time.Time) time.Time {
		ly, lm, ld := t.Date()
		return time.Date(ly, lm, ld, t.Hour(), t.Minute(), 0, 0, time.UTC)
	}
	if wall(t).Equal(want) {
		return t
	}
	// Skipped: time.Date gave a nearby instant; the clocks jump past want
	// within a few hours of it.
	t = t.Add(-3 * time.Hour).Truncate(time.Minute)
	for i := 0; i < 6*60 && wall(t).Before(want); i++ {
		t = t.Add(time.Minute)
	}
	return t
}
