package network

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Watch reports, by link name, every link change and every address or
// main-table route removal the kernel announces, until ctx is done. Drift
// repair uses it to notice a deleted bridge, a bridge set down, an address or
// a static <route> removed within milliseconds instead of waiting for the
// periodic check. A name of "" means
// "unknown link: check everything" (e.g. after the kernel dropped messages).
func Watch(ctx context.Context, changed func(link string)) error {
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	overflow := func(error) { changed("") }
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: overflow}); err != nil {
		close(done)
		return fmt.Errorf("subscribe to link events: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: overflow}); err != nil {
		close(done)
		return fmt.Errorf("subscribe to address events: %w", err)
	}
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: overflow}); err != nil {
		close(done)
		return fmt.Errorf("subscribe to route events: %w", err)
	}
	// ifindex → name, so an address or route event (which carries only the
	// index) names its link.
	names := map[int]string{}
	nameOf := func(index int) (string, bool) {
		name, ok := names[index]
		if !ok {
			if l, err := netlink.LinkByIndex(index); err == nil {
				name, ok = l.Attrs().Name, true
				names[index] = name
			}
		}
		return name, ok
	}
	go func() {
		<-ctx.Done()
		close(done)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-links:
			if !ok {
				return nil
			}
			name := u.Attrs().Name
			if u.Header.Type == unix.RTM_DELLINK {
				delete(names, int(u.Index))
			} else {
				names[int(u.Index)] = name
			}
			changed(name)
		case u, ok := <-addrs:
			if !ok {
				return nil
			}
			if u.NewAddr {
				continue
			}
			name, _ := nameOf(u.LinkIndex)
			changed(name)
		case u, ok := <-routes:
			if !ok {
				return nil
			}
			// Only a removed route of a link that still exists: the routes
			// of a deleted link go with it, and the link event reports that.
			if u.Type != unix.RTM_DELROUTE || u.Table != unix.RT_TABLE_MAIN || u.LinkIndex == 0 {
				continue
			}
			if name, ok := nameOf(u.LinkIndex); ok {
				changed(name)
			}
		}
	}
}
