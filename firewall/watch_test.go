package firewall

import (
	"context"
	"os/exec"
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
		done <- watchWith(ctx, resubscribe.Options{Min: time.Millisecond}, open, func(table string) {
			mu.Lock()
			hints = append(hints, table)
			mu.Unlock()
		})
	}()
	next <- &nftables.MonitorEvent{Type: nftables.MonitorEventTypeDelTable, Data: &nftables.Table{Name: "vnet-virbr7"}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), hints...)
		n := opens
		mu.Unlock()
		if len(got) == 2 {
			if n != 2 || got[0] != "" || got[1] != "vnet-virbr7" {
				t.Fatalf("%d monitors, hints %q; want 2 and [\"\" vnet-virbr7]", n, got)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("watcher returned (%v) after its monitor closed", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("hints %q after 5 s, want [\"\" vnet-virbr7]", got)
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

// TestWatchKernel: the real monitor in a namespace reports a table added
// and deleted with nft, and stops at cancel.
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
	seen := make(chan string, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, Options{NetNS: int(h)}, func(table string) { seen <- table })
	}()
	// The monitor may not be subscribed yet when the first change is made:
	// repeat the change until an event names the table.
	deadline := time.Now().Add(5 * time.Second)
	for got := false; !got; {
		ns.MustRun("nft", "add", "table", "ip", "vnet-watch")
		ns.MustRun("nft", "delete", "table", "ip", "vnet-watch")
		wait := time.After(100 * time.Millisecond)
		for drained := false; !drained && !got; {
			select {
			case table := <-seen:
				got = table == "vnet-watch"
			case <-wait:
				drained = true
			}
		}
		if !got && time.Now().After(deadline) {
			t.Fatal("no event for table vnet-watch within 5 s")
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
