package preferences_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/followpush/followpush/preferences"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	q := func(start, end, tz string) *preferences.QuietHours {
		return &preferences.QuietHours{Start: start, End: end, TimeZone: tz}
	}
	for _, tc := range []struct {
		name string
		p    preferences.Preferences
		want string // "" = valid
	}{
		{"defaults", preferences.Preferences{}, ""},
		{"all", preferences.Preferences{FollowPushes: "all"}, ""},
		{"summary", preferences.Preferences{FollowPushes: "summary"}, ""},
		{"off", preferences.Preferences{FollowPushes: "off"}, ""},
		{"unknown mode", preferences.Preferences{FollowPushes: "sometimes"}, `follow_pushes: "sometimes" is not one of all, summary, off`},
		{"mode in capitals", preferences.Preferences{FollowPushes: "OFF"}, `follow_pushes: "OFF" is not one of`},
		{"quiet across midnight", preferences.Preferences{QuietHours: q("22:00", "07:30", "Asia/Shanghai")}, ""},
		{"quiet in the day", preferences.Preferences{QuietHours: q("13:00", "14:00", "UTC")}, ""},
		{"start 24:00", preferences.Preferences{QuietHours: q("24:00", "07:00", "UTC")}, `quiet_hours.start: "24:00" is not a time of day`},
		{"start without leading zero", preferences.Preferences{QuietHours: q("7:00", "08:00", "UTC")}, `quiet_hours.start: "7:00"`},
		{"end with seconds", preferences.Preferences{QuietHours: q("22:00", "07:00:00", "UTC")}, `quiet_hours.end: "07:00:00"`},
		{"empty period", preferences.Preferences{QuietHours: q("22:00", "22:00", "UTC")}, `start and end are both 22:00`},
		{"zone offset", preferences.Preferences{QuietHours: q("22:00", "07:00", "UTC+8")}, `quiet_hours.time_zone: "UTC+8" is not an IANA time zone name`},
		{"unknown zone", preferences.Preferences{QuietHours: q("22:00", "07:00", "Mars/Olympus_Mons")}, `"Mars/Olympus_Mons" is not an IANA`},
		{"server's zone", preferences.Preferences{QuietHours: q("22:00", "07:00", "Local")}, `"Local" is not an IANA`},
		{"no zone", preferences.Preferences{QuietHours: q("22:00", "07:00", "")}, `"" is not an IANA`},
		{"a path", preferences.Preferences{QuietHours: q("22:00", "07:00", "../../etc/passwd")}, `is not an IANA`},
	} {
		err := tc.p.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, preferences.ErrInvalid)):
			t.Errorf("%s: %v, want an ErrInvalid saying %q", tc.name, err, tc.want)
		}
	}
}

