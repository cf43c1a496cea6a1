package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"vnet/network"
)

// external is an address outside every network (TEST-NET-2 / documentation
// prefix): the far end of a guest's forwarded traffic.
var (
	external4 = netip.MustParseAddr("198.51.100.10")
	external6 = netip.MustParseAddr("2001:db8:ffff::10")
)

// guestAddrs returns two addresses of the subnet that are not the bridge's.
func guestAddrs(p netip.Prefix) (netip.Addr, netip.Addr) {
	sub := p.Masked()
	var out []netip.Addr
	for a := sub.Addr().Next(); sub.Contains(a) && len(out) < 2; a = a.Next() {
		if a != p.Addr() {
			out = append(out, a)
		}
	}
	for len(out) < 2 {
		out = append(out, p.Addr())
	}
	return out[0], out[1]
}

// uplink is the device the guests' traffic leaves through.
func uplink(h Host, n Network, ext netip.Addr) string {
	if n.ForwardDev != "" {
		return n.ForwardDev
	}
	return h.RouteDev(ext)
}

// guestPackets are the packets a guest of n sends and receives that a
// foreign firewall could drop.
func guestPackets(h Host, n Network) []*Packet {
	br := n.Bridge
	brIdx := h.Link(br).Index
	var ps []*Packet
	if p, ok := n.v4(); ok {
		g, _ := guestAddrs(p)
		if n.DHCPv4 {
			ps = append(ps, &Packet{Hook: HookInput, Kind: "dhcp", What: "DHCP (udp 67)", IIf: br, IIfIndex: brIdx,
				Src: netip.IPv4Unspecified(), Dst: netip.AddrFrom4([4]byte{255, 255, 255, 255}), Proto: protoUDP, SPort: 68, DPort: 67, CtState: CtNew})
		}
		if n.DNS {
			ps = append(ps, dnsPackets(br, brIdx, g, p.Addr())...)
		}
		if n.forwards() {
			ps = append(ps, forwardPackets(h, n, brIdx, g, external4)...)
		}
	}
	if p, ok := n.v6(); ok {
		g, _ := guestAddrs(p)
		if n.DHCPv6 {
			ps = append(ps, &Packet{Hook: HookInput, Kind: "dhcpv6", What: "DHCPv6 (udp 547)", IIf: br, IIfIndex: brIdx,
				Src: netip.MustParseAddr("fe80::5054:ff:fe00:1"), Dst: netip.MustParseAddr("ff02::1:2"), Proto: protoUDP, SPort: 546, DPort: 547, CtState: CtNew})
		}
		if n.DNS {
			ps = append(ps, dnsPackets(br, brIdx, g, p.Addr())...)
		}
		if n.forwards() {
			ps = append(ps, forwardPackets(h, n, brIdx, g, external6)...)
		}
	}
	return ps
}

func dnsPackets(br string, brIdx int, g, server netip.Addr) []*Packet {
	var ps []*Packet
	for _, proto := range []uint8{protoUDP, protoTCP} {
		ps = append(ps, &Packet{Hook: HookInput, Kind: "dns", What: "DNS (udp/tcp 53)", IIf: br, IIfIndex: brIdx,
			Src: g, Dst: server, Proto: proto, SPort: 40000, DPort: 53, CtState: CtNew})
	}
	return ps
}

func forwardPackets(h Host, n Network, brIdx int, g, ext netip.Addr) []*Packet {
	up := uplink(h, n, ext)
	upIdx := 0
	if up != "" {
		upIdx = h.Link(up).Index
	}
	ps := []*Packet{
		{Hook: HookForward, Kind: "forward", What: "forwarded guest traffic", IIf: n.Bridge, IIfIndex: brIdx, OIf: up, OIfIndex: upIdx,
			Src: g, Dst: ext, Proto: protoTCP, SPort: 40000, DPort: 443, CtState: CtNew},
		{Hook: HookForward, Kind: "forward", What: "forwarded guest traffic", IIf: up, IIfIndex: upIdx, OIf: n.Bridge, OIfIndex: brIdx,
			Src: ext, Dst: g, Proto: protoTCP, SPort: 443, DPort: 40000, CtState: CtEstablished},
	}
	if n.Forward == "nat" {
		ps = append(ps, &Packet{Hook: HookPostrouting, Kind: "masquerade", What: "the guests' masqueraded traffic", OIf: up, OIfIndex: upIdx,
			Src: g, Dst: ext, Proto: protoTCP, SPort: 40000, DPort: 443, CtState: CtNew})
	}
	return ps
}

