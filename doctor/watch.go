package doctor

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnet/internal/resubscribe"
)

// WatchRoutes calls changed for every route or address added or removed, in
// any table, until ctx is done: a VPN connecting, docker0 appearing, an
// address taking a network's subnet. Live warnings run the cheap checks
// then. changed gets the index of the route's or address's link (0 when
// unknown: a multipath route, a lost event, the gap of a closed
// subscription, which is logged and opened again) and whether it was added.
func WatchRoutes(ctx context.Context, log *slog.Logger, changed func(link int, added bool)) error {
	unknown := func() { changed(0, true) }
	return resubscribe.Run(ctx, resubscribe.Options{What: "route events (net-doctor)", Logger: log, Resumed: unknown},
		func(ctx context.Context) (func(), error) {
			done := make(chan struct{})
			overflow := func(error) { unknown() }
			routes := make(chan netlink.RouteUpdate, 64)
			addrs := make(chan netlink.AddrUpdate, 64)
			if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: overflow}); err != nil {
				close(done)
				return nil, fmt.Errorf("subscribe to route events: %w", err)
			}
			if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: overflow}); err != nil {
				close(done)
				return nil, fmt.Errorf("subscribe to address events: %w", err)
			}
			return func() {
				defer close(done)
				for {
					select {
					case <-ctx.Done():
						return
					case u, ok := <-routes:
						if !ok {
							return
						}
						changed(u.LinkIndex, u.Type == unix.RTM_NEWROUTE)
					case u, ok := <-addrs:
						if !ok {
							return
						}
						changed(u.LinkIndex, u.NewAddr)
					}
				}
			}, nil
		})
}
