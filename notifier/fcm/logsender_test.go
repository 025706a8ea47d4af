package fcm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"firebase.google.com/go/v4/messaging"
	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tasks"
)

func TestLogSender(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	snd := LogSender{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}
	f := tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1700000000123}
	tokens := []string{
		"cAbCdEfGhIjK:APA91bFirstTokenThatIsLongEnoughToMask-xyz1",
		"short",
	}
	msgs := []*messaging.Message{
		BuildMessage(f, tokens[0], devices.PlatformAndroid, pushtext.DefaultContent(f)),
		BuildMessage(f, tokens[1], devices.PlatformIOS, pushtext.Content{Title: "Hi", Body: "there"}),
		nil,
	}
	errs := snd.Send(t.Context(), msgs)

	if errs[0] != nil || errs[1] != nil {
		t.Errorf("errors for valid messages: %v", errs[:2])
	}
	if got := Classify(errs[2]); got != OutcomeInvalidMessage {
		t.Errorf("nil message: Classify(%v) = %s, want %s", errs[2], got, OutcomeInvalidMessage)
	}

	var got []map[string]any
	for line := range strings.Lines(buf.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(rec, "time")
		got = append(got, rec)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "push sent", "backend": "log", "task_id": f.TaskID(), "from_account": "alice", "to_account": "bob",
			"token": "cAbCdE…xyz1", "title": "New follower", "body": "alice started following you"},
		{"level": "INFO", "msg": "push sent", "backend": "log", "task_id": f.TaskID(), "from_account": "alice", "to_account": "bob",
			"token": "***", "title": "Hi", "body": "there"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
	for _, tok := range tokens {
		if strings.Contains(buf.String(), tok) {
			t.Errorf("log output contains the full token %q", tok)
		}
	}
}

func TestMaskToken(t *testing.T) {
	t.Parallel()
	tests := []struct{ token, want string }{
		{"", ""},
		{"a", "***"},
		{"0123456789012345678", "***"}, // 19 characters
		{"01234567890123456789", "012345…6789"}, // 20
		{"dGhpcyBpcyBhIHRva2Vu:APA91bXYZ-end9", "dGhpcy…end9"},
		{"ééééééXXXXXXXXXXXXXXéééé", "éééééé…éééé"}, // characters, not bytes
	}
	for _, tt := range tests {
		if got := MaskToken(tt.token); got != tt.want {
			t.Errorf("MaskToken(%q) = %q, want %q", tt.token, got, tt.want)
		}
	}
}

func ExampleMaskToken() {
	fmt.Println(MaskToken("eXaMpLe0TokEn:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DELjzEvxwYv7hH5Ynpc1ODQ0aT4U4OFEeco8ohsN5PjL1iC2dNtk2BAokeMCg2ZXKqpc8FXKmhX94kIxQ"))
	fmt.Println(MaskToken("too-short"))
	// Output:
	// eXaMpL…kIxQ
	// ***
}
