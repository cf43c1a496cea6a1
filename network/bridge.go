// Package network configures the host side of a vnet network: the bridge, its
// addresses, static routes and the IPv6 sysctls of the bridge, the global
// forwarding sysctls, and the check for subnets already used on the host.
//
// Every function acts on the network namespace of the calling OS thread (the
// daemon runs inside its namespace; tests lock a thread into a throwaway one)
// and must not be called from a goroutine that expects another namespace.
// Functions are idempotent: they read the live state first and change only
// what differs, so calling them on a correct bridge is free of side effects.
package network

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	netxml "vnet/xml"
)

// maxNameLen is the longest interface name the kernel accepts (IFNAMSIZ-1).
const maxNameLen = unix.IFNAMSIZ - 1

// ErrNotBridge is wrapped when a link with the bridge's name exists but is not
// a bridge, so vnet must not adopt or delete it.
var ErrNotBridge = errors.New("exists and is not a bridge")

// DriftError lists how the live state of an object differs from the network
// definition. VerifyBridge returns it; drift repair and `vnetctl doctor` show
// the problems.
type DriftError struct {
	// Object names what was checked, e.g. `bridge "virbr0"`.
	Object string
	// Problems are short, human-readable differences, e.g. "mtu is 1500, want 9000".
	Problems []string
}

// Error returns the object followed by its problems, e.g.
// `bridge "virbr0": mtu is 1500, want 9000; address 192.168.122.1/24 missing`.
func (e *DriftError) Error() string {
	return e.Object + ": " + strings.Join(e.Problems, "; ")
}

// bridgeSpec is the desired state of a bridge, parsed from the network.
type bridgeSpec struct {
	name   string
	mac    net.HardwareAddr // nil: kernel's choice
	mtu    int              // 0: kernel's default
	stp    stpState
	addrs  []netip.Prefix
	v6     bool
	routes []route
}

// checkName validates an interface name the way the kernel does
// (dev_valid_name), so the error says what is wrong instead of ERANGE/EINVAL.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("network has no bridge name")
	case len(name) > maxNameLen:
		return fmt.Errorf("bridge %q: name is %d bytes long, the kernel allows at most %d", name, len(name), maxNameLen)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\v\f\r"):
		return fmt.Errorf("bridge %q: invalid interface name (no '/', ':', whitespace, '.' or '..')", name)
	}
	return nil
}

func specOf(n *netxml.Network) (bridgeSpec, error) {
	name := n.BridgeName()
	if !n.OwnsBridge() {
		return bridgeSpec{}, netxml.Errorf(netxml.KindUnsupported,
			"network '%s' with forward mode '%s' uses a host bridge; vnet does not manage it", n.Name, n.ForwardMode())
	}
	if err := checkName(name); err != nil {
		return bridgeSpec{}, err
	}
	s := bridgeSpec{name: name, v6: hasIPv6(n.IPs)}
	bad := func(err error) (bridgeSpec, error) { return bridgeSpec{}, fmt.Errorf("bridge %q: %w", name, err) }
	if n.MAC != nil && n.MAC.Address != "" {
		mac, err := net.ParseMAC(n.MAC.Address)
		if err != nil || len(mac) != 6 {
			return bad(fmt.Errorf("invalid mac address %q", n.MAC.Address))
		}
		s.mac = mac
	}
	if n.MTU != nil {
		s.mtu = int(n.MTU.Size)
	}
	var stp, delay string
	if n.Bridge != nil {
		stp, delay = n.Bridge.STP, n.Bridge.Delay
	}
	var err error
	if s.stp, err = wantSTP(stp, delay); err != nil {
		return bad(err)
	}
	if s.addrs, err = networkAddrs(n.IPs); err != nil {
		return bad(err)
	}
	for _, r := range n.Routes {
		rt, err := parseRoute(r)
		if err != nil {
			return bad(err)
		}
		s.routes = append(s.routes, rt)
	}
	return s, nil
}

