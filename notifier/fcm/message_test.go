package fcm

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"firebase.google.com/go/v4/messaging"
	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tasks"
)

var updateGolden = flag.Bool("update", false, "rewrite notifier/fcm/testdata/*.golden from the current output")

// goldenFollow is the follow of the golden files.
var goldenFollow = tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1700000000123}

const goldenToken = "fGoldenToken0123456789:APA91bHgolden-token-for-followpush-tests"

func TestCollapseID(t *testing.T) {
	t.Parallel()
	base := goldenFollow
	variants := map[string]tasks.Follow{
		"base":       base,
		"other app":  {AppID: "1400000001", From: base.From, To: base.To, EventTime: base.EventTime},
		"other from": {AppID: base.AppID, From: "carol", To: base.To, EventTime: base.EventTime},
		"other to":   {AppID: base.AppID, From: base.From, To: "dave", EventTime: base.EventTime},
		"later":      {AppID: base.AppID, From: base.From, To: base.To, EventTime: base.EventTime + 1},
		"long ids":   {AppID: "1400000000", From: string(bytes.Repeat([]byte("f"), 32)), To: string(bytes.Repeat([]byte("t"), 32)), EventTime: 1},
	}
	// URL-safe base64 alphabet: what a Web Push Topic allows.
	urlSafe := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	seen := make(map[string]string)
	for name, f := range variants {
		id := CollapseID(f)
		if again := CollapseID(f); again != id {
			t.Errorf("%s: CollapseID not deterministic: %q then %q", name, id, again)
		}
		if len(id) > 32 || !urlSafe.MatchString(id) {
			t.Errorf("%s: CollapseID %q: want at most 32 URL-safe base64 characters", name, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share CollapseID %q", name, other, id)
		}
		seen[id] = name
	}
	if diff := cmp.Diff("follow-"+goldenFollow.ID()[:24], CollapseID(goldenFollow)); diff != "" {
		t.Errorf("CollapseID (-want +got):\n%s", diff)
	}
}

// wireJSON sends m through a real firebase-admin-go client to an fcmtest
// server and returns the request body the client put on the wire.
func wireJSON(t *testing.T, m *messaging.Message) []byte {
	t.Helper()
	s := fcmtest.NewServer(t)
	if err := newTestFCMSender(t, s).Send(t.Context(), []*messaging.Message{m})[0]; err != nil {
		t.Fatalf("send: %v", err)
	}
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("server got %d requests, want 1", len(reqs))
	}
	return reqs[0].Body
}

