package config

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/notifier/fcm"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tasks"
	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// loadWorker is LoadWorker of FCM_PROJECT_ID=p and settings, failing t on
// an error.
func loadWorker(t *testing.T, settings map[string]string) Worker {
	t.Helper()
	m := map[string]string{"FCM_PROJECT_ID": "p"}
	maps.Copy(m, settings)
	w, err := LoadWorker(env(m))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestLoadReceiverDefaults(t *testing.T) {
	t.Parallel()
	r, err := LoadReceiver(env(map[string]string{"TENCENT_SDKAPPID": "1400000001"}))
	if err != nil {
		t.Fatal(err)
	}
	got := []any{r.ListenAddr, r.AppIDs, r.CallbackTokens, r.RequestTimeWindow, r.APIToken, r.MaxBodyBytes, r.MaxFollows, r.MaxDevicesPerUser, r.Redis.Mode(), r.Redis.URL, r.Redis.KeyPrefix}
	want := []any{":8080", []string{"1400000001"}, map[string]string(nil), 60 * time.Second, "", int64(1 << 20), 1000, 10, "url", "redis://127.0.0.1:6379/0", "followpush:"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
}

// The receiver serves /metrics beside the webhook unless METRICS_ADDR
// names another address; standalone has no METRICS_ADDR.
func TestLoadReceiverMetricsAddr(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ env, want string }{{"", ""}, {":9091", ":9091"}, {"127.0.0.1:0", "127.0.0.1:0"}} {
		r, err := LoadReceiver(env(map[string]string{"TENCENT_SDKAPPID": "1400000001", "METRICS_ADDR": c.env}))
		if err != nil {
			t.Fatal(err)
		}
		if r.MetricsAddr != c.want {
			t.Errorf("METRICS_ADDR=%q: MetricsAddr %q, want %q", c.env, r.MetricsAddr, c.want)
		}
	}
	s, err := LoadStandalone(env(map[string]string{"METRICS_ADDR": ":9091"}))
	if err != nil || s.Receiver.MetricsAddr != "" {
		t.Errorf("standalone: MetricsAddr %q (%v), want it unread", s.Receiver.MetricsAddr, err)
	}
}

func TestLoadStandaloneDefaults(t *testing.T) {
	t.Parallel()
	s, err := LoadStandalone(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !s.EmbeddedRedis || s.Receiver.ListenAddr != "127.0.0.1:8080" || s.Receiver.AppIDs[0] != "1400000000" {
		t.Errorf("standalone defaults: embedded=%v listen=%q apps=%v", s.EmbeddedRedis, s.Receiver.ListenAddr, s.Receiver.AppIDs)
	}
	if !s.GeneratedAPIToken || s.Receiver.APIToken != DevAPIToken {
		t.Errorf("standalone on loopback should use the fixed dev API token, got %q (generated %v)", s.Receiver.APIToken, s.GeneratedAPIToken)
	}
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "192.0.2.1:8080"} {
		s, err := LoadStandalone(env(map[string]string{"LISTEN_ADDR": addr}))
		if err != nil {
			t.Fatal(err)
		}
		if tok := s.Receiver.APIToken; tok == DevAPIToken || len(tok) < 16 {
			t.Errorf("standalone on %s: API token %q, want a random one", addr, tok)
		}
	}
	for _, addr := range []string{"localhost:9000", "[::1]:8080", "127.0.0.2:80"} {
		s, _ := LoadStandalone(env(map[string]string{"LISTEN_ADDR": addr}))
		if s.Receiver.APIToken != DevAPIToken {
			t.Errorf("standalone on %s: API token %q, want %q", addr, s.Receiver.APIToken, DevAPIToken)
		}
	}
	if s.Worker.FCMConfigured() {
		t.Error("standalone without FCM settings should push to the log")
	}
}

// Every bad setting is reported, each naming its setting, all at once.
func TestLoadReportsEveryBadSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		load    func(func(string) string) error
		env     map[string]string
		missing []string // settings the error must name
	}{
		{"receiver missing app id", receiverErr, map[string]string{}, []string{"TENCENT_SDKAPPID"}},
		{"receiver many", receiverErr, map[string]string{
			"TENCENT_SDKAPPID": "abc", "LISTEN_ADDR": "nope", "WEBHOOK_MAX_FOLLOWS": "0",
			"REQUEST_TIME_WINDOW": "soon", "API_TOKEN": "short", "REDIS_URL": "http://x", "LOG_LEVEL": "loud",
		}, []string{"TENCENT_SDKAPPID", "LISTEN_ADDR", "WEBHOOK_MAX_FOLLOWS", "REQUEST_TIME_WINDOW", "API_TOKEN", "REDIS_URL", "LOG_LEVEL"}},
		{"cluster and sentinel", receiverErr, map[string]string{
			"TENCENT_SDKAPPID": "1", "REDIS_CLUSTER_ADDRS": "127.0.0.1:7000", "REDIS_SENTINEL_ADDRS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "m",
		}, []string{"REDIS_CLUSTER_ADDRS"}},
		{"receiver metrics address", receiverErr, map[string]string{"TENCENT_SDKAPPID": "1", "METRICS_ADDR": "9091"}, []string{"METRICS_ADDR"}},
		{"receiver metrics on the webhook's address", receiverErr, map[string]string{"TENCENT_SDKAPPID": "1", "LISTEN_ADDR": ":8080", "METRICS_ADDR": ":8080"}, []string{"METRICS_ADDR"}},
		{"receiver spool", receiverErr, map[string]string{
			"TENCENT_SDKAPPID": "1", "SPOOL_DIR": "/tmp/spool", "SPOOL_MAX_BYTES": "1000", "SPOOL_DRAIN_BATCH": "0",
		}, []string{"SPOOL_MAX_BYTES", "SPOOL_DRAIN_BATCH"}},
		{"sentinel without master", receiverErr, map[string]string{"TENCENT_SDKAPPID": "1", "REDIS_SENTINEL_ADDRS": "127.0.0.1:26379"}, []string{"REDIS_SENTINEL_MASTER"}},
		{"bad cluster addr", receiverErr, map[string]string{"TENCENT_SDKAPPID": "1", "REDIS_CLUSTER_ADDRS": "127.0.0.1"}, []string{"REDIS_CLUSTER_ADDRS"}},
		{"worker without fcm", workerErr, map[string]string{}, []string{"FCM_PROJECT_ID"}},
		{"worker bad values", workerErr, map[string]string{
			"FCM_ENDPOINT": "ftp://x", "FCM_PROJECT_ID": "p", "WORKER_CONCURRENCY": "-1", "PUSH_BODY": "{{.From",
			"MAX_EVENT_AGE": "2h", "DEDUPE_TTL": "1h", "METRICS_ADDR": "x",
		}, []string{"FCM_ENDPOINT", "WORKER_CONCURRENCY", "PUSH_BODY", "DEDUPE_TTL", "METRICS_ADDR"}},
		{"endpoint without project", workerErr, map[string]string{"FCM_ENDPOINT": "http://127.0.0.1:9099"}, []string{"FCM_PROJECT_ID"}},
		{"worker bad policies", workerErr, map[string]string{
			"FCM_PROJECT_ID": "p", "FOLLOW_COOLDOWN": "-1h", "MAX_PUSHES_PER_USER_PER_HOUR": "many", "FCM_RATE_LIMIT": "20000",
			"AGGREGATION_WINDOW": "2h", "AGGREGATION_FIRST_IMMEDIATE": "maybe", "ANDROID_PRIORITY": "urgent",
			"WEBPUSH_LINK": "http://example.com/", "ANDROID_CHANNEL_ID": "a b",
		}, []string{"FOLLOW_COOLDOWN", "MAX_PUSHES_PER_USER_PER_HOUR", "FCM_RATE_LIMIT", "AGGREGATION_WINDOW", "AGGREGATION_FIRST_IMMEDIATE", "ANDROID_PRIORITY", "WEBPUSH_LINK", "ANDROID_CHANNEL_ID"}},
		{"display names without UserSig", standaloneErr, map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com"}, []string{"TENCENT_ADMIN_USERSIG"}},
		{"bad UserSig list", standaloneErr, map[string]string{"TENCENT_API_BASE": "ftp://x", "TENCENT_ADMIN_USERSIG": "abc=s3cret,=x", "DISPLAY_NAME_CACHE_TTL": "1s"}, []string{"TENCENT_API_BASE", "TENCENT_ADMIN_USERSIG", "DISPLAY_NAME_CACHE_TTL"}},
		{"UserSig and secret key for every app", workerErr, map[string]string{"FCM_PROJECT_ID": "p", "TENCENT_API_BASE": "https://console.tim.qq.com", "TENCENT_ADMIN_USERSIG": "eJyA", "TENCENT_SECRET_KEY": "k3y"}, []string{"TENCENT_SECRET_KEY"}},
		{"a secret key for every app and a UserSig list", workerErr, map[string]string{"FCM_PROJECT_ID": "p", "TENCENT_ADMIN_USERSIG": "1400000000=eJyA", "TENCENT_SECRET_KEY": "k3y"}, []string{"TENCENT_SECRET_KEY"}},
		{"one app with both", standaloneErr, map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com", "TENCENT_ADMIN_USERSIG": "1400000000=eJyA,1400000001=eJyB", "TENCENT_SECRET_KEY": "1400000001=k3y,1400000002=k3z"}, []string{"TENCENT_SECRET_KEY"}},
		{"bad secret key list", standaloneErr, map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com", "TENCENT_SECRET_KEY": "1400000000=k3y,oops"}, []string{"TENCENT_SECRET_KEY"}},
		{"secret key with list separators", standaloneErr, map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com", "TENCENT_SECRET_KEY": "key=1400000000"}, []string{"TENCENT_SECRET_KEY"}},
		{"aggregation window below a second", standaloneErr, map[string]string{"AGGREGATION_WINDOW": "10ms"}, []string{"AGGREGATION_WINDOW"}},
		{"templates file missing", standaloneErr, map[string]string{"PUSH_TEMPLATES_FILE": "testdata/does-not-exist.json"}, []string{"PUSH_TEMPLATES_FILE"}},
		{"templates file bad", standaloneErr, map[string]string{"PUSH_TEMPLATES_FILE": "testdata/templates-bad.json"}, []string{"PUSH_TEMPLATES_FILE"}},
		{"history bad values", receiverErr, map[string]string{
			"TENCENT_SDKAPPID": "1", "FOLLOW_HISTORY": "maybe", "FOLLOW_HISTORY_MAX_EVENTS": "5", "FOLLOW_HISTORY_TTL": "2161h",
		}, []string{"FOLLOW_HISTORY", "FOLLOW_HISTORY_MAX_EVENTS", "FOLLOW_HISTORY_TTL"}},
		{"worker history bad values", workerErr, map[string]string{
			"FCM_PROJECT_ID": "p", "FOLLOW_HISTORY": "yes", "FOLLOW_HISTORY_MAX_EVENTS": "x", "FOLLOW_HISTORY_TTL": "1s",
		}, []string{"FOLLOW_HISTORY", "FOLLOW_HISTORY_MAX_EVENTS", "FOLLOW_HISTORY_TTL"}},
		{"standalone bad", standaloneErr, map[string]string{"WEBHOOK_MAX_BODY_BYTES": "1e9"}, []string{"WEBHOOK_MAX_BODY_BYTES"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.load(env(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.missing) {
				t.Errorf("got %d problems, want %d:\n%s", len(lines), len(tt.missing), err)
			}
			for _, name := range tt.missing {
				if !strings.Contains(err.Error(), name+": ") {
					t.Errorf("error does not name %s:\n%s", name, err)
				}
			}
		})
	}
}

// deliveryParts is what TestLoadWorkerPolicies compares of a config.Worker:
// everything the sending side is built from but the texts.
type deliveryParts struct {
	Policy       delivery.Policy
	FCMRateLimit int
	Message      fcm.MessageOptions
	Tencent      TencentAPI
}

func TestLoadWorkerPolicies(t *testing.T) {
	t.Parallel()
	defaults := deliveryParts{
		Policy:       delivery.Policy{Cooldown: time.Hour, FirstImmediate: true},
		FCMRateLimit: 8000,
		Message:      fcm.MessageOptions{AndroidPriority: "high", APNsSound: "default", APNsThreadID: "follow"},
		Tencent:      TencentAPI{AdminIdentifier: "administrator", DisplayNameCacheTTL: time.Hour},
	}
	withTencent := func(api TencentAPI) deliveryParts {
		p := defaults
		api.AdminIdentifier, api.DisplayNameCacheTTL = "administrator", time.Hour
		p.Tencent = api
		return p
	}
	tests := []struct {
		name string
		env  map[string]string
		want deliveryParts
	}{
		{"defaults", map[string]string{}, defaults},
		{"all set", map[string]string{
			"FOLLOW_COOLDOWN": "0", "MAX_PUSHES_PER_USER_PER_HOUR": "20", "AGGREGATION_WINDOW": "5m", "AGGREGATION_FIRST_IMMEDIATE": "false",
			"FCM_RATE_LIMIT": "0", "ANDROID_CHANNEL_ID": "followers",
			"ANDROID_PRIORITY": "NORMAL", "APNS_SOUND": "none", "APNS_THREAD_ID": "fans", "WEBPUSH_LINK": "https://example.com/f",
			"TENCENT_API_BASE": "https://adminapisgp.im.qcloud.com/", "TENCENT_ADMIN_IDENTIFIER": "admin",
			"TENCENT_ADMIN_USERSIG": "1400000000=eJyA*b-c_,1400000001=eJyB", "DISPLAY_NAME_CACHE_TTL": "10m",
		}, deliveryParts{
			Policy:       delivery.Policy{MaxPerHour: 20, Window: 5 * time.Minute},
			FCMRateLimit: 0,
			Message:      fcm.MessageOptions{AndroidChannelID: "followers", AndroidPriority: "normal", APNsSound: "none", APNsThreadID: "fans", WebpushLink: "https://example.com/f"},
			Tencent: TencentAPI{Base: "https://adminapisgp.im.qcloud.com", AdminIdentifier: "admin",
				AdminUserSigs: map[string]string{"1400000000": "eJyA*b-c_", "1400000001": "eJyB"}, DisplayNameCacheTTL: 10 * time.Minute},
		}},
		{"secret keys for some apps, UserSigs for others", map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com",
			"TENCENT_ADMIN_USERSIG": "1400000000=eJyA", "TENCENT_SECRET_KEY": "1400000001=k3y-a, 1400000002=k3y-b"},
			withTencent(TencentAPI{Base: "https://console.tim.qq.com",
				AdminUserSigs: map[string]string{"1400000000": "eJyA"},
				SecretKeys:    map[string]string{"1400000001": "k3y-a", "1400000002": "k3y-b"}})},
		{"one secret key for every app", map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com", "TENCENT_SECRET_KEY": "5bd2850fff3ecb11"},
			withTencent(TencentAPI{Base: "https://console.tim.qq.com", SecretKeys: map[string]string{"": "5bd2850fff3ecb11"}})},
		{"one UserSig for every app", map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com", "TENCENT_ADMIN_USERSIG": "eJyA*b-c_"},
			withTencent(TencentAPI{Base: "https://console.tim.qq.com", AdminUserSigs: map[string]string{"": "eJyA*b-c_"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := loadWorker(t, tt.env)
			got := deliveryParts{Policy: w.Policy, FCMRateLimit: w.FCMRateLimit, Message: w.Message, Tencent: w.Tencent}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("sending settings (-want +got):\n%s", d)
			}
			if w.Texts == nil {
				t.Fatal("no push texts")
			}
		})
	}
}

// PUSH_TEMPLATES_FILE's texts are used per locale (its tags normalized),
// over the built-in ones; PUSH_TITLE and PUSH_BODY are English's single
// follow unless the file gives those.
func TestLoadWorkerTexts(t *testing.T) {
	t.Parallel()
	f := tasks.Follow{From: "alice", To: "bob"}
	tests := []struct {
		name     string
		env      map[string]string
		locale   string
		want     pushtext.Content
		wantFrom string // the locale the device's tag resolves to
	}{
		{"built-in English", nil, "en-US", pushtext.Content{Title: "New follower", Body: "alice started following you"}, "en"},
		{"PUSH_TITLE and PUSH_BODY", map[string]string{"PUSH_TITLE": "Hey", "PUSH_BODY": "{{.From}} → {{.To}}"}, "en", pushtext.Content{Title: "Hey", Body: "alice → bob"}, "en"},
		{"the file's locale", map[string]string{"PUSH_TEMPLATES_FILE": "testdata/templates.json"}, "zh_tw", pushtext.Content{Title: "新粉絲", Body: "alice 關注了你"}, "zh-tw"},
		{"the file's locale, a field left out takes English's", map[string]string{"PUSH_TEMPLATES_FILE": "testdata/templates.json", "PUSH_TITLE": "Hey"}, "pt_br", pushtext.Content{Title: "Hey", Body: "alice começou a seguir você"}, "pt-br"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := loadWorker(t, tt.env)
			if got := w.Texts.Locale(tt.locale); got != tt.wantFrom {
				t.Errorf("locale %q resolves to %q, want %q", tt.locale, got, tt.wantFrom)
			}
			got, err := w.Texts.RenderLocale(tt.locale, f)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("rendered %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TENCENT_CALLBACK_TOKEN is one token for every app, or sdkappid=token per
// app naming exactly the apps of TENCENT_SDKAPPID; mistakes are reported
// without the tokens.
func TestLoadCallbackTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, apps, tokens string
		want               map[string]string
		problems           []string // what the error must say, in order
	}{
		{"unset", "1400000001", "", nil, nil},
		{"one token", "1400000001,1400000002", "s3cret-all", map[string]string{"": "s3cret-all"}, nil},
		{"one token with = and , (not a list: it does not start with an SDKAppID)", "1400000001", "abc=s3cret,x", map[string]string{"": "abc=s3cret,x"}, nil},
		{"a token per app", "1400000001,1400000002", "1400000001=s3cret-a, 1400000002 = s3cret-b", map[string]string{"1400000001": "s3cret-a", "1400000002": "s3cret-b"}, nil},
		{"an app left out", "1400000001,1400000002", "1400000001=s3cret-a", nil, []string{"no token for SDKAppID 1400000002: give every app of TENCENT_SDKAPPID its token, or one token for all"}},
		{"an app not served", "1400000001", "1400000001=s3cret-a,1400000009=s3cret-b", nil, []string{"names SDKAppID 1400000009, which is not in TENCENT_SDKAPPID"}},
		{"not a list entry", "1400000001,1400000002", "1400000001=s3cret-a,s3cret-b", nil, []string{"entry 2 is not sdkappid=token"}},
		{"empty token", "1400000001", "1400000001=", nil, []string{"entry 1 is not sdkappid=token"}},
		{"an app twice", "1400000001", "1400000001=s3cret-a,1400000001=s3cret-b", nil, []string{"entry 2: SDKAppID 1400000001 is listed twice"}},
		{"whitespace in a token", "1400000001", "1400000001=s3cret a", nil, []string{"the token of SDKAppID 1400000001 must be 1 to 256 bytes without whitespace"}},
		{"too long", "1400000001", strings.Repeat("s", 257), nil, []string{"must be 1 to 256 bytes without whitespace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := LoadReceiver(env(map[string]string{"TENCENT_SDKAPPID": tt.apps, "TENCENT_CALLBACK_TOKEN": tt.tokens}))
			if len(tt.problems) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tt.want, r.CallbackTokens); d != "" {
					t.Errorf("tokens (-want +got):\n%s", d)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, tokens %v", r.CallbackTokens)
			}
			var want []string
			for _, p := range tt.problems {
				want = append(want, "TENCENT_CALLBACK_TOKEN: "+p)
			}
			if d := cmp.Diff(want, strings.Split(err.Error(), "\n")); d != "" {
				t.Errorf("problems (-want +got):\n%s", d)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows a token: %v", err)
			}
		})
	}
}

func TestUserSigErrorHidesSecret(t *testing.T) {
	t.Parallel()
	_, err := LoadStandalone(env(map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com", "TENCENT_ADMIN_USERSIG": "1400000000=eJys3cret,oops"}))
	if err == nil || !strings.Contains(err.Error(), "TENCENT_ADMIN_USERSIG: ") || strings.Contains(err.Error(), "eJys3cret") {
		t.Fatalf("want an error naming TENCENT_ADMIN_USERSIG without the UserSig, got %v", err)
	}
}

func TestSecretKeyErrorsHideSecret(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"1400000000=s3cretkey,oops", "s3cretkey=1", "1400000000=s3cret key"} {
		_, err := LoadStandalone(env(map[string]string{"TENCENT_API_BASE": "https://console.tim.qq.com", "TENCENT_SECRET_KEY": v}))
		if err == nil || !strings.Contains(err.Error(), "TENCENT_SECRET_KEY: ") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("TENCENT_SECRET_KEY=%q: want an error naming the setting without the key, got %v", v, err)
		}
	}
}

func TestRedisURLErrorHidesPassword(t *testing.T) {
	t.Parallel()
	_, err := LoadReceiver(env(map[string]string{"TENCENT_SDKAPPID": "1", "REDIS_URL": "redis://u:s3cretpw@host:notaport/x"}))
	if err == nil || strings.Contains(err.Error(), "s3cretpw") {
		t.Fatalf("want an error without the password, got %v", err)
	}
}

func receiverErr(g func(string) string) error   { _, err := LoadReceiver(g); return err }
func workerErr(g func(string) string) error     { _, err := LoadWorker(g); return err }
func standaloneErr(g func(string) string) error { _, err := LoadStandalone(g); return err }

// The -h table and the loaders must agree: every setting a program reads is
// listed for it, and every listed setting is read.
func TestSettingsTableMatchesLoaders(t *testing.T) {
	t.Parallel()
	for _, p := range []Program{ProgramReceiver, ProgramWorker, ProgramStandalone} {
		l := newLoader(env(nil), p)
		switch p {
		case ProgramReceiver:
			l.receiver(l.redis(""), ":8080", "")
			l.raw("SPOOL_DIR", "")
			l.intRange("SPOOL_MAX_BYTES", 0, 0, 1)
		case ProgramWorker:
			w := l.worker(l.redis(""))
			l.workerOps(&w)
		case ProgramStandalone:
			rd := l.redis("")
			l.receiver(rd, "", "")
			l.worker(rd)
		}
		var listed []string
		for _, s := range Settings {
			if s.UsedBy(p) {
				listed = append(listed, s.Name)
			}
		}
		for _, name := range listed {
			if !l.read[name] {
				t.Errorf("%s: %s is listed but never read", p, name)
			}
			delete(l.read, name)
		}
		for name := range l.read {
			t.Errorf("%s: %s is read but not listed", p, name)
		}
	}
}

func TestPrintUsageListsDefaults(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	PrintUsage(&b, ProgramWorker, "worker: sends pushes")
	for _, want := range []string{"WORKER_CONCURRENCY", "100", "METRICS_ADDR", ":9091", "FCM_ENDPOINT"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "LISTEN_ADDR") {
		t.Error("worker usage lists LISTEN_ADDR, which the worker does not read")
	}
}

// Summary templates are tried on every shape of summary (one follower, two,
// many), single-follow templates on a follow: a template that works for some
// summaries only is refused at start, not found out when a summary fails.
func TestTemplatesFileTriesEverySummaryShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, texts string
		wantErr     string // "" = accepted
	}{
		{"second name always", `{"fr": {"digest_body": "{{index .Names 0}} et {{index .Names 1}}"}}`, "fr digest_body"},
		{"others always", `{"fr": {"digest_title": "{{.From}} +{{len (slice .Names 1 2)}}"}}`, "fr digest_title"},
		{"second name when there is one", `{"fr": {"digest_body": "{{index .Names 0}}{{if gt .Count 1}} et {{index .Names 1}}{{end}}"}}`, ""},
		{"single follow", `{"fr": {"body": "{{.From}} vous suit", "title": "{{.FromID}}"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := t.TempDir() + "/templates.json"
			if err := os.WriteFile(path, []byte(tt.texts), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadWorker(env(map[string]string{"FCM_PROJECT_ID": "p", "PUSH_TEMPLATES_FILE": path}))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), "PUSH_TEMPLATES_FILE: ") || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error = %v, want one naming PUSH_TEMPLATES_FILE and %q", err, tt.wantErr)
			}
		})
	}
}

// FCM_RATE_LIMIT goes up to FCM's default project quota (600,000 a minute,
// 10,000 a second), not past it.
func TestFCMRateLimitBound(t *testing.T) {
	t.Parallel()
	for v, ok := range map[string]bool{"10000": true, "10001": false} {
		_, err := LoadWorker(env(map[string]string{"FCM_PROJECT_ID": "p", "FCM_RATE_LIMIT": v}))
		if (err == nil) != ok {
			t.Errorf("FCM_RATE_LIMIT=%s: error %v, want accepted %v", v, err, ok)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080":   true,
		"127.0.0.2:8080":   true, // all of 127/8
		"localhost:8080":   true,
		"[::1]:8080":       true,
		":8080":            false, // every interface
		"0.0.0.0:8080":     false,
		"[::]:8080":        false,
		"10.0.0.5:8080":    false,
		"192.168.1.1:80":   false,
		"example.com:8080": false,
		"127.0.0.1":        false, // no port: not a listen address
		"":                 false,
		"localhost":        false,
	} {
		if got := LoopbackOnly(addr); got != want {
			t.Errorf("LoopbackOnly(%q) = %v, want %v", addr, got, want)
		}
	}
}

// The minimum lengths of API_TOKEN and MONITORING_PASSWORD are the ones
// the loader enforces, and both -h and docs/configuration.md state them.
func TestMinimumLengthsDocumented(t *testing.T) {
	t.Parallel()
	guide, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		min   int
		other map[string]string // settings it needs besides itself
	}{
		{"API_TOKEN", MinAPITokenBytes, nil},
		{"MONITORING_PASSWORD", MinMonitoringPasswordBytes, map[string]string{"MONITORING_USER": "ops"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			phrase := fmt.Sprintf("at least %d bytes", tt.min)
			for n, ok := range map[int]bool{tt.min - 1: false, tt.min: true} {
				e := map[string]string{"TENCENT_SDKAPPID": "1400000001", tt.name: strings.Repeat("x", n)}
				maps.Copy(e, tt.other)
				_, err := LoadReceiver(env(e))
				if ok && err != nil {
					t.Errorf("%d bytes refused: %v", n, err)
				}
				if !ok && (err == nil || !strings.Contains(err.Error(), tt.name+": must be "+phrase)) {
					t.Errorf("%d bytes: error %v, want one naming %s and saying %q", n, err, tt.name, phrase)
				}
			}
			for _, p := range []Program{ProgramReceiver, ProgramStandalone} {
				var b bytes.Buffer
				PrintUsage(&b, p, "usage")
				if line := lineWith(b.String(), "  "+tt.name+" "); !strings.Contains(line, phrase) {
					t.Errorf("%s -h: %q does not say %q", p, line, phrase)
				}
			}
			if row := lineWith(string(guide), "| `"+tt.name+"` |"); !strings.Contains(row, phrase) {
				t.Errorf("%s row %q does not say %q", configurationDoc, row, phrase)
			}
		})
	}
}

// lineWith returns the first line of text that contains s, or "".
func lineWith(text, s string) string {
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// COMPLETED_TASK_RETENTION is off by default, 1s to 24h when set (asynq
// keeps whole seconds), for receivers and workers alike; anything else
// stops the program naming the setting.
func TestCompletedTaskRetention(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		want time.Duration
		ok   bool
	}{
		"":      {0, true},
		"0":     {0, true},
		"1s":    {time.Second, true},
		"10m":   {10 * time.Minute, true},
		"24h":   {24 * time.Hour, true},
		"500ms": {0, false},
		"25h":   {0, false},
		"-1s":   {0, false},
		"soon":  {0, false},
	}
	for v, tt := range tests {
		r, rerr := LoadReceiver(env(map[string]string{"TENCENT_SDKAPPID": "1400000001", "COMPLETED_TASK_RETENTION": v}))
		w, werr := LoadWorker(env(map[string]string{"FCM_PROJECT_ID": "p", "COMPLETED_TASK_RETENTION": v}))
		for prog, c := range map[string]struct {
			got time.Duration
			err error
		}{"receiver": {r.CompletedTaskRetention, rerr}, "worker": {w.CompletedTaskRetention, werr}} {
			switch {
			case tt.ok && (c.err != nil || c.got != tt.want):
				t.Errorf("%s COMPLETED_TASK_RETENTION=%q: %v, %v; want %v", prog, v, c.got, c.err, tt.want)
			case !tt.ok && (c.err == nil || !strings.Contains(c.err.Error(), "COMPLETED_TASK_RETENTION: ")):
				t.Errorf("%s COMPLETED_TASK_RETENTION=%q: error %v, want one naming the setting", prog, v, c.err)
			}
		}
	}
}

// FOLLOW_QUEUE_SHARDS: 1 to tasks.MaxFollowQueueShards, read by every
// program into the same routing; anything else stops it, naming the
// setting.
func TestFollowQueueShards(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		want int
		ok   bool
	}{
		"":   {1, true},
		"1":  {1, true},
		"6":  {6, true},
		"64": {64, true},
		"0":  {0, false},
		"65": {0, false},
		"-3": {0, false},
		"2x": {0, false},
	}
	for v, tt := range tests {
		r, rerr := LoadReceiver(env(map[string]string{"TENCENT_SDKAPPID": "1400000001", "FOLLOW_QUEUE_SHARDS": v}))
		w, werr := LoadWorker(env(map[string]string{"FCM_PROJECT_ID": "p", "FOLLOW_QUEUE_SHARDS": v}))
		s, serr := LoadStandalone(env(map[string]string{"FOLLOW_QUEUE_SHARDS": v}))
		for prog, c := range map[string]struct {
			got tasks.Shards
			err error
		}{"receiver": {r.FollowQueues, rerr}, "worker": {w.FollowQueues, werr}, "standalone receiver": {s.Receiver.FollowQueues, serr}, "standalone worker": {s.Worker.FollowQueues, serr}} {
			switch {
			case tt.ok && (c.err != nil || c.got.N() != tt.want):
				t.Errorf("%s FOLLOW_QUEUE_SHARDS=%q: %d shards, %v; want %d", prog, v, c.got.N(), c.err, tt.want)
			case tt.ok:
				want, _ := tasks.NewShards(tt.want)
				if !reflect.DeepEqual(c.got.Names(), want.Names()) {
					t.Errorf("%s FOLLOW_QUEUE_SHARDS=%q: queues %v, want %v", prog, v, c.got.Names(), want.Names())
				}
			case c.err == nil || !strings.Contains(c.err.Error(), "FOLLOW_QUEUE_SHARDS: "):
				t.Errorf("%s FOLLOW_QUEUE_SHARDS=%q: error %v, want one naming the setting", prog, v, c.err)
			}
		}
	}
}
