package firewall

import (
	"context"
	"fmt"

	"github.com/google/nftables"

	"vnet/internal/resubscribe"
)

// Watch reports the name of the nftables table of every table, chain or
// rule change the kernel announces (our own changes included), until ctx is
// done. Drift repair uses it to notice `nft flush ruleset`, a deleted table or
// `iptables -F` (iptables-nft changes the "filter" table) at once. A name of
// "" means "unknown: check everything". The monitor closes its channel on
// any receive error (ENOBUFS after a burst of events is the usual one): the
// loss is logged (o.Logger) and the monitor opened again after a short
// backoff, followed by a "" hint for what the gap missed. The error is the
// first subscription's: no nftables monitor at all.
func Watch(ctx context.Context, o Options, changed func(table string)) error {
	return watchWith(ctx, resubscribe.Options{What: "nftables monitor", Logger: o.Logger}, func() (<-chan *nftables.MonitorEvent, func(), error) {
		return openMonitor(o)
	}, changed)
}

// openMonitor subscribes to table, chain and rule events and returns their
// channel and a function that closes the monitor (idempotent).
func openMonitor(o Options) (<-chan *nftables.MonitorEvent, func(), error) {
	// A lasting connection, so that CloseLasting closes the monitor's
	// socket even after a receive error: the monitor's own Close does
	// nothing then, and the socket would leak at each re-subscription.
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if o.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(o.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("nftables monitor: %w", err)
	}
	mon := nftables.NewMonitor(
		nftables.WithMonitorAction(nftables.MonitorActionAny),
		nftables.WithMonitorObject(nftables.MonitorObjectTables|nftables.MonitorObjectChains|nftables.MonitorObjectRules),
	)
	events, err := conn.AddMonitor(mon)
	if err != nil {
		_ = conn.CloseLasting()
		return nil, nil, fmt.Errorf("nftables monitor: %w", err)
	}
	return events, func() { _ = conn.CloseLasting() }, nil
}

// watchWith is Watch over any monitor source (tests inject closed ones).
func watchWith(ctx context.Context, o resubscribe.Options, open func() (<-chan *nftables.MonitorEvent, func(), error), changed func(table string)) error {
	o.Resumed = func() { changed("") }
	return resubscribe.Run(ctx, o, func(ctx context.Context) (func(), error) {
		events, closeMon, err := open()
		if err != nil {
			return nil, err
		}
		return func() {
			// Closed from another goroutine while we keep draining, so
			// that the monitor, possibly blocked sending an event, can end
			// and close the channel. closeMon may be called twice.
			stop := make(chan struct{})
			defer closeMon()
			defer close(stop)
			go func() {
				select {
				case <-ctx.Done():
					closeMon()
				case <-stop:
				}
			}()
			for ev := range events {
				report(ev, changed)
			}
		}, nil
	})
}

// report names the table an event is about.
func report(ev *nftables.MonitorEvent, changed func(table string)) {
	if ev.Error != nil {
		changed("")
		return
	}
	switch d := ev.Data.(type) {
	case *nftables.Table:
		changed(d.Name)
	case *nftables.Chain:
		if d.Table != nil {
			changed(d.Table.Name)
		} else {
			changed("")
		}
	case *nftables.Rule:
		if d.Table != nil {
			changed(d.Table.Name)
		} else {
			changed("")
		}
	default:
		changed("")
	}
}