// dropKey groups the packets of one purpose dropped by one base chain.
type dropKey struct {
	table, chain, kind string
}

// checkFirewall evaluates every foreign base chain against the guests'
// packets of each network, and (br_netfilter) their bridged traffic.
func checkFirewall(h Host, nets []Network) []Result {
	tables, err := h.Firewall()
	if err != nil {
		return []Result{problem(CheckForeignFirewall, "", "cannot read the host's firewall: "+err.Error(), "run net-doctor through vnetd as root")}
	}
	base := 0
	for _, t := range tables {
		for _, c := range t.Chains {
			if c.Base {
				base++
			}
		}
	}
	var out []Result
	for _, n := range nets {
		seen := map[dropKey]bool{}
		var found []Result
		for _, p := range guestPackets(h, n) {
			for _, d := range Drops(tables, p) {
				k := dropKey{d.Table.Describe(), d.Chain.Name, p.Kind}
				if seen[k] {
					continue
				}
				seen[k] = true
				found = append(found, problem(CheckForeignFirewall, n.Name, dropDetail(d, p, n), dropFix(d, p, n)))
			}
		}
		if len(found) == 0 {
			found = append(found, ok(CheckForeignFirewall, n.Name, fmt.Sprintf("no foreign firewall drops DHCP, DNS, forwarded or masqueraded traffic of %s (%d base chains in %d tables checked)", n.Bridge, base, len(tables))))
		}
		out = append(out, found...)
		out = append(out, checkBrNetfilter(h, n, tables)...)
	}
	return out
}

// dropDetail is the sentence naming the dropping chain (and rule).
func dropDetail(d Drop, p *Packet, n Network) string {
	dir := "from"
	switch p.Kind {
	case "forward", "bridged":
		dir = "of"
	case "masquerade":
		dir = "of"
	}
	who := d.Table.Describe()
	if d.Table.IsDocker() {
		who = "Docker's " + who
	}
	where := fmt.Sprintf("%s, chain %s (%s hook, priority %d)", who, d.Chain.Name, d.Chain.Hook, d.Chain.Priority)
	how := "by its policy drop"
	if d.Rule != nil {
		how = "with " + d.Rule.Text
		if d.In != nil && d.In != d.Chain {
			how += " in chain " + d.In.Name
		}
	}
	return fmt.Sprintf("%s drops %s %s %s %s", where, p.What, dir, n.Bridge, how)
}

// dropFix is the command that lets the packets through that chain.
func dropFix(d Drop, p *Packet, n Network) string {
	t, c, br := d.Table, d.Chain.Name, n.Bridge
	if t.IsXtables() {
		cmd := iptablesCmd(t)
		if t.Name != "filter" {
			cmd += " -t " + t.Name
		}
		if (p.Kind == "forward" || p.Kind == "bridged") && t.Chains["DOCKER-USER"] != nil {
			c = "DOCKER-USER"
		}
		ins := cmd + " -I " + c + " "
		switch p.Kind {
		case "dhcp", "dhcpv6":
			return fmt.Sprintf("%s-i %s -p udp --dport %d -j ACCEPT", ins, br, p.DPort)
		case "dns":
			return fmt.Sprintf("%s-i %s -p udp --dport 53 -j ACCEPT; %s-i %s -p tcp --dport 53 -j ACCEPT", ins, br, ins, br)
		case "forward":
			return fmt.Sprintf("%s-i %s -j ACCEPT; %s-o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", ins, br, ins, br)
		case "bridged":
			return fmt.Sprintf("%s-i %s -o %s -j ACCEPT", ins, br, br)
		case "masquerade":
			return fmt.Sprintf("%s-s %s -j ACCEPT", ins, p.Src.String())
		}
		return ""
	}
	ins := fmt.Sprintf("nft insert rule %s %s %s ", t.Family, t.Name, c)
	switch p.Kind {
	case "dhcp", "dhcpv6":
		return fmt.Sprintf("%siifname %q udp dport %d accept", ins, br, p.DPort)
	case "dns":
		return fmt.Sprintf("%siifname %q udp dport 53 accept; %siifname %q tcp dport 53 accept", ins, br, ins, br)
	case "forward":
		return fmt.Sprintf("%siifname %q accept; %soifname %q ct state established,related accept", ins, br, ins, br)
	case "bridged":
		return fmt.Sprintf("%siifname %q oifname %q accept", ins, br, br)
	case "masquerade":
		fam := "ip"
		if p.v6() {
			fam = "ip6"
		}
		return fmt.Sprintf("%s%s saddr %s accept", ins, fam, subnetOf(n, p.Src))
	}
	return ""
}