// EnsureBridge makes the bridge of a network that owns its bridge match the
// definition: it creates the bridge (or adopts an existing bridge of that
// name), sets MAC, MTU, STP and forward delay, the per-bridge IPv6 sysctls,
// adds the address of every <ip>, sets the bridge up and adds the static
// <route>s. On a bridge that is already correct it changes nothing (no down/up,
// no address re-added, foreign addresses kept). created reports that this call
// created the link, also when a later step failed: the caller's rollback then
// deletes it.
func EnsureBridge(n *netxml.Network) (created bool, err error) {
	s, err := specOf(n)
	if err != nil {
		return false, err
	}
	h, err := newHandle()
	if err != nil {
		return false, fmt.Errorf("bridge %q: %w", s.name, err)
	}
	defer h.Close()

	link, err := h.linkByName(s.name)
	if err != nil {
		return false, fmt.Errorf("bridge %q: look up: %w", s.name, err)
	}
	if link == nil {
		la := netlink.NewLinkAttrs()
		la.Name = s.name
		// The MAC is given at creation so the kernel marks it as set by
		// the user and keeps it when ports join (NET_ADDR_SET).
		la.HardwareAddr = s.mac
		err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la})
		switch {
		case err == nil:
			created = true
		case errors.Is(err, unix.EEXIST):
			// Created concurrently by someone else: adopt it below if it is a bridge.
		default:
			return false, fmt.Errorf("bridge %q: create: %w", s.name, err)
		}
		if link, err = h.linkByName(s.name); err != nil || link == nil {
			return created, fmt.Errorf("bridge %q: look up after create: %v", s.name, orGone(err))
		}
	}
	if link.Type() != "bridge" {
		return false, fmt.Errorf("bridge %q: %w", s.name, ErrNotBridge)
	}
	return created, ensureBridgeState(h, link, s, created)
}

func orGone(err error) error {
	if err == nil {
		return errors.New("link disappeared")
	}
	return err
}

func ensureBridgeState(h handle, link netlink.Link, s bridgeSpec, created bool) error {
	fail := func(step string, err error) error { return fmt.Errorf("bridge %q: %s: %w", s.name, step, err) }
	a := link.Attrs()

	if s.mac != nil && !bytes.Equal(a.HardwareAddr, s.mac) {
		if err := h.LinkSetHardwareAddr(link, s.mac); err != nil {
			return fail("set mac "+s.mac.String(), err)
		}
	}
	// Why set the MTU on a new bridge even when it already has that value:
	// only a SETLINK marks it as chosen by the user; otherwise the kernel
	// lowers (or raises) the bridge MTU to its ports' minimum when a guest
	// port joins.
	if s.mtu != 0 && (created || a.MTU != s.mtu) {
		if err := h.LinkSetMTU(link, s.mtu); err != nil {
			return fail(fmt.Sprintf("set mtu %d", s.mtu), err)
		}
	}
	if err := ensureSTP(a.Index, s.stp); err != nil {
		return fail("set stp", err)
	}
	// disable_ipv6 must be 0 before IPv6 addresses can be added.
	if err := ensureBridgeSysctls(s.name, s.v6); err != nil {
		return fail("ipv6 sysctls", err)
	}

	have, err := h.addrs(link)
	if err != nil {
		return fail("list addresses", err)
	}
	for _, p := range s.addrs {
		if hasAddr(have, p) {
			continue
		}
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: netIPNet(p)}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fail("add address "+p.String(), err)
		}
	}

	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return fail("set up", err)
		}
	}

	if len(s.routes) > 0 {
		rts, err := h.routes(link, netlink.FAMILY_ALL)
		if err != nil {
			return fail("list routes", err)
		}
		for _, r := range s.routes {
			if hasRoute(rts, r) {
				continue
			}
			nr := &netlink.Route{
				LinkIndex: a.Index,
				Dst:       netIPNet(r.Dst),
				Gw:        net.IP(r.Gw.AsSlice()),
				Priority:  r.Metric,
				// As libvirt (and `ip route add`) do.
				Protocol: unix.RTPROT_BOOT,
			}
			if err := h.RouteAdd(nr); err != nil {
				return fail("add route "+r.String(), err)
			}
		}
	}
	return nil
}

