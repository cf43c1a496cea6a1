package network

import (
	"context"
	"sync"
	"syscall"
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

// closingSocket is a subscription the kernel closes at once.
type closingSocket struct{}

func (closingSocket) Receive() ([]syscall.NetlinkMessage, *unix.SockaddrNetlink, error) {
	return nil, nil, syscall.EBADF
}
func (closingSocket) Close() {}

// TestWatchGroupsResubscribes: a netconf or tc subscription that closes is
// opened again, and the caller told to check everything.
func TestWatchGroupsResubscribes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opened := make(chan struct{}, 10)
	overflow := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- watchGroups(ctx, nil, "test events", func() (groupSocket, error) {
			opened <- struct{}{}
			return closingSocket{}, nil
		}, func([]syscall.NetlinkMessage) {}, func() { overflow <- struct{}{} })
	}()
	for i := 0; i < 3; i++ {
		select {
		case <-opened:
		case <-time.After(5 * time.Second):
			t.Fatalf("subscription %d not opened", i+1)
		}
	}
	select {
	case <-overflow:
	case <-time.After(5 * time.Second):
		t.Fatal("no check-everything hint after re-subscribing")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
