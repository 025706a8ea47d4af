package tencent_test

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/internal/testrig/tencenttest"
	"github.com/followpush/followpush/tencent"
)

// decodeUserSig is tencenttest.DecodeUserSig, failing t on an error.
func decodeUserSig(t *testing.T, usersig string) map[string]any {
	t.Helper()
	doc, err := tencenttest.DecodeUserSig(usersig)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

var (
	verifyUserSig = tencenttest.VerifyUserSig
	errSDKAppID   = tencenttest.ErrSDKAppID
	errIdentifier = tencenttest.ErrIdentifier
	errExpired    = tencenttest.ErrExpired
	errSig        = tencenttest.ErrSig
)

type vector struct {
	SDKAppID   uint64 `json:"sdkappid"`
	Key        string `json:"key"`
	Identifier string `json:"identifier"`
	Expire     int64  `json:"expire"`
	Time       int64  `json:"time"`
	UserSig    string `json:"usersig"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/usersig-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []vector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return f.Vectors
}

// UserSigs made by Tencent's own Go library (testdata) are what UserSig
// makes from the same inputs, byte for byte, and verify field by field.
func TestUserSigKnownVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Identifier, func(t *testing.T) {
			t.Parallel()
			issued := time.Unix(v.Time, 0)
			if err := verifyUserSig(v.SDKAppID, v.Key, v.Identifier, v.UserSig, issued); err != nil {
				t.Fatalf("the reference UserSig does not verify: %v", err)
			}
			got, err := tencent.UserSig(v.SDKAppID, v.Key, v.Identifier, issued, time.Duration(v.Expire)*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			// The JSON first: fields, values and their order.
			if d := cmp.Diff(decodeUserSig(t, v.UserSig), decodeUserSig(t, got)); d != "" {
				t.Errorf("JSON inside the UserSig (-reference +ours):\n%s", d)
			}
			if got != v.UserSig {
				t.Errorf("UserSig = %s\nwant       %s\n(same JSON: then the zlib or base64 encoding differs)", got, v.UserSig)
			}
		})
	}
}

// A UserSig made now verifies the way Tencent verifies one, until its
// validity ends; with another key, app or identifier, after its validity,
// or with its time moved, it does not.
func TestUserSigVerifiesAsTencentVerifies(t *testing.T) {
	t.Parallel()
	const (
		app        = uint64(1400000042)
		key        = "d3b5a0c1e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6"
		identifier = "administrator"
	)
	now := time.Unix(1767225600, 0)
	sig, err := tencent.UserSig(app, key, identifier, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(sig, "+/=") {
		t.Errorf("UserSig %s holds +, / or =: not Tencent's URL-safe base64", sig)
	}
	doc := decodeUserSig(t, sig)
	want := map[string]any{"TLS.ver": "2.0", "TLS.identifier": identifier, "TLS.sdkappid": json.Number("1400000042"),
		"TLS.time": json.Number("1767225600"), "TLS.expire": json.Number("86400"), "TLS.sig": doc["TLS.sig"]}
	if d := cmp.Diff(want, doc); d != "" {
		t.Errorf("fields (-want +got):\n%s", d)
	}
	for _, c := range []struct {
		name       string
		app        uint64
		key, ident string
		at         time.Time
		want       error
	}{
		{"at issue", app, key, identifier, now, nil},
		{"at the end of its validity", app, key, identifier, now.Add(24 * time.Hour), nil},
		{"a second later", app, key, identifier, now.Add(24*time.Hour + time.Second), errExpired},
		{"another key", app, key[1:] + "0", identifier, now, errSig},
		{"another app", app + 1, key, identifier, now, errSDKAppID},
		{"another identifier", app, key, "admin", now, errIdentifier},
	} {
		if err := verifyUserSig(c.app, c.key, c.ident, sig, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: verify = %v, want %v", c.name, err, c.want)
		}
	}
	// The same JSON with a later TLS.time no longer matches its TLS.sig.
	raw, _ := json.Marshal(map[string]any{"TLS.ver": "2.0", "TLS.identifier": identifier, "TLS.sdkappid": app,
		"TLS.time": now.Unix() + 3600, "TLS.expire": 86400, "TLS.sig": doc["TLS.sig"]})
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(raw)
	zw.Close()
	forged := strings.NewReplacer("+", "*", "/", "-", "=", "_").Replace(base64.StdEncoding.EncodeToString(z.Bytes()))
	if err := verifyUserSig(app, key, identifier, forged, now); !errors.Is(err, errSig) {
		t.Errorf("UserSig with its time moved: verify = %v, want %v", err, errSig)
	}
}

func TestUserSigRejectsBadInput(t *testing.T) {
	t.Parallel()
	now := time.Unix(1767225600, 0)
	for _, c := range []struct {
		name       string
		app        uint64
		key, ident string
		expire     time.Duration
	}{
		{"no app", 0, "k", "administrator", time.Hour},
		{"no key", 1400000000, "", "administrator", time.Hour},
		{"no identifier", 1400000000, "k", "", time.Hour},
		{"validity under a second", 1400000000, "k", "administrator", 999 * time.Millisecond},
	} {
		if sig, err := tencent.UserSig(c.app, c.key, c.ident, now, c.expire); err == nil {
			t.Errorf("%s: UserSig = %q, want an error", c.name, sig)
		}
	}
	for _, app := range []string{"", "0", "abc", "-1"} {
		if _, err := tencent.NewSigner(app, "k", "administrator", 0, nil); err == nil {
			t.Errorf("NewSigner(%q): no error", app)
		}
	}
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// A Signer hands out the same UserSig until half its validity has passed,
// then a new one issued then, so a UserSig it gives has at least half its
// validity left; each verifies with the app's key.
func TestSignerRenewsAtHalfValidity(t *testing.T) {
	t.Parallel()
	start := time.Unix(1767225600, 0)
	clock := &fakeClock{t: start}
	s, err := tencent.NewSigner("1400000000", "secret-key", "administrator", 2*time.Hour, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	get := func() (string, int64) {
		t.Helper()
		sig, err := s.UserSig()
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyUserSig(1400000000, "secret-key", "administrator", sig, clock.Now().Add(time.Hour)); err != nil {
			t.Fatalf("UserSig at %s has not an hour left: %v", clock.Now().Sub(start), err)
		}
		n, _ := decodeUserSig(t, sig)["TLS.time"].(json.Number).Int64()
		return sig, n
	}
	first, issued := get()
	if issued != start.Unix() {
		t.Errorf("first UserSig issued at %d, want %d", issued, start.Unix())
	}
	clock.Set(start.Add(time.Hour - time.Second))
	if again, _ := get(); again != first {
		t.Error("renewed before half its validity passed")
	}
	clock.Set(start.Add(time.Hour))
	renewed, issued := get()
	if renewed == first || issued != start.Add(time.Hour).Unix() {
		t.Errorf("at half its validity: issued %d (same UserSig: %v), want a new one issued at %d", issued, renewed == first, start.Add(time.Hour).Unix())
	}
	clock.Set(start) // the clock went back: a UserSig from the future is not kept
	if _, issued := get(); issued != start.Unix() {
		t.Errorf("after the clock went back: issued %d, want %d", issued, start.Unix())
	}
}

func ExampleUserSig() {
	sig, err := tencent.UserSig(1400000000, "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e", "xiaojun",
		time.Unix(1796341005, 0), 180*24*time.Hour)
	fmt.Println(sig, err)
	// Output: eJyqVgrxCdZLrSjILEpVsjI0NTU1MjAw0AGLZqak5pVkpmWmFilZKVVkJuZnleYpQaSKU7ITCwoyU5SsDE0MoAAqk5muZKWUaxJqnutk5JdW4umbnZLnZxme5lwVXuDsbRoY4Wrg5pYY5WeZaqBtmRSQbws1siQzF*QCc0szYxNDAwNTiGgZ2HIjPQOlWkAAAAD--yoyMXo_ <nil>
}
