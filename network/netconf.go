package network

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// WatchForwarding calls changed whenever the kernel announces a change of a
// forwarding setting (RTM_NEWNETCONF: net.ipv4.ip_forward and
// net.ipv6.conf.*.forwarding), until ctx is done. Drift repair uses it to
// restore forwarding within milliseconds of a `sysctl -w
// net.ipv4.ip_forward=0`. The per-bridge sysctls (accept_ra, autoconf,
// disable_ipv6) have no such event: the periodic check covers them.
//
// It watches the network namespace of the calling thread.
func WatchForwarding(ctx context.Context, changed func()) error {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_IPV4_NETCONF, unix.RTNLGRP_IPV6_NETCONF)
	if err != nil {
		return fmt.Errorf("subscribe to netconf events: %w", err)
	}
	stop := context.AfterFunc(ctx, s.Close)
	defer func() {
		if stop() {
			s.Close()
		}
	}()
	for {
		msgs, _, err := s.Receive()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			// The kernel dropped events: something may have changed.
			changed()
			continue
		case err != nil:
			return fmt.Errorf("receive netconf events: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type == unix.RTM_NEWNETCONF {
				changed()
				break
			}
		}
	}
}