func TestQuietHoursAt(t *testing.T) {
	t.Parallel()
	sh, _ := time.LoadLocation("Asia/Shanghai")
	ny, _ := time.LoadLocation("America/New_York")
	night := preferences.QuietHours{Start: "22:00", End: "07:30", TimeZone: "Asia/Shanghai"}
	lunch := preferences.QuietHours{Start: "12:00", End: "13:00", TimeZone: "Asia/Shanghai"}
	nyNight := preferences.QuietHours{Start: "22:00", End: "07:30", TimeZone: "America/New_York"}
	nyEarly := preferences.QuietHours{Start: "01:00", End: "02:30", TimeZone: "America/New_York"}
	for _, tc := range []struct {
		name       string
		q          preferences.QuietHours
		at         time.Time
		quiet      bool
		start, end time.Time
	}{
		{"before the night", night, time.Date(2027, 6, 10, 21, 59, 59, 0, sh), false, time.Time{}, time.Time{}},
		{"at its start", night, time.Date(2027, 6, 10, 22, 0, 0, 0, sh), true, time.Date(2027, 6, 10, 22, 0, 0, 0, sh), time.Date(2027, 6, 11, 7, 30, 0, 0, sh)},
		{"after midnight", night, time.Date(2027, 6, 11, 3, 0, 0, 0, sh), true, time.Date(2027, 6, 10, 22, 0, 0, 0, sh), time.Date(2027, 6, 11, 7, 30, 0, 0, sh)},
		{"at its end", night, time.Date(2027, 6, 11, 7, 30, 0, 0, sh), false, time.Time{}, time.Time{}},
		{"the same instant seen from UTC", night, time.Date(2027, 6, 10, 19, 0, 0, 0, time.UTC), true, time.Date(2027, 6, 10, 22, 0, 0, 0, sh), time.Date(2027, 6, 11, 7, 30, 0, 0, sh)},
		{"across the month's end", night, time.Date(2027, 7, 1, 1, 0, 0, 0, sh), true, time.Date(2027, 6, 30, 22, 0, 0, 0, sh), time.Date(2027, 7, 1, 7, 30, 0, 0, sh)},
		{"a daytime period", lunch, time.Date(2027, 6, 10, 12, 30, 0, 0, sh), true, time.Date(2027, 6, 10, 12, 0, 0, 0, sh), time.Date(2027, 6, 10, 13, 0, 0, 0, sh)},
		{"outside a daytime period", lunch, time.Date(2027, 6, 10, 23, 0, 0, 0, sh), false, time.Time{}, time.Time{}},
		// New York springs forward on 2027-03-14 at 02:00 (to 03:00): that
		// night is an hour shorter in real time, and ends at 07:30 local.
		{"the night clocks spring forward", nyNight, time.Date(2027, 3, 14, 5, 0, 0, 0, ny), true, time.Date(2027, 3, 13, 22, 0, 0, 0, ny), time.Date(2027, 3, 14, 7, 30, 0, 0, ny)},
		// It falls back on 2027-11-07 at 02:00 (to 01:00): an hour longer.
		{"the night clocks fall back", nyNight, time.Date(2027, 11, 7, 1, 30, 0, 0, ny), true, time.Date(2027, 11, 6, 22, 0, 0, 0, ny), time.Date(2027, 11, 7, 7, 30, 0, 0, ny)},
		// A period ending at 02:30, inside the skipped hour, ends when the
		// clocks jump to 03:00.
		{"an end in the skipped hour", nyEarly, time.Date(2027, 3, 14, 1, 30, 0, 0, ny), true, time.Date(2027, 3, 14, 1, 0, 0, 0, ny), time.Date(2027, 3, 14, 3, 0, 0, 0, ny)},
		{"after an end in the skipped hour", nyEarly, time.Date(2027, 3, 14, 3, 0, 0, 0, ny), false, time.Time{}, time.Time{}},
	} {
		quiet, start, end := tc.q.At(tc.at)
		if quiet != tc.quiet || !start.Equal(tc.start) || !end.Equal(tc.end) {
			t.Errorf("%s: At(%v) = %v, %v, %v; want %v, %v, %v", tc.name, tc.at, quiet, start, end, tc.quiet, tc.start, tc.end)
		}
	}
	// The real length of the nights around the changes.
	_, s, e := nyNight.At(time.Date(2027, 3, 14, 5, 0, 0, 0, ny))
	if got := e.Sub(s); got != 8*time.Hour+30*time.Minute {
		t.Errorf("the spring-forward night lasts %v, want 8h30m", got)
	}
	_, s, e = nyNight.At(time.Date(2027, 11, 7, 5, 0, 0, 0, ny))
	if got := e.Sub(s); got != 10*time.Hour+30*time.Minute {
		t.Errorf("the fall-back night lasts %v, want 10h30m", got)
	}
	if got := night.Length(); got != 9*time.Hour+30*time.Minute {
		t.Errorf("Length = %v, want 9h30m", got)
	}
}

// A Query that was never queued (a worker without a preference store)
// answers the defaults, as a user who set nothing has.
func TestNilQueryIsTheDefaults(t *testing.T) {
	t.Parallel()
	var q *preferences.Query
	p, err := q.Result()
	if err != nil || !p.IsDefault() {
		t.Fatalf("nil Query: %+v, %v; want the defaults", p, err)
	}
}
