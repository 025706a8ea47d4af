package tencent

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UserSig returns a UserSig of identifier in app sdkAppID, issued at now
// and valid for expire, signed with key (the app's secret key from the
// Tencent Cloud Chat console), as Tencent's TLSSigAPIv2 libraries make one
// (tencentyun/tls-sig-api-v2-golang GenUserSig, byte for byte):
//
//  1. sig = base64(HMAC-SHA256(key, "TLS.identifier:" + identifier + "\n" +
//     "TLS.sdkappid:" + sdkAppID + "\n" + "TLS.time:" + now (Unix seconds) +
//     "\n" + "TLS.expire:" + expire (seconds) + "\n")), standard base64;
//  2. the JSON object {"TLS.expire", "TLS.identifier", "TLS.sdkappid",
//     "TLS.sig", "TLS.time", "TLS.ver": "2.0"} (numbers as numbers, keys
//     in this order, no spaces);
//  3. compressed with zlib (default level);
//  4. in standard base64 with "+", "/" and "=" replaced by "*", "-" and
//     "_" (Tencent's URL-safe variant).
//
// expire is whole seconds (a fraction is dropped). It returns an error when
// sdkAppID is 0, key or identifier is empty, or expire is under a second.
func UserSig(sdkAppID uint64, key, identifier string, now time.Time, expire time.Duration) (string, error) {
	switch {
	case sdkAppID == 0:
		return "", errors.New("usersig: SDKAppID is 0")
	case key == "":
		return "", errors.New("usersig: no secret key")
	case identifier == "":
		return "", errors.New("usersig: no identifier")
	case expire < time.Second:
		return "", fmt.Errorf("usersig: validity %s is under a second", expire)
	}
	doc := sigDoc{
		Expire:     int64(expire / time.Second),
		Identifier: identifier,
		SDKAppID:   sdkAppID,
		Time:       now.Unix(),
		Version:    "2.0",
	}
	doc.Sig = base64.StdEncoding.EncodeToString(signature(key, doc))
	raw, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("usersig: encode: %w", err)
	}
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	if _, err := w.Write(raw); err != nil {
		return "", fmt.Errorf("usersig: compress: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("usersig: compress: %w", err)
	}
	return urlBase64.Replace(base64.StdEncoding.EncodeToString(z.Bytes())), nil
}

// sigDoc is the JSON inside a UserSig. The field order is the reference
// library's (its map's keys, which encoding/json sorts).
type sigDoc struct {
	Expire     int64  `json:"TLS.expire"`
	Identifier string `json:"TLS.identifier"`
	SDKAppID   uint64 `json:"TLS.sdkappid"`
	Sig        string `json:"TLS.sig"`
	Time       int64  `json:"TLS.time"`
	Version    string `json:"TLS.ver"`
}

// signature is the HMAC-SHA256, under key, of TLSSigAPIv2's field string.
func signature(key string, d sigDoc) []byte {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte("TLS.identifier:" + d.Identifier + "\n" +
		"TLS.sdkappid:" + strconv.FormatUint(d.SDKAppID, 10) + "\n" +
		"TLS.time:" + strconv.FormatInt(d.Time, 10) + "\n" +
		"TLS.expire:" + strconv.FormatInt(d.Expire, 10) + "\n"))
	return h.Sum(nil)
}

// urlBase64 turns standard base64 into Tencent's URL-safe variant.
var urlBase64 = strings.NewReplacer("+", "*", "/", "-", "=", "_")

// DefaultValidity is how long a [Signer]'s UserSigs are valid by default.
const DefaultValidity = 24 * time.Hour

// Signer makes the admin UserSig of one app from its secret key and renews
// it once half its validity has passed, so that a UserSig it hands out has
// at least half its validity left. It is safe for concurrent use.
type Signer struct {
	appID      uint64
	key        string
	identifier string
	validity   time.Duration
	now        func() time.Time

	mu      sync.Mutex
	sig     string
	renewAt time.Time
}

// NewSigner returns a Signer for identifier (the app's admin account) of
// app sdkAppID (decimal), signing with key. validity is how long each
// UserSig is valid (0: [DefaultValidity]); now is the clock (nil:
// time.Now). It returns an error when sdkAppID is not a non-zero number,
// key or identifier is empty, or validity is under two seconds.
func NewSigner(sdkAppID, key, identifier string, validity time.Duration, now func() time.Time) (*Signer, error) {
	app, err := strconv.ParseUint(sdkAppID, 10, 64)
	if err != nil || app == 0 {
		return nil, fmt.Errorf("usersig: SDKAppID %q is not a number", sdkAppID)
	}
	if validity == 0 {
		validity = DefaultValidity
	}
	if now == nil {
		now = time.Now
	}
	switch {
	case key == "":
		return nil, errors.New("usersig: no secret key")
	case identifier == "":
		return nil, errors.New("usersig: no identifier")
	case validity < 2*time.Second:
		return nil, fmt.Errorf("usersig: validity %s is under 2s", validity)
	}
	return &Signer{appID: app, key: key, identifier: identifier, validity: validity, now: now}, nil
}

// UserSig returns the current UserSig, made anew when there is none yet or
// half of its validity has passed (or the clock went back before it was
// made).
func (s *Signer) UserSig() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.sig != "" && now.Before(s.renewAt) && !now.Before(s.renewAt.Add(-s.validity/2)) {
		return s.sig, nil
	}
	sig, err := UserSig(s.appID, s.key, s.identifier, now, s.validity)
	if err != nil {
		return "", err
	}
	s.sig, s.renewAt = sig, now.Add(s.validity/2)
	return sig, nil
}
