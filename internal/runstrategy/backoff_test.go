package runstrategy

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// seededJitter is a uniform jitter in [0, n] from a seeded source: the test
// is random but the same on every run. (The core itself has no randomness.)
func seededJitter(seed int64) func(int64) int64 {
	r := rand.New(rand.NewSource(seed))
	return func(n int64) int64 { return r.Int63n(n + 1) }
}

// TestDelayRanges pins section 6's delay table over 1000 samples per fail
// count, with KubeVirt's defaults: every sample in range, and both ends of
// the range reached.
func TestDelayRanges(t *testing.T) {
	cases := []struct {
		failCount int
		lo, hi    time.Duration
	}{
		{0, 10 * time.Second, 15 * time.Second},
		{1, 10 * time.Second, 15 * time.Second},
		{2, 40 * time.Second, 60 * time.Second},
		{3, 90 * time.Second, 135 * time.Second},
		{4, 160 * time.Second, 240 * time.Second},
		{5, 250 * time.Second, 300 * time.Second},
		{6, 300 * time.Second, 300 * time.Second},
		{7, 300 * time.Second, 300 * time.Second},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("6 delay/failCount %d", c.failCount), func(t *testing.T) {
			b := Backoff{Jitter: seededJitter(int64(c.failCount) + 1)}
			lo, hi := time.Duration(1<<62), time.Duration(0)
			for range 1000 {
				d := b.Delay(c.failCount)
				if d < c.lo || d > c.hi {
					t.Fatalf("Delay(%d) = %v, want within [%v, %v]", c.failCount, d, c.lo, c.hi)
				}
				if d%time.Second != 0 {
					t.Fatalf("Delay(%d) = %v, want whole seconds", c.failCount, d)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			if lo != c.lo || hi != c.hi {
				t.Errorf("Delay(%d) over 1000 samples spans [%v, %v], want [%v, %v]", c.failCount, lo, hi, c.lo, c.hi)
			}
		})
	}
}

// TestDelayFormula pins the formula of section 6 without jitter and with
// the largest jitter, for the defaults and for shrunk parameters (the
// project's decision: the constants are configurable).
func TestDelayFormula(t *testing.T) {
	maxJitter := func(n int64) int64 { return n }
	s := time.Second
	cases := []struct {
		name      string
		b         Backoff
		failCount int
		lo, hi    time.Duration // without jitter, with the largest jitter
	}{
		{name: "6 formula/zero value is KubeVirt's defaults", b: Backoff{}, failCount: 1, lo: 10 * s, hi: 15 * s},
		{name: "6 formula/explicit defaults", b: Backoff{Base: 10 * s, Max: 300 * s}, failCount: 3, lo: 90 * s, hi: 135 * s},
		{name: "6 formula/negative count is one", b: Backoff{}, failCount: -4, lo: 10 * s, hi: 15 * s},
		{name: "6 formula/huge count is capped", b: Backoff{}, failCount: 1 << 40, lo: 300 * s, hi: 300 * s},
		{name: "6 shrunk 1s..8s/count 1", b: Backoff{Base: s, Max: 8 * s}, failCount: 1, lo: s, hi: s},
		{name: "6 shrunk 1s..8s/count 2", b: Backoff{Base: s, Max: 8 * s}, failCount: 2, lo: 4 * s, hi: 6 * s},
		{name: "6 shrunk 1s..8s/count 3 capped", b: Backoff{Base: s, Max: 8 * s}, failCount: 3, lo: 8 * s, hi: 8 * s},
		{name: "6 shrunk 2s..60s/count 1", b: Backoff{Base: 2 * s, Max: 60 * s}, failCount: 1, lo: 2 * s, hi: 3 * s},
		{name: "6 shrunk 2s..60s/count 4", b: Backoff{Base: 2 * s, Max: 60 * s}, failCount: 4, lo: 32 * s, hi: 48 * s},
		{name: "6 shrunk 2s..60s/count 5 capped", b: Backoff{Base: 2 * s, Max: 60 * s}, failCount: 5, lo: 50 * s, hi: 60 * s},
		{name: "6 interval is max(base, max/30)", b: Backoff{Base: 10 * s, Max: 600 * s}, failCount: 1, lo: 20 * s, hi: 30 * s},
		{name: "6 sub-second base counts as one second", b: Backoff{Base: 300 * time.Millisecond, Max: 8 * s}, failCount: 2, lo: 4 * s, hi: 6 * s},
		{name: "6 sub-second cap counts as one second", b: Backoff{Base: 100 * time.Millisecond, Max: 100 * time.Millisecond}, failCount: 1, lo: s, hi: s},
		{name: "6 zero cap is the default cap", b: Backoff{Base: 100 * s}, failCount: 2, lo: 300 * s, hi: 300 * s},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.b
			if got := b.Delay(c.failCount); got != c.lo {
				t.Errorf("Delay(%d) without jitter = %v, want %v", c.failCount, got, c.lo)
			}
			b.Jitter = maxJitter
			if got := b.Delay(c.failCount); got != c.hi {
				t.Errorf("Delay(%d) with the largest jitter = %v, want %v", c.failCount, got, c.hi)
			}
		})
	}
}

