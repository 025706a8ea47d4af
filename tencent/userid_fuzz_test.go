package tencent_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// FuzzValidateUserID checks the one UserID rule (the device API's paths, the
// tasks and the callbacks all use it) against its definition: an ID is
// accepted exactly when it is 1 to 32 bytes of valid UTF-8, and a rejection
// wraps ErrInvalidUserID; a follow task accepts the ID exactly then; and the
// same ID is accepted as From_Account, and kept as a followee, by Parse
// exactly then, so a device registered for a user can be found by the
// follows that name that user, and no follow names a user who cannot
// register.
func FuzzValidateUserID(f *testing.F) {
	for _, s := range []string{
		"", "a", "UserID_001", "user@example.com", "1234567890",
		strings.Repeat("u", 32), strings.Repeat("u", 33), strings.Repeat("u", 1000),
		strings.Repeat("中", 10) + "ab", strings.Repeat("中", 11), // 32 and 33 bytes
		strings.Repeat("a", 31) + "中", // 34 bytes, the last rune crosses the limit
		"😀", "\uFFFD", "\u0000", "a\x00b", " ", "\t\n", `"`, `\`, `a"b\c`, "\u2028",
		"\xff", "a\xffb", "中"[:2], "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", // invalid UTF-8
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := tencent.ValidateUserID(id)
		want := len(id) >= 1 && len(id) <= tencent.MaxUserIDBytes && utf8.ValidString(id)
		if (err == nil) != want {
			t.Fatalf("tencent.ValidateUserID(%q) = %v; want accepted=%v (%d bytes, valid UTF-8 %v)", id, err, want, len(id), utf8.ValidString(id))
		}
		if err != nil && !errors.Is(err, tencent.ErrInvalidUserID) {
			t.Fatalf("ValidateUserID(%q) = %v, not wrapping ErrInvalidUserID", id, err)
		}
		if terr := (tasks.Follow{AppID: "1400000000", From: "fuzz-follower", To: id, EventTime: 1}).Validate(); (terr == nil) != (err == nil) && id != "fuzz-follower" {
			t.Fatalf("follow task to %q: Validate %v, ValidateUserID %v", id, terr, err)
		}

		// As the follower: the body is valid UTF-8 exactly when id is.
		cb, perr := tencent.Parse(tencent.CommandFollowAdd, followBody(id, "fuzz-followee"), tencent.Limits{})
		if (perr == nil) != (err == nil) {
			t.Fatalf("From_Account %q: Parse error %v, ValidateUserID %v", id, perr, err)
		}
		if perr == nil && cb.From != id {
			t.Fatalf("From_Account %q parsed as %q", id, cb.From)
		}
		// As a followee: an invalid one is skipped, not fatal (when the body
		// is valid UTF-8 at all).
		if id == "fuzz-follower" {
			return
		}
		cb, perr = tencent.Parse(tencent.CommandFollowAdd, followBody("fuzz-follower", id), tencent.Limits{})
		switch {
		case !utf8.ValidString(id):
			if perr == nil {
				t.Fatalf("To_Account %q: Parse accepted a body that is not UTF-8", id)
			}
		case perr != nil:
			t.Fatalf("To_Account %q: Parse error %v", id, perr)
		case err == nil:
			if diff := cmp.Diff([]string{id}, cb.To); diff != "" {
				t.Fatalf("valid To_Account %q not kept (-want +got):\n%s", id, diff)
			}
		default:
			if cb.To != nil || cb.Invalid != 1 {
				t.Fatalf("invalid To_Account %q: To %q, Invalid %d; want it skipped as invalid", id, cb.To, cb.Invalid)
			}
		}
	})
}

// followBody is a follow callback from from to to. The IDs' bytes go into
// the JSON strings as they are (escaped only where JSON requires), so an
// invalid UTF-8 ID makes an invalid body rather than becoming U+FFFD.
func followBody(from, to string) []byte {
	return fmt.Appendf(nil, `{"CallbackCommand":%q,"From_Account":"%s","FollowList":[{"To_Account":"%s"}],"EventTime":1702018343678}`,
		tencent.CommandFollowAdd, jsonEscape(from), jsonEscape(to))
}

func jsonEscape(s string) string {
	var b strings.Builder
	for i := range len(s) {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
