package network

import (
	"context"
	"log/slog"
	"syscall"

	"golang.org/x/sys/unix"
)

// WatchForwarding calls changed whenever the kernel announces a change of a
// forwarding setting (RTM_NEWNETCONF: net.ipv4.ip_forward and
// net.ipv6.conf.*.forwarding), until ctx is done. Drift repair uses it to
// restore forwarding within milliseconds of a `sysctl -w
// net.ipv4.ip_forward=0`. The per-bridge sysctls (accept_ra, autoconf,
// disable_ipv6) have no such event: the periodic check covers them.
//
// It watches the network namespace of the calling thread; a closed
// subscription is logged and opened again.
func WatchForwarding(ctx context.Context, log *slog.Logger, changed func()) error {
	return watchGroups(ctx, log, "netconf events", rtnetlinkGroups(unix.RTNLGRP_IPV4_NETCONF, unix.RTNLGRP_IPV6_NETCONF), func(msgs []syscall.NetlinkMessage) {
		for _, m := range msgs {
			if m.Header.Type == unix.RTM_NEWNETCONF {
				changed()
				return
			}
		}
	}, changed)
}
