package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/notifier"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tencent"
)

// TencentAPI is the worker's access to Tencent Cloud Chat's REST API, for
// the followers' display names.
type TencentAPI struct {
	// Base is TENCENT_API_BASE (default "": display names off).
	Base string
	// AdminIdentifier is TENCENT_ADMIN_IDENTIFIER (default
	// tencent.DefaultIdentifier).
	AdminIdentifier string
	// AdminUserSigs is TENCENT_ADMIN_USERSIG per SDKAppID, the key "" for a
	// single UserSig serving every app; nil when unset.
	AdminUserSigs map[string]string
	// SecretKeys is TENCENT_SECRET_KEY per SDKAppID, the key "" for one
	// secret key serving every app; nil when unset. An app has a UserSig
	// or a secret key, never both.
	SecretKeys map[string]string
	// DisplayNameCacheTTL is DISPLAY_NAME_CACHE_TTL (default
	// notifier.DefaultDisplayNameCacheTTL).
	DisplayNameCacheTTL time.Duration
}

// policy reads the notification policies (FOLLOW_COOLDOWN,
// MAX_PUSHES_PER_USER_PER_HOUR, AGGREGATION_WINDOW,
// AGGREGATION_FIRST_IMMEDIATE).
func (l *loader) policy(maxEventAge time.Duration) delivery.Policy {
	p := delivery.Policy{
		Cooldown:       l.duration("FOLLOW_COOLDOWN", delivery.DefaultCooldown, 0, 30*24*time.Hour),
		MaxPerHour:     l.intRange("MAX_PUSHES_PER_USER_PER_HOUR", 0, 0, 100000),
		Window:         l.duration("AGGREGATION_WINDOW", 0, 0, 24*time.Hour),
		FirstImmediate: l.boolean("AGGREGATION_FIRST_IMMEDIATE", true),
	}
	if p.Window > 0 && p.Window < time.Second {
		l.fail("AGGREGATION_WINDOW", "%s is below 1s (0 turns aggregation off)", p.Window)
	}
	if p.Window >= maxEventAge {
		l.fail("AGGREGATION_WINDOW", "%s is not shorter than MAX_EVENT_AGE %s", p.Window, maxEventAge)
	}
	return p
}

// message reads the per-platform settings of every push (ANDROID_*,
// APNS_*, WEBPUSH_LINK).
func (l *loader) message() fcm.MessageOptions {
	m := fcm.MessageOptions{
		AndroidChannelID: l.raw("ANDROID_CHANNEL_ID", ""),
		AndroidPriority:  strings.ToLower(l.raw("ANDROID_PRIORITY", fcm.DefaultAndroidPriority)),
		APNsSound:        l.raw("APNS_SOUND", fcm.DefaultAPNsSound),
		APNsThreadID:     l.raw("APNS_THREAD_ID", fcm.DefaultAPNsThreadID),
		WebpushLink:      l.raw("WEBPUSH_LINK", ""),
	}
	if m.AndroidPriority != "high" && m.AndroidPriority != "normal" {
		l.fail("ANDROID_PRIORITY", "%q is not high or normal", m.AndroidPriority)
	}
	if len(m.AndroidChannelID) > 256 || strings.ContainsAny(m.AndroidChannelID, " \t\r\n") {
		l.fail("ANDROID_CHANNEL_ID", "must be at most 256 bytes without whitespace")
	}
	if len(m.APNsSound) > 256 || len(m.APNsThreadID) > 256 {
		l.fail("APNS_SOUND", "APNS_SOUND and APNS_THREAD_ID must be at most 256 bytes")
	}
	if v := m.WebpushLink; v != "" {
		if u, err := url.Parse(v); err != nil || u.Scheme != "https" || u.Host == "" {
			l.fail("WEBPUSH_LINK", "%q is not an https URL (FCM accepts only https links)", v)
		}
	}
	return m
}

// tencentAPI reads the REST API settings (TENCENT_API_BASE,
// TENCENT_ADMIN_*, TENCENT_SECRET_KEY, DISPLAY_NAME_CACHE_TTL).
func (l *loader) tencentAPI() TencentAPI {
	t := TencentAPI{
		Base:                l.baseURL("TENCENT_API_BASE"),
		AdminIdentifier:     l.raw("TENCENT_ADMIN_IDENTIFIER", tencent.DefaultIdentifier),
		AdminUserSigs:       l.noListSeparators("TENCENT_ADMIN_USERSIG", "usersig", "a UserSig"),
		SecretKeys:          l.noListSeparators("TENCENT_SECRET_KEY", "key", "a secret key"),
		DisplayNameCacheTTL: l.duration("DISPLAY_NAME_CACHE_TTL", notifier.DefaultDisplayNameCacheTTL, time.Minute, 7*24*time.Hour),
	}
	if t.Base != "" && l.raw("TENCENT_ADMIN_USERSIG", "") == "" && l.raw("TENCENT_SECRET_KEY", "") == "" {
		l.fail("TENCENT_ADMIN_USERSIG", "required with TENCENT_API_BASE, or TENCENT_SECRET_KEY instead")
	}
	l.adminCredentialsApart(t)
	return t
}

