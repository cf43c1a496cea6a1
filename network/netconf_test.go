package network

import (
	"context"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// TestWatchForwarding: a write of net.ipv4.ip_forward in the watched
// namespace is reported.
func TestWatchForwarding(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "netconf")
	mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan struct{}, 16)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			close(ready)
			return WatchForwarding(ctx, nil, func() {
				select {
				case events <- struct{}{}:
				default:
				}
			})
		})
	}()
	<-ready
	// The subscription is made right after ready: write until an event
	// arrives rather than guessing when it is in place.
	deadline := time.After(2 * time.Second)
	for v := 0; ; v = 1 - v {
		mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward="+[]string{"0", "1"}[v])
		select {
		case <-events:
			// Earlier writes may have their events still queued.
			for drained := false; !drained; {
				select {
				case <-events:
				case <-time.After(100 * time.Millisecond):
					drained = true
				}
			}
			// A new link and a link's own setting are not host-wide.
			mustRun(t, ns, "ip", "link", "add", "nc0", "type", "bridge")
			mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv4.conf.nc0.forwarding=0")
			select {
			case <-events:
				t.Error("event for a new link or a link's own setting")
			case <-time.After(200 * time.Millisecond):
			}
			mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward="+[]string{"1", "0"}[v])
			select {
			case <-events:
			case <-time.After(2 * time.Second):
				t.Error("no event for net.ipv4.ip_forward after the link's")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			return
		case <-deadline:
			t.Fatal("no event for a changed net.ipv4.ip_forward")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
