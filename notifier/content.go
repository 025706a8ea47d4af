package notifier

import (
	"fmt"
	"strings"
	"text/template"

	"github.com/followpush/followpush/tasks"
)

// Default notification texts.
const (
	DefaultTitle = "New follower"
	DefaultBody  = "{{.From}} started following you"
)

// Templates render a push's title and body from a follow: text/template
// with the fields .From, .To and .AppID.
type Templates struct {
	title, body *template.Template
}

// NewTemplates parses the title and body templates; an empty one takes the
// default ([DefaultTitle], [DefaultBody]). It returns the parse error.
func NewTemplates(title, body string) (*Templates, error) {
	if title == "" {
		title = DefaultTitle
	}
	if body == "" {
		body = DefaultBody
	}
	tt, err := template.New("title").Option("missingkey=error").Parse(title)
	if err != nil {
		return nil, fmt.Errorf("title template: %w", err)
	}
	bt, err := template.New("body").Option("missingkey=error").Parse(body)
	if err != nil {
		return nil, fmt.Errorf("body template: %w", err)
	}
	return &Templates{title: tt, body: bt}, nil
}

// Render returns the title and body for f.
func (t *Templates) Render(f tasks.Follow) (Content, error) {
	data := struct{ From, To, AppID string }{f.From, f.To, f.AppID}
	var title, body strings.Builder
	if err := t.title.Execute(&title, data); err != nil {
		return Content{}, err
	}
	if err := t.body.Execute(&body, data); err != nil {
		return Content{}, err
	}
	return Content{Title: title.String(), Body: body.String()}, nil
}
