package tencent

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzVerifySign checks VerifySign, which reads the Sign and RequestTime
// query parameters before anything is authenticated, against a reference
// written out from the protocol: it never panics; it accepts exactly when
// both are present, RequestTime is an int64 at most window away from now,
// and Sign is the hex SHA-256 of token+RequestTime (either case); and every
// rejection is the one error that names the first problem. Each input is
// also tried with the right signature (lower and upper case), so the window
// is exercised on signed requests, not only on bad signatures.
func FuzzVerifySign(f *testing.F) {
	vectors := []struct{ token, rt, sign string }{
		{"xxxxyyyy", "1669872112", "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"},
		{"123456A", "1669872112", "fb1561b2e2daf6e98d4fcaf7a26d1ed02608f9f9669721f7ead1ff0f7b4f32ca"},
		{"123456A", "1697075895", "a990654049bdb6caa85f3763098570d25f02e49dfc9e7f04960367bca54f7615"},
	}
	const minute = 60
	for _, v := range vectors {
		for _, offset := range []int64{0, 59_999, 60_000, 60_001, -60_000, -60_001, 1 << 40, -(1 << 40)} {
			f.Add(v.token, v.rt, v.sign, offset, uint32(minute))
		}
		f.Add(v.token, v.rt, strings.ToUpper(v.sign), int64(0), uint32(minute))
		f.Add(v.token, v.rt, v.sign[:63], int64(0), uint32(minute))
		f.Add(v.token, v.rt, v.sign+"0", int64(0), uint32(minute))
		f.Add(v.token, v.rt, " "+v.sign, int64(0), uint32(minute))
		f.Add(v.token, v.rt, "", int64(0), uint32(minute))
		f.Add(v.token, "", v.sign, int64(0), uint32(minute))
		f.Add(v.token, "+"+v.rt, v.sign, int64(0), uint32(minute))
		f.Add(v.token, "0"+v.rt, v.sign, int64(0), uint32(minute))
		f.Add(v.token, v.rt+" ", v.sign, int64(0), uint32(minute))
		f.Add(v.token, v.rt, v.sign, int64(0), uint32(0))
		f.Add("", v.rt, v.sign, int64(0), uint32(minute))
		f.Add(v.token+v.rt[:1], v.rt[1:], v.sign, int64(0), uint32(minute)) // same bytes hashed, other split
	}
	for _, rt := range []string{"-1", "0", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1e9", "0x63", "١٦٦٩٨٧٢١١٢"} {
		f.Add("123456A", rt, Sign("123456A", rt), int64(0), uint32(minute))
	}

	f.Fuzz(func(t *testing.T, token, requestTime, sign string, offsetMillis int64, windowSecs uint32) {
		window := time.Duration(windowSecs) * time.Second
		// now is offsetMillis from RequestTime when it is an ordinary time,
		// so the window's edges get reached; else from a fixed time.
		base := int64(1669872112)
		if secs, err := strconv.ParseInt(requestTime, 10, 64); err == nil && secs > -(1<<40) && secs < 1<<40 {
			base = secs
		}
		offsetMillis = max(min(offsetMillis, 1<<50), -(1 << 50))
		now := time.UnixMilli(base*1000 + offsetMillis)

		for _, s := range []string{sign, refSign(token, requestTime), strings.ToUpper(refSign(token, requestTime))} {
			got := VerifySign(token, requestTime, s, now, window)
			want := refVerifySign(token, requestTime, s, now, window)
			if (got == nil) != (want == nil) || want != nil && !errors.Is(got, want) {
				t.Fatalf("VerifySign(%q, %q, %q, %s, %s) = %v, want %v", token, requestTime, s, now.UTC(), window, got, want)
			}
			if got == nil && !strings.EqualFold(s, Sign(token, requestTime)) {
				t.Fatalf("accepted sign %q for %q", s, token+requestTime)
			}
		}
	})
}

// refSign is the signature the protocol defines: lowercase hex SHA-256 of
// the token immediately followed by RequestTime.
func refSign(token, requestTime string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(token+requestTime)))
}

// refVerifySign is VerifySign written from the protocol, with exact integer
// arithmetic for the window.
func refVerifySign(token, requestTime, sign string, now time.Time, window time.Duration) error {
	if requestTime == "" || sign == "" {
		return ErrMissingSign
	}
	secs, err := strconv.ParseInt(requestTime, 10, 64)
	if err != nil {
		return ErrStaleRequest
	}
	// |now - RequestTime| <= window, in nanoseconds.
	d := new(big.Int).Sub(big.NewInt(now.UnixMilli()), new(big.Int).Mul(big.NewInt(secs), big.NewInt(1000)))
	d.Mul(d, big.NewInt(int64(time.Millisecond)))
	if d.CmpAbs(big.NewInt(int64(window))) > 0 {
		return ErrStaleRequest
	}
	want := refSign(token, requestTime)
	if len(sign) != len(want) {
		return ErrBadSign
	}
	for i := range len(want) {
		if c := sign[i]; c != want[i] && !('a' <= want[i] && want[i] <= 'f' && c == want[i]-'a'+'A') {
			return ErrBadSign
		}
	}
	return nil
}