// TestBuildMessageGolden compares the exact JSON firebase-admin-go sends for
// a follow push with testdata/message_*.golden. Run with -update to rewrite
// the files after an intended change, and review the diff.
func TestBuildMessageGolden(t *testing.T) {
	t.Parallel()
	tests := []struct{ platform, file string }{
		{devices.PlatformAndroid, "message_android.golden"},
		{devices.PlatformIOS, "message_ios.golden"},
		{devices.PlatformWeb, "message_web.golden"},
		{"", "message_unknown_platform.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			body := wireJSON(t, BuildMessage(goldenFollow, goldenToken, tt.platform, pushtext.DefaultContent(goldenFollow)))
			var got bytes.Buffer
			if err := json.Indent(&got, body, "", "  "); err != nil {
				t.Fatalf("request body is not JSON: %v\n%s", err, body)
			}
			got.WriteByte('\n')
			path := filepath.Join("testdata", tt.file)
			if *updateGolden {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestBuildMessageGolden -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got.String()); diff != "" {
				t.Errorf("wire JSON differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestBuildMessageCollapseIdentity checks, on the wire, that every
// platform's collapse field carries the follow's CollapseID and that the
// data payload has what the interface promises.
func TestBuildMessageCollapseIdentity(t *testing.T) {
	t.Parallel()
	f := tasks.Follow{AppID: "1400000000", From: "erin", To: "frank", EventTime: 1712345678901}
	body := wireJSON(t, BuildMessage(f, goldenToken, "", pushtext.Content{Title: "T", Body: "B"}))
	var req struct {
		Message struct {
			Token        string            `json:"token"`
			Data         map[string]string `json:"data"`
			Notification map[string]string `json:"notification"`
			Android      struct {
				Priority     string            `json:"priority"`
				CollapseKey  string            `json:"collapse_key"`
				Notification map[string]string `json:"notification"`
			} `json:"android"`
			APNS struct {
				Headers map[string]string `json:"headers"`
			} `json:"apns"`
			Webpush struct {
				Headers      map[string]string `json:"headers"`
				Notification map[string]any    `json:"notification"`
			} `json:"webpush"`
		} `json:"message"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	m, id := req.Message, CollapseID(f)
	got := map[string]string{
		"token":            m.Token,
		"title":            m.Notification["title"],
		"body":             m.Notification["body"],
		"android priority": m.Android.Priority,
		"android tag":      m.Android.Notification["tag"],
		"collapse_key":     m.Android.CollapseKey,
		"apns-collapse-id": m.APNS.Headers["apns-collapse-id"],
		"web Topic":        m.Webpush.Headers["Topic"],
		"web tag":          fmt.Sprint(m.Webpush.Notification["tag"]),
	}
	want := map[string]string{
		"token":            goldenToken,
		"title":            "T",
		"body":             "B",
		"android priority": "high",
		"android tag":      id,
		"collapse_key":     "",
		"apns-collapse-id": id,
		"web Topic":        id,
		"web tag":          id,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("message fields (-want +got):\n%s", diff)
	}
	wantData := map[string]string{
		"type":         "follow",
		"from_account": "erin",
		"to_account":   "frank",
		"event_time":   "1712345678901",
		"follow_id":    f.ID(),
	}
	if diff := cmp.Diff(wantData, m.Data); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
}

func TestBuildMessagePlatformSections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		platform                  string
		android, apns, webpushSet bool
	}{
		{devices.PlatformAndroid, true, false, false},
		{devices.PlatformIOS, false, true, false},
		{devices.PlatformWeb, false, false, true},
		{"", true, true, true},
		{"windows", true, true, true},
	}
	for _, tt := range tests {
		m := BuildMessage(goldenFollow, "t", tt.platform, pushtext.DefaultContent(goldenFollow))
		got := [3]bool{m.Android != nil, m.APNS != nil, m.Webpush != nil}
		if want := [3]bool{tt.android, tt.apns, tt.webpushSet}; got != want {
			t.Errorf("platform %q: android/apns/webpush set = %v, want %v", tt.platform, got, want)
		}
	}
}

func ExampleCollapseID() {
	f := tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1700000000123}
	fmt.Println(len(CollapseID(f)), CollapseID(f) == CollapseID(f))
	// Output: 31 true
}

func ExampleBuildMessage() {
	f := tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1700000000123}
	m := BuildMessage(f, "device-token", devices.PlatformAndroid, pushtext.DefaultContent(f))
	fmt.Println(m.Notification.Title, "/", m.Notification.Body)
	fmt.Println(m.Data["type"], m.Data["from_account"], m.Data["to_account"], m.Data["event_time"])
	fmt.Println(m.Android.Notification.Tag == CollapseID(f), m.APNS == nil)
	// Output:
	// New follower / alice started following you
	// follow alice bob 1700000000123
	// true true
}

// goldenOptions are per-platform settings different from every default.
var goldenOptions = MessageOptions{
	AndroidChannelID: "followers",
	AndroidPriority:  "normal",
	APNsSound:        "follow.caf",
	APNsThreadID:     "new-followers",
	WebpushLink:      "https://example.com/followers",
}

// goldenDigest is the summary push of the golden files: four followers.
var goldenDigest = Summary{
	Summary:   tasks.Summary{AppID: "1400000000", To: "bob", Due: 1700000600000},
	Followers: []string{"alice", "carol", "dave", "erin"},
	Latest:    1700000500000,
}

// TestLocaleMessageGolden compares the exact JSON firebase-admin-go sends
// for a follow push and a summary push in each built-in locale, with every
// per-platform setting changed from its default, with
// testdata/locale_*.golden. Run with -update to rewrite them.
func TestLocaleMessageGolden(t *testing.T) {
	t.Parallel()
	tmpl, err := pushtext.NewLocalizedTemplates(nil)
	if err != nil {
		t.Fatal(err)
	}
	names := goldenDigest.Followers[:pushtext.SummaryNames]
	digestData := pushtext.SummaryData{From: "alice", To: "bob", AppID: "1400000000", Names: names, Count: 4, Others: 2}
	for _, locale := range []string{"en-US", "zh-CN", "ja-JP"} {
		for _, kind := range []string{"follow", "digest"} {
			file := "locale_" + locale + "_" + kind + ".golden"
			t.Run(file, func(t *testing.T) {
				t.Parallel()
				var m *messaging.Message
				if kind == "follow" {
					c, err := tmpl.RenderLocale(locale, goldenFollow)
					if err != nil {
						t.Fatal(err)
					}
					m = goldenOptions.FollowMessage(goldenFollow, goldenToken, "", c)
				} else {
					c, err := tmpl.RenderSummary(locale, digestData)
					if err != nil {
						t.Fatal(err)
					}
					m = goldenOptions.SummaryMessage(goldenDigest, goldenToken, "", c)
				}
				compareGolden(t, file, wireJSON(t, m))
			})
		}
	}
}

func compareGolden(t *testing.T, file string, body []byte) {
	t.Helper()
	var got bytes.Buffer
	if err := json.Indent(&got, body, "", "  "); err != nil {
		t.Fatalf("request body is not JSON: %v\n%s", err, body)
	}
	got.WriteByte('\n')
	path := filepath.Join("testdata", file)
	if *updateGolden {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got.String()); diff != "" {
		t.Errorf("wire JSON differs from %s (-want +got):\n%s", path, diff)
	}
}
