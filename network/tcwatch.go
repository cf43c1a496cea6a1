package network

import (
	"context"
	"log/slog"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// WatchTC reports, by link name, every qdisc, class and filter change the
// kernel announces (rtnetlink's TC group), until ctx is done. Drift repair
// uses it to notice a deleted <bandwidth> qdisc at once: link, address and
// route events (Watch) do not cover tc. A name of "" means "unknown link:
// check everything" (the kernel dropped messages). Events of a link that no
// longer exists are dropped: Watch reports its deletion.
// The subscription is made in the calling thread's network namespace before
// WatchTC blocks; a closed subscription is logged and opened again.
func WatchTC(ctx context.Context, log *slog.Logger, changed func(link string)) error {
	return watchGroups(ctx, log, "tc events", rtnetlinkGroups(unix.RTNLGRP_TC), func(msgs []syscall.NetlinkMessage) {
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.RTM_NEWQDISC, unix.RTM_DELQDISC, unix.RTM_NEWTCLASS, unix.RTM_DELTCLASS, unix.RTM_NEWTFILTER, unix.RTM_DELTFILTER:
			default:
				continue
			}
			if len(m.Data) < nl.SizeofTcMsg {
				continue
			}
			// Looked up each time: an index may be reused by a new link.
			l, err := netlink.LinkByIndex(int(nl.DeserializeTcMsg(m.Data).Ifindex))
			if err != nil {
				continue
			}
			changed(l.Attrs().Name)
		}
	}, func() { changed("") })
}
