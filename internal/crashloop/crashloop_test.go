package crashloop

import (
	"testing"
	"time"
)

// TestPolicy: deaths now and then restart at once; only more than
// Burst deaths within Window back off, doubling up to MaxBackoff,
// and the backoff ends once the deaths fall out of the window.
func TestPolicy(t *testing.T) {
	var p Policy
	now := time.Unix(1_000_000, 0)
	// Five deaths a second apart (an admin killing it): all immediate.
	for i := range Burst {
		if d := p.Died(now); d != 0 {
			t.Fatalf("death %d: delay %v, want 0", i+1, d)
		}
		now = now.Add(time.Second)
	}
	// A crash loop: the sixth death within the window backs off, doubling.
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	for i, w := range want {
		if d := p.Died(now); d != w {
			t.Fatalf("loop death %d: delay %v, want %v", i+1, d, w)
		}
		now = now.Add(10 * time.Millisecond)
	}
	for range 20 {
		now = now.Add(time.Millisecond)
		if d := p.Died(now); d > MaxBackoff {
			t.Fatalf("delay %v above the cap %v", d, MaxBackoff)
		}
	}
	if d := p.Died(now); d != MaxBackoff {
		t.Fatalf("long loop: delay %v, want the cap %v", d, MaxBackoff)
	}
	// Quiet for a whole window: the next death is immediate again.
	now = now.Add(Window)
	if d := p.Died(now); d != 0 {
		t.Fatalf("death after a quiet window: delay %v, want 0", d)
	}
}

// TestPolicySlowDeaths: one death every 7 s never counts as a loop
// (at most 5 fall within 30 s).
func TestPolicySlowDeaths(t *testing.T) {
	var p Policy
	now := time.Unix(1_000_000, 0)
	for i := range 50 {
		if d := p.Died(now); d != 0 {
			t.Fatalf("death %d: delay %v, want 0", i+1, d)
		}
		now = now.Add(7 * time.Second)
	}
	if len(p.deaths) > Burst {
		t.Fatalf("policy keeps %d deaths, want at most %d", len(p.deaths), Burst)
	}
}
