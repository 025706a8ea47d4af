package history

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Answer is the history API's answer: a followee's history, the newest
// item first.
type Answer struct {
	// User is the followee.
	User string `json:"user"`
	// Notifications are the follows, unfollows and summary pushes, newest
	// first (by their first entry kept).
	Notifications []Item `json:"notifications"`
	// More: more items matched than limit allowed.
	More bool `json:"more"`
}

// Item kinds.
const (
	KindFollow   = "follow"
	KindUnfollow = "unfollow"
	KindSummary  = "summary"
)

// Item is one follow, unfollow or summary push with everything the
// history keeps about it.
type Item struct {
	// Kind is follow, unfollow or summary.
	Kind string `json:"kind"`
	// From is the follower (follows and unfollows).
	From string `json:"from,omitempty"`
	// TaskID is the asynq task id (follows and summaries): the same as
	// asynqmon shows.
	TaskID string `json:"task_id,omitempty"`
	// EventTime is the follow's or unfollow's own time (Tencent's
	// EventTime), when its receiver entry is still kept.
	EventTime *time.Time `json:"event_time,omitempty"`
	// Fate is the latest result a worker recorded (a follow: sent,
	// aggregated, cooldown, retry, ...; a summary: sent, empty, ...),
	// except that a repeat found already handled ([ResultDuplicate]) does
	// not hide the result before it; "pending" when no worker has
	// recorded one yet; absent for an unfollow.
	Fate string `json:"fate,omitempty"`
	// Summary is the summary push a follow was folded into (its task id).
	Summary string `json:"summary,omitempty"`
	// Followers are the followers a summary push named and counted (its
	// latest attempt's).
	Followers []string `json:"followers,omitempty"`
	// Events are the item's entries, oldest first.
	Events []Event `json:"events"`
}

// Event is one entry of an item.
type Event struct {
	// ID is the stream entry's id.
	ID string `json:"id"`
	// At is when it was recorded (Redis's clock).
	At time.Time `json:"at"`
	// Event is "received" for the receiver's entries, else the worker's
	// task result.
	Event     string     `json:"event"`
	Devices   []Device   `json:"devices,omitempty"`
	NextRetry *time.Time `json:"next_retry,omitempty"`
	Attempt   int        `json:"attempt,omitempty"`
	Why       string     `json:"why,omitempty"`
	Summary   string     `json:"summary,omitempty"`
	Due       *time.Time `json:"due,omitempty"`
	Followers []string   `json:"followers,omitempty"`
}

// ResultDuplicate is the worker's result for a task found already handled
// (a repeated webhook, a redelivered task).
const ResultDuplicate = "duplicate"

// fate records the worker's result ev as the item's fate, unless ev is a
// duplicate of a task that ended with another result.
func (it *Item) fate(ev string) {
	if ev != ResultDuplicate || it.Fate == "pending" {
		it.Fate = ev
	}
}

// EventReceived is the Event of the receiver's entries in an [Item].
const EventReceived = "received"

// Query bounds of the history API.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// readMax bounds the entries one read takes: the cap is approximate (Redis
// trims whole stream nodes, 100 entries by default), and a key written
// with a larger cap earlier may still hold more.
func (s *Store) readMax() int64 { return s.maxEvents + 1000 }

// Read returns followee's history, the newest limit items (follows,
// unfollows, summaries), only those about from when from is not empty
// (its follows and unfollows, and the summaries that named it or took its
// follows). A followee without history has an empty answer.
func (s *Store) Read(ctx context.Context, followee, from string, limit int) (Answer, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.Key(followee), "+", "-", s.readMax()).Result()
	if err != nil && err != redis.Nil {
		return Answer{}, err
	}
	slices.Reverse(msgs) // oldest first
	var (
		items = map[string]*Item{}
		first = map[string]string{} // item key -> its first entry id
		order []string
	)
	item := func(key string, it Item, id string) *Item {
		p, ok := items[key]
		if !ok {
			it.Events = []Event{}
			p = &it
			items[key] = p
			first[key] = id
			order = append(order, key)
		}
		return p
	}
	for _, m := range msgs {
		ev, _ := m.Values["e"].(string)
		u, _ := m.Values["u"].(string)
		t, _ := m.Values["t"].(string)
		raw, _ := m.Values["d"].(string)
		var d Detail
		if raw != "" {
			_ = json.Unmarshal([]byte(raw), &d) // a damaged detail leaves the event bare
		}
		e := Event{ID: m.ID, At: idTime(m.ID), Event: ev, Devices: d.Devices, Attempt: d.Attempt, Why: d.Why,
			Summary: d.Summary, Followers: d.Followers, NextRetry: msTime(d.NextRetry), Due: msTime(d.Due)}
		var it *Item
		switch {
		case ev == EventUnfollow:
			it = item("u\x00"+u+"\x00"+strconv.FormatInt(d.At, 10), Item{Kind: KindUnfollow, From: u, EventTime: msTime(d.At)}, m.ID)
			e.Event = EventReceived
		case strings.HasPrefix(t, "digest:"):
			it = item(t, Item{Kind: KindSummary, TaskID: t, Fate: "pending"}, m.ID)
			it.fate(ev)
			if d.Followers != nil {
				it.Followers = d.Followers
			}
		default:
			it = item(t, Item{Kind: KindFollow, From: u, TaskID: t, Fate: "pending"}, m.ID)
			if ev == EventFollow {
				e.Event = EventReceived
				if it.EventTime == nil {
					it.EventTime = msTime(d.At)
				}
			} else {
				it.fate(ev)
			}
			if d.Summary != "" {
				it.Summary = d.Summary
			}
		}
		it.Events = append(it.Events, e)
	}
	if from != "" {
		took := map[string]bool{} // summaries that took from's follows
		for _, it := range items {
			if it.Kind == KindFollow && it.From == from && it.Summary != "" {
				took[it.Summary] = true
			}
		}
		order = slices.DeleteFunc(order, func(k string) bool {
			it := items[k]
			if it.Kind == KindSummary {
				return !took[it.TaskID] && !slices.Contains(it.Followers, from)
			}
			return it.From != from
		})
	}
	// Newest first by first entry: entry ids grow with time.
	slices.SortStableFunc(order, func(a, b string) int { return compareIDs(first[b], first[a]) })
	ans := Answer{User: followee, Notifications: []Item{}}
	for i, k := range order {
		if i == limit {
			ans.More = true
			break
		}
		ans.Notifications = append(ans.Notifications, *items[k])
	}
	return ans, nil
}

// idTime is the time of a stream entry id ("<ms>-<seq>").
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n).UTC()
}

// compareIDs orders stream entry ids.
func compareIDs(a, b string) int {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	x, _ := strconv.ParseUint(am, 10, 64)
	y, _ := strconv.ParseUint(bm, 10, 64)
	if x != y {
		if x < y {
			return -1
		}
		return 1
	}
	x, _ = strconv.ParseUint(as, 10, 64)
	y, _ = strconv.ParseUint(bs, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func msTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}
