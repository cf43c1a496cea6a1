package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VXLANPort is the IANA VXLAN UDP port, the destination port of every
// overlay's VXLAN device.
const VXLANPort = 4789

// vxlanAliasPrefix marks, in a VXLAN device's interface alias, that vnet
// created it for the network named in the rest of the alias.
const vxlanAliasPrefix = "vnet-vxlan:"

// VXLANOverhead is what VXLAN encapsulation adds to a frame on an underlay
// of that address family: outer IP + UDP + VXLAN headers + inner Ethernet.
func VXLANOverhead(local netip.Addr) int {
	if local.Is4() {
		return 50
	}
	return 70
}

// VXLANName is the device name of the overlay with that VNI (at most 13
// bytes: "vxlan" and up to 8 digits).
func VXLANName(vni uint32) string { return fmt.Sprintf("vxlan%d", vni) }

// VXLANSpec is the desired state of a network's VXLAN device: created with
// the VNI, the local VTEP address, dstport 4789 and no learning (EVPN
// installs remote MACs), a port of the network's bridge with learning off
// and neigh_suppress on, up, with the overlay's MTU; plus its DHCP guard.
type VXLANSpec struct {
	// Name is the device name (VXLANName).
	Name string
	// Network is the network that owns the device (its mark).
	Network string
	// Bridge is the network's bridge, the device's master.
	Bridge string
	// VNI is the VXLAN network identifier.
	VNI uint32
	// Local is this host's VTEP address.
	Local netip.Addr
	// MTU is the device's MTU (the overlay's: underlay minus overhead).
	MTU int
}

func (s VXLANSpec) object() string { return fmt.Sprintf("vxlan %q", s.Name) }

// vxlanState is what the kernel has of the device.
type vxlanState struct {
	identity []string // how VNI, local address, port, learning differ from the wanted
	master   int
	mtu      int
	up       bool
	learning bool
	suppress bool
}

// OverlayMTU returns the MTU of the overlay whose VTEP address is local:
// the MTU of the underlay link that holds the address minus the VXLAN
// overhead. The address must be on a link of this host.
func OverlayMTU(local netip.Addr) (int, error) {
	h, err := newHandle()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	addrs, err := h.addrs(nil)
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != local {
			continue
		}
		l, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("VTEP address %s: link %d: %w", local, a.LinkIndex, err)
		}
		return l.Attrs().MTU - VXLANOverhead(local), nil
	}
	return 0, fmt.Errorf("VTEP address %s is not on any link of this host", local)
}