func subnetOf(n Network, a netip.Addr) string {
	for _, p := range n.Addrs {
		if p.Masked().Contains(a) {
			return p.Masked().String()
		}
	}
	return a.String()
}

// checkBrNetfilter: with br_netfilter's bridge-nf-call-iptables on, traffic
// between two guests of one bridge passes the IP forward hook, where a
// foreign drop silently cuts guests off from each other (P13).
func checkBrNetfilter(h Host, n Network, tables []*Table) []Result {
	var out []Result
	for _, fam := range []struct {
		knob string
		addr func() (netip.Prefix, bool)
	}{{"bridge-nf-call-iptables", n.v4}, {"bridge-nf-call-ip6tables", n.v6}} {
		p, has := fam.addr()
		if !has {
			continue
		}
		v, err := h.Sysctl("net/bridge/" + fam.knob)
		if err != nil || strings.TrimSpace(v) != "1" {
			continue
		}
		g1, g2 := guestAddrs(p)
		idx := h.Link(n.Bridge).Index
		pk := &Packet{Hook: HookForward, Kind: "bridged", What: "traffic between guests", IIf: n.Bridge, IIfIndex: idx, OIf: n.Bridge, OIfIndex: idx,
			Src: g1, Dst: g2, Proto: protoTCP, SPort: 40000, DPort: 22, CtState: CtNew}
		for _, d := range Drops(tables, pk) {
			out = append(out, problem(CheckBrNetfilter, n.Name,
				fmt.Sprintf("br_netfilter passes bridged traffic to the IP firewall (net.bridge.%s = 1) and %s", fam.knob, dropDetail(d, pk, n)),
				dropFix(d, pk, n)))
		}
	}
	if len(out) == 0 {
		out = append(out, ok(CheckBrNetfilter, n.Name, "no bridged traffic of "+n.Bridge+" is dropped by the IP firewall"))
	}
	return out
}

// dnsmasqPorts are the ports a network's dnsmasq binds.
func dnsmasqPorts(n Network) map[string][]uint16 {
	m := map[string][]uint16{}
	if n.DNS {
		m["udp"] = append(m["udp"], 53)
		m["tcp"] = append(m["tcp"], 53)
	}
	if n.DHCPv4 {
		m["udp"] = append(m["udp"], 67)
	}
	if n.DHCPv6 {
		m["udp"] = append(m["udp"], 547)
	}
	return m
}

// PortConflicts returns the sockets of other processes that keep n's
// dnsmasq from binding its ports: bound to the wildcard address or to one of
// the bridge's addresses.
func PortConflicts(socks []Socket, n Network) []Socket {
	ports := dnsmasqPorts(n)
	var out []Socket
	for _, s := range socks {
		hit := false
		for _, p := range ports[s.Proto] {
			hit = hit || p == s.Local.Port()
		}
		if !hit {
			continue
		}
		a := s.Local.Addr().Unmap()
		clash := a.IsUnspecified()
		for _, b := range n.Addrs {
			clash = clash || b.Addr() == a
		}
		if clash {
			out = append(out, s)
		}
	}
	return out
}

// DescribeOwner names a socket's process: `python3 (pid 1234)`.
func DescribeOwner(s Socket) string {
	if s.Pid == 0 {
		return fmt.Sprintf("a process vnet cannot see (socket inode %d)", s.Inode)
	}
	return fmt.Sprintf("%s (pid %d)", s.Comm, s.Pid)
}

