package tencent

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The vectors from Tencent's documentation (see the spec).
func TestSignVectors(t *testing.T) {
	t.Parallel()
	tests := []struct{ token, requestTime, sign string }{
		{"xxxxyyyy", "1669872112", "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"},
		{"123456A", "1669872112", "fb1561b2e2daf6e98d4fcaf7a26d1ed02608f9f9669721f7ead1ff0f7b4f32ca"},
		{"123456A", "1697075895", "a990654049bdb6caa85f3763098570d25f02e49dfc9e7f04960367bca54f7615"},
	}
	for _, tt := range tests {
		t.Run(tt.token+"/"+tt.requestTime, func(t *testing.T) {
			t.Parallel()
			if got := Sign(tt.token, tt.requestTime); got != tt.sign {
				t.Errorf("Sign = %s, want %s", got, tt.sign)
			}
			secs := mustAtoi(t, tt.requestTime)
			now := time.Unix(secs, 0)
			if err := VerifySign(tt.token, tt.requestTime, tt.sign, now, time.Minute); err != nil {
				t.Errorf("VerifySign(lowercase) = %v", err)
			}
			if err := VerifySign(tt.token, tt.requestTime, strings.ToUpper(tt.sign), now, time.Minute); err != nil {
				t.Errorf("VerifySign(uppercase) = %v", err)
			}
		})
	}
}

func TestVerifySignRejects(t *testing.T) {
	t.Parallel()
	const token, rt = "123456A", "1669872112"
	good := Sign(token, rt)
	now := time.Unix(1669872112, 0)
	tests := []struct {
		name            string
		token, rt, sign string
		now             time.Time
		want            error
	}{
		{"missing sign", token, rt, "", now, ErrMissingSign},
		{"missing time", token, "", good, now, ErrMissingSign},
		{"wrong token", "other", rt, good, now, ErrBadSign},
		{"truncated sign", token, rt, good[:63], now, ErrBadSign},
		{"time not a number", token, "16698721x2", good, now, ErrStaleRequest},
		{"61 s late", token, rt, good, now.Add(61 * time.Second), ErrStaleRequest},
		{"61 s early", token, rt, good, now.Add(-61 * time.Second), ErrStaleRequest},
		{"sign of another time", token, "1669872113", good, now, ErrBadSign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := VerifySign(tt.token, tt.rt, tt.sign, tt.now, time.Minute); !errors.Is(err, tt.want) {
				t.Errorf("VerifySign = %v, want %v", err, tt.want)
			}
		})
	}
	if err := VerifySign(token, rt, good, now.Add(59*time.Second), time.Minute); err != nil {
		t.Errorf("59 s late should pass: %v", err)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		n = n*10 + int64(c-'0')
	}
	return n
}