// ensureSTP applies the wanted STP state and forward delay in the order the
// kernel accepts: with STP on, delays outside 2..30 s are rejected, so the
// delay is set while STP is off (or already in range) and STP is switched off
// before an out-of-range delay is written.
func ensureSTP(idx int, want stpState) error {
	cur, err := bridgeSTP(idx)
	if err != nil {
		return err
	}
	if cur == want {
		return nil
	}
	setDelay := func() error {
		if cur.Delay == want.Delay {
			return nil
		}
		return setBridgeSTP(idx, nil, &want.Delay)
	}
	setState := func() error {
		if cur.On == want.On {
			return nil
		}
		return setBridgeSTP(idx, &want.On, nil)
	}
	if want.On {
		if err := setDelay(); err != nil {
			return err
		}
		return setState()
	}
	if err := setState(); err != nil {
		return err
	}
	return setDelay()
}

func hasAddr(have []netlink.Addr, p netip.Prefix) bool {
	return slices.ContainsFunc(have, func(a netlink.Addr) bool {
		q, ok := addrPrefix(a)
		return ok && q == p
	})
}

func hasRoute(have []netlink.Route, r route) bool {
	return slices.ContainsFunc(have, func(nr netlink.Route) bool {
		dst, ok := fromIPNet(nr.Dst)
		if !ok || dst != r.Dst || nr.Priority != r.Metric {
			return false
		}
		gw, ok := netip.AddrFromSlice(nr.Gw)
		return ok && gw.Unmap() == r.Gw
	})
}

// DeleteBridge deletes the bridge named name. A missing link is not an error;
// a link of that name that is not a bridge is left alone (ErrNotBridge).
func DeleteBridge(name string) error {
	h, err := newHandle()
	if err != nil {
		return fmt.Errorf("bridge %q: %w", name, err)
	}
	defer h.Close()
	link, err := h.linkByName(name)
	if err != nil {
		return fmt.Errorf("bridge %q: look up: %w", name, err)
	}
	if link == nil {
		return nil
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("bridge %q: %w", name, ErrNotBridge)
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("bridge %q: delete: %w", name, err)
	}
	return nil
}