// ConvergeVXLAN makes the network's VXLAN device match s, issuing every
// change through ex: create it (marked as the network's), re-create it when
// its VNI, local address, port or learning differ (the kernel cannot change
// them), set the MTU, plug it into the bridge, set the port's learning off
// and neigh_suppress on, set it up, and put its DHCP guard in place. On a
// correct device it issues nothing. A link of that name vnet did not create
// for the network is refused and left alone. The bridge must exist (or,
// recording, be about to be created).
func ConvergeVXLAN(s VXLANSpec, ex Executor) error {
	obj := s.object()
	h, err := newHandle()
	if err != nil {
		return fmt.Errorf("%s: %w", obj, err)
	}
	defer h.Close()
	link, err := h.linkByName(s.Name)
	if err != nil {
		return fmt.Errorf("%s: look up: %w", obj, err)
	}
	fail := func(step string, err error) error { return fmt.Errorf("%s: %s: %w", obj, step, err) }
	created := false
	create := func(problem string) error {
		cmd := fmt.Sprintf("ip link add %s mtu %d type vxlan id %d local %s dstport %d nolearning && ip link set %s alias %s%s",
			s.Name, s.MTU, s.VNI, s.Local, VXLANPort, s.Name, vxlanAliasPrefix, s.Network)
		if problem != "" {
			cmd = fmt.Sprintf("ip link del %s && %s", s.Name, cmd)
		}
		created = true
		return ex.Run(Step{Problem: problem, Cmd: cmd, Do: func() error {
			if link != nil {
				if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
					return fail("delete", err)
				}
			}
			v := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: s.Name, MTU: s.MTU},
				VxlanId: int(s.VNI), SrcAddr: net.IP(s.Local.AsSlice()), Port: VXLANPort, Learning: false}
			if err := h.LinkAdd(v); err != nil {
				if errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("%s: create: %w: a device with VNI %d may exist already", obj, err, s.VNI)
				}
				return fail("create", err)
			}
			if err := h.LinkSetAlias(v, vxlanAliasPrefix+s.Network); err != nil {
				_ = h.LinkDel(v)
				return fail("mark", err)
			}
			return nil
		}})
	}
	var st vxlanState
	switch {
	case link == nil:
		if err := create(""); err != nil {
			return err
		}
	default:
		if link.Type() != "vxlan" || link.Attrs().Alias != vxlanAliasPrefix+s.Network {
			return fmt.Errorf("%s: %w", obj, ErrNotOurs)
		}
		if st, err = readVXLAN(h, link, s); err != nil {
			return fail("read", err)
		}
		if len(st.identity) > 0 {
			if err := create(obj + ": " + strings.Join(st.identity, "; ") + ": re-create"); err != nil {
				return err
			}
		}
	}
	if created {
		// What a new device has: our MTU, no master, down, the
		// kernel's port defaults once plugged (learning on, no
		// neigh_suppress).
		st = vxlanState{mtu: s.MTU, learning: true}
		if ex.Live() {
			if link, err = h.linkByName(s.Name); err != nil || link == nil {
				return fmt.Errorf("%s: look up after create: %w", obj, orGone(err))
			}
			if st, err = readVXLAN(h, link, s); err != nil {
				return fail("read", err)
			}
		}
	}
	problem := func(format string, args ...any) string {
		if created {
			return ""
		}
		return obj + ": " + fmt.Sprintf(format, args...)
	}
	run := func(p, cmd, step string, do func() error) error {
		return ex.Run(Step{Problem: p, Cmd: cmd, Do: func() error {
			if err := do(); err != nil {
				return fail(step, err)
			}
			return nil
		}})
	}
	if st.mtu != s.MTU {
		if err := run(problem("mtu is %d, want %d", st.mtu, s.MTU), fmt.Sprintf("ip link set %s mtu %d", s.Name, s.MTU), "set mtu",
			func() error { return h.LinkSetMTU(link, s.MTU) }); err != nil {
			return err
		}
	}
	br, err := h.linkByName(s.Bridge)
	if err != nil {
		return fail("look up bridge "+s.Bridge, err)
	}
	if br == nil || st.master != br.Attrs().Index {
		// The port flags are reset by a new master.
		st.learning, st.suppress = true, false
		if err := run(problem("not plugged into bridge %s", s.Bridge), fmt.Sprintf("ip link set %s master %s", s.Name, s.Bridge), "plug",
			func() error {
				b, err := h.linkByName(s.Bridge)
				if err != nil || b == nil {
					return orGone(err)
				}
				return h.LinkSetMasterByIndex(link, b.Attrs().Index)
			}); err != nil {
			return err
		}
	}
	if st.learning || !st.suppress {
		if err := run(problem("bridge port learning %s, neigh_suppress %s; want off, on", onOff(st.learning), onOff(st.suppress)),
			fmt.Sprintf("bridge link set dev %s learning off neigh_suppress on", s.Name), "set port flags",
			func() error {
				if err := h.LinkSetLearning(link, false); err != nil {
					return err
				}
				return h.LinkSetBrNeighSuppress(link, true)
			}); err != nil {
			return err
		}
	}
	if !st.up {
		if err := run(problem("is down"), fmt.Sprintf("ip link set %s up", s.Name), "set up",
			func() error { return h.LinkSetUp(link) }); err != nil {
			return err
		}
	}
	return convergeDHCPGuard(s, created, ex)
}

