package firewall

import (
	"context"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"vnet/internal/netnstest"
	"vnet/internal/resubscribe"
)

// TestWatchResubscribes: when the nftables monitor closes its channel (a
// receive error such as ENOBUFS), the watcher opens it again, hints ""
// and reports the new monitor's events; it does not return.
func TestWatchResubscribes(t *testing.T) {
	var mu sync.Mutex
	var hints []string
	opens, closes := 0, 0
	next := make(chan *nftables.MonitorEvent, 1)
	open := func() (<-chan *nftables.MonitorEvent, func(), error) {
		mu.Lock()
		defer mu.Unlock()
		opens++
		var once sync.Once
		if opens == 1 {
			ch := make(chan *nftables.MonitorEvent)
			close(ch)
			return ch, func() { once.Do(func() { mu.Lock(); closes++; mu.Unlock() }) }, nil
		}
		return next, func() { once.Do(func() { mu.Lock(); closes++; mu.Unlock(); close(next) }) }, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- watchWith(ctx, resubscribe.Options{Min: time.Millisecond}, open, func(c Change) {
			mu.Lock()
			hints = append(hints, c.Table+"/"+c.Chain)
			mu.Unlock()
		})
	}()
	next <- &nftables.MonitorEvent{Type: nftables.MonitorEventTypeDelChain, Data: &nftables.Chain{Name: "fwd-virbr7", Table: &nftables.Table{Name: nftTable("virbr7")}}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), hints...)
		n := opens
		mu.Unlock()
		if len(got) == 2 {
			if n != 2 || got[0] != "/" || got[1] != nftTable("virbr7")+"/fwd-virbr7" {
				t.Fatalf("%d monitors, hints %q; want 2 and [/ %s/fwd-virbr7]", n, got, nftTable("virbr7"))
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("watcher returned (%v) after its monitor closed", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("hints %q after 5 s, want [/ vnet/fwd-virbr7]", got)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v after cancel", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Both monitors were released: the one that ended and the one
	// open at cancel.
	if closes != 2 {
		t.Errorf("%d monitors closed, want 2", closes)
	}
}

// TestWatchKernel: the real monitor in a namespace reports a chain added to
// the shared table with nft, by table and chain, and stops at cancel.
func TestWatchKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed")
	}
	ns := netnstest.New(t, "fwwatch")
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	seen := make(chan Change, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, Options{NetNS: int(h)}, func(c Change) { seen <- c })
	}()
	// The monitor may not be subscribed yet when the first change is made:
	// repeat the change until an event names the chain.
	deadline := time.Now().Add(5 * time.Second)
	for got := false; !got; {
		ns.MustRun("nft", "add", "table", "ip", "vnet")
		ns.MustRun("nft", "add", "chain", "ip", "vnet", "fwd-watch")
		ns.MustRun("nft", "delete", "table", "ip", "vnet")
		wait := time.After(100 * time.Millisecond)
		for drained := false; !drained && !got; {
			select {
			case c := <-seen:
				br, ok := c.Vnet()
				got = ok && br == "watch" && c == Change{Table: "vnet", Chain: "fwd-watch"}
			case <-wait:
				drained = true
			}
		}
		if !got && time.Now().After(deadline) {
			t.Fatal("no event for chain fwd-watch of table vnet within 5 s")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

// TestChangeVnet: changes map to the network whose chain changed, to every
// network for the shared layout, and to none for foreign tables.
func TestChangeVnet(t *testing.T) {
	for _, c := range []struct {
		ch     Change
		bridge string
		ok     bool
	}{
		{Change{Table: "vnet", Chain: "fwd-virbr0"}, "virbr0", true},
		{Change{Table: "vnet", Chain: "nat-vbr-a"}, "vbr-a", true},
		{Change{Table: "vnet", Chain: "forward"}, "", true},
		{Change{Table: "vnet"}, "", true},
		{Change{Table: "vnet-virbr1"}, "virbr1", true}, // an earlier version's
		{Change{Table: "filter", Chain: "FORWARD"}, "", false},
		{Change{Table: "vnetother"}, "", false},
		{Change{}, "", false},
	} {
		if br, ok := c.ch.Vnet(); br != c.bridge || ok != c.ok {
			t.Errorf("%+v: %q, %v; want %q, %v", c.ch, br, ok, c.bridge, c.ok)
		}
	}
}

// TestReportIgnoresElements: set and element events (every net-start adds
// map elements) are not reported as "unknown: check everything"; table,
// chain and rule events are reported with their names.
func TestReportIgnoresElements(t *testing.T) {
	var got []Change
	rec := func(c Change) { got = append(got, c) }
	tbl := &nftables.Table{Name: "vnet", Family: nftables.TableFamilyIPv4}
	report(&nftables.MonitorEvent{Data: []nftables.SetElement{{Key: []byte("vbr-x")}}}, rec)
	report(&nftables.MonitorEvent{Data: &nftables.Set{Name: "bridges", Table: tbl}}, rec)
	if len(got) != 0 {
		t.Fatalf("set and element events reported: %+v", got)
	}
	report(&nftables.MonitorEvent{Data: &nftables.Chain{Name: "fwd-vbr-x", Table: tbl}}, rec)
	report(&nftables.MonitorEvent{Data: tbl}, rec)
	want := []Change{{Table: "vnet", Chain: "fwd-vbr-x"}, {Table: "vnet"}}
	if !slices.Equal(got, want) {
		t.Fatalf("reported %+v, want %+v", got, want)
	}
}
