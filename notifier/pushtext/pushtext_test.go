package pushtext

import (
	"testing"

	"github.com/followpush/followpush/tasks"
	"github.com/google/go-cmp/cmp"
)

// goldenFollow is a follow to render.
var goldenFollow = tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1700000000123}

func TestDefaultContent(t *testing.T) {
	t.Parallel()
	want := Content{Title: "New follower", Body: "alice started following you"}
	if diff := cmp.Diff(want, DefaultContent(goldenFollow)); diff != "" {
		t.Errorf("DefaultContent (-want +got):\n%s", diff)
	}
	// The default templates render the same text.
	tmpl, err := NewTemplates("", "")
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := tmpl.Render(goldenFollow)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultContent(goldenFollow), rendered); diff != "" {
		t.Errorf("default templates differ from DefaultContent (-DefaultContent +templates):\n%s", diff)
	}
}

// The built-in texts of each locale, for one follower and for summaries of
// several.
func TestBuiltinTexts(t *testing.T) {
	t.Parallel()
	tmpl, err := NewLocalizedTemplates(nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(names []string, count int) SummaryData {
		return SummaryData{From: names[0], To: "bob", AppID: "1", Names: names, Count: count, Others: count - len(names)}
	}
	tests := []struct {
		locale string
		data   SummaryData
		want   Content
	}{
		{"en", digest([]string{"alice"}, 1), Content{"New follower", "alice started following you"}},
		{"en", digest([]string{"alice", "carol"}, 2), Content{"2 new followers", "alice and carol started following you"}},
		{"en", digest([]string{"alice", "carol"}, 3), Content{"3 new followers", "alice, carol and 1 other started following you"}},
		{"en", digest([]string{"alice", "carol"}, 10000), Content{"10000 new followers", "alice, carol and 9998 others started following you"}},
		{"zh", digest([]string{"alice"}, 1), Content{"新粉丝", "alice 关注了你"}},
		{"zh", digest([]string{"alice", "carol"}, 5), Content{"5 位新粉丝", "alice、carol 等 5 人关注了你"}},
		{"ja", digest([]string{"alice"}, 1), Content{"新しいフォロワー", "aliceさんにフォローされました"}},
		{"ja", digest([]string{"alice", "carol"}, 5), Content{"5人の新しいフォロワー", "aliceさん、carolさんほか3人にフォローされました"}},
	}
	for _, tt := range tests {
		got, err := tmpl.RenderSummary(tt.locale, tt.data)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%s, %d followers (-want +got):\n%s", tt.locale, tt.data.Count, d)
		}
	}
}

func TestTemplatesLocale(t *testing.T) {
	t.Parallel()
	tmpl, err := NewLocalizedTemplates(map[string]Texts{"zh_TW": {Body: "{{.From}} 關注了你"}, "PT-br": {Title: "Novo seguidor"}})
	if err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string]string{
		"": "en", "en-GB": "en", "fr": "en", "zh": "zh", "zh-CN": "zh", "zh-TW": "zh-tw", "zh-Hant-TW": "zh", "zh_tw": "zh-tw",
		"ja-JP": "ja", "pt-BR": "pt-br", "pt-PT": "en", "not a tag!": "en",
	} {
		if got := tmpl.Locale(tag); got != want {
			t.Errorf("Locale(%q) = %q, want %q", tag, got, want)
		}
	}
	// A configured locale inherits what it does not set: zh-TW its
	// language's built-in title, pt-BR English's body.
	got := map[string]Content{}
	for _, loc := range []string{"zh-TW", "pt-BR"} {
		if got[loc], err = tmpl.RenderLocale(loc, goldenFollow); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]Content{"zh-TW": {"新粉丝", "alice 關注了你"}, "pt-BR": {"Novo seguidor", "alice started following you"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("inherited texts (-want +got):\n%s", d)
	}
}

func TestNewLocalizedTemplatesRejects(t *testing.T) {
	t.Parallel()
	for name, texts := range map[string]map[string]Texts{
		"bad tag":            {"en US": {Title: "x"}},
		"parse error":        {"de": {Body: "{{.From"}},
		"unknown field":      {"de": {Body: "{{.Follower}}"}},
		"digest field":       {"de": {Body: "{{.Count}}"}},
		"digest parse error": {"ja": {SummaryBody: "{{join .Names}"}},
	} {
		if _, err := NewLocalizedTemplates(texts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
