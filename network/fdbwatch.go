package network

import (
	"context"
	"encoding/binary"
	"log/slog"
	"syscall"

	"golang.org/x/sys/unix"
)

// WatchFDB calls changed with the interface index of every bridge FDB
// entry the kernel adds or removes (RTM_NEWNEIGH/RTM_DELNEIGH of family
// AF_BRIDGE; ARP and NDP entries are left out), until ctx is done, and
// with 0 when events were lost. The overlay names service uses it: a
// remote MAC or VTEP arriving on a VXLAN device (zebra installing EVPN
// routes) is a new guest or host to ask for names.
//
// It watches the network namespace of the calling thread; a closed
// subscription is logged and opened again.
func WatchFDB(ctx context.Context, log *slog.Logger, changed func(ifindex int)) error {
	return watchGroups(ctx, log, "fdb events", rtnetlinkGroups(unix.RTNLGRP_NEIGH), func(msgs []syscall.NetlinkMessage) {
		for _, m := range msgs {
			if m.Header.Type != unix.RTM_NEWNEIGH && m.Header.Type != unix.RTM_DELNEIGH {
				continue
			}
			// struct ndmsg: family (1), pad (3), ifindex (4), …
			if len(m.Data) < 8 || m.Data[0] != unix.AF_BRIDGE {
				continue
			}
			changed(int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))))
		}
	}, func() { changed(0) })
}
