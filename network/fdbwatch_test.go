package network

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// TestWatchFDB: a bridge FDB entry added and deleted is reported with its
// device's index.
func TestWatchFDB(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "fdbw")
	mustRun(t, ns, "ip", "link", "add", "br0", "type", "bridge")
	mustRun(t, ns, "ip", "link", "add", "d0", "master", "br0", "type", "veth", "peer", "name", "d1")
	mustRun(t, ns, "ip", "link", "set", "d0", "up")
	out := mustRun(t, ns, "cat", "/sys/class/net/d0/ifindex")
	idx, _ := strconv.Atoi(strings.TrimSpace(out))
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan int, 64)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			close(ready)
			return WatchFDB(ctx, nil, func(i int) { events <- i })
		})
	}()
	<-ready
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// The subscription is made right after ready: add and delete until an
	// event arrives rather than guessing when it is in place.
	deadline := time.After(2 * time.Second)
	for {
		mustRun(t, ns, "bridge", "fdb", "replace", "02:00:00:00:00:01", "dev", "d0", "master", "static")
		mustRun(t, ns, "bridge", "fdb", "del", "02:00:00:00:00:01", "dev", "d0", "master", "static")
		select {
		case i := <-events:
			if i != idx {
				t.Fatalf("event for ifindex %d, want d0's %d", i, idx)
			}
			return
		case <-deadline:
			t.Fatal("no event for an FDB entry")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
