package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"vnet/internal/resubscribe"
)

// groupSocket is one subscription to rtnetlink multicast groups: what
// watchGroups reads from (tests inject one that closes).
type groupSocket interface {
	Receive() ([]syscall.NetlinkMessage, *unix.SockaddrNetlink, error)
	Close()
}

// watchGroups delivers the messages of the rtnetlink groups to handle until
// ctx is done, in the calling thread's network namespace. overflow is called
// when the kernel dropped messages and after a lost subscription was opened
// again (events of the gap are lost). A closed subscription is logged and
// re-subscribed (internal/resubscribe); the error is the first
// subscription's.
func watchGroups(ctx context.Context, log *slog.Logger, what string, open func() (groupSocket, error), handle func([]syscall.NetlinkMessage), overflow func()) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := resubscribe.Options{What: what, Logger: log, Resumed: overflow}
	return resubscribe.Run(ctx, o, func(ctx context.Context) (func(), error) {
		s, err := open()
		if err != nil {
			return nil, fmt.Errorf("subscribe to %s: %w", what, err)
		}
		return func() {
			// Why: Receive blocks in recvfrom; closing the socket ends it.
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
					return
				case errors.Is(err, unix.ENOBUFS):
					overflow()
					continue
				case err != nil:
					log.Warn("receiving events failed", "events", what, "err", err)
					return
				}
				handle(msgs)
			}
		}, nil
	})
}

// rtnetlinkGroups opens a subscription to the given rtnetlink groups.
func rtnetlinkGroups(groups ...uint) func() (groupSocket, error) {
	return func() (groupSocket, error) {
		s, err := nl.Subscribe(unix.NETLINK_ROUTE, groups...)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}