func checkPorts(h Host, nets []Network, own []int) []Result {
	socks, err := h.Sockets([]uint16{53, 67, 547}, own)
	if err != nil {
		return []Result{problem(CheckPortConflict, "", "cannot read the host's sockets: "+err.Error(), "run net-doctor through vnetd as root")}
	}
	var out []Result
	for _, n := range nets {
		cs := PortConflicts(socks, n)
		for _, s := range cs {
			fix := fmt.Sprintf("stop %s or make it listen on other addresses than %s (e.g. bind-interfaces / listen-address for another dnsmasq, DNSStubListener for resolved)", DescribeOwner(s), s.Local.Addr())
			if s.Pid != 0 {
				fix = fmt.Sprintf("kill %d (or reconfigure %s to leave %s %s free)", s.Pid, s.Comm, s.Proto, s.Local)
			}
			out = append(out, problem(CheckPortConflict, n.Name,
				fmt.Sprintf("%s holds %s %s, which collides with the dnsmasq of %s", DescribeOwner(s), s.Proto, s.Local, n.Bridge), fix))
		}
		if len(cs) == 0 {
			out = append(out, ok(CheckPortConflict, n.Name, "no other process holds the DNS/DHCP ports of "+n.Bridge))
		}
	}
	return out
}

// checkRoutes finds routes and addresses of other devices overlapping a
// network's subnet: a VPN, docker0 or another bridge taking its traffic.
func checkRoutes(h Host, nets []Network) []Result {
	routes, err := h.Routes()
	if err != nil {
		return []Result{problem(CheckRouteOverlap, "", "cannot read the routes: "+err.Error(), "run net-doctor through vnetd as root")}
	}
	addrs, err := h.Addrs()
	if err != nil {
		return []Result{problem(CheckRouteOverlap, "", "cannot read the addresses: "+err.Error(), "run net-doctor through vnetd as root")}
	}
	var out []Result
	for _, n := range nets {
		var found []Result
		seen := map[string]bool{}
		for _, own := range n.Addrs {
			sub := own.Masked()
			if network.IgnoredPrefix(sub) {
				continue
			}
			for _, a := range addrs {
				if a.Dev == n.Bridge || network.IgnoredPrefix(a.Prefix) || !a.Prefix.Masked().Overlaps(sub) {
					continue
				}
				key := "addr " + a.Prefix.String() + a.Dev
				if seen[key] {
					continue
				}
				seen[key] = true
				found = append(found, problem(CheckRouteOverlap, n.Name,
					fmt.Sprintf("address %s on %s overlaps %s of %s", a.Prefix, a.Dev, sub, n.Bridge),
					fmt.Sprintf("ip addr del %s dev %s (or move the network to a free subnet)", a.Prefix, a.Dev)))
			}
			for _, r := range routes {
				if r.Dev == n.Bridge || r.Dst.Bits() == 0 || r.Type == "local" || r.Type == "broadcast" || r.Type == "multicast" {
					continue
				}
				if !r.Dst.Overlaps(sub) {
					continue
				}
				// A broader route of the main table loses to the bridge's
				// own (longest prefix); in another table it may be
				// consulted first by a rule.
				if r.Dst.Bits() < sub.Bits() && r.Table == tableMain {
					continue
				}
				dev := "dev " + r.Dev
				if r.Dev == "" {
					dev = r.Type
				}
				key := "route " + r.Dst.String() + dev + fmt.Sprint(r.Table)
				if seen[key] {
					continue
				}
				seen[key] = true
				tbl := tableName(r.Table)
				found = append(found, problem(CheckRouteOverlap, n.Name,
					fmt.Sprintf("route %s %s (table %s) overlaps %s of %s", r.Dst, dev, tbl, sub, n.Bridge),
					fmt.Sprintf("ip route del %s %s table %s (or exclude %s from the VPN / move the network to a free subnet)", routeSpec(r), dev, tbl, sub)))
			}
		}
		if len(found) == 0 {
			found = append(found, ok(CheckRouteOverlap, n.Name, "no other route or address overlaps the subnets of "+n.Bridge))
		}
		out = append(out, found...)
	}
	return out
}

const (
	tableMain  = 254
	tableLocal = 255
)

