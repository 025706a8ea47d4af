package tasks_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/tasks"
)

// FollowSpec carries the follow's queue, id, retry budget and timeout, and
// NewFollowTask is built from it: the payload parses back to the follow.
func TestFollowSpec(t *testing.T) {
	t.Parallel()
	f := tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1700000000123}
	s, err := tasks.FollowSpec(f)
	if err != nil {
		t.Fatal(err)
	}
	want := tasks.Spec{Type: tasks.TypeFollow, Payload: s.Payload, ID: f.TaskID(), Queue: tasks.QueueFollow,
		MaxRetry: tasks.DefaultMaxRetry, Timeout: tasks.DefaultTimeout}
	if d := cmp.Diff(want, s); d != "" {
		t.Errorf("FollowSpec (-want +got):\n%s", d)
	}
	task, err := tasks.NewFollowTask(f)
	if err != nil {
		t.Fatal(err)
	}
	if task.Type() != s.Type || string(task.Payload()) != string(s.Payload) {
		t.Errorf("NewFollowTask = %s %s, spec %s %s", task.Type(), task.Payload(), s.Type, s.Payload)
	}
	got, err := tasks.ParseFollow(task)
	if err != nil || got != f {
		t.Errorf("ParseFollow = %+v, %v; want %+v", got, err, f)
	}
	if _, err := tasks.FollowSpec(tasks.Follow{AppID: "1400000000", From: "alice", To: "alice", EventTime: 1}); !errors.Is(err, tasks.ErrInvalidFollow) {
		t.Errorf("FollowSpec(self-follow) error = %v", err)
	}
}
