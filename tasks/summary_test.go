package tasks_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/tasks"
)

func TestDigestRoundTrip(t *testing.T) {
	t.Parallel()
	d := tasks.Summary{AppID: "1400000000", To: "bob", Due: 1700000600000}
	task, err := tasks.NewSummaryTask(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tasks.ParseSummary(task)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if task.Type() != tasks.TypeSummary {
		t.Errorf("type = %q", task.Type())
	}
}

// One digest per followee and due time, whatever the app; distinct from
// every follow's id.
func TestDigestID(t *testing.T) {
	t.Parallel()
	base := tasks.Summary{AppID: "1400000000", To: "bob", Due: 1700000600000}
	tests := []struct {
		name string
		d    tasks.Summary
		same bool
	}{
		{"other app", tasks.Summary{AppID: "1400000001", To: "bob", Due: base.Due}, true},
		{"other followee", tasks.Summary{AppID: base.AppID, To: "carol", Due: base.Due}, false},
		{"other due time", tasks.Summary{AppID: base.AppID, To: "bob", Due: base.Due + 1}, false},
	}
	for _, tt := range tests {
		if got := tt.d.ID() == base.ID(); got != tt.same {
			t.Errorf("%s: same id = %v, want %v", tt.name, got, tt.same)
		}
	}
	f := tasks.Follow{AppID: base.AppID, From: "", To: "bob", EventTime: base.Due}
	if f.ID() == base.ID() {
		t.Error("a digest shares its id with a follow")
	}
	if len(base.ID()) != 32 || base.TaskID() != "digest:"+base.ID() {
		t.Errorf("ID %q, TaskID %q", base.ID(), base.TaskID())
	}
}

func TestDigestInvalid(t *testing.T) {
	t.Parallel()
	for name, d := range map[string]tasks.Summary{
		"no app":   {To: "bob", Due: 1},
		"no to":    {AppID: "1", Due: 1},
		"long to":  {AppID: "1", To: "0123456789012345678901234567890123", Due: 1},
		"zero due": {AppID: "1", To: "bob"},
	} {
		if _, err := tasks.NewSummaryTask(d); !errors.Is(err, tasks.ErrInvalidSummary) {
			t.Errorf("%s: err = %v, want ErrInvalidDigest", name, err)
		}
	}
	if _, err := tasks.ParseSummary(asynq.NewTask(tasks.TypeSummary, []byte(`{"to":`))); !errors.Is(err, tasks.ErrInvalidSummary) {
		t.Errorf("bad JSON: err = %v", err)
	}
	if _, err := tasks.ParseSummary(asynq.NewTask(tasks.TypeFollow, []byte(`{}`))); !errors.Is(err, tasks.ErrInvalidSummary) {
		t.Errorf("wrong type: err = %v", err)
	}
}

func ExampleNewSummaryTask() {
	d := tasks.Summary{AppID: "1400000000", To: "bob", Due: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixMilli()}
	task, err := tasks.NewSummaryTask(d)
	if err != nil {
		panic(err)
	}
	fmt.Println(task.Type(), string(task.Payload()))
	// Output: follow:digest {"app":"1400000000","to":"bob","at":1795608000000}
}
