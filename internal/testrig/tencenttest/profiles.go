package tencenttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Profiles is a local server for Tencent Cloud Chat's REST API call
// v4/profile/portrait_get, which checks a call as Tencent does: the query
// names the app (sdkappid), the admin (identifier) and its UserSig, with
// a 32-bit random and contenttype=json; the body asks for Tag_Profile_IM_Nick
// of the accounts in To_Account. It answers each account's nickname, or
// fails the whole call with 40003 when any account asked for was never
// imported, as Tencent does. Every refusal of a portrait_get call is an
// answer with ActionStatus FAIL and Tencent's error code, at HTTP 200;
// any other method or path is 404.
//
// Set the fields before serving; the methods may be called at any time.
type Profiles struct {
	// SDKAppID is the app every call must name.
	SDKAppID uint64
	// Nicks are the accounts that exist and their nicknames ("": none set).
	Nicks map[string]string
	// Identifier is the admin account every call must name; empty means
	// "administrator", Tencent's default admin.
	Identifier string
	// UserSig is the admin's UserSig every call must carry, when SecretKey
	// is empty.
	UserSig string
	// SecretKey, when set, is the app's key: a call's UserSig is accepted
	// when it verifies with it ([VerifyUserSig]) at Now, as Tencent checks
	// one, instead of having to equal UserSig.
	SecretKey string
	// Now is the clock UserSigs are verified at; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	hits     int        // requests, authenticated or not
	calls    [][]string // To_Account of each authenticated call
	sigs     []string   // the UserSig of each authenticated call
	refusals []string   // why each refused request was refused
	fail     int        // answer HTTP 500 to this many authenticated calls
}

// ServeHTTP answers one request.
func (p *Profiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.hits++
	p.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v4/profile/portrait_get" {
		p.refuse(w, 0, r.Method+" "+r.URL.Path)
		return
	}
	q := r.URL.Query()
	if _, err := strconv.ParseUint(q.Get("random"), 10, 32); err != nil || q.Get("contenttype") != "json" ||
		q.Get("sdkappid") != strconv.FormatUint(p.SDKAppID, 10) {
		p.refuse(w, 60002, "bad query: "+r.URL.RawQuery)
		return
	}
	if err := p.authenticate(q.Get("identifier"), q.Get("usersig")); err != nil {
		p.refuse(w, 70001, "UserSig expired or invalid: "+err.Error())
		return
	}
	var req struct {
		ToAccount []string `json:"To_Account"`
		TagList   []string
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.TagList) != 1 || req.TagList[0] != "Tag_Profile_IM_Nick" {
		p.refuse(w, 40001, "bad body")
		return
	}
	p.mu.Lock()
	p.sigs = append(p.sigs, q.Get("usersig"))
	p.calls = append(p.calls, req.ToAccount)
	failNow := p.fail > 0
	p.fail--
	p.mu.Unlock()
	if failNow {
		http.Error(w, "internal", http.StatusInternalServerError)
		return
	}
	items := []map[string]any{}
	for _, id := range req.ToAccount {
		nick, ok := p.Nicks[id]
		if !ok {
			p.refuse(w, 40003, "Account not found: "+id)
			return
		}
		items = append(items, map[string]any{"To_Account": id, "ResultCode": 0, "ResultInfo": "",
			"ProfileItem": []map[string]any{{"Tag": "Tag_Profile_IM_Nick", "Value": nick}}})
	}
	answer(w, map[string]any{"UserProfileItem": items, "ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "ErrorDisplay": ""})
}

// authenticate checks the admin's identifier and UserSig.
func (p *Profiles) authenticate(identifier, usersig string) error {
	want := p.Identifier
	if want == "" {
		want = "administrator"
	}
	if identifier != want {
		return fmt.Errorf("identifier %q is not the admin", identifier)
	}
	if p.SecretKey == "" {
		if usersig != p.UserSig {
			return fmt.Errorf("not the admin's UserSig")
		}
		return nil
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	return VerifyUserSig(p.SDKAppID, p.SecretKey, identifier, usersig, now())
}

// refuse answers Tencent's error code with info (code 0: 404, no such
// call) and records the refusal.
func (p *Profiles) refuse(w http.ResponseWriter, code int, info string) {
	p.mu.Lock()
	p.refusals = append(p.refusals, fmt.Sprintf("%d %s", code, info))
	p.mu.Unlock()
	if code == 0 {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	answer(w, map[string]any{"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info})
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// FailNext makes the next n authenticated calls answer HTTP 500.
func (p *Profiles) FailNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = n
}

// Hits is how many requests arrived, authenticated or not.
func (p *Profiles) Hits() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

// Calls are the accounts each authenticated call asked for, in order.
func (p *Profiles) Calls() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.calls...)
}

// UserSigs are the UserSigs of the authenticated calls, in order.
func (p *Profiles) UserSigs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sigs...)
}

// Refusals say why each refused request was refused: Tencent's error
// code (0: no such call) and its text.
func (p *Profiles) Refusals() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refusals...)
}
