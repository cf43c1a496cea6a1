package doctor

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"

	"vnet/internal/resubscribe"
)

// WatchRoutes calls changed for every route or address added or removed, in
// any table, until ctx is done: a VPN connecting, docker0 appearing, an
// address taking a network's subnet. Live warnings run the cheap checks
// then. A closed subscription is logged and opened again (changed is
// called for the gap).
func WatchRoutes(ctx context.Context, log *slog.Logger, changed func()) error {
	return resubscribe.Run(ctx, resubscribe.Options{What: "route events (net-doctor)", Logger: log, Resumed: changed},
		func(ctx context.Context) (func(), error) {
			done := make(chan struct{})
			overflow := func(error) { changed() }
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
					case _, ok := <-routes:
						if !ok {
							return
						}
						changed()
					case _, ok := <-addrs:
						if !ok {
							return
						}
						changed()
					}
				}
			}, nil
		})
}