// noListSeparators reads a per-app secret whose values never hold "=" or
// "," (UserSigs, secret keys; see [loader.perApp]): a single value that
// does is a mistyped list. what names an entry's value ("usersig"), one
// names a single value ("a UserSig").
func (l *loader) noListSeparators(name, what, one string) map[string]string {
	vals := l.perApp(name, what)
	if v, ok := vals[""]; ok && strings.ContainsAny(v, "=,") {
		l.fail(name, "is neither %s nor a list of sdkappid=%s (a list starts with the SDKAppID)", one, what)
		return nil
	}
	apps := make([]string, 0, len(vals))
	for app := range vals {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	for _, app := range apps {
		if v := vals[app]; len(v) > 1024 || strings.ContainsAny(v, " \t\r\n") {
			if app == "" {
				l.fail(name, "must be 1 to 1024 bytes without whitespace")
			} else {
				l.fail(name, "the value of SDKAppID %s must be 1 to 1024 bytes without whitespace", app)
			}
			return nil
		}
	}
	return vals
}

// adminCredentialsApart checks that no app has both a pasted UserSig and a
// secret key: one of the two serves each app.
func (l *loader) adminCredentialsApart(t TencentAPI) {
	sigs, keys := t.AdminUserSigs, t.SecretKeys
	if len(sigs) == 0 || len(keys) == 0 {
		return
	}
	_, allSigs := sigs[""]
	_, allKeys := keys[""]
	switch {
	case allSigs && allKeys:
		l.fail("TENCENT_SECRET_KEY", "TENCENT_ADMIN_USERSIG is set too: give the apps one or the other")
		return
	case allSigs || allKeys:
		l.fail("TENCENT_SECRET_KEY", "one of TENCENT_SECRET_KEY and TENCENT_ADMIN_USERSIG serves every app, so it cannot be combined with a per-app list of the other")
		return
	}
	apps := make([]string, 0, len(keys))
	for app := range keys {
		if _, both := sigs[app]; both {
			apps = append(apps, app)
		}
	}
	sort.Strings(apps)
	for _, app := range apps {
		l.fail("TENCENT_SECRET_KEY", "SDKAppID %s has a TENCENT_ADMIN_USERSIG too: give each app one or the other", app)
	}
}

// perApp reads a per-app secret: one value that serves every app, or a
// comma-separated list of sdkappid=value, one per app. A value is a list
// when it starts with an SDKAppID (digits) and "="; every entry must then
// be sdkappid=value with a non-zero numeric SDKAppID, each SDKAppID once.
// It returns the values by SDKAppID, under the key "" for a single value;
// nil when the setting is unset or bad. what names a value in messages
// ("token", "usersig"); problems are reported without the values, which
// are secrets.
func (l *loader) perApp(name, what string) map[string]string {
	v := l.raw(name, "")
	if v == "" {
		return nil
	}
	vals, err := parsePerApp(v, what)
	if err != nil {
		l.fail(name, "%v", err)
		return nil
	}
	return vals
}

// parsePerApp is [loader.perApp]'s parser; its errors never hold a value.
func parsePerApp(v, what string) (map[string]string, error) {
	first, _, _ := strings.Cut(v, ",")
	app, _, isList := strings.Cut(first, "=")
	if !isList || !allDigits(strings.TrimSpace(app)) {
		return map[string]string{"": v}, nil
	}
	vals := map[string]string{}
	for i, part := range strings.Split(v, ",") {
		app, val, ok := strings.Cut(part, "=")
		app, val = strings.TrimSpace(app), strings.TrimSpace(val)
		if n, err := strconv.ParseUint(app, 10, 64); !ok || err != nil || n == 0 || val == "" {
			return nil, fmt.Errorf("entry %d is not sdkappid=%s", i+1, what)
		}
		if _, dup := vals[app]; dup {
			return nil, fmt.Errorf("entry %d: SDKAppID %s is listed twice", i+1, app)
		}
		vals[app] = val
	}
	return vals, nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func (l *loader) boolean(name string, def bool) bool {
	v := l.raw(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.fail(name, "%q is not true or false", v)
		return def
	}
	return b
}

// texts reads the push texts: PUSH_TEMPLATES_FILE (a JSON object of
// language tag -> pushtext.Texts) over the built-in ones, with PUSH_TITLE
// and PUSH_BODY as English's single-follow texts unless the file gives
// those; every template is checked by pushtext (parsed, and tried on a
// follow and on every shape of a summary). Its problems are reported under
// the setting that brought the template.
func (l *loader) texts() *pushtext.Templates {
	title := l.raw("PUSH_TITLE", pushtext.DefaultTitle)
	body := l.raw("PUSH_BODY", pushtext.DefaultBody)
	texts := map[string]pushtext.Texts{}
	if path := l.raw("PUSH_TEMPLATES_FILE", ""); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			l.fail("PUSH_TEMPLATES_FILE", "cannot read: %v", err)
			return nil
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&texts); err != nil {
			l.fail("PUSH_TEMPLATES_FILE", "%s is not a JSON object of locale -> {title, body, digest_title, digest_body}: %v", path, err)
			return nil
		}
		if _, err := pushtext.NewLocalizedTemplates(texts); err != nil {
			l.fail("PUSH_TEMPLATES_FILE", "%s: %v", path, err)
			return nil
		}
		byTag := make(map[string]pushtext.Texts, len(texts))
		for loc, tx := range texts {
			byTag[pushtext.NormalizeLocale(loc)] = tx
		}
		texts = byTag
	}
	en := texts[pushtext.DefaultLocale]
	if en.Title == "" {
		en.Title = title
	}
	if en.Body == "" {
		en.Body = body
	}
	texts[pushtext.DefaultLocale] = en
	t, err := pushtext.NewLocalizedTemplates(texts)
	if err != nil {
		// The file's texts passed: PUSH_TITLE or PUSH_BODY is the problem.
		name := "PUSH_TITLE"
		if _, terr := pushtext.NewTemplates(title, ""); terr == nil {
			name = "PUSH_BODY"
		}
		l.fail(name, "%v", err)
		return nil
	}
	return t
}
