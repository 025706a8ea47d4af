// Package devices is the device registry: which FCM registration tokens
// belong to which user. It lives in Redis and is used by the receiver's
// device API (register, unregister, list) and by the worker (list a user's
// devices, then check each token's owner at send time).
//
// # Ownership
//
// A token belongs to one user at a time. The token → user index (the owner
// key) is the source of truth for ownership: a token is a user's device only
// while its owner key names that user. [Registry.List] returns only such
// tokens, and the worker must check [Registry.Owners] right before it sends,
// so a token that moved to another user is never sent the old user's push.
//
// # Key layout
//
// With the default prefix "followpush:" (see [Options]):
//
//	followpush:{u:<userID>}:devices   ZSET  token -> last seen, Unix milliseconds
//	followpush:{u:<userID>}:meta      HASH  token -> {"platform":"…","locale":"…","gen":"…"}
//	followpush:tok:<hex(sha256(token))[:32]>
//	                                  STRING "<gen>:<userID>" (the owner key)
//
// A user's two keys share the hash tag {u:<userID>}, so one Lua script can
// update both, also on Redis Cluster. The owner key is named after a hash of
// the token (tokens are up to 4096 bytes), carries no hash tag of its own and
// so usually lives on another slot than the user's keys. (A prefix that
// itself contains a {hash tag} puts every key on one slot, which also works.)
//
// gen is a per-token generation, strictly increasing for one owner key and
// taken from the Redis server's clock when the key is created. Each
// registration writes a new one; the user's meta entry keeps the highest gen
// it has been added with. Removals that cannot be atomic with the owner key
// compare gens, so a late step of an older operation never undoes a newer
// registration.
//
// # Moving a token, and why an interrupted move is harmless
//
// Since the owner key and the users' keys are on different slots, a move of
// a token from user A to user B ([Registry.Register] for B) is done as
// ordered steps, each atomic on its own:
//
//  1. The owner key is set to B with a new gen, returning the old value (A
//     and A's gen) in the same script.
//  2. The token is added to B's keys, in one script that also evicts B's
//     least recently seen devices beyond [Options.MaxDevicesPerUser]; the
//     owner key of each evicted token is then deleted if it still names B
//     with a gen not newer than the evicted entry (compare-and-delete).
//  3. The token is removed from A's keys, if A's entry is not newer than the
//     gen that step 1 replaced.
//
// If the process stops between steps, the owner key already names B. A
// token left in A's keys is not A's device: List(A) leaves it out (and
// removes it), and the worker's owner check refuses to send it A's pushes.
// A token owned by B but not yet in B's keys is simply not listed for B
// until B registers it again. The same holds for concurrent moves: the owner
// key names exactly one user, and that user's List contains the token.
//
// Limits of this scheme: gens assume the Redis server's clock does not step
// back; and when one user registers the same token twice at once while a
// third registration evicts it in between, the late add can leave an entry
// without owner that takes one of the user's slots until List drops it.
package devices

import (
	"errors"
	"fmt"
	"time"

	"github.com/followpush/followpush/tencent"
)

// Device is one registered device of a user, as [Registry.List] returns it
// and as the device API shows it in JSON.
type Device struct {
	// Token is the FCM registration token.
	Token string `json:"token"`
	// Platform is "android", "ios", "web", or "" when never given.
	Platform string `json:"platform"`
	// Locale is the device's BCP 47 language tag, "" when never given.
	Locale string `json:"locale,omitempty"`
	// UpdatedAt is when the device was last registered or refreshed, in UTC
	// with millisecond precision; it marshals as RFC 3339.
	UpdatedAt time.Time `json:"updated_at"`
}

// Registration is what a caller may say about a device when registering it.
// An empty field keeps what was stored before (empty for a new device).
type Registration struct {
	// Platform is "android", "ios", "web", or "" to keep the stored one.
	Platform string `json:"platform,omitempty"`
	// Locale is a BCP 47 language tag, or "" to keep the stored one.
	Locale string `json:"locale,omitempty"`
}

