// Package doctor answers "why does my guest get no address, no names or no
// way out?" for everything around vnet's own networks: foreign firewalls,
// other owners of the DNS/DHCP ports, routes and addresses that hijack a
// subnet, forwarding sysctls, br_netfilter, dnsmasq's health, host resources
// and the guests' TAPs. Every check reads the live host (netlink, nftables,
// /proc, legacy iptables when present) of the calling process's network
// namespace and changes nothing there, except the DHCP/DNS probe, which
// plugs a throwaway veth into the bridge from a temporary namespace and
// removes both again.
//
// A check yields one or more Results: ok, or a problem naming the culprit in
// one sentence with the exact fix. The packet evaluation of firewall rules is
// pure (ruleset.go) and unit-tested with fakes; the readers of the live host
// sit behind the small Host interface.
package doctor

import (
	"context"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Check ids, stable: scripts and the JSON output branch on them.
const (
	CheckForeignFirewall = "fw.foreign-drop"
	CheckPortConflict    = "dns.port-conflict"
	CheckRouteOverlap    = "route.overlap"
	CheckIPForward       = "sysctl.ip-forward"
	CheckIPv6Forward     = "sysctl.ipv6-forward"
	CheckAcceptRA        = "sysctl.accept-ra"
	CheckRPFilter        = "sysctl.rp-filter"
	CheckBrNetfilter     = "brnf.enabled"
	CheckDHCP            = "dnsmasq.dhcp"
	CheckDNS             = "dnsmasq.dns"
	CheckUpstream        = "dnsmasq.upstream"
	CheckInotify         = "resource.inotify"
	CheckFDs             = "resource.fds"
	CheckGuestTAP        = "guest.tap"
	CheckOverlayFRR      = "overlay.frr"
	CheckOverlayVNI      = "overlay.vni"
	CheckOverlayPeer     = "overlay.peer"
)

// Result is the outcome of one check for one network ("" = the host).
type Result struct {
	ID      string `json:"id"`
	Network string `json:"network"`
	OK      bool   `json:"ok"`
	// Detail is one sentence: what was checked, or the culprit.
	Detail string `json:"detail"`
	// Fix is the exact command or step; empty when OK.
	Fix string `json:"fix,omitempty"`
}

// Network is what the checks need to know of one active network.
type Network struct {
	Name   string
	Bridge string
	// Active tells whether the network runs; an inactive one gets only the
	// checks that matter before a start (firewall, ports, routes).
	Active bool
	// Forward is the forward mode: "nat", "route", "open", "" (isolated) …
	Forward string
	// ForwardDev is <forward dev=…>, the uplink when given.
	ForwardDev string
	// Addrs are the bridge's addresses with their prefix (192.168.122.1/24).
	Addrs []netip.Prefix
	// DHCPv4 and DHCPv6 tell whether dnsmasq serves DHCP for the family.
	DHCPv4, DHCPv6 bool
	// DHCPv4Pool tells whether it has a dynamic IPv4 range, from which the
	// probe can get a lease (with only <host> entries it gets none).
	DHCPv4Pool bool
	// DNS tells whether dnsmasq answers DNS on the bridge.
	DNS bool
	// DnsmasqPid is the network's dnsmasq (0: none runs).
	DnsmasqPid int
	// Upstreams are the servers dnsmasq forwards to.
	Upstreams []netip.AddrPort
	// TAPs are the devices of the network's ports.
	TAPs []string
	// MTU is the bridge's configured MTU (0: the kernel's choice).
	MTU int
	// Overlay is FRR's view of the network's <vnet:overlay> (nil: the
	// network has none, or it is not active).
	Overlay *Overlay
}

// v4 returns the first IPv4 bridge address.
func (n *Network) v4() (netip.Prefix, bool) {
	for _, a := range n.Addrs {
		if a.Addr().Is4() {
			return a, true
		}
	}
	return netip.Prefix{}, false
}

// v6 returns the first IPv6 bridge address.
func (n *Network) v6() (netip.Prefix, bool) {
	for _, a := range n.Addrs {
		if a.Addr().Is6() {
			return a, true
		}
	}
	return netip.Prefix{}, false
}

// forwards reports whether the network's guests are routed off the bridge.
func (n *Network) forwards() bool {
	switch n.Forward {
	case "nat", "route", "open":
		return true
	}
	return false
}

// Options select what Run does.
type Options struct {
	// Probe runs the DHCP/DNS probe and queries the upstream servers (the
	// expensive checks). Live warnings leave it off.
	Probe bool
	// SkipResources leaves out the resource checks, which scan every
	// process's fds and have no event to trigger them (live warnings).
	SkipResources bool
	// OwnPids are processes of vnet (every network's dnsmasq, vnetd): their
	// sockets on the DNS/DHCP ports are no conflict.
	OwnPids []int
	// ProbeTimeout bounds each probe step (default 2 s).
	ProbeTimeout time.Duration
}

// Run runs every check for the networks (all active ones) and returns the
// results, problems and passes, sorted by network then check id. The
// checks share one snapshot of h: each host-wide fact is read once.
func Run(ctx context.Context, h Host, nets []Network, o Options) []Result {
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 2 * time.Second
	}
	h = newSnapshot(h)
	var (
		mu  sync.Mutex
		out []Result
		wg  sync.WaitGroup
	)
	add := func(rs []Result) {
		mu.Lock()
		out = append(out, rs...)
		mu.Unlock()
	}
	run := func(f func() []Result) {
		wg.Add(1)
		go func() { defer wg.Done(); add(f()) }()
	}
	run(func() []Result { return checkFirewall(h, nets) })
	run(func() []Result { return checkPorts(h, nets, o.OwnPids) })
	run(func() []Result { return checkRoutes(h, nets) })
	run(func() []Result { return checkSysctls(h, nets) })
	if !o.SkipResources {
		run(func() []Result { return checkResources(h, len(nets), o.OwnPids) })
	}
	run(func() []Result { return checkGuests(h, nets) })
	for _, n := range nets {
		if n.Overlay != nil {
			add(checkOverlay(n))
		}
	}
	if o.Probe {
		for _, n := range nets {
			n := n
			run(func() []Result { return checkDnsmasq(ctx, h, n, o.ProbeTimeout) })
		}
	}
	wg.Wait()
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Network != out[j].Network {
			return out[i].Network < out[j].Network
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Problems returns the failed results.
func Problems(rs []Result) []Result {
	var p []Result
	for _, r := range rs {
		if !r.OK {
			p = append(p, r)
		}
	}
	return p
}

func ok(id, network, detail string) Result {
	return Result{ID: id, Network: network, OK: true, Detail: detail}
}

func problem(id, network, detail, fix string) Result {
	return Result{ID: id, Network: network, Detail: detail, Fix: fix}
}
