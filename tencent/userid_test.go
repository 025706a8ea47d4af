package tencent_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/followpush/followpush/tencent"
)

func TestValidateUserID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, id string
		ok       bool
	}{
		{"ascii", "alice", true},
		{"one byte", "a", true},
		{"32 bytes", strings.Repeat("u", 32), true},
		{"UTF-8", "用户_42", true},
		{"braces and colon", "a}{b:c", true},
		{"empty", "", false},
		{"33 bytes", strings.Repeat("u", 33), false},
		{"32 bytes cut inside a rune", strings.Repeat("é", 16)[:31], false},
		{"invalid UTF-8", "a\xffb", false},
	} {
		err := tencent.ValidateUserID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("%s: ValidateUserID(%q) = %v, want ok=%v", tc.name, tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, tencent.ErrInvalidUserID) {
			t.Errorf("%s: %v does not wrap ErrInvalidUserID", tc.name, err)
		}
	}
}
