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
	"text/template"
	"time"
)

// Policies are the worker's notification policies and push content
// settings.
type Policies struct {
	// FollowCooldown is FOLLOW_COOLDOWN (default 1h; 0 = off).
	FollowCooldown time.Duration
	// MaxPushesPerHour is MAX_PUSHES_PER_USER_PER_HOUR (default 0 =
	// unlimited).
	MaxPushesPerHour int
	// AggregationWindow is AGGREGATION_WINDOW (default 0 = off).
	AggregationWindow time.Duration
	// AggregationFirstImmediate is AGGREGATION_FIRST_IMMEDIATE (default
	// true).
	AggregationFirstImmediate bool
	// FCMRateLimit is FCM_RATE_LIMIT, sends per second for all workers
	// together (default 8000; 0 = unlimited; at most 10000). Keep it below
	// the Firebase project's FCM quota (by default 600,000 a minute, i.e.
	// 10,000 a second, the maximum accepted), leaving room for the project's
	// other senders.
	FCMRateLimit int
	// Templates are the per-locale texts of PUSH_TEMPLATES_FILE, keyed by
	// the file's language tags, each template already checked to parse and
	// render (a single follow; a summary of one follower, of two and of
	// many); nil when unset.
	Templates map[string]LocaleTexts
	// AndroidChannelID is ANDROID_CHANNEL_ID (default "": the app's default
	// channel).
	AndroidChannelID string
	// AndroidPriority is ANDROID_PRIORITY, "high" (default) or "normal".
	AndroidPriority string
	// APNsSound is APNS_SOUND (default "default"; "none" = silent).
	APNsSound string
	// APNsThreadID is APNS_THREAD_ID (default "follow").
	APNsThreadID string
	// WebpushLink is WEBPUSH_LINK, an https URL (default "": none).
	WebpushLink string
	// TencentAPIBase is TENCENT_API_BASE (default "": display names off).
	TencentAPIBase string
	// TencentAdminIdentifier is TENCENT_ADMIN_IDENTIFIER (default
	// "administrator").
	TencentAdminIdentifier string
	// TencentAdminUserSigs is TENCENT_ADMIN_USERSIG per SDKAppID, the key ""
	// for a single UserSig serving every app; nil when unset.
	TencentAdminUserSigs map[string]string
	// TencentSecretKeys is TENCENT_SECRET_KEY per SDKAppID, the key "" for
	// one secret key serving every app; nil when unset. An app has a
	// UserSig or a secret key, never both.
	TencentSecretKeys map[string]string
	// DisplayNameCacheTTL is DISPLAY_NAME_CACHE_TTL (default 1h).
	DisplayNameCacheTTL time.Duration
}

// LocaleTexts are one locale's templates in PUSH_TEMPLATES_FILE; an empty
// field keeps the built-in text (see pushtext.Texts for what each sees).
type LocaleTexts struct {
	Title       string `json:"title"`
	Body        string `json:"body"`
	DigestTitle string `json:"digest_title"`
	DigestBody  string `json:"digest_body"`
}

