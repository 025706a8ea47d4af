package pushtext

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/tasks"
)

// Default notification texts (English, the fallback locale).
const (
	DefaultTitle = "New follower"
	DefaultBody  = "{{.From}} started following you"
)

// DefaultLocale is the locale whose texts a device gets when none of the
// configured locales matches its own (or it has none).
const DefaultLocale = "en"

// SummaryNames is how many followers a summary push's text names; the
// built-in texts name these and count the rest.
const SummaryNames = 2

// Content is the visible text of a push.
type Content struct {
	// Title is the notification's title, Body its text.
	Title, Body string
}

// DefaultContent is the English text of f's push: title [DefaultTitle]
// ("New follower") and body "<From> started following you", the same text
// the default [Templates] render.
func DefaultContent(f tasks.Follow) Content {
	return Content{Title: DefaultTitle, Body: f.From + " started following you"}
}

// Texts are one locale's push templates, in Go's text/template syntax.
//
// Title and Body render a single follow, with the fields .From (the
// follower's display name: its UserID unless display names are resolved),
// .FromID (the follower's UserID), .To (the followee) and .AppID.
//
// SummaryTitle and SummaryBody (JSON digest_title, digest_body) render a summary push (aggregation, or follows
// over the per-recipient cap), with .From (the first follower), .Names (the
// first followers, at most [SummaryNames]; display names like .From), .Count (all followers of the
// summary, at least 1), .Others (Count minus len(Names)), .To and .AppID,
// and the function join (strings.Join).
//
// An empty field takes the built-in text of the same language, or else
// English's.
type Texts struct {
	// Title is a single follow's title.
	Title string `json:"title,omitempty"`
	// Body is a single follow's text.
	Body string `json:"body,omitempty"`
	// SummaryTitle is a summary push's title.
	SummaryTitle string `json:"digest_title,omitempty"`
	// SummaryBody is a summary push's text.
	SummaryBody string `json:"digest_body,omitempty"`
}

// BuiltinTexts returns the built-in texts: "en" (the fallback), "zh"
// (Simplified Chinese) and "ja" (Japanese).
func BuiltinTexts() map[string]Texts {
	return map[string]Texts{
		"en": {
			Title:        DefaultTitle,
			Body:         DefaultBody,
			SummaryTitle: `{{if gt .Count 1}}{{.Count}} new followers{{else}}New follower{{end}}`,
			SummaryBody:  `{{if .Others}}{{join .Names ", "}} and {{.Others}} {{if eq .Others 1}}other{{else}}others{{end}}{{else}}{{join .Names " and "}}{{end}} started following you`,
		},
		"zh": {
			Title:        "新粉丝",
			Body:         "{{.From}} 关注了你",
			SummaryTitle: `{{if gt .Count 1}}{{.Count}} 位新粉丝{{else}}新粉丝{{end}}`,
			SummaryBody:  `{{join .Names "、"}} {{if .Others}}等 {{.Count}} 人{{end}}关注了你`,
		},
		"ja": {
			Title:        "新しいフォロワー",
			Body:         "{{.From}}さんにフォローされました",
			SummaryTitle: `{{if gt .Count 1}}{{.Count}}人の新しいフォロワー{{else}}新しいフォロワー{{end}}`,
			SummaryBody:  `{{join .Names "さん、"}}さん{{if .Others}}ほか{{.Others}}人{{end}}にフォローされました`,
		},
	}
}

// Templates render a push's title and body per locale, for single follows
// ([Templates.RenderLocale]) and summary pushes ([Templates.RenderSummary]).
// They are safe for concurrent use.
type Templates struct {
	locales map[string]*localeTemplates
	builtin map[string]*localeTemplates // BuiltinTexts, parsed: the fallback of a failing template
}

type localeTemplates struct {
	title, body, digestTitle, digestBody *template.Template
}

// singleData is what Title and Body see.
type singleData struct{ From, FromID, To, AppID string }

// SummaryData is what SummaryTitle and SummaryBody see (see [Texts]).
type SummaryData struct {
	// From is the first follower's name, To the followee, AppID the app.
	From, To, AppID string
	// Names are the first followers' names, at most [SummaryNames].
	Names []string
	// Count is every follower of the summary; Others is Count minus
	// len(Names).
	Count, Others int
}

// NewTemplates returns the built-in templates with English's single-follow
// title and body replaced by title and body (an empty one keeps the
// default, [DefaultTitle], [DefaultBody]). It returns the parse error.
func NewTemplates(title, body string) (*Templates, error) {
	return NewLocalizedTemplates(map[string]Texts{DefaultLocale: {Title: title, Body: body}})
}