// TestDelayJitterArgument checks that the jitter is asked for [0, base/2]
// and that a misbehaving jitter cannot leave that range.
func TestDelayJitterArgument(t *testing.T) {
	for _, c := range []struct {
		failCount int
		wantArg   int64 // -1: jitter not asked (capped already)
	}{{1, 5}, {2, 20}, {3, 45}, {4, 80}, {5, 125}, {6, -1}} {
		t.Run(fmt.Sprintf("6 jitter argument/count %d", c.failCount), func(t *testing.T) {
			got := int64(-1)
			Backoff{Jitter: func(n int64) int64 { got = n; return 0 }}.Delay(c.failCount)
			if got != c.wantArg {
				t.Errorf("jitter asked for [0, %d], want [0, %d]", got, c.wantArg)
			}
		})
	}
	t.Run("6 jitter clamped/negative", func(t *testing.T) {
		if got := (Backoff{Jitter: func(int64) int64 { return -50 }}).Delay(2); got != 40*time.Second {
			t.Errorf("Delay(2) = %v, want 40s", got)
		}
	})
	t.Run("6 jitter clamped/too large", func(t *testing.T) {
		if got := (Backoff{Jitter: func(int64) int64 { return 1000 }}).Delay(2); got != 60*time.Second {
			t.Errorf("Delay(2) = %v, want 60s", got)
		}
	})
}

// TestTimeLeft pins section 6's time-left helper, in whole seconds.
func TestTimeLeft(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name string
		sf   *StartFailure
		now  time.Time
		want time.Duration
	}{
		{name: "6 time left/no record", sf: nil, now: t0, want: 0},
		{name: "6 time left/no retry time", sf: &StartFailure{Count: 1}, now: t0, want: 0},
		{name: "6 time left/300s ahead", sf: &StartFailure{Count: 5, RetryAfter: t0.Add(300 * time.Second)}, now: t0, want: 300 * time.Second},
		{name: "6 time left/in the past is zero", sf: &StartFailure{Count: 5, RetryAfter: t0.Add(-300 * time.Second)}, now: t0, want: 0},
		{name: "6 time left/at the retry time is zero", sf: &StartFailure{Count: 1, RetryAfter: t0}, now: t0, want: 0},
		{name: "6 time left/whole seconds: half a second left is 1s", sf: &StartFailure{Count: 1, RetryAfter: t0.Add(10 * time.Second)}, now: t0.Add(9500 * ms), want: time.Second},
		{name: "6 time left/whole seconds: 9.7s left is 10s", sf: &StartFailure{Count: 1, RetryAfter: t0.Add(10 * time.Second)}, now: t0.Add(300 * ms), want: 10 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := TimeLeft(c.sf, c.now); got != c.want {
				t.Errorf("TimeLeft = %v, want %v", got, c.want)
			}
		})
	}
}

// TestGateResolution pins the gate's whole-second resolution: the requeue
// is a whole number of seconds and the pass it asks for finds the gate open.
func TestGateResolution(t *testing.T) {
	vm := newVM(Always, failures(1, "vmi-1", 10*time.Second))
	now := t0.Add(9500 * time.Millisecond)
	d := Reconcile(Pass{VM: vm, Now: now})
	if d.Action != None || d.RequeueAfter != time.Second {
		t.Fatalf("at %v: %v, requeue %v; want no action, requeue 1s", now.Sub(t0), d.Action, d.RequeueAfter)
	}
	if d := Reconcile(Pass{VM: vm, Now: now.Add(d.RequeueAfter)}); d.Action != CreateInstance {
		t.Errorf("after the requeue: %v (%s), want CreateInstance", d.Action, d.Why)
	}
}

// TestRetryAfterRounding pins how NextStatus records the retry time: now
// plus the delay, rounded up to a whole second (the precision of the API's
// timestamps), so that the gate never opens before the delay is over.
func TestRetryAfterRounding(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name string
		now  time.Time
		b    Backoff
		want time.Time
	}{
		{name: "6 retryAfter/whole-second now", now: t0, want: t0.Add(10 * time.Second)},
		{name: "6 retryAfter/fraction rounded up", now: t0.Add(300 * ms), want: t0.Add(11 * time.Second)},
		{name: "6 retryAfter/just past a second", now: t0.Add(1 * time.Nanosecond), want: t0.Add(11 * time.Second)},
		{name: "6 retryAfter/shrunk backoff", now: t0.Add(999 * ms), b: Backoff{Base: time.Second, Max: 8 * time.Second}, want: t0.Add(2 * time.Second)},
		{name: "6 retryAfter/with jitter", now: t0.Add(500 * ms), b: Backoff{Jitter: func(n int64) int64 { return n }}, want: t0.Add(16 * time.Second)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Pass{VM: newVM(Always), Instance: newInst("vmi-1", PhaseFailed), Now: c.now, Backoff: c.b}
			st := NextStatus(p, Reconcile(p), Outcome{})
			want := &StartFailure{Count: 1, LastFailedUID: "vmi-1", RetryAfter: c.want}
			if diff := cmp.Diff(want, st.StartFailure); diff != "" {
				t.Errorf("startFailure (-want +got):\n%s", diff)
			}
			if left := st.StartFailure.RetryAfter.Sub(c.now); left < c.b.Delay(1) {
				t.Errorf("retry time is %v after now, earlier than the delay %v", left, c.b.Delay(1))
			}
		})
	}
}
