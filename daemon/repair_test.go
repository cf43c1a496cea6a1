package daemon

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vnet/firewall"

	netxml "vnet/xml"
)

// driftHost is the fake host with drift: Verify reports drift while drifted
// is set; Converge checks (counted as a check) and, when drifted, repairs
// (counted as a repair) or fails.
type driftHost struct {
	*fakeHost
	mu       sync.Mutex
	drifted  bool
	failNext int // Converge fails this many more times
	verifies map[string]int
	repairs  map[string]int
}

func newDriftHost() *driftHost {
	return &driftHost{fakeHost: newFakeHost(), verifies: map[string]int{}, repairs: map[string]int{}}
}

func (h *driftHost) Verify(n *netxml.Network) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.verifies[n.Name]++
	if h.drifted {
		return []string{"bridge " + n.BridgeName() + " is down"}, nil
	}
	return nil, nil
}

// Converge is a check (counted with Verify's) that repairs when drifted.
func (h *driftHost) Converge(n *netxml.Network) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.verifies[n.Name]++
	if h.failNext > 0 {
		h.failNext--
		h.repairs[n.Name]++
		return nil, errors.New("injected repair failure")
	}
	if !h.drifted {
		return nil, nil
	}
	h.repairs[n.Name]++
	return []string{"bridge " + n.BridgeName() + " set up"}, nil
}

func (h *driftHost) counts(name string) (verifies, repairs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.verifies[name], h.repairs[name]
}