func (l *loader) policies(maxEventAge time.Duration) Policies {
	p := Policies{
		FollowCooldown:            l.duration("FOLLOW_COOLDOWN", time.Hour, 0, 30*24*time.Hour),
		MaxPushesPerHour:          l.intRange("MAX_PUSHES_PER_USER_PER_HOUR", 0, 0, 100000),
		AggregationWindow:         l.duration("AGGREGATION_WINDOW", 0, 0, 24*time.Hour),
		AggregationFirstImmediate: l.boolean("AGGREGATION_FIRST_IMMEDIATE", true),
		FCMRateLimit:              l.intRange("FCM_RATE_LIMIT", 8000, 0, 10000),
		Templates:                 l.templatesFile("PUSH_TEMPLATES_FILE"),
		AndroidChannelID:          l.raw("ANDROID_CHANNEL_ID", ""),
		AndroidPriority:           strings.ToLower(l.raw("ANDROID_PRIORITY", "high")),
		APNsSound:                 l.raw("APNS_SOUND", "default"),
		APNsThreadID:              l.raw("APNS_THREAD_ID", "follow"),
		WebpushLink:               l.raw("WEBPUSH_LINK", ""),
		TencentAPIBase:            l.baseURL("TENCENT_API_BASE"),
		TencentAdminIdentifier:    l.raw("TENCENT_ADMIN_IDENTIFIER", "administrator"),
		TencentAdminUserSigs:      l.noListSeparators("TENCENT_ADMIN_USERSIG", "usersig", "a UserSig"),
		TencentSecretKeys:         l.noListSeparators("TENCENT_SECRET_KEY", "key", "a secret key"),
		DisplayNameCacheTTL:       l.duration("DISPLAY_NAME_CACHE_TTL", time.Hour, time.Minute, 7*24*time.Hour),
	}
	if p.TencentAPIBase != "" && l.raw("TENCENT_ADMIN_USERSIG", "") == "" && l.raw("TENCENT_SECRET_KEY", "") == "" {
		l.fail("TENCENT_ADMIN_USERSIG", "required with TENCENT_API_BASE, or TENCENT_SECRET_KEY instead")
	}
	l.adminCredentialsApart(p)
	if p.AggregationWindow > 0 && p.AggregationWindow < time.Second {
		l.fail("AGGREGATION_WINDOW", "%s is below 1s (0 turns aggregation off)", p.AggregationWindow)
	}
	if p.AggregationWindow >= maxEventAge {
		l.fail("AGGREGATION_WINDOW", "%s is not shorter than MAX_EVENT_AGE %s", p.AggregationWindow, maxEventAge)
	}
	if p.AndroidPriority != "high" && p.AndroidPriority != "normal" {
		l.fail("ANDROID_PRIORITY", "%q is not high or normal", p.AndroidPriority)
	}
	if len(p.AndroidChannelID) > 256 || strings.ContainsAny(p.AndroidChannelID, " \t\r\n") {
		l.fail("ANDROID_CHANNEL_ID", "must be at most 256 bytes without whitespace")
	}
	if len(p.APNsSound) > 256 || len(p.APNsThreadID) > 256 {
		l.fail("APNS_SOUND", "APNS_SOUND and APNS_THREAD_ID must be at most 256 bytes")
	}
	if v := p.WebpushLink; v != "" {
		if u, err := url.Parse(v); err != nil || u.Scheme != "https" || u.Host == "" {
			l.fail("WEBPUSH_LINK", "%q is not an https URL (FCM accepts only https links)", v)
		}
	}
	return p
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
func (l *loader) adminCredentialsApart(p Policies) {
	sigs, keys := p.TencentAdminUserSigs, p.TencentSecretKeys
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

// templateDigestData is what a summary's templates see (notifier.DigestData).
type templateDigestData struct {
	From, To, AppID string
	Names           []string
	Count, Others   int
}

// templateSample* are what the notifier's templates see (pushtext.Texts):
// each template must render every one of them without error. A summary
// names one follower or two (notifier.DigestNames), with or without others:
// a template that only works with two names, or with others, is refused.
var (
	templateSampleSingle  = []any{struct{ From, FromID, To, AppID string }{"Alice", "alice", "bob", "1400000000"}}
	templateSampleDigests = []any{
		templateDigestData{"alice", "bob", "1400000000", []string{"alice"}, 1, 0},
		templateDigestData{"alice", "bob", "1400000000", []string{"alice", "carol"}, 2, 0},
		templateDigestData{"alice", "bob", "1400000000", []string{"alice", "carol"}, 5, 3},
	}
	templateFuncs = template.FuncMap{"join": strings.Join}
)

// templatesFile reads and checks the JSON file of per-locale texts named by
// setting name.
func (l *loader) templatesFile(name string) map[string]LocaleTexts {
	path := l.raw(name, "")
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		l.fail(name, "cannot read: %v", err)
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var texts map[string]LocaleTexts
	if err := dec.Decode(&texts); err != nil {
		l.fail(name, "%s is not a JSON object of locale -> {title, body, digest_title, digest_body}: %v", path, err)
		return nil
	}
	locales := make([]string, 0, len(texts))
	for loc := range texts {
		locales = append(locales, loc)
	}
	sort.Strings(locales)
	var problems []string
	for _, loc := range locales {
		if !validLocale(loc) {
			problems = append(problems, fmt.Sprintf("%q is not a language tag", loc))
			continue
		}
		tx := texts[loc]
		for _, f := range []struct {
			field, text string
			samples     []any
		}{
			{"title", tx.Title, templateSampleSingle}, {"body", tx.Body, templateSampleSingle},
			{"digest_title", tx.DigestTitle, templateSampleDigests}, {"digest_body", tx.DigestBody, templateSampleDigests},
		} {
			if f.text == "" {
				continue
			}
			t, err := template.New(f.field).Funcs(templateFuncs).Option("missingkey=error").Parse(f.text)
			for _, sample := range f.samples {
				if err != nil {
					break
				}
				err = t.Execute(&strings.Builder{}, sample)
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s %s: %v", loc, f.field, err))
			}
		}
	}
	if len(problems) > 0 {
		l.fail(name, "%s: %s", path, strings.Join(problems, "; "))
		return nil
	}
	return texts
}

// validLocale reports whether tag looks like a BCP 47 language tag: 1 to 8
// letters or digits per subtag, separated by "-" or "_".
func validLocale(tag string) bool {
	if tag == "" {
		return false
	}
	for _, sub := range strings.FieldsFunc(tag, func(r rune) bool { return r == '-' || r == '_' }) {
		if len(sub) > 8 {
			return false
		}
		for _, c := range sub {
			if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
				return false
			}
		}
	}
	return !strings.Contains(tag, "--") && !strings.HasPrefix(tag, "-") && !strings.HasSuffix(tag, "-")
}