// NewLocalizedTemplates returns the built-in templates ([BuiltinTexts])
// overlaid with texts, keyed by BCP 47 language tag ("en", "zh", "zh-TW",
// "pt-BR"; case and "_" or "-" do not matter). A field left empty takes the
// built-in text of the locale's language (or of English). Each template is
// parsed and tried on sample data (a summary of one follower, of two and of
// many); the error names the locale and field.
func NewLocalizedTemplates(texts map[string]Texts) (*Templates, error) {
	builtin := BuiltinTexts()
	given := map[string]Texts{}
	for loc, tx := range texts {
		key := NormalizeLocale(loc)
		if key == "" {
			return nil, fmt.Errorf("templates: %q is not a language tag", loc)
		}
		given[key] = overlay(given[key], tx)
	}
	// Every locale falls back on (the configured) English, field by field.
	en := overlay(builtin[DefaultLocale], given[DefaultLocale])
	merged := map[string]Texts{DefaultLocale: en}
	for loc, tx := range builtin {
		if loc != DefaultLocale {
			merged[loc] = overlay(en, tx)
		}
	}
	for _, loc := range slices.Sorted(maps.Keys(given)) {
		if loc == DefaultLocale {
			continue
		}
		base, ok := merged[loc]
		if !ok {
			base, ok = merged[language(loc)]
		}
		if !ok {
			base = en
		}
		merged[loc] = overlay(base, given[loc])
	}
	t := &Templates{locales: map[string]*localeTemplates{}, builtin: map[string]*localeTemplates{}}
	for loc, tx := range builtin {
		lt, err := parseLocale(loc, tx)
		if err != nil {
			return nil, fmt.Errorf("built-in texts: %w", err)
		}
		t.builtin[loc] = lt
	}
	for _, loc := range slices.Sorted(maps.Keys(merged)) {
		lt, err := parseLocale(loc, merged[loc])
		if err != nil {
			return nil, err
		}
		t.locales[loc] = lt
	}
	return t, nil
}

func overlay(base, over Texts) Texts {
	for _, p := range []struct {
		dst *string
		src string
	}{
		{&base.Title, over.Title}, {&base.Body, over.Body},
		{&base.SummaryTitle, over.SummaryTitle}, {&base.SummaryBody, over.SummaryBody},
	} {
		if p.src != "" {
			*p.dst = p.src
		}
	}
	return base
}

var templateFuncs = template.FuncMap{"join": strings.Join}

// sample data every template must render without error: each shape the
// data takes (a summary names one follower, or DigestNames, with or
// without others).
var (
	sampleSingle  = []any{singleData{From: "Alice", FromID: "alice", To: "bob", AppID: "1400000000"}}
	sampleDigests = []any{
		SummaryData{From: "alice", To: "bob", AppID: "1400000000", Names: []string{"alice"}, Count: 1, Others: 0},
		SummaryData{From: "alice", To: "bob", AppID: "1400000000", Names: []string{"alice", "carol"}, Count: 2, Others: 0},
		SummaryData{From: "alice", To: "bob", AppID: "1400000000", Names: []string{"alice", "carol"}, Count: 5, Others: 3},
	}
)

func parseLocale(loc string, tx Texts) (*localeTemplates, error) {
	var lt localeTemplates
	for _, f := range []struct {
		name, text string
		dst        **template.Template
		samples    []any
	}{
		{"title", tx.Title, &lt.title, sampleSingle},
		{"body", tx.Body, &lt.body, sampleSingle},
		{"digest_title", tx.SummaryTitle, &lt.digestTitle, sampleDigests},
		{"digest_body", tx.SummaryBody, &lt.digestBody, sampleDigests},
	} {
		tm, err := template.New(f.name).Funcs(templateFuncs).Option("missingkey=error").Parse(f.text)
		if err != nil {
			return nil, fmt.Errorf("%s %s template: %w", loc, f.name, err)
		}
		for _, sample := range f.samples {
			if err := tm.Execute(&strings.Builder{}, sample); err != nil {
				return nil, fmt.Errorf("%s %s template: %w", loc, f.name, err)
			}
		}
		*f.dst = tm
	}
	return &lt, nil
}

// NormalizeLocale returns tag lowercased with "-" between subtags
// ("zh_CN" → "zh-cn"), or "" when tag, so written, is not a language tag
// a device may register ([devices.ValidateLocale]: the one rule for
// locale tags).
func NormalizeLocale(tag string) string {
	tag = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(tag), "_", "-"))
	if tag == "" || devices.ValidateLocale(tag) != nil {
		return ""
	}
	return tag
}

