package network

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnet/internal/resubscribe"
)

// TestWatchResubscribes: when the netlink subscription closes, the watcher
// subscribes again, hints "" (events of the gap are lost) and reports the
// new subscription's events; it does not return.
func TestWatchResubscribes(t *testing.T) {
	var mu sync.Mutex
	var hints []string
	subs := 0
	next := make(chan netlink.LinkUpdate, 1)
	subscribe := func(done <-chan struct{}, _ func(error)) (linkEvents, error) {
		mu.Lock()
		defer mu.Unlock()
		subs++
		links := make(chan netlink.LinkUpdate, 1)
		addrs := make(chan netlink.AddrUpdate)
		routes := make(chan netlink.RouteUpdate)
		if subs == 1 {
			close(links) // the kernel or the library ended it
			return linkEvents{links: links, addrs: addrs, routes: routes}, nil
		}
		return linkEvents{links: next, addrs: addrs, routes: routes}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- watchWith(ctx, resubscribe.Options{Min: time.Millisecond}, subscribe, func(link string) {
			mu.Lock()
			hints = append(hints, link)
			mu.Unlock()
		})
	}()
	next <- netlink.LinkUpdate{Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK},
		Link: &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "virbr7", Index: 7}}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), hints...)
		n := subs
		mu.Unlock()
		if len(got) == 2 {
			if n != 2 || got[0] != "" || got[1] != "virbr7" {
				t.Fatalf("%d subscriptions, hints %q; want 2 and [\"\" virbr7]", n, got)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("watcher returned (%v) after its subscription closed", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("hints %q after 5 s, want [\"\" virbr7]", got)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v after cancel", err)
	}
}
