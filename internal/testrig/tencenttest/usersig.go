// Package tencenttest is Tencent Cloud Chat's side for tests: it checks
// UserSigs as Tencent checks them, for tests of code that makes them
// (package tencent) or sends them (the REST API client, the programs), and
// [Profiles] serves the REST API call the worker makes (portrait_get).
package tencenttest

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Errors of [VerifyUserSig], after those of Tencent's verifiers.
var (
	ErrSDKAppID   = errors.New("usersig: sdkappid does not match")
	ErrIdentifier = errors.New("usersig: identifier does not match")
	ErrExpired    = errors.New("usersig: expired")
	ErrSig        = errors.New("usersig: sig does not match")
)

// DecodeUserSig undoes a UserSig's encoding the way Tencent's TLSSigAPIv2
// verifiers do (tls-sig-api-v2-golang newUserSig, tls-sig-api-v2-php
// __verifySig): Tencent's URL-safe base64 ("*", "-", "_" for "+", "/",
// "="), zlib inflate, JSON. It returns the JSON's fields, numbers as
// json.Number, or an error naming the step that failed.
func DecodeUserSig(usersig string) (map[string]any, error) {
	std := strings.NewReplacer("*", "+", "-", "/", "_", "=").Replace(usersig)
	compressed, err := base64.StdEncoding.DecodeString(std)
	if err != nil {
		return nil, fmt.Errorf("usersig: base64: %w", err)
	}
	r, err := zlib.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("usersig: zlib: %w", err)
	}
	raw, err := io.ReadAll(r)
	if err == nil {
		err = r.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("usersig: inflate: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("usersig: JSON %q: %w", raw, err)
	}
	return doc, nil
}

// VerifyUserSig checks usersig as Tencent's TLSSigAPIv2 verifiers do, field
// by field: its TLS.sdkappid and TLS.identifier are sdkAppID and
// identifier ([ErrSDKAppID], [ErrIdentifier]), now is not past TLS.time +
// TLS.expire ([ErrExpired]), and TLS.sig is the standard base64 of the
// HMAC-SHA256 under key of "TLS.identifier:<identifier>\n
// TLS.sdkappid:<sdkappid>\nTLS.time:<time>\nTLS.expire:<expire>\n"
// ([ErrSig]). Other errors say the UserSig does not decode.
func VerifyUserSig(sdkAppID uint64, key, identifier, usersig string, now time.Time) error {
	doc, err := DecodeUserSig(usersig)
	if err != nil {
		return err
	}
	num := func(field string) (int64, error) {
		n, ok := doc[field].(json.Number)
		if !ok {
			return 0, fmt.Errorf("usersig: %s is %T, not a number", field, doc[field])
		}
		return n.Int64()
	}
	app, err := num("TLS.sdkappid")
	if err != nil {
		return err
	}
	issued, err := num("TLS.time")
	if err != nil {
		return err
	}
	expire, err := num("TLS.expire")
	if err != nil {
		return err
	}
	switch {
	case uint64(app) != sdkAppID:
		return ErrSDKAppID
	case doc["TLS.identifier"] != identifier:
		return ErrIdentifier
	case now.Unix() > issued+expire:
		return ErrExpired
	}
	content := "TLS.identifier:" + identifier + "\n" +
		"TLS.sdkappid:" + strconv.FormatUint(sdkAppID, 10) + "\n" +
		"TLS.time:" + strconv.FormatInt(issued, 10) + "\n" +
		"TLS.expire:" + strconv.FormatInt(expire, 10) + "\n"
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(content))
	if doc["TLS.sig"] != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		return ErrSig
	}
	return nil
}