func language(tag string) string {
	lang, _, _ := strings.Cut(tag, "-")
	return lang
}

// Locale returns the configured locale that serves a device with the BCP 47
// tag: the tag itself, else the tag with its last subtags dropped one by
// one ("zh-Hant-TW" → "zh-hant" → "zh"), else [DefaultLocale].
func (t *Templates) Locale(tag string) string {
	tag = NormalizeLocale(tag)
	for tag != "" {
		if _, ok := t.locales[tag]; ok {
			return tag
		}
		i := strings.LastIndexByte(tag, '-')
		if i < 0 {
			break
		}
		tag = tag[:i]
	}
	return DefaultLocale
}

// Locales returns the configured locales, sorted.
func (t *Templates) Locales() []string { return slices.Sorted(maps.Keys(t.locales)) }

// Render returns the title and body for f in [DefaultLocale].
func (t *Templates) Render(f tasks.Follow) (Content, error) {
	return t.RenderLocale(DefaultLocale, f)
}

// RenderLocale returns the title and body for f in the locale that serves
// tag (see [Templates.Locale]), naming the follower by UserID.
func (t *Templates) RenderLocale(tag string, f tasks.Follow) (Content, error) {
	return t.RenderFollow(tag, f, f.From)
}

// RenderFollow is [Templates.RenderLocale] naming the follower fromName
// (.From; .FromID stays the UserID).
func (t *Templates) RenderFollow(tag string, f tasks.Follow, fromName string) (Content, error) {
	lt := t.locales[t.Locale(tag)]
	return render(lt.title, lt.body, singleData{From: fromName, FromID: f.From, To: f.To, AppID: f.AppID})
}

// RenderSummary returns the title and body of a summary push in the locale
// that serves tag.
func (t *Templates) RenderSummary(tag string, d SummaryData) (Content, error) {
	lt := t.locales[t.Locale(tag)]
	return render(lt.digestTitle, lt.digestBody, d)
}

// renderOrBuiltin renders data with the templates pick takes from the
// locale that serves tag, except that when they fail on data, it renders
// with the built-in text of the locale's language (English's when there is
// none) and failed is that failure, for the caller to log. err is set only
// when the built-in text fails too. kind names the push in failed.
func (t *Templates) renderOrBuiltin(tag, kind string, pick func(*localeTemplates) (title, body *template.Template), data any) (c Content, failed, err error) {
	loc := t.Locale(tag)
	title, body := pick(t.locales[loc])
	c, failed = render(title, body, data)
	if failed == nil {
		return c, nil, nil
	}
	failed = fmt.Errorf("%s %s template: %w", loc, kind, failed)
	lt, ok := t.builtin[language(loc)]
	if !ok {
		lt = t.builtin[DefaultLocale]
	}
	title, body = pick(lt)
	c, err = render(title, body, data)
	if err != nil {
		return Content{}, failed, fmt.Errorf("%w; built-in text: %w", failed, err)
	}
	return c, failed, nil
}

// FollowOrBuiltin is [Templates.RenderFollow] falling back to the
// built-in text when a template fails on the data (a display name is
// whatever the follower chose): failed is that failure, for the caller to
// log; err is set only when the built-in text fails too. A push is never
// lost to a template.
func (t *Templates) FollowOrBuiltin(tag string, f tasks.Follow, fromName string) (c Content, failed, err error) {
	return t.renderOrBuiltin(tag, "follow", func(lt *localeTemplates) (*template.Template, *template.Template) { return lt.title, lt.body },
		singleData{From: fromName, FromID: f.From, To: f.To, AppID: f.AppID})
}

// SummaryOrBuiltin is [Templates.RenderSummary] falling back to the
// built-in text, as [Templates.FollowOrBuiltin] does.
func (t *Templates) SummaryOrBuiltin(tag string, d SummaryData) (c Content, failed, err error) {
	return t.renderOrBuiltin(tag, "summary", func(lt *localeTemplates) (*template.Template, *template.Template) {
		return lt.digestTitle, lt.digestBody
	}, d)
}

func render(title, body *template.Template, data any) (Content, error) {
	var tb, bb strings.Builder
	if err := title.Execute(&tb, data); err != nil {
		return Content{}, err
	}
	if err := body.Execute(&bb, data); err != nil {
		return Content{}, err
	}
	return Content{Title: tb.String(), Body: bb.String()}, nil
}
