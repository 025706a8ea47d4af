package tencent

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxUserIDBytes is the longest UserID Tencent Cloud Chat allows.
const MaxUserIDBytes = 32

// ErrInvalidUserID is wrapped by the error of [ValidateUserID].
var ErrInvalidUserID = errors.New("invalid user id")

// ValidateUserID reports whether id is a UserID followpush accepts
// anywhere (a callback's accounts, a task, the HTTP APIs' paths): 1 to
// [MaxUserIDBytes] bytes of valid UTF-8. The error wraps
// [ErrInvalidUserID] and says what is wrong without quoting id.
func ValidateUserID(id string) error {
	if n := len(id); n == 0 || n > MaxUserIDBytes {
		return fmt.Errorf("%w: length %d bytes, want 1 to %d", ErrInvalidUserID, n, MaxUserIDBytes)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidUserID)
	}
	return nil
}