func tableName(t int) string {
	switch t {
	case tableMain:
		return "main"
	case tableLocal:
		return "local"
	case 253:
		return "default"
	}
	return fmt.Sprint(t)
}

func routeSpec(r Route) string {
	if r.Dev == "" && r.Type != "unicast" {
		return r.Type + " " + r.Dst.String()
	}
	return r.Dst.String()
}

// checkSysctls: forwarding, accept_ra with IPv6 forwarding, rp_filter.
func checkSysctls(h Host, nets []Network) []Result {
	var out []Result
	read := func(p string) string {
		v, _ := h.Sysctl(p)
		return strings.TrimSpace(v)
	}
	ipv6Fwd := read("net/ipv6/conf/all/forwarding") == "1"
	for _, n := range nets {
		if !n.Active || !n.forwards() {
			continue
		}
		if p4, has4 := n.v4(); has4 {
			if v := read("net/ipv4/ip_forward"); v != "1" {
				out = append(out, problem(CheckIPForward, n.Name,
					fmt.Sprintf("net.ipv4.ip_forward is %s: the host does not forward the traffic of %s's guests", v, n.Bridge),
					"sysctl -w net.ipv4.ip_forward=1 (vnetd sets it again by itself; find what resets it)"))
			} else {
				out = append(out, ok(CheckIPForward, n.Name, "net.ipv4.ip_forward is 1"))
			}
			out = append(out, checkRPFilter(h, n, p4, read))
		}
		if _, has6 := n.v6(); has6 {
			if !ipv6Fwd {
				out = append(out, problem(CheckIPv6Forward, n.Name,
					fmt.Sprintf("net.ipv6.conf.all.forwarding is %s: the host does not forward the IPv6 traffic of %s's guests", read("net/ipv6/conf/all/forwarding"), n.Bridge),
					"sysctl -w net.ipv6.conf.all.forwarding=1 (vnetd sets it again by itself; find what resets it)"))
			} else {
				out = append(out, ok(CheckIPv6Forward, n.Name, "net.ipv6.conf.all.forwarding is 1"))
			}
		}
	}
	out = append(out, checkAcceptRA(h, ipv6Fwd, read)...)
	return out
}

// checkRPFilter: strict reverse-path filtering on the bridge drops the
// guests' packets when the route back to them leaves through another device.
func checkRPFilter(h Host, n Network, p netip.Prefix, read func(string) string) Result {
	all, dev := read("net/ipv4/conf/all/rp_filter"), read("net/ipv4/conf/"+n.Bridge+"/rp_filter")
	eff := max(all, dev)
	g, _ := guestAddrs(p)
	if eff == "1" {
		if back := h.RouteDev(g); back != n.Bridge {
			if back == "" {
				back = "nowhere"
			}
			return problem(CheckRPFilter, n.Name,
				fmt.Sprintf("strict rp_filter on %s (net.ipv4.conf.all.rp_filter=%s, net.ipv4.conf.%s.rp_filter=%s) drops the guests' packets: the route back to %s goes through %s", n.Bridge, all, n.Bridge, dev, g, back),
				fmt.Sprintf("remove the route that takes %s away from %s, or sysctl -w net.ipv4.conf.all.rp_filter=2 (loose)", p.Masked(), n.Bridge))
		}
	}
	return ok(CheckRPFilter, n.Name, fmt.Sprintf("rp_filter on %s is %s and the route back to the guests goes through it", n.Bridge, eff))
}

// checkAcceptRA: with IPv6 forwarding on, the kernel ignores router
// advertisements on an interface whose accept_ra is 1, so RA-learned routes
// expire (pain P12).
func checkAcceptRA(h Host, ipv6Fwd bool, read func(string) string) []Result {
	if !ipv6Fwd {
		return []Result{ok(CheckAcceptRA, "", "IPv6 forwarding is off: router advertisements are accepted")}
	}
	routes, err := h.Routes()
	if err != nil {
		return nil
	}
	devs := map[string]bool{}
	for _, r := range routes {
		if r.Proto == 9 && r.Dev != "" { // RTPROT_RA
			devs[r.Dev] = true
		}
	}
	names := make([]string, 0, len(devs))
	for d := range devs {
		names = append(names, d)
	}
	sort.Strings(names)
	var out []Result
	for _, d := range names {
		if v := read("net/ipv6/conf/" + d + "/accept_ra"); v != "2" {
			out = append(out, problem(CheckAcceptRA, "",
				fmt.Sprintf("IPv6 forwarding is on and %s has routes learned from router advertisements but net.ipv6.conf.%s.accept_ra is %s: the host will lose them", d, d, v),
				fmt.Sprintf("sysctl -w net.ipv6.conf.%s.accept_ra=2", d)))
		}
	}
	if len(out) == 0 {
		out = append(out, ok(CheckAcceptRA, "", "every interface with RA-learned routes accepts RAs while forwarding (accept_ra=2)"))
	}
	return out
}

