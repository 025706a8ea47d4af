package main

import (
	"fmt"
	"slices"
	"time"
)

// noiseSampler records, every second of a phase, how many cores the rest of
// the machine used, so that latency tails can be told apart from other
// people's work on a shared machine.
type noiseSampler struct {
	stop chan struct{}
	done chan []noiseSample
}

type noiseSample struct {
	At     time.Time // end of the one-second window
	Others float64   // cores used by other processes in the window
}

// startNoise samples until stop is called; meter gives the processes that
// count as ours.
func startNoise(newMeter func() *cpuMeter) *noiseSampler {
	n := &noiseSampler{stop: make(chan struct{}), done: make(chan []noiseSample, 1)}
	go func() {
		var out []noiseSample
		t := time.NewTicker(time.Second)
		defer t.Stop()
		m := newMeter()
		for {
			select {
			case <-n.stop:
				n.done <- out
				return
			case now := <-t.C:
				out = append(out, noiseSample{At: now, Others: m.cores()["others"]})
				m = newMeter()
			}
		}
	}()
	return n
}

func (n *noiseSampler) finish() []noiseSample {
	close(n.stop)
	return <-n.done
}

// timedLatency is one latency sample and when its measurement started.
type timedLatency struct {
	At time.Time
	D  time.Duration
}

// windowStats splits a phase's latencies into one-second windows (by start
// time) and reports how many windows had a p99 above target and how busy
// the rest of the machine was in those windows and in the others.
type windowStats struct {
	Windows          int     `json:"windows"`
	Over             int     `json:"over_target"`
	TargetMs         float64 `json:"target_ms"`
	MedianP99ms      float64 `json:"median_window_p99_ms"`
	WorstP99ms       float64 `json:"worst_window_p99_ms"`
	OthersOverTarget float64 `json:"others_cores_in_windows_over_target"`
	OthersRest       float64 `json:"others_cores_in_other_windows"`
}

func (w windowStats) String() string {
	if w.Windows == 0 {
		return ""
	}
	s := fmt.Sprintf("1-s windows: p99 median %s ms, worst %s ms; %d of %d windows over %g ms", num(w.MedianP99ms), num(w.WorstP99ms), w.Over, w.Windows, w.TargetMs)
	if w.Over > 0 {
		s += fmt.Sprintf(" (other processes used %.2f cores in those, %.2f in the rest)", w.OthersOverTarget, w.OthersRest)
	}
	return s
}

func windows(samples []timedLatency, noise []noiseSample, target time.Duration) windowStats {
	if len(samples) == 0 {
		return windowStats{}
	}
	start := samples[0].At
	for _, s := range samples {
		if s.At.Before(start) {
			start = s.At
		}
	}
	byWin := map[int][]time.Duration{}
	for _, s := range samples {
		i := int(s.At.Sub(start) / time.Second)
		byWin[i] = append(byWin[i], s.D)
	}
	othersAt := func(i int) (float64, bool) {
		mid := start.Add(time.Duration(i)*time.Second + time.Second/2)
		for _, n := range noise {
			if !n.At.Before(mid) && n.At.Sub(mid) <= time.Second {
				return n.Others, true
			}
		}
		return 0, false
	}
	w := windowStats{TargetMs: ms(target)}
	var p99s []float64
	var overSum, restSum float64
	var overN, restN int
	for i, ds := range byWin {
		if len(ds) < 10 { // a partial last window says nothing about a p99
			continue
		}
		p99 := latencies(ds).P99ms
		p99s = append(p99s, p99)
		w.Windows++
		o, ok := othersAt(i)
		if p99 > ms(target) {
			w.Over++
			if ok {
				overSum += o
				overN++
			}
		} else if ok {
			restSum += o
			restN++
		}
	}
	if len(p99s) == 0 {
		return windowStats{}
	}
	slices.Sort(p99s)
	w.MedianP99ms, w.WorstP99ms = p99s[len(p99s)/2], p99s[len(p99s)-1]
	if overN > 0 {
		w.OthersOverTarget = overSum / float64(overN)
	}
	if restN > 0 {
		w.OthersRest = restSum / float64(restN)
	}
	return w
}
