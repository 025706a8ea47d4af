package tencent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Client defaults.
const (
	// DefaultIdentifier is ClientConfig.Identifier's default.
	DefaultIdentifier = "administrator"
	// DefaultRESTTimeout is ClientConfig.Timeout's default.
	DefaultRESTTimeout = 2 * time.Second
)

// PortraitGetMax is the most users one portrait_get call takes.
const PortraitGetMax = 100

// CodeAccountNotFound is the REST API's ErrorCode for an account that was
// never imported; portrait_get fails the whole call with it.
const CodeAccountNotFound = 40003

// APIError is a REST API answer with ActionStatus FAIL (a non-zero
// ErrorCode).
type APIError struct {
	// Code is the answer's ErrorCode (e.g. [CodeAccountNotFound]).
	Code int
	// Info is the answer's ErrorInfo.
	Info string
}

// Error names the code and Tencent's explanation.
func (e *APIError) Error() string {
	return fmt.Sprintf("Tencent REST API error %d: %s", e.Code, e.Info)
}

// ClientConfig configures a [Client].
type ClientConfig struct {
	// BaseURL is the Tencent Cloud Chat REST API domain of the app's region,
	// e.g. "https://adminapisgp.im.qcloud.com" (Singapore) or
	// "https://console.tim.qq.com" (China); required.
	BaseURL string
	// Identifier is the app admin account (default [DefaultIdentifier]).
	Identifier string
	// UserSigs are the admin account's UserSig per SDKAppID; the key "" serves
	// any app not listed. Never logged.
	UserSigs map[string]string
	// SecretKeys are the apps' secret keys per SDKAppID (the key "" serves
	// any app not listed): for these apps the admin's UserSig is made here
	// and renewed (see [Signer]), valid UserSigValidity. An app's own entry,
	// in either map, wins over an entry "" of the other. UserSigs or
	// SecretKeys is required. Never logged.
	SecretKeys map[string]string
	// UserSigValidity is how long a UserSig made from a secret key is valid
	// (default [DefaultValidity]; renewed after half of it).
	UserSigValidity time.Duration
	// Timeout bounds one call (default [DefaultRESTTimeout]).
	Timeout time.Duration
	// HTTPClient sends the calls (default: a client with Timeout).
	HTTPClient *http.Client
	// Now is the clock of the UserSigs made here (default time.Now).
	Now func() time.Time
}

// Client calls Tencent Cloud Chat's REST API as the app admin. It is safe
// for concurrent use.
type Client struct {
	cfg  ClientConfig
	http *http.Client

	mu      sync.Mutex
	signers map[string]*Signer // SDKAppID -> its UserSig from a secret key
}

// NewClient returns a client over cfg. It returns an error when BaseURL is
// missing, or both UserSigs and SecretKeys are.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.BaseURL == "" || len(cfg.UserSigs)+len(cfg.SecretKeys) == 0 {
		return nil, errors.New("Tencent REST API: the base URL and an admin UserSig or secret key are required")
	}
	if cfg.Identifier == "" {
		cfg.Identifier = DefaultIdentifier
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRESTTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Timeout}
	}
	return &Client{cfg: cfg, http: hc, signers: map[string]*Signer{}}, nil
}

// PortraitGet asks v4/profile/portrait_get for the nicknames
// (Tag_Profile_IM_Nick) of users (at most [PortraitGetMax]) of app appID:
// every user asked for is in the map, "" when it has no nickname (or a
// per-user error). A failed call is an error; one Tencent answered with
// ActionStatus FAIL is an [*APIError] (an account never imported fails
// the whole call with [CodeAccountNotFound]). Errors never hold the
// UserSig.
func (c *Client) PortraitGet(ctx context.Context, appID string, users []string) (map[string]string, error) {
	sig, err := c.userSig(appID)
	if err != nil {
		return nil, err
	}
	q := url.Values{
		"sdkappid":    {appID},
		"identifier":  {c.cfg.Identifier},
		"usersig":     {sig},
		"random":      {strconv.FormatUint(uint64(rand.Uint32()), 10)},
		"contenttype": {"json"},
	}
	body, err := json.Marshal(map[string]any{"To_Account": users, "TagList": []string{"Tag_Profile_IM_Nick"}})
	if err != nil {
		return nil, fmt.Errorf("encode portrait_get request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+"/v4/profile/portrait_get?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("portrait_get request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL carries the UserSig: keep it out of the error.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("portrait_get: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("portrait_get: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("portrait_get: HTTP %d", resp.StatusCode)
	}
	return parsePortraitAnswer(raw, users)
}

// userSig returns the admin's UserSig for appID: the app's pasted UserSig,
// or one made from its secret key (kept and renewed by a tencent.Signer
// per app); an app's own entry first, then the entries "".
func (c *Client) userSig(appID string) (string, error) {
	if sig, ok := c.cfg.UserSigs[appID]; ok {
		return sig, nil
	}
	key, ok := c.cfg.SecretKeys[appID]
	if !ok {
		if sig, ok := c.cfg.UserSigs[""]; ok {
			return sig, nil
		}
		if key, ok = c.cfg.SecretKeys[""]; !ok {
			return "", fmt.Errorf("no admin UserSig or secret key for SDKAppID %s", appID)
		}
	}
	c.mu.Lock()
	s, ok := c.signers[appID]
	if !ok {
		var err error
		if s, err = NewSigner(appID, key, c.cfg.Identifier, c.cfg.UserSigValidity, c.cfg.Now); err != nil {
			c.mu.Unlock()
			return "", fmt.Errorf("admin UserSig for SDKAppID %s: %w", appID, err)
		}
		c.signers[appID] = s
	}
	c.mu.Unlock()
	return s.UserSig()
}

// parsePortraitAnswer reads a portrait_get answer: every user asked for
// gets an entry, the nickname Tencent returned or "" (no nickname, or a
// per-user error). A failed call (ActionStatus not OK, an ErrorCode) is a
// *APIError.
func parsePortraitAnswer(raw []byte, users []string) (map[string]string, error) {
	var ans struct {
		ActionStatus    string
		ErrorCode       int
		ErrorInfo       string
		UserProfileItem []struct {
			ToAccount   string `json:"To_Account"`
			ResultCode  int
			ProfileItem []struct {
				Tag   string
				Value any
			}
		}
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return nil, fmt.Errorf("portrait_get: answer is not JSON: %w", err)
	}
	if ans.ErrorCode != 0 || ans.ActionStatus != "OK" {
		return nil, &APIError{Code: ans.ErrorCode, Info: ans.ErrorInfo}
	}
	names := make(map[string]string, len(users))
	for _, id := range users {
		names[id] = ""
	}
	for _, item := range ans.UserProfileItem {
		if _, asked := names[item.ToAccount]; !asked || item.ResultCode != 0 {
			continue
		}
		for _, pi := range item.ProfileItem {
			if s, ok := pi.Value.(string); ok && pi.Tag == "Tag_Profile_IM_Nick" {
				names[item.ToAccount] = s
			}
		}
	}
	return names, nil
}
