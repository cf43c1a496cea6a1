package network

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnet/internal/resubscribe"
)

// Watch reports, by link name, every link change and every address or
// main-table route removal the kernel announces, until ctx is done. Drift
// repair uses it to notice a deleted bridge, a bridge set down, an address or
// a static <route> removed within milliseconds instead of waiting for the
// periodic check. A name of "" means "unknown link: check everything" (e.g.
// after the kernel dropped messages, or after a closed subscription was
// opened again: a closed subscription is logged and re-subscribed after a
// short backoff). The error is the first subscription's: no netlink at all.
func Watch(ctx context.Context, log *slog.Logger, changed func(link string)) error {
	return watchWith(ctx, resubscribe.Options{What: "netlink", Logger: log}, subscribeNetlink, changed)
}

// linkEvents is one netlink subscription: its three channels, closed by the
// library when the subscription ends.
type linkEvents struct {
	links  <-chan netlink.LinkUpdate
	addrs  <-chan netlink.AddrUpdate
	routes <-chan netlink.RouteUpdate
}

// subscribeNetlink subscribes to link, address and route events until done
// is closed; overflow is called when the kernel dropped messages.
func subscribeNetlink(done <-chan struct{}, overflow func(error)) (linkEvents, error) {
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: overflow}); err != nil {
		return linkEvents{}, fmt.Errorf("subscribe to link events: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: overflow}); err != nil {
		return linkEvents{}, fmt.Errorf("subscribe to address events: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: overflow}); err != nil {
		return linkEvents{}, fmt.Errorf("subscribe to route events: %w", err)
	}
	return linkEvents{links: links, addrs: addrs, routes: routes}, nil
}

// watchWith is Watch over any subscription source (tests inject closed ones).
func watchWith(ctx context.Context, o resubscribe.Options, subscribe func(done <-chan struct{}, overflow func(error)) (linkEvents, error), changed func(link string)) error {
	o.Resumed = func() { changed("") }
	return resubscribe.Run(ctx, o, func(ctx context.Context) (func(), error) {
		done := make(chan struct{})
		ev, err := subscribe(done, func(error) { changed("") })
		if err != nil {
			close(done)
			return nil, err
		}
		return func() {
			defer close(done)
			consumeLinkEvents(ctx, ev, changed)
		}, nil
	})
}

// consumeLinkEvents reports the events of one subscription until it closes
// or ctx is done.
func consumeLinkEvents(ctx context.Context, ev linkEvents, changed func(link string)) {
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
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-ev.links:
			if !ok {
				return
			}
			name := u.Attrs().Name
			if u.Header.Type == unix.RTM_DELLINK {
				delete(names, int(u.Index))
			} else {
				names[int(u.Index)] = name
			}
			changed(name)
		case u, ok := <-ev.addrs:
			if !ok {
				return
			}
			if u.NewAddr {
				continue
			}
			name, _ := nameOf(u.LinkIndex)
			changed(name)
		case u, ok := <-ev.routes:
			if !ok {
				return
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