func (h *driftHost) setDrift(on bool) {
	h.mu.Lock()
	h.drifted = on
	h.mu.Unlock()
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// logCounter counts log records by message.
type logCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.n[r.Message]++
	l.mu.Unlock()
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) get(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// repairEnv runs a repairer over a manager with a drift host, a fake clock
// and active networks a (10.61.0.0/24) and b (10.62.0.0/24).
type repairEnv struct {
	m     *Manager
	h     *driftHost
	r     *repairer
	clock *fakeClock
	logs  *logCounter
}

func newRepairEnv(t *testing.T) *repairEnv {
	t.Helper()
	h := newDriftHost()
	logs := &logCounter{n: map[string]int{}}
	m := NewManagerWith(NewMemoryStore(), h, slog.New(logs))
	for _, n := range []struct{ name, subnet string }{{"a", "10.61.0"}, {"b", "10.62.0"}} {
		if _, err := m.Create(netXML(n.name, "", n.subnet)); err != nil {
			t.Fatal(err)
		}
	}
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	r := newRepairer(m)
	r.now = clock.Now
	r.retry = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.run(ctx, time.Hour)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &repairEnv{m: m, h: h, r: r, clock: clock, logs: logs}
}

// waitUntil polls cond until it holds or the test times out.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestRepairDebounce: a burst of hints (a `nft flush ruleset` gives dozens)
// is one check of the network; a healthy network is not repaired.
func TestRepairDebounce(t *testing.T) {
	e := newRepairEnv(t)
	for range 50 {
		e.r.linkChanged("virbr0") // network a's bridge
	}
	waitUntil(t, "a check of a", func() bool { v, _ := e.h.counts("a"); return v >= 1 })
	// The loop works in order: once a later hint for b was handled, every
	// check the burst caused has been made.
	e.r.hint("b")
	waitUntil(t, "a check of b", func() bool { v, _ := e.h.counts("b"); return v >= 1 })
	if v, r := e.h.counts("a"); v != 1 || r != 0 {
		t.Fatalf("burst of 50 hints: %d checks, %d repairs of a; want 1 check, 0 repairs", v, r)
	}
	// A hint for everything checks every active network.
	e.r.linkChanged("")
	waitUntil(t, "second checks", func() bool {
		va, _ := e.h.counts("a")
		vb, _ := e.h.counts("b")
		return va == 2 && vb == 2
	})
	// Hints for links and tables of nobody are ignored.
	e.r.linkChanged("eth0")
	e.r.tableChanged(firewall.Change{Table: "vnet-nobody"}, false)
	e.r.tableChanged(firewall.Change{Table: "vnet", Chain: "fwd-nobody"}, false)
	e.r.tableChanged(firewall.Change{Table: "filter"}, false)
	e.r.hint("b")
	waitUntil(t, "third check of b", func() bool { v, _ := e.h.counts("b"); return v == 3 })
	if v, _ := e.h.counts("a"); v != 2 {
		t.Fatalf("foreign hints checked a: %d checks, want 2", v)
	}
}

// TestRepairRateLimit: a network that keeps drifting is repaired a burst of
// repairBurst times, then is rate-limited (one warning), re-checked on its
// own, and repaired again once the limiter has a token.
func TestRepairRateLimit(t *testing.T) {
	e := newRepairEnv(t)
	events, cancel := e.m.Subscribe()
	defer cancel()
	e.h.setDrift(true)
	for i := 1; i <= repairBurst; i++ {
		e.r.hint("a")
		waitUntil(t, "a repair", func() bool { _, r := e.h.counts("a"); return r == i })
	}
	for range repairBurst {
		if ev := <-events; ev.Type != EventRepaired || ev.Name != "a" {
			t.Fatalf("event %+v, want Repaired of a", ev)
		}
	}
	// The clock stands still: no token left.
	e.r.hint("a")
	waitUntil(t, "the rate-limit warning", func() bool {
		return e.logs.get("network keeps drifting; repairs are rate-limited (is another tool fighting over it?)") == 1
	})
	// Re-hinted by itself: checked again (and again) without a new hint,
	// warned only once, not repaired.
	v0, _ := e.h.counts("a")
	waitUntil(t, "re-checks while limited", func() bool { v, _ := e.h.counts("a"); return v >= v0+2 })
	if _, r := e.h.counts("a"); r != repairBurst {
		t.Fatalf("%d repairs while rate-limited, want %d", r, repairBurst)
	}
	if n := e.logs.get("network keeps drifting; repairs are rate-limited (is another tool fighting over it?)"); n != 1 {
		t.Fatalf("%d rate-limit warnings, want 1", n)
	}
	// One refill interval later the re-check repairs it, without a hint.
	e.clock.Add(repairRefill)
	waitUntil(t, "a repair after the refill", func() bool { _, r := e.h.counts("a"); return r == repairBurst+1 })
	// Healthy again: checks stop repairing and the next limit warns anew.
	e.h.setDrift(false)
	e.r.hint("a")
	waitUntil(t, "the warning state reset", func() bool {
		e.r.mu.Lock()
		defer e.r.mu.Unlock()
		return !e.r.limited["a"]
	})
	// Network b has its own bucket.
	e.h.setDrift(true)
	e.r.hint("b")
	waitUntil(t, "b repaired", func() bool { _, r := e.h.counts("b"); return r == 1 })
}

// TestRepairRetriesFailure: a repair that fails is retried without a new
// hint, and the success is published.
func TestRepairRetriesFailure(t *testing.T) {
	e := newRepairEnv(t)
	events, cancel := e.m.Subscribe()
	defer cancel()
	e.h.mu.Lock()
	e.h.drifted, e.h.failNext = true, 1
	e.h.mu.Unlock()
	e.r.hint("a")
	waitUntil(t, "the retry", func() bool { _, r := e.h.counts("a"); return r >= 2 })
	e.h.setDrift(false)
	if ev := <-events; ev.Type != EventRepaired || ev.Name != "a" {
		t.Fatalf("event %+v, want Repaired of a", ev)
	}
	if n := e.logs.get("repairing network failed"); n != 1 {
		t.Fatalf("%d failure logs, want 1", n)
	}
}

// detachHost fails the test when the host is used after Detach.
type detachHost struct {
	*driftHost
	t        *testing.T
	detached atomic.Bool
}

func (h *detachHost) used(what string) {
	if h.detached.Load() {
		h.t.Errorf("%s called after Detach", what)
	}
}

func (h *detachHost) Verify(n *netxml.Network) ([]string, error) {
	h.used("Verify")
	return h.driftHost.Verify(n)
}

func (h *detachHost) Converge(n *netxml.Network) ([]string, error) {
	h.used("Repair")
	// Slow enough that Shutdown often lands in the middle of a repair.
	time.Sleep(time.Millisecond)
	h.used("Repair (returning)")
	return h.driftHost.Converge(n)
}

func (h *detachHost) Detach() { h.detached.Store(true) }

// TestShutdownJoinsRepair: Shutdown stops the repairer and its watchers and
// waits for them before it detaches from the host, so no repair reaches the
// host (dnsmasq, the firewall) afterwards, however busy drift repair is.
func TestShutdownJoinsRepair(t *testing.T) {
	for range 20 {
		h := &detachHost{driftHost: newDriftHost(), t: t}
		h.drifted = true
		m := NewManagerWith(NewMemoryStore(), h, slog.New(slog.DiscardHandler))
		if _, err := m.Create(netXML("a", "", "10.61.0")); err != nil {
			t.Fatal(err)
		}
		hinting := make(chan struct{})
		m.startRepairWith(time.Millisecond, func(ctx context.Context, r *repairer) {
			close(hinting)
			for ctx.Err() == nil {
				r.hint(allNetworks)
				runtime.Gosched()
			}
		})
		<-hinting
		waitUntil(t, "a repair", func() bool { _, r := h.counts("a"); return r >= 1 })
		m.Shutdown()
	}
}
