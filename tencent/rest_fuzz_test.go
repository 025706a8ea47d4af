package tencent

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzPortraitAnswer feeds Tencent's portrait_get answer parser arbitrary
// bytes: it never panics, and on success it names exactly the users asked
// for, each with valid UTF-8 (the nickname goes into push texts); a failure
// is an error, never a partial map.
func FuzzPortraitAnswer(f *testing.F) {
	for _, seed := range []string{
		`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","UserProfileItem":[{"To_Account":"alice","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"Alice"}],"ResultCode":0,"ResultInfo":""}]}`,
		`{"ActionStatus":"OK","ErrorCode":0,"UserProfileItem":[{"To_Account":"bob","ResultCode":40006,"ResultInfo":"Err_Profile_Get_Fail"}]}`,
		`{"ActionStatus":"FAIL","ErrorCode":70107,"ErrorInfo":"Err_Profile_User_Not_Exist"}`,
		`{"ActionStatus":"OK","ErrorCode":0,"UserProfileItem":[{"To_Account":"alice","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":12}]}]}`,
		`{"ActionStatus":"OK","UserProfileItem":[{"To_Account":"alice","ProfileItem":[{"Tag":"Tag_Profile_IM_Nick","Value":"\ud83d"}]}]}`,
		`[]`, `null`, `{`, "",
	} {
		f.Add([]byte(seed), "alice,bob")
	}
	f.Fuzz(func(t *testing.T, raw []byte, asked string) {
		users := strings.Split(asked, ",")
		names, err := parsePortraitAnswer(raw, users)
		if err != nil {
			if names != nil {
				t.Fatalf("error %v with a map %v", err, names)
			}
			var te *APIError
			if !errors.As(err, &te) && !strings.Contains(err.Error(), "not JSON") {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		want := map[string]bool{}
		for _, u := range users {
			want[u] = true
		}
		if len(names) != len(want) {
			t.Fatalf("%d names for %d users asked", len(names), len(want))
		}
		for u, name := range names {
			if !want[u] {
				t.Fatalf("a name for %q, not asked for", u)
			}
			if !utf8.ValidString(name) {
				t.Fatalf("nickname of %q is not valid UTF-8: %q", u, name)
			}
		}
	})
}