// readVXLAN reads the device's state.
func readVXLAN(h handle, link netlink.Link, s VXLANSpec) (vxlanState, error) {
	v, ok := link.(*netlink.Vxlan)
	if !ok {
		return vxlanState{}, fmt.Errorf("not a vxlan device")
	}
	a := v.Attrs()
	st := vxlanState{master: a.MasterIndex, mtu: a.MTU, up: a.Flags&net.FlagUp != 0, learning: true}
	if v.VxlanId != int(s.VNI) {
		st.identity = append(st.identity, fmt.Sprintf("vni is %d, want %d", v.VxlanId, s.VNI))
	}
	if local, _ := netip.AddrFromSlice(v.SrcAddr); local.Unmap() != s.Local {
		st.identity = append(st.identity, fmt.Sprintf("local is %s, want %s", v.SrcAddr, s.Local))
	}
	if v.Port != VXLANPort {
		st.identity = append(st.identity, fmt.Sprintf("dstport is %d, want %d", v.Port, VXLANPort))
	}
	if v.Learning {
		st.identity = append(st.identity, "learning is on, want nolearning")
	}
	if a.MasterIndex != 0 {
		pi, err := h.LinkGetProtinfo(link)
		if err != nil {
			return st, fmt.Errorf("bridge port flags: %w", err)
		}
		st.learning, st.suppress = pi.Learning, pi.NeighSuppress
	}
	return st, nil
}

// DeleteVXLAN deletes the VXLAN device vnet created for the network, and
// its DHCP guard. A missing device is not an error; a device vnet did not
// create for the network is left alone (ErrNotOurs).
func DeleteVXLAN(name, networkName string) error {
	obj := fmt.Sprintf("vxlan %q", name)
	h, err := newHandle()
	if err != nil {
		return fmt.Errorf("%s: %w", obj, err)
	}
	defer h.Close()
	var errs []error
	if err := deleteDHCPGuard(name); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", obj, err))
	}
	l, err := h.linkByName(name)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("%s: look up: %w", obj, err))
	case l == nil:
	case l.Type() != "vxlan" || l.Attrs().Alias != vxlanAliasPrefix+networkName:
		errs = append(errs, fmt.Errorf("%s: %w", obj, ErrNotOurs))
	default:
		if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("%s: delete: %w", obj, err))
		}
	}
	return errors.Join(errs...)
}

// The DHCP guard keeps each host's DHCP to its own guests: DHCP requests
// are broadcasts that the bridge floods into the overlay, and every host's
// dnsmasq would answer them (from its own slice of the range), so a guest
// could be leased by another host. A table of the nftables bridge family
// drops DHCP (UDP to ports 67 and 68 over IPv4, 546 and 547 over IPv6)
// leaving or entering through the VXLAN port. Why nftables and not tc: DHCP must be matched on the inner
// frame at the bridge port, and the bridge family does that without the tc
// classifier and action modules (flower, gact) a kernel may lack. The table
// does not depend on the firewall backend: the bridge family has no
// iptables counterpart that every host has.

// dhcpGuardTable is the name of the guard's table for a VXLAN device.
func dhcpGuardTable(dev string) string { return "vnet-overlay-" + dev }

// dhcpGuardTag is the user data of every guard rule: how verification
// recognises them.
func dhcpGuardTag(dev string, i int) []byte { return fmt.Appendf(nil, "vnet dhcp guard %s %d", dev, i) }

// dhcpGuardMatch is one guard rule: DHCP of one family and port, leaving
// (oif) or entering (iif) through the device.
type dhcpGuardMatch struct {
	out  bool
	v6   bool
	port uint16
}

// dhcpGuardMatches are the guard's rules: (out|in) × (DHCP 67, 68 over
// IPv4 | DHCPv6 546, 547 over IPv6).
var dhcpGuardMatches = func() []dhcpGuardMatch {
	var out []dhcpGuardMatch
	for _, o := range []bool{true, false} {
		for _, m := range []dhcpGuardMatch{{port: 67}, {port: 68}, {v6: true, port: 546}, {v6: true, port: 547}} {
			m.out = o
			out = append(out, m)
		}
	}
	return out
}()

// dhcpGuardRules are the expressions of dhcpGuardMatches.
func dhcpGuardRules(dev string) [][]expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, dev)
	var out [][]expr.Any
	for _, m := range dhcpGuardMatches {
		key, proto := expr.MetaKeyIIFNAME, []byte{0x08, 0x00}
		if m.out {
			key = expr.MetaKeyOIFNAME
		}
		if m.v6 {
			proto = []byte{0x86, 0xdd}
		}
		p := make([]byte, 2)
		binary.BigEndian.PutUint16(p, m.port)
		out = append(out, []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: proto},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p},
			&expr.Verdict{Kind: expr.VerdictDrop},
		})
	}
	return out
}

