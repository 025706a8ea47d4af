package tencent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Authentication errors returned by [VerifySign]. The HTTP layer answers all
// of them with 401.
var (
	ErrMissingSign  = errors.New("missing Sign or RequestTime")
	ErrBadSign      = errors.New("bad Sign")
	ErrStaleRequest = errors.New("RequestTime outside the replay window")
)

// Sign returns Tencent Cloud Chat's webhook signature: the lowercase hex
// SHA-256 of token immediately followed by requestTime (Unix seconds, exactly
// as it appears in the query string). It is plain SHA-256, not an HMAC.
func Sign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

// VerifySign checks a webhook's Sign and RequestTime query parameters against
// token. The hex comparison is case-insensitive and constant-time. It returns
// [ErrMissingSign] when either is absent, [ErrStaleRequest] when RequestTime
// is not an integer or is more than window away from now, and [ErrBadSign]
// when the signature does not match.
func VerifySign(token, requestTime, sign string, now time.Time, window time.Duration) error {
	if requestTime == "" || sign == "" {
		return ErrMissingSign
	}
	secs, err := strconv.ParseInt(requestTime, 10, 64)
	if err != nil {
		return ErrStaleRequest
	}
	if d := now.Sub(time.Unix(secs, 0)); d > window || d < -window {
		return ErrStaleRequest
	}
	want := Sign(token, requestTime)
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(sign))) != 1 {
		return ErrBadSign
	}
	return nil
}