// checkResources: what a network start needs, with the headroom left.
func checkResources(h Host, networks int, own []int) []Result {
	var out []Result
	if used, limit, err := h.Inotify(own); err != nil {
		out = append(out, problem(CheckInotify, "", "cannot count inotify instances: "+err.Error(), "run net-doctor through vnetd as root"))
	} else if left := limit - used; left < 1 {
		out = append(out, problem(CheckInotify, "", fmt.Sprintf("root holds %d of %d inotify instances (fs.inotify.max_user_instances): the next dnsmasq fails with \"Too many open files\"", used, limit),
			fmt.Sprintf("sysctl -w fs.inotify.max_user_instances=%d (each network's dnsmasq takes one)", max(limit*2, used+networks+128))))
	} else {
		out = append(out, ok(CheckInotify, "", fmt.Sprintf("inotify instances: %d of %d in use, %d left (one per network's dnsmasq)", used, limit, left)))
	}
	if used, limit, err := h.FDs(); err != nil {
		out = append(out, problem(CheckFDs, "", "cannot read fs.file-nr: "+err.Error(), "run net-doctor through vnetd as root"))
	} else if left := limit - used; limit > 0 && left < limit/20 {
		out = append(out, problem(CheckFDs, "", fmt.Sprintf("%d of %d file handles (fs.file-max) in use, %d left", used, limit, left),
			fmt.Sprintf("sysctl -w fs.file-max=%d", limit*2)))
	} else {
		out = append(out, ok(CheckFDs, "", fmt.Sprintf("file handles: %d of %d in use, %d left", used, limit, left)))
	}
	// vnetd holds a few fds per network (dnsmasq's stderr, sockets).
	if used, limit, err := h.OwnFDs(); err == nil {
		if left := limit - used; left < 16+4*networks {
			out = append(out, problem(CheckFDs, "", fmt.Sprintf("vnetd has %d of %d file descriptors (RLIMIT_NOFILE) open, %d left", used, limit, left),
				fmt.Sprintf("raise LimitNOFILE= in vnetd.service (e.g. to %d) and restart vnetd", max(limit*2, 4096))))
		} else {
			out = append(out, ok(CheckFDs, "", fmt.Sprintf("vnetd file descriptors: %d of %d open, %d left", used, limit, left)))
		}
	}
	return out
}

// checkGuests: the ports' TAPs must exist, be up, be on the bridge and
// have its MTU.
func checkGuests(h Host, nets []Network) []Result {
	var out []Result
	for _, n := range nets {
		if len(n.TAPs) == 0 {
			continue
		}
		br := h.Link(n.Bridge)
		var found []Result
		for _, tap := range n.TAPs {
			l := h.Link(tap)
			fix := "vnetctl net-port-delete and net-port-create the port again, or restart its guest"
			switch {
			case !l.Exists:
				found = append(found, problem(CheckGuestTAP, n.Name, fmt.Sprintf("port TAP %s is missing", tap), fix))
			case l.Master != n.Bridge:
				where := "on no bridge"
				if l.Master != "" {
					where = "on " + l.Master
				}
				found = append(found, problem(CheckGuestTAP, n.Name, fmt.Sprintf("port TAP %s is %s, not on %s", tap, where, n.Bridge),
					fmt.Sprintf("ip link set %s master %s", tap, n.Bridge)))
			case !l.Up:
				found = append(found, problem(CheckGuestTAP, n.Name, fmt.Sprintf("port TAP %s is down", tap), fmt.Sprintf("ip link set %s up", tap)))
			case br.Exists && l.MTU != br.MTU:
				found = append(found, problem(CheckGuestTAP, n.Name, fmt.Sprintf("port TAP %s has MTU %d, bridge %s has %d", tap, l.MTU, n.Bridge, br.MTU),
					fmt.Sprintf("ip link set %s mtu %d", tap, br.MTU)))
			}
		}
		if len(found) == 0 {
			found = append(found, ok(CheckGuestTAP, n.Name, fmt.Sprintf("%d port TAP(s) up on %s with its MTU", len(n.TAPs), n.Bridge)))
		}
		out = append(out, found...)
	}
	return out
}

