package main

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestTallyPolicies(t *testing.T) {
	t.Parallel()
	t0 := time.UnixMilli(1767225600000)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	follow := func(from, to string, ms int) policyFollow {
		return policyFollow{from: from, to: to, eventTime: t0.UnixMilli() + int64(ms)}
	}
	single := func(from, to string, eventMs, receivedMs int) sentPush {
		return sentPush{received: at(receivedMs), data: map[string]string{
			"type": "follow", "from_account": from, "to_account": to, "event_time": strconv.FormatInt(t0.UnixMilli()+int64(eventMs), 10)}}
	}
	summary := func(to string, names []string, count, latestMs, receivedMs int) sentPush {
		list, _ := json.Marshal(names)
		return sentPush{received: at(receivedMs), data: map[string]string{
			"type": "follow", "from_account": names[0], "to_account": to, "event_time": strconv.FormatInt(t0.UnixMilli()+int64(latestMs), 10),
			"count": strconv.Itoa(count), "from_accounts": string(list), "digest_id": "d"}}
	}
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}

	tests := []struct {
		name           string
		follows, maybe []policyFollow
		pushes         []sentPush
		want           policyTally
		named, counted []time.Duration // delays of named and count-only follows
	}{{
		name: "aggregated: named and count-only follows each delivered once",
		follows: []policyFollow{follow("a1", "A", 0), follow("a2", "A", 100), follow("a3", "A", 200), follow("a4", "A", 300),
			follow("a5", "A", 2100), follow("b1", "B", 50)},
		pushes: []sentPush{
			single("a1", "A", 0, 10),
			single("b1", "B", 50, 60),
			summary("A", []string{"a2", "a3"}, 3, 300, 2010), // a4 only counted
			summary("A", []string{"a5"}, 1, 2100, 4010),
		},
		want:  policyTally{Follows: 6, Followees: 2, Pushes: 4, Summaries: 2, Named: 5, CountOnly: 1},
		named: ms(10, 10, 1910, 1810, 1910), counted: ms(1710),
	}, {
		// counts agree per followee (2 = 2): only the names and the
		// event times show that a1 was pushed twice and a2 never
		name:    "a duplicate hides a loss of the same followee",
		follows: []policyFollow{follow("a1", "A", 0), follow("a2", "A", 200)},
		pushes:  []sentPush{single("a1", "A", 0, 10), single("a1", "A", 0, 20)},
		want:    policyTally{Follows: 2, Followees: 1, Pushes: 2, NamedTwice: 1, Named: 1, Uncovered: 1},
		named:   ms(10),
	}, {
		name:    "a summary counts more followers than followed",
		follows: []policyFollow{follow("a1", "A", 0), follow("b1", "B", 0)},
		pushes:  []sentPush{summary("A", []string{"a1"}, 2, 0, 30), single("b1", "B", 0, 5)},
		want:    policyTally{Follows: 2, Followees: 2, Pushes: 2, Summaries: 1, Extra: 1, ExtraFollowees: 1, Named: 2},
		named:   ms(30, 5),
	}, {
		name:    "a summary counts fewer followers than followed",
		follows: []policyFollow{follow("a1", "A", 0), follow("a2", "A", 100), follow("a3", "A", 200)},
		pushes:  []sentPush{summary("A", []string{"a1"}, 2, 200, 1000)},
		want:    policyTally{Follows: 3, Followees: 1, Pushes: 1, Summaries: 1, Lost: 1, LostFollowees: 1, Named: 1, CountOnly: 2},
		named:   ms(1000), counted: ms(900, 800),
	}, {
		name:    "silent followee, unexpected push, foreign follower",
		follows: []policyFollow{follow("a1", "A", 0), follow("b1", "B", 0)},
		pushes:  []sentPush{single("b1", "A", 0, 5), single("z1", "Z", 0, 5)},
		// b1 named in A's push is foreign; A counts 1 of 1 (no loss by
		// count) but a1 is delivered by event time only
		want:    policyTally{Follows: 2, Followees: 2, Pushes: 2, Unexpected: 1, Foreign: 2, Silent: 1, Lost: 1, LostFollowees: 1, CountOnly: 1, Uncovered: 1},
		counted: ms(5),
	}, {
		name:    "a follow of a failed webhook may be pushed",
		follows: []policyFollow{follow("a1", "A", 0)},
		maybe:   []policyFollow{follow("a2", "A", 10), follow("c1", "C", 10)},
		pushes:  []sentPush{summary("A", []string{"a1", "a2"}, 2, 10, 50), single("c1", "C", 10, 20)},
		want:    policyTally{Follows: 1, Followees: 1, Pushes: 2, Summaries: 1, Named: 1},
		named:   ms(50),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tallyPolicies(tt.follows, tt.maybe, tt.pushes)
			want := tt.want
			want.DelayNamed, want.DelayCountOnly = latencies(tt.named), latencies(tt.counted)
			want.Delay = latencies(append(append([]time.Duration(nil), tt.named...), tt.counted...))
			if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(policyTally{})); diff != "" {
				t.Errorf("tallyPolicies (-want +got):\n%s", diff)
			}
		})
	}
}
