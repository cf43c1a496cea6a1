package network

import (
	"context"
	"encoding/binary"
	"log/slog"
	"syscall"

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
// It watches the network namespace of the calling thread; a closed
// subscription is logged and opened again.
//
// Only the host-wide settings count (ifindex "all" or "default"): every new
// link announces its own settings too, and a check of every network at
// every net-start would make each start cost more the more networks run.
func WatchForwarding(ctx context.Context, log *slog.Logger, changed func()) error {
	return watchGroups(ctx, log, "netconf events", rtnetlinkGroups(unix.RTNLGRP_IPV4_NETCONF, unix.RTNLGRP_IPV6_NETCONF), func(msgs []syscall.NetlinkMessage) {
		for _, m := range msgs {
			if m.Header.Type == unix.RTM_NEWNETCONF && hostWideNetconf(m.Data) {
				changed()
				return
			}
		}
	}, changed)
}

// The netconf attribute and ifindex values of linux/netconf.h.
const (
	netconfaIfindex       = 1
	netconfIfindexAll     = -1
	netconfIfindexDefault = -2
)

// hostWideNetconf reports whether a netconf message is about the "all" or
// "default" settings rather than one link's. A message it cannot read
// counts as host-wide.
func hostWideNetconf(data []byte) bool {
	const hdr = 4 // struct netconfmsg (one byte), aligned
	if len(data) < hdr {
		return true
	}
	attrs, err := nl.ParseRouteAttr(data[hdr:])
	if err != nil {
		return true
	}
	for _, a := range attrs {
		if a.Attr.Type == netconfaIfindex && len(a.Value) >= 4 {
			idx := int32(binary.NativeEndian.Uint32(a.Value))
			return idx == netconfIfindexAll || idx == netconfIfindexDefault
		}
	}
	return true
}