// dhcpGuardText is the guard's table as nft prints it, for --dry-run.
func dhcpGuardText(dev string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table bridge %s {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n", dhcpGuardTable(dev))
	for _, m := range dhcpGuardMatches {
		dir, fam := "iifname", "ip"
		if m.out {
			dir = "oifname"
		}
		if m.v6 {
			fam = "ip6"
		}
		fmt.Fprintf(&b, "\t\t%s %q meta protocol %s udp dport %d drop\n", dir, dev, fam, m.port)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// dhcpGuardOK reports whether the guard's table, chain and rules are in place.
func dhcpGuardOK(c *nftables.Conn, dev string) (bool, error) {
	t := &nftables.Table{Name: dhcpGuardTable(dev), Family: nftables.TableFamilyBridge}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return false, err
	}
	var ch *nftables.Chain
	for _, x := range chains {
		if x.Table.Name == t.Name && x.Name == "forward" {
			ch = x
		}
	}
	if ch == nil || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward {
		return false, nil
	}
	rules, err := c.GetRules(t, ch)
	if err != nil {
		return false, err
	}
	if len(rules) != len(dhcpGuardRules(dev)) {
		return false, nil
	}
	for i, r := range rules {
		if !bytes.Equal(r.UserData, dhcpGuardTag(dev, i)) {
			return false, nil
		}
	}
	return true, nil
}

// convergeDHCPGuard puts the guard's table in place when it is missing or
// differs (always with a new device: the check would only cost time).
func convergeDHCPGuard(s VXLANSpec, created bool, ex Executor) error {
	table := dhcpGuardTable(s.Name)
	if !created {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("%s: dhcp guard: %w", s.object(), err)
		}
		ok, err := dhcpGuardOK(c, s.Name)
		if err != nil {
			return fmt.Errorf("%s: dhcp guard: read table bridge %s: %w", s.object(), table, err)
		}
		if ok {
			return nil
		}
	}
	p := ""
	if !created {
		p = fmt.Sprintf("%s: dhcp guard (nftables table bridge %s) missing or changed", s.object(), table)
	}
	cmd := fmt.Sprintf("nft -f - # table bridge %s: drop DHCP (udp dport 67, 68, 546, 547) from and to %s", table, s.Name)
	var detail string
	if !ex.Live() {
		detail = dhcpGuardText(s.Name)
	}
	return ex.Run(Step{Problem: p, Cmd: cmd, Detail: detail, Do: func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		t := &nftables.Table{Name: table, Family: nftables.TableFamilyBridge}
		// Add-then-delete-then-add: one batch replaces whatever is there.
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
		ch := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
		for i, e := range dhcpGuardRules(s.Name) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e, UserData: dhcpGuardTag(s.Name, i)})
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("%s: dhcp guard: write table bridge %s: %w", s.object(), table, err)
		}
		return nil
	}})
}

// deleteDHCPGuard removes the guard's table (no error when it is absent).
func deleteDHCPGuard(dev string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: dhcpGuardTable(dev), Family: nftables.TableFamilyBridge}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete table bridge %s: %w", t.Name, err)
	}
	return nil
}

// PruneVXLANs deletes every VXLAN device vnet created (marked
// vnet-vxlan:NAME) whose name is not in keep, and every DHCP guard table
// whose device is not in keep, and returns the device names. Devices and
// tables of anyone else are never touched.
func PruneVXLANs(keep map[string]bool) ([]string, error) {
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.linkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var pruned []string
	var errs []error
	for _, l := range links {
		a := l.Attrs()
		network, ok := strings.CutPrefix(a.Alias, vxlanAliasPrefix)
		if l.Type() != "vxlan" || !ok || keep[a.Name] {
			continue
		}
		if err := DeleteVXLAN(a.Name, network); err != nil {
			errs = append(errs, err)
			continue
		}
		pruned = append(pruned, a.Name)
	}
	c, err := nftables.New()
	if err != nil {
		return pruned, errors.Join(append(errs, err)...)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		return pruned, errors.Join(append(errs, fmt.Errorf("list bridge tables: %w", err))...)
	}
	for _, t := range tables {
		if dev, ok := strings.CutPrefix(t.Name, dhcpGuardTable("")); ok && !keep[dev] {
			if err := deleteDHCPGuard(dev); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return pruned, errors.Join(errs...)
}
