package firewall

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/nftables"

	"vnet/internal/resubscribe"
)

// Change names what an nftables event changed: its table, and its chain for
// chain and rule events ("" for a table event). A Table of "" means
// "unknown: check everything".
type Change struct{ Table, Chain string }

// Vnet reports whether the change is in one of vnet's nftables tables (the
// bucket tables "vnet_<h>", or the shared table "vnet" or a table
// "vnet-<bridge>" of earlier versions), and
// which bridge's network it concerns: bridge is "" for the shared layout or
// the table itself (every network using the table). Map elements are not
// reported (the monitor does not name their table): the periodic check
// finds their drift.
func (c Change) Vnet() (bridge string, ok bool) {
	switch {
	case isBucketTable(c.Table) || c.Table == nftOldShared:
		for _, pfx := range []string{nftFwdPrefix, nftNatPrefix} {
			if br, ok := strings.CutPrefix(c.Chain, pfx); ok {
				return br, true
			}
		}
		return "", true
	case strings.HasPrefix(c.Table, nftLegacy):
		return strings.TrimPrefix(c.Table, nftLegacy), true
	}
	return "", false
}

// IsVnetTable reports whether an nftables table of family ip or ip6 named
// name is one of vnet's (see Change.Vnet); net-doctor leaves them out of
// its model of foreign firewalls.
func IsVnetTable(name string) bool {
	return isBucketTable(name) || name == nftOldShared || strings.HasPrefix(name, nftLegacy)
}

// Watch reports every table, chain or rule change the kernel announces (our
// own changes included), until ctx is done. Drift repair uses it to notice
// `nft flush ruleset`, a deleted table or `iptables -F` (iptables-nft
// changes the "filter" table) at once. The monitor closes its channel on
// any receive error (ENOBUFS after a burst of events is the usual one): the
// loss is logged (o.Logger) and the monitor opened again after a short
// backoff, followed by an unknown change for what the gap missed. The error is the
// first subscription's: no nftables monitor at all.
func Watch(ctx context.Context, o Options, changed func(Change)) error {
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
func watchWith(ctx context.Context, o resubscribe.Options, open func() (<-chan *nftables.MonitorEvent, func(), error), changed func(Change)) error {
	o.Resumed = func() { changed(Change{}) }
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

// report names the table and chain an event is about.
func report(ev *nftables.MonitorEvent, changed func(Change)) {
	if ev.Error != nil {
		changed(Change{})
		return
	}
	switch d := ev.Data.(type) {
	case *nftables.Table:
		changed(Change{Table: d.Name})
	case *nftables.Chain:
		if d.Table != nil {
			changed(Change{Table: d.Table.Name, Chain: d.Name})
		} else {
			changed(Change{})
		}
	case *nftables.Rule:
		if d.Table != nil && d.Chain != nil {
			changed(Change{Table: d.Table.Name, Chain: d.Chain.Name})
		} else if d.Table != nil {
			changed(Change{Table: d.Table.Name})
		} else {
			changed(Change{})
		}
	case []nftables.SetElement, *nftables.Set:
		// Why ignored: the monitor subscribes to tables, chains and rules
		// only, yet the kernel also hands it set and element events, and
		// the library does not say which table they belong to. Taken as
		// "unknown", every net-start (its map elements) made the repair and
		// the live warnings check every network. Drift of elements is
		// found by the periodic check.
	default:
		changed(Change{})
	}
}
