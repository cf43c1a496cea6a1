package network

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnet/internal/ifindex"
	"vnet/internal/resubscribe"
	netxml "vnet/xml"
)

// HostIndex keeps the prefixes of the host's addresses and main-table
// routes, by link, current from netlink events, so that the conflict check of
// a start needs no dump of every address and route while nothing overlaps
// (a dump per start made each start cost more the more networks ran).
//
// It is only a filter: when an indexed prefix overlaps the network's, the
// check runs on fresh dumps (CheckHostConflicts), so an entry the index
// keeps too long (IPv4 routes of a link set down go without an event) costs
// time, never a wrong answer. Until its first dump, and after a lost
// subscription until the next, every check runs on dumps.
type HostIndex struct {
	mu      sync.Mutex
	ready   bool
	entries map[indexKey]bool
}

// indexKey is one address prefix or one route of a link. An address and
// the kernel's prefix route for it share prefix and link: route tells them
// apart, so the deletion of one does not drop the other.
type indexKey struct {
	prefix netip.Prefix
	link   int
	route  bool
}

// NewHostIndex returns an index that is filled by Run.
func NewHostIndex() *HostIndex { return &HostIndex{entries: map[indexKey]bool{}} }

// Run keeps the index current until ctx is done.
func (x *HostIndex) Run(ctx context.Context, log *slog.Logger) error {
	o := resubscribe.Options{What: "netlink events of the conflict index", Logger: log}
	return resubscribe.Run(ctx, o, func(ctx context.Context) (func(), error) {
		x.setReady(false)
		done := make(chan struct{})
		lost := func(error) { x.setReady(false) }
		links := make(chan netlink.LinkUpdate, 256)
		addrs := make(chan netlink.AddrUpdate, 256)
		routes := make(chan netlink.RouteUpdate, 256)
		if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: lost}); err != nil {
			close(done)
			return nil, fmt.Errorf("subscribe to link events: %w", err)
		}
		if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: lost}); err != nil {
			close(done)
			return nil, fmt.Errorf("subscribe to address events: %w", err)
		}
		if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: lost}); err != nil {
			close(done)
			return nil, fmt.Errorf("subscribe to route events: %w", err)
		}
		// Subscribed first, then dumped: nothing falls between the two.
		if err := x.load(); err != nil {
			close(done)
			return nil, err
		}
		return func() {
			defer close(done)
			defer x.setReady(false)
			for {
				select {
				case <-ctx.Done():
					return
				case u, ok := <-links:
					if !ok {
						return
					}
					if u.Header.Type == unix.RTM_DELLINK {
						x.dropLink(int(u.Index))
					}
				case u, ok := <-addrs:
					if !ok {
						return
					}
					if p, ok := fromIPNet(&u.LinkAddress); ok {
						x.set(indexKey{p.Masked(), u.LinkIndex, false}, u.NewAddr)
					}
				case u, ok := <-routes:
					if !ok {
						return
					}
					for _, k := range routeKeys(u.Route) {
						x.set(k, u.Type == unix.RTM_NEWROUTE)
					}
				}
			}
		}, nil
	})
}

// load fills the index from dumps and marks it ready.
func (x *HostIndex) load() error {
	h, err := newHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	addrs, err := h.addrs(nil)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	routes, err := h.routes(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, a := range addrs {
		if p, ok := addrPrefix(a); ok {
			x.entries[indexKey{p.Masked(), a.LinkIndex, false}] = true
		}
	}
	for _, r := range routes {
		for _, k := range routeKeys(r) {
			x.entries[k] = true
		}
	}
	x.ready = true
	return nil
}

// routeKeys are the index entries of a main-table unicast route.
func routeKeys(r netlink.Route) []indexKey {
	if r.Table != unix.RT_TABLE_MAIN || r.Type != unix.RTN_UNICAST || r.Scope == unix.RT_SCOPE_HOST {
		return nil
	}
	dst, ok := fromIPNet(r.Dst)
	if !ok || dst.Bits() == 0 {
		return nil
	}
	var keys []indexKey
	for _, idx := range routeLinks(r) {
		keys = append(keys, indexKey{dst.Masked(), idx, true})
	}
	return keys
}

func (x *HostIndex) setReady(on bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ready = on
	if !on {
		x.entries = map[indexKey]bool{}
	}
}

func (x *HostIndex) set(k indexKey, present bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if present {
		x.entries[k] = true
	} else {
		delete(x.entries, k)
	}
}

func (x *HostIndex) dropLink(idx int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := range x.entries {
		if k.link == idx {
			delete(x.entries, k)
		}
	}
}

// mayConflict reports whether the index is not ready or holds a prefix
// overlapping one of subnets (outside link own, the index of the network's
// own bridge, 0 when it has none).
func (x *HostIndex) mayConflict(subnets []netip.Prefix, own int) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.ready {
		return true
	}
	for k := range x.entries {
		if k.link == own || IgnoredPrefix(k.prefix) {
			continue
		}
		for _, sub := range subnets {
			if overlaps(sub, k.prefix) {
				return true
			}
		}
	}
	return false
}

// CheckHostConflicts is the package's CheckHostConflicts with the index as
// a filter: while no indexed prefix overlaps the network's subnets, nothing
// is dumped. A nil index always checks on dumps.
func (x *HostIndex) CheckHostConflicts(n *netxml.Network) error {
	if x != nil {
		subnets, err := networkAddrs(n.IPs)
		if err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
		own := 0
		if idx, err := ifindex.ByName(n.BridgeName()); err == nil {
			own = idx
		}
		if len(subnets) == 0 || !x.mayConflict(subnets, own) {
			return nil
		}
	}
	return CheckHostConflicts(n)
}
