package firewall

import (
	"context"
	"fmt"

	"github.com/google/nftables"
)

// Watch reports the name of the nftables table of every table, chain or
// rule change the kernel announces (our own changes included), until ctx is
// done. Drift repair uses it to notice `nft flush ruleset`, a deleted table or
// `iptables -F` (iptables-nft changes the "filter" table) at once. A name of
// "" means "unknown: check everything".
func Watch(ctx context.Context, o Options, changed func(table string)) error {
	var opts []nftables.ConnOption
	if o.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(o.NetNS))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("nftables monitor: %w", err)
	}
	mon := nftables.NewMonitor(
		nftables.WithMonitorAction(nftables.MonitorActionAny),
		nftables.WithMonitorObject(nftables.MonitorObjectTables|nftables.MonitorObjectChains|nftables.MonitorObjectRules),
	)
	events, err := conn.AddMonitor(mon)
	if err != nil {
		return fmt.Errorf("nftables monitor: %w", err)
	}
	go func() {
		<-ctx.Done()
		mon.Close()
	}()
	for ev := range events {
		if ev.Error != nil {
			changed("")
			continue
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
	return nil
}