// checkDnsmasq: the network's dnsmasq runs and answers DHCP and DNS, and
// the upstream servers it forwards to answer.
func checkDnsmasq(ctx context.Context, h Host, n Network, timeout time.Duration) []Result {
	if !n.Active || (!n.DNS && !n.DHCPv4 && !n.DHCPv6) {
		return nil
	}
	restart := "vnetctl net-destroy " + n.Name + " && vnetctl net-start " + n.Name
	if n.DnsmasqPid == 0 || !h.Alive(n.DnsmasqPid) {
		r := problem(CheckDHCP, n.Name, "the dnsmasq of "+n.Bridge+" is not running", restart)
		if !n.DHCPv4 {
			r.ID = CheckDNS
		}
		return []Result{r}
	}
	var out []Result
	_, has4 := n.v4()
	if has4 && (n.DHCPv4 || n.DNS) {
		pr := h.Probe(ctx, n, timeout)
		switch {
		case pr.Err != nil:
			out = append(out, problem(CheckDHCP, n.Name, "cannot probe "+n.Bridge+": "+pr.Err.Error(), "run net-doctor through vnetd as root"))
		case n.DHCPv4 && !n.DHCPv4Pool:
			out = append(out, ok(CheckDHCP, n.Name, fmt.Sprintf("dnsmasq (pid %d) of %s serves only fixed <host> addresses: not probed", n.DnsmasqPid, n.Bridge)))
		case n.DHCPv4 && pr.DHCPErr != nil:
			out = append(out, problem(CheckDHCP, n.Name, fmt.Sprintf("the dnsmasq (pid %d) of %s gives no DHCP lease: %v", n.DnsmasqPid, n.Bridge, pr.DHCPErr),
				"see the other problems (a firewall or another DHCP server); else "+restart))
		case n.DHCPv4:
			out = append(out, ok(CheckDHCP, n.Name, fmt.Sprintf("dnsmasq (pid %d) leased %s to a probe in %v (released again)", n.DnsmasqPid, pr.Lease, pr.DHCPTook.Round(time.Millisecond/10))))
		}
		if n.DNS && pr.Err == nil {
			switch {
			case !pr.DNSRan:
				out = append(out, problem(CheckDNS, n.Name, "DNS of "+n.Bridge+" not probed: the probe got no address", "see "+CheckDHCP))
			case pr.DNSErr != nil:
				out = append(out, problem(CheckDNS, n.Name, fmt.Sprintf("the dnsmasq (pid %d) of %s does not answer DNS: %v", n.DnsmasqPid, n.Bridge, pr.DNSErr),
					"see the other problems (a firewall or another DNS server); else "+restart))
			default:
				out = append(out, ok(CheckDNS, n.Name, fmt.Sprintf("dnsmasq answered a DNS query on %s in %v", n.Bridge, pr.DNSTook.Round(time.Millisecond/10))))
			}
		}
	}
	if n.DNS {
		for _, up := range n.Upstreams {
			took, err := h.QueryDNS(ctx, up, timeout)
			if err != nil {
				out = append(out, problem(CheckUpstream, n.Name, fmt.Sprintf("upstream DNS server %s of %s does not answer: %v", up, n.Bridge, err),
					"fix the route to it or name a working server (/etc/resolv.conf, or <dns><forwarder addr=…/> in the network)"))
			} else {
				out = append(out, ok(CheckUpstream, n.Name, fmt.Sprintf("upstream DNS server %s answered in %v", up, took.Round(time.Millisecond/10))))
			}
		}
	}
	return out
}
