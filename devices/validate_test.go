package devices_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/followpush/followpush/devices"
)

type validateCase struct {
	name string
	in   string
	ok   bool
}

func runValidate(t *testing.T, fn func(string) error, sentinel error, cases []validateCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := fn(tc.in)
			if tc.ok {
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, sentinel) {
				t.Fatalf("got error %v, want one wrapping %v", err, sentinel)
			}
		})
	}
}

func TestValidateToken(t *testing.T) {
	t.Parallel()
	runValidate(t, devices.ValidateToken, devices.ErrInvalidToken, []validateCase{
		{"typical FCM token", "dGVzdA:APA91bH-abc_DEF123", true},
		{"one byte", "x", true},
		{"all printable except slash", "!\"#$%&'()*+,-.0123456789:;<=>?@AZ[\\]^_`az{|}~", true},
		{"4096 bytes", strings.Repeat("a", 4096), true},
		{"empty", "", false},
		{"4097 bytes", strings.Repeat("a", 4097), false},
		{"space", "ab cd", false},
		{"tab", "ab\tcd", false},
		{"newline", "abcd\n", false},
		{"NUL", "ab\x00cd", false},
		{"DEL", "ab\x7fcd", false},
		{"slash", "ab/cd", false},
		{"non-ASCII", "abcé", false},
		{"invalid UTF-8", "ab\xffcd", false},
	})
}

func TestValidatePlatform(t *testing.T) {
	t.Parallel()
	runValidate(t, devices.ValidatePlatform, devices.ErrInvalidPlatform, []validateCase{
		{"empty", "", true},
		{"android", "android", true},
		{"ios", "ios", true},
		{"web", "web", true},
		{"upper case", "Android", false},
		{"iOS", "iOS", false},
		{"other", "windows", false},
		{"padded", " ios", false},
	})
}

func TestValidateLocale(t *testing.T) {
	t.Parallel()
	at35 := "en-" + strings.Repeat("abcdefg-", 3) + "abcdefgh" // 3+24+8 bytes
	at36 := "eng-" + strings.Repeat("abcdefg-", 3) + "abcdefgh"
	if len(at35) != 35 || len(at36) != 36 {
		t.Fatalf("bad fixtures: %d, %d bytes", len(at35), len(at36))
	}
	runValidate(t, devices.ValidateLocale, devices.ErrInvalidLocale, []validateCase{
		{"empty", "", true},
		{"language", "en", true},
		{"language and region", "pt-BR", true},
		{"script", "zh-Hant-TW", true},
		{"three-letter language", "yue-HK", true},
		{"numeric region", "es-419", true},
		{"8-letter first subtag", "abcdefgh", true},
		{"35 bytes", at35, true},
		{"36 bytes", at36, false},
		{"one letter", "e", false},
		{"first subtag one letter", "e-US", false},
		{"first subtag 9 letters", "abcdefghi", false},
		{"digit in first subtag", "e1-US", false},
		{"underscore", "en_US", false},
		{"trailing dash", "en-", false},
		{"leading dash", "-en", false},
		{"double dash", "en--US", false},
		{"subtag 9 characters", "en-abcdefghi", false},
		{"space", "en US", false},
		{"non-ASCII", "en-ÜS", false},
	})
}

func FuzzValidateToken(f *testing.F) {
	for _, s := range []string{"dGVzdA:APA91bH-abc_DEF123", "", "a/b", "a b", "\x00", strings.Repeat("z", 4097)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		err := devices.ValidateToken(token)
		want := len(token) >= 1 && len(token) <= devices.MaxTokenBytes &&
			strings.IndexFunc(token, func(r rune) bool { return r < 0x21 || r > 0x7e || r == '/' }) < 0
		if (err == nil) != want {
			t.Fatalf("ValidateToken(%q) = %v, want ok=%v", token, err, want)
		}
		if err != nil {
			if !errors.Is(err, devices.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			if len(token) >= 4 && strings.Contains(err.Error(), token) {
				t.Fatalf("error %q quotes the token", err)
			}
		}
	})
}

func FuzzValidateLocale(f *testing.F) {
	for _, s := range []string{"", "en", "pt-BR", "zh-Hant-TW", "en--US", "-en", "e1", "abcdefghi"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, l string) {
		err := devices.ValidateLocale(l)
		if err != nil {
			if !errors.Is(err, devices.ErrInvalidLocale) {
				t.Fatalf("error %v does not wrap ErrInvalidLocale", err)
			}
			return
		}
		if l == "" {
			return
		}
		if len(l) < 2 || len(l) > devices.MaxLocaleBytes || !utf8.ValidString(l) {
			t.Fatalf("accepted %q with a bad length or encoding", l)
		}
		subtags := strings.Split(l, "-")
		for i, s := range subtags {
			if len(s) < 1 || len(s) > 8 {
				t.Fatalf("accepted %q with subtag %q", l, s)
			}
			for _, c := range s {
				letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
				digit := '0' <= c && c <= '9'
				if !letter && !(digit && i > 0) {
					t.Fatalf("accepted %q with subtag %q", l, s)
				}
			}
		}
		if len(subtags[0]) < 2 {
			t.Fatalf("accepted %q with a first subtag shorter than 2", l)
		}
	})
}
