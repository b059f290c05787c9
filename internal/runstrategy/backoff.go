package runstrategy

import "time"

// Backoff holds the crash-loop parameters (section 6). The zero value means
// KubeVirt's defaults: 10 s base, 300 s cap, no jitter.
type Backoff struct {
	// Base is the shortest delay (default 10s).
	Base time.Duration
	// Max caps every delay (default 300s).
	Max time.Duration
	// Jitter returns a uniformly random integer in [0, n]. It is the only
	// source of randomness of the core; nil means no jitter.
	Jitter func(n int64) int64
}

// Default crash-loop parameters.
const (
	DefaultBackoffBase = 10 * time.Second
	DefaultBackoffMax  = 300 * time.Second
)

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	return b
}

// Delay returns the wait before the next start after failCount consecutive
// start failures, in whole seconds as KubeVirt computes it:
//
//	n        = max(failCount, 1)
//	interval = max(base, max/30)
//	b        = interval * n * n
//	delay    = min(b + jitter(0..b/2), max)
//
// Durations under a second count as one second.
func (b Backoff) Delay(failCount int) time.Duration {
	b = b.withDefaults()
	base, maxSecs := ceilSeconds(b.Base), ceilSeconds(b.Max)
	n := int64(max(failCount, 1))
	interval := max(base, maxSecs/30)
	// d = interval * n * n, capped, computed without overflow: for positive
	// integers, n > m/k exactly when n*k > m.
	if n > maxSecs/interval || n > maxSecs/(interval*n) {
		return time.Duration(maxSecs) * time.Second
	}
	d := interval * n * n
	if b.Jitter != nil {
		j := b.Jitter(d / 2)
		d += min(max(j, 0), d/2)
	}
	return time.Duration(min(d, maxSecs)) * time.Second
}

func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// TimeLeft returns how long the crash-loop gate still holds at now, in
// whole seconds as KubeVirt counts them (the retry time's Unix second minus
// now's): zero without a record or once the retry time has passed, never
// negative. With the whole-second retry times NextStatus records, the gate
// never opens early, and a pass requeued after TimeLeft finds it open.
func TimeLeft(sf *StartFailure, now time.Time) time.Duration {
	if sf == nil || sf.RetryAfter.IsZero() {
		return 0
	}
	return time.Duration(max(sf.RetryAfter.Unix()-now.Unix(), 0)) * time.Second
}
