package firewall

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// inNetNS runs f with the calling goroutine's OS thread in the network
// namespace fd (0: the current one). Processes f starts inherit the thread's
// namespace, which is how the iptables tools run in the namespace.
func inNetNS(fd int, f func() error) error {
	if fd == 0 {
		return f()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(netns.NsHandle(fd)); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	defer func() {
		// When the thread cannot switch back it stays locked, so Go ends
		// it with the goroutine instead of reusing it in the wrong netns.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return f()
}

// nftUsable reports whether nftables works: a netfilter netlink socket opens
// and the kernel lists its tables.
func nftUsable(o Options) error {
	var opts []nftables.ConnOption
	if o.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(o.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("open nftables connection: %w", err)
	}
	if _, err := c.ListTables(); err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	return nil
}

// CleanupOthers removes what every backend other than active (a Backend's
// Name: "nftables" or "iptables") may have left on the host from an earlier
// run: with active "iptables", the nftables tables "vnet_<h>", "vnet" and "vnet-*" (families
// ip and ip6); with active "nftables", every chain named "VNET_*" of the
// iptables and ip6tables tables filter, nat and mangle, with the rules
// jumping to them. Nothing else is touched. The daemon calls it once at
// startup, after New and before applying any network, so that switching the
// backend never leaves the old backend's rules (whose rejects would still
// apply) behind. Missing tools are not an error: then nothing can be left.
func CleanupOthers(active string, o Options) error {
	var errs []error
	if active != "nftables" {
		if err := cleanupNft(o); err != nil {
			errs = append(errs, err)
		}
	}
	if active != "iptables" {
		if err := cleanupIptables(o); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cleanupNft deletes vnet's nftables tables (isVnetTable) in one batch.
func cleanupNft(o Options) error {
	if nftUsable(o) != nil {
		return nil
	}
	var opts []nftables.ConnOption
	if o.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(o.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("clean up nftables: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("clean up nftables: list tables: %w", err)
	}
	var gone []string
	for _, t := range tables {
		// Tables of an earlier run with owned tables are orphaned now,
		// and anyone may delete an orphaned table.
		if isVnetTable(t) {
			c.DelTable(t)
			gone = append(gone, t.Name)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("clean up nftables: delete tables %s: %w", strings.Join(gone, ", "), err)
	}
	if o.Logger != nil {
		o.Logger.Info("removed nftables tables left by an earlier run", "tables", gone)
	}
	return nil
}

// cleanupIptables deletes the VNET_* chains of both families, one batch each.
func cleanupIptables(o Options) error {
	b := &iptBackend{log: o.Logger, netns: o.NetNS}
	var errs []error
	for _, f := range []Family{IPv4, IPv6} {
		t := findIptTool(f)
		if t.err != nil {
			continue
		}
		b.tools[f] = t
		written, err := b.sync(f, func(st *iptState) *iptDiff {
			return removeStructure(st, func(c string) bool { return strings.HasPrefix(c, iptChainPrefix) })
		}, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("clean up %s: %w", t.name, err))
		} else if written != "" && o.Logger != nil {
			o.Logger.Info("removed iptables chains left by an earlier run", "tool", t.name)
		}
	}
	return errors.Join(errs...)
}

// Prune removes from the host the rules b installed for networks that are
// not in keep: the chains and map elements of other bridges in the shared tables (nftables), the
// rules commented with other networks' names (iptables, with the chains when
// no network is left). The daemon calls it once at startup, after applying
// the plans of the active networks (keep), to drop the firewall of networks
// that were stopped or undefined while it was not running. Backends other
// than vnet's own (fakes) are left alone.
func Prune(b Backend, keep []*Plan) error {
	switch b := b.(type) {
	case *iptBackend:
		return b.prune(keep)
	case *nftBackend:
		return b.prune(keep)
	}
	return nil
}

// prune deletes, in one batch, the parts of the shared tables whose bridge
// no kept plan has (the tables themselves when none is kept) and the tables
// "vnet-<bridge>" of earlier versions of bridges no kept plan has.
func (b *nftBackend) prune(keep []*Plan) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := map[string]bool{}
	for _, p := range keep {
		kept[p.Bridge] = true
	}
	c, err := b.conn()
	if err != nil {
		return fmt.Errorf("prune nftables tables: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("prune nftables tables: list tables: %w", err)
	}
	sh, err := b.sharedNow()
	if err != nil {
		return fmt.Errorf("prune nftables tables: %w", err)
	}
	s := &nftSteps{owned: b.owner != nil}
	var gone []string
	for _, t := range tables {
		if br, ok := strings.CutPrefix(t.Name, nftLegacy); ok && isVnetTable(t) && !kept[br] {
			f := IPv4
			if t.Family == nftables.TableFamilyIPv6 {
				f = IPv6
			}
			s.delTableOp(f, t.Name)
			gone = append(gone, nftTableID(t))
		}
	}
	for _, f := range []Family{IPv4, IPv6} {
		for _, name := range sh.names(f) {
			for _, br := range sh.fam[f][name].bridges() {
				if !kept[br] {
					s.p = &Plan{Bridge: br}
					s.removeFamilyOps(sh, f, name)
					gone = append(gone, f.String()+" "+name+" bridge "+br)
				}
			}
		}
	}
	if len(gone) == 0 {
		return nil
	}
	// Through the owner socket: the tables are ours (New adopted the
	// orphaned ones), and only the owner may change an owned table.
	if err := b.commit(s); err != nil {
		return fmt.Errorf("prune nftables tables: %s: %w", strings.Join(gone, ", "), err)
	}
	b.log.Info("removed nftables rules of networks that are not active", "removed", gone)
	return nil
}
