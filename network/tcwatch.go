package network

import (
	"context"
	"errors"
	"fmt"

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
// WatchTC blocks.
func WatchTC(ctx context.Context, changed func(link string)) error {
	s, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_TC)
	if err != nil {
		return fmt.Errorf("subscribe to tc events: %w", err)
	}
	go func() {
		<-ctx.Done()
		// Why: Receive blocks in recvfrom; closing the socket ends it.
		s.Close()
	}()
	for {
		msgs, _, err := s.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				changed("")
				continue
			}
			return fmt.Errorf("receive tc events: %w", err)
		}
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
	}
}