// Errors returned (wrapped) by the validators and by every [Registry] method
// given an invalid argument; nothing is read or written then. The device API
// maps them, with errors.Is, to 400 Bad Request. Their messages never
// contain the token.
var (
	// ErrInvalidToken: see [ValidateToken].
	ErrInvalidToken = errors.New("invalid device token")
	// ErrInvalidPlatform: see [ValidatePlatform].
	ErrInvalidPlatform = errors.New("invalid platform")
	// ErrInvalidUserID is tencent.ErrInvalidUserID: see
	// [tencent.ValidateUserID].
	ErrInvalidUserID = tencent.ErrInvalidUserID
	// ErrInvalidLocale: see [ValidateLocale].
	ErrInvalidLocale = errors.New("invalid locale")
)

// Limits checked by the validators.
const (
	// MaxTokenBytes is the longest accepted device token.
	MaxTokenBytes = 4096
	// MaxLocaleBytes is the longest accepted locale tag.
	MaxLocaleBytes = 35
)

// Platforms accepted by [ValidatePlatform] (besides "").
const (
	PlatformAndroid = "android"
	PlatformIOS     = "ios"
	PlatformWeb     = "web"
)

// ValidateToken reports whether token is an acceptable device token: 1 to
// [MaxTokenBytes] bytes of printable ASCII (0x21 to 0x7e, so no whitespace or
// control characters) without '/'. The error wraps [ErrInvalidToken] and
// does not quote the token.
func ValidateToken(token string) error {
	if n := len(token); n == 0 || n > MaxTokenBytes {
		return fmt.Errorf("%w: length %d bytes, want 1 to %d", ErrInvalidToken, n, MaxTokenBytes)
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: byte %d is not printable ASCII", ErrInvalidToken, i)
		}
		if c == '/' {
			return fmt.Errorf("%w: byte %d is '/'", ErrInvalidToken, i)
		}
	}
	return nil
}

// ValidatePlatform reports whether p is "", "android", "ios" or "web"
// (lower case). The error wraps [ErrInvalidPlatform].
func ValidatePlatform(p string) error {
	switch p {
	case "", PlatformAndroid, PlatformIOS, PlatformWeb:
		return nil
	}
	return fmt.Errorf("%w: %q, want %q, %q or %q", ErrInvalidPlatform, p, PlatformAndroid, PlatformIOS, PlatformWeb)
}

// ValidateLocale reports whether l is "" or a plausible BCP 47 tag: 2 to
// [MaxLocaleBytes] bytes of ASCII letters, digits and '-', made of non-empty
// subtags of at most 8 characters separated by single '-', the first subtag
// being 2 to 8 letters ("en", "pt-BR", "zh-Hant-TW"). It does not check the
// subtags against the IANA registry. The error wraps [ErrInvalidLocale].
func ValidateLocale(l string) error {
	if l == "" {
		return nil
	}
	if n := len(l); n < 2 || n > MaxLocaleBytes {
		return fmt.Errorf("%w: length %d bytes, want 2 to %d", ErrInvalidLocale, n, MaxLocaleBytes)
	}
	start := 0
	for i := 0; i <= len(l); i++ {
		if i < len(l) && l[i] != '-' {
			if !isAlnum(l[i]) {
				return fmt.Errorf("%w: %q: byte %d is not a letter, digit or '-'", ErrInvalidLocale, l, i)
			}
			if start == 0 && !isLetter(l[i]) {
				return fmt.Errorf("%w: %q: the first subtag must be letters", ErrInvalidLocale, l)
			}
			continue
		}
		n := i - start
		switch {
		case n == 0:
			return fmt.Errorf("%w: %q: empty subtag", ErrInvalidLocale, l)
		case start == 0 && n < 2:
			return fmt.Errorf("%w: %q: the first subtag must be 2 to 8 letters", ErrInvalidLocale, l)
		case n > 8:
			return fmt.Errorf("%w: %q: subtag longer than 8 characters", ErrInvalidLocale, l)
		}
		start = i + 1
	}
	return nil
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool  { return isLetter(c) || '0' <= c && c <= '9' }
