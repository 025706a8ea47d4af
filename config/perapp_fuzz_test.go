package config

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// parsePerApp takes one value for every app or a list of sdkappid=value:
// it never panics, a list's keys are non-zero SDKAppIDs with non-empty
// values taken from the input, a single value is the input itself, and an
// error never repeats what it was given (the values are secrets).
func FuzzParsePerApp(f *testing.F) {
	for _, seed := range []string{
		"s3cret", "abc=def", "1400000001=a,1400000002=b", " 1400000001 = a , 1400000002=b ",
		"1400000001=", "1400000001=a,b", "1400000001=a,1400000001=b", "0=a", "18446744073709551616=a",
		"1=a,,2=b", "=", ",", "1400000001=a=b", "1400000001 =x,=y",
	} {
		f.Add(seed)
	}
	errForm := regexp.MustCompile(`^entry \d+( is not sdkappid=token|: SDKAppID \d+ is listed twice)$`)
	f.Fuzz(func(t *testing.T, v string) {
		vals, err := parsePerApp(v, "token")
		if err != nil {
			if !errForm.MatchString(err.Error()) {
				t.Fatalf("parsePerApp(%q): error %q is not one of the known forms", v, err)
			}
			return
		}
		if one, ok := vals[""]; ok {
			if len(vals) != 1 || one != v {
				t.Fatalf("parsePerApp(%q) = %q: a single value must be the input itself", v, vals)
			}
			return
		}
		if len(vals) == 0 || len(vals) > strings.Count(v, ",")+1 {
			t.Fatalf("parsePerApp(%q) = %q: %d entries from %d parts", v, vals, len(vals), strings.Count(v, ",")+1)
		}
		for app, val := range vals {
			if n, err := strconv.ParseUint(app, 10, 64); err != nil || n == 0 || app != strings.TrimSpace(app) {
				t.Fatalf("parsePerApp(%q): key %q is not an SDKAppID", v, app)
			}
			if val == "" || val != strings.TrimSpace(val) || !strings.Contains(v, app) || !strings.Contains(v, val) {
				t.Fatalf("parsePerApp(%q): value %q of %s is empty, untrimmed or not from the input", v, val, app)
			}
		}
	})
}