// VerifyBridge compares the live bridge with the network: it exists, is a
// bridge, is up, has the network's MAC, MTU, STP state and forward delay, every
// <ip> address, every static route and the per-bridge IPv6 sysctls. It
// returns nil, a *DriftError listing the differences, or another error when
// the state could not be read.
func VerifyBridge(n *netxml.Network) error {
	s, err := specOf(n)
	if err != nil {
		return err
	}
	h, err := newHandle()
	if err != nil {
		return fmt.Errorf("bridge %q: %w", s.name, err)
	}
	defer h.Close()
	drift := &DriftError{Object: fmt.Sprintf("bridge %q", s.name)}
	problem := func(format string, args ...any) {
		drift.Problems = append(drift.Problems, fmt.Sprintf(format, args...))
	}

	link, err := h.linkByName(s.name)
	if err != nil {
		return fmt.Errorf("bridge %q: look up: %w", s.name, err)
	}
	if link == nil {
		problem("does not exist")
		return drift
	}
	if link.Type() != "bridge" {
		problem("is a %s link, not a bridge", link.Type())
		return drift
	}
	a := link.Attrs()
	if a.Flags&net.FlagUp == 0 {
		problem("is down")
	}
	if s.mac != nil && !bytes.Equal(a.HardwareAddr, s.mac) {
		problem("mac is %s, want %s", a.HardwareAddr, s.mac)
	}
	if s.mtu != 0 && a.MTU != s.mtu {
		problem("mtu is %d, want %d", a.MTU, s.mtu)
	}
	cur, err := bridgeSTP(a.Index)
	if err != nil {
		return fmt.Errorf("bridge %q: read stp: %w", s.name, err)
	}
	if cur.On != s.stp.On {
		problem("stp is %s, want %s", onOff(cur.On), onOff(s.stp.On))
	}
	if cur.Delay != s.stp.Delay {
		problem("forward delay is %s, want %s", centis(cur.Delay), centis(s.stp.Delay))
	}
	have, err := h.addrs(link)
	if err != nil {
		return fmt.Errorf("bridge %q: list addresses: %w", s.name, err)
	}
	for _, p := range s.addrs {
		if !hasAddr(have, p) {
			problem("address %s missing", p)
		}
	}
	if len(s.routes) > 0 {
		rts, err := h.routes(link, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("bridge %q: list routes: %w", s.name, err)
		}
		for _, r := range s.routes {
			if !hasRoute(rts, r) {
				problem("route %s missing", r)
			}
		}
	}
	disable := "1"
	if s.v6 {
		disable = "0"
	}
	for _, kv := range [][2]string{{"disable_ipv6", disable}, {"accept_ra", "0"}, {"autoconf", "0"}} {
		sc := sysctl{"net", "ipv6", "conf", s.name, kv[0]}
		v, err := sc.read()
		if err != nil {
			if !s.v6 {
				continue // no IPv6 in this kernel: nothing to check
			}
			return fmt.Errorf("bridge %q: %w", s.name, err)
		}
		if v != kv[1] {
			problem("sysctl %s is %s, want %s", sc, v, kv[1])
		}
	}
	if len(drift.Problems) > 0 {
		return drift
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// centis formats a forward delay in 1/100 s as seconds.
func centis(v uint32) string {
	if v%userHZ == 0 {
		return fmt.Sprintf("%ds", v/userHZ)
	}
	return fmt.Sprintf("%.2fs", float64(v)/userHZ)
}

// LinkExists reports whether a link named name exists. When the kernel
// cannot be asked it reports true, so that a caller picking a free name
// skips it rather than colliding.
func LinkExists(name string) bool {
	h, err := newHandle()
	if err != nil {
		return true
	}
	defer h.Close()
	l, err := h.linkByName(name)
	return err != nil || l != nil
}

// LinkIndex returns the ifindex of the link named name, or 0 when it does not exist.
func LinkIndex(name string) int {
	h, err := newHandle()
	if err != nil {
		return 0
	}
	defer h.Close()
	l, err := h.linkByName(name)
	if err != nil || l == nil {
		return 0
	}
	return l.Attrs().Index
}

// RetireBridge takes a bridge out of service at once and deletes it in the
// background: it sets the link down and removes its addresses (so the subnet
// and the network's traffic are gone when it returns), then deletes the link
// in a goroutine and closes the returned channel when the link is gone.
//
// Why: the kernel's unregistration of a net device waits for RCU grace
// periods, about 40 ms on a small VM, which would be most of a net-destroy.
// Callers must wait on the channel before anything reuses the name.
func RetireBridge(name string) (<-chan error, error) {
	h, err := newHandle()
	if err != nil {
		return nil, fmt.Errorf("bridge %q: %w", name, err)
	}
	link, err := h.linkByName(name)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("bridge %q: look up: %w", name, err)
	}
	done := make(chan error, 1)
	if link == nil {
		h.Close()
		done <- nil
		close(done)
		return done, nil
	}
	if link.Type() != "bridge" {
		h.Close()
		return nil, fmt.Errorf("bridge %q: %w", name, ErrNotBridge)
	}
	if err := h.LinkSetDown(link); err != nil && !errors.Is(err, unix.ENODEV) {
		h.Close()
		return nil, fmt.Errorf("bridge %q: set down: %w", name, err)
	}
	addrs, err := h.addrs(link)
	if err == nil {
		for i := range addrs {
			_ = h.AddrDel(link, &addrs[i])
		}
	}
	go func() {
		defer h.Close()
		var err error
		if derr := h.LinkDel(link); derr != nil && !errors.Is(derr, unix.ENODEV) {
			err = fmt.Errorf("bridge %q: delete: %w", name, derr)
		}
		done <- err
		close(done)
	}()
	return done, nil
}
