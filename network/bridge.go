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
	"hash/fnv"
	"io/fs"
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

// bridgeState is what ConvergeBridge compares with the bridgeSpec: the live
// state of an existing bridge, or, in a dry run, the state the kernel gives a
// bridge it creates.
type bridgeState struct {
	mac    net.HardwareAddr
	mtu    int
	up     bool
	stp    stpState
	addrs  []netlink.Addr
	routes []netlink.Route
	// sysctls holds the per-bridge IPv6 sysctls by key ("" = no such
	// sysctl: IPv6 disabled in the kernel).
	sysctls map[string]string
}

// bridgeSysctlKeys are the per-bridge IPv6 sysctls, in the order they are
// set: disable_ipv6 must be 0 before IPv6 addresses can be added.
var bridgeSysctlKeys = []string{"disable_ipv6", "accept_ra", "autoconf"}

// want returns the value a per-bridge sysctl must have, as libvirt sets
// them: disable_ipv6 (1 without IPv6 address, else 0), accept_ra=0 so guests
// cannot hijack the host's routing with router advertisements, and
// autoconf=0 as for any gateway interface.
func (s bridgeSpec) wantSysctl(key string) string {
	if key == "disable_ipv6" && !s.v6 {
		return "1"
	}
	return "0"
}

func bridgeSysctl(br, key string) sysctl { return sysctl{"net", "ipv6", "conf", br, key} }

// readBridgeState reads the live state of a bridge.
func readBridgeState(h handle, link netlink.Link, s bridgeSpec) (bridgeState, error) {
	a := link.Attrs()
	st := bridgeState{mac: a.HardwareAddr, mtu: a.MTU, up: a.Flags&net.FlagUp != 0, sysctls: map[string]string{}}
	var err error
	if st.stp, err = bridgeSTP(a.Index); err != nil {
		return st, fmt.Errorf("bridge %q: read stp: %w", s.name, err)
	}
	if st.addrs, err = h.addrs(link); err != nil {
		return st, fmt.Errorf("bridge %q: list addresses: %w", s.name, err)
	}
	if len(s.routes) > 0 {
		if st.routes, err = h.routes(link, netlink.FAMILY_ALL); err != nil {
			return st, fmt.Errorf("bridge %q: list routes: %w", s.name, err)
		}
	}
	return st, readSysctls(st.sysctls, s, s.name)
}

// newBridgeState predicts the state of a bridge the kernel has just created
// (for a dry run): down, no addresses, STP off with the kernel's 15 s forward
// delay, MTU 1500, the MAC given at creation, and the per-interface IPv6
// sysctls copied from net.ipv6.conf.default.
func newBridgeState(s bridgeSpec) (bridgeState, error) {
	st := bridgeState{mac: s.mac, mtu: 1500, stp: stpState{Delay: 15 * userHZ}, sysctls: map[string]string{}}
	return st, readSysctls(st.sysctls, s, "default")
}

// readSysctls reads the per-bridge sysctls of conf/<dev> into m. A missing
// IPv6 tree (ipv6.disable=1 on the kernel command line) is only an error when
// the network wants IPv6.
func readSysctls(m map[string]string, s bridgeSpec, dev string) error {
	for _, key := range bridgeSysctlKeys {
		v, err := bridgeSysctl(dev, key).read()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && !s.v6 {
				continue
			}
			return fmt.Errorf("bridge %q: %w", s.name, err)
		}
		m[key] = v
	}
	return nil
}

// ownedAlias is the interface alias that marks a bridge as created by vnet
// for network (see ownedAliasPrefix).
func ownedAlias(network string) string {
	alias := ownedAliasPrefix + network
	if len(alias) > 255 {
		alias = alias[:255]
	}
	return alias
}

// ownedBy reports whether vnet created the link for network.
func ownedBy(link netlink.Link, network string) bool {
	return link.Attrs().Alias == ownedAlias(network)
}

// foreignLink is the error for a link of the bridge's name that vnet did not
// create: vnet neither adopts, changes nor deletes it. The message is
// libvirt's (its bridge creation fails with EEXIST); a host bridge is used
// with <forward mode='bridge'> instead.
func foreignLink(name string) error {
	return netxml.Errorf(netxml.KindPlain, "error creating bridge interface %s: File exists", name)
}

// stagingPrefix starts the name a bridge is created under before it is
// marked and renamed (see createBridge). Only vnet uses it ('~' is in no
// name vnet or libvirt generate), so any link named so is a leftover of an
// interrupted start and may be deleted.
const stagingPrefix = "vnet~"

// stagingName is the name the bridge br is created under: fixed per bridge
// name, so that a dry run prints what the start does.
func stagingName(br string) string {
	h := fnv.New32a()
	h.Write([]byte(br))
	return fmt.Sprintf("%s%08x", stagingPrefix, h.Sum32())
}

// createBridge creates the bridge as vnet's, issuing the steps through ex: it
// is created under a staging name, marked (the kernel ignores IFLA_IFALIAS in
// the message that creates a link) and renamed. Why not create it under its
// name: a daemon killed between creating and marking it would leave an
// unmarked bridge of that name, which the next start must refuse as
// foreign. A staging leftover is deleted first. When the name was taken
// meanwhile, the staging bridge is deleted and libvirt's "File exists" error
// returned; on any failure nothing of it is left.
func createBridge(h handle, n *netxml.Network, s bridgeSpec, ex Executor) error {
	obj := fmt.Sprintf("bridge %q", s.name)
	tmp := stagingName(s.name)
	dropTmp := func() {
		if l, err := h.linkByName(tmp); err == nil && l != nil {
			_ = h.LinkDel(l)
		}
	}
	old, err := h.linkByName(tmp)
	if err != nil {
		return fmt.Errorf("bridge %q: look up: %w", tmp, err)
	}
	if old != nil {
		err := ex.Run(Step{Problem: fmt.Sprintf("bridge %q: left by an interrupted start of %s", tmp, obj), Cmd: "ip link del " + tmp, Do: func() error {
			if err := h.LinkDel(old); err != nil && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("bridge %q: delete: %w", tmp, err)
			}
			return nil
		}})
		if err != nil {
			return err
		}
	}
	cmd := "ip link add " + tmp
	if s.mac != nil {
		cmd += " address " + s.mac.String()
	}
	err = ex.Run(Step{Problem: obj + ": does not exist", Cmd: cmd + " type bridge", Do: func() error {
		la := netlink.NewLinkAttrs()
		la.Name = tmp
		// The MAC is given at creation so the kernel marks it as set by
		// the user and keeps it when ports join (NET_ADDR_SET).
		la.HardwareAddr = s.mac
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return fmt.Errorf("%s: create: %w", obj, err)
		}
		return nil
	}})
	if err != nil {
		return err
	}
	alias := ownedAlias(n.Name)
	err = ex.Run(Step{Cmd: fmt.Sprintf("ip link set %s alias %s", tmp, alias), Do: func() error {
		if err := setAlias(h, tmp, alias); err != nil {
			dropTmp()
			return err
		}
		return nil
	}})
	if err != nil {
		return err
	}
	return ex.Run(Step{Cmd: fmt.Sprintf("ip link set %s name %s", tmp, s.name), Do: func() error {
		l, err := h.linkByName(tmp)
		if err == nil && l == nil {
			err = errors.New("link disappeared")
		}
		if err == nil {
			err = h.LinkSetName(l, s.name)
		}
		if err != nil {
			dropTmp()
			if errors.Is(err, unix.EEXIST) {
				// Created by someone else since we looked: not ours.
				return foreignLink(s.name)
			}
			return fmt.Errorf("%s: rename from %s: %w", obj, tmp, err)
		}
		return nil
	}})
}

// ConvergeBridge makes the bridge of a network that owns its bridge match the
// definition, issuing every change through ex: it creates the bridge and marks
// it as vnet's (or adopts the existing bridge vnet created for this network),
// sets MAC, MTU, STP and forward delay, the per-bridge IPv6 sysctls, adds the
// address of every <ip>, sets the bridge up and adds the static <route>s. It
// reads the live state first and issues only what differs: on a correct
// bridge it issues nothing (no down/up, no address re-added, foreign
// addresses kept). A link of that name that vnet did not create for this
// network is refused with libvirt's "File exists" error and left untouched.
//
// created reports that this call created the link (with a dry executor: would
// create it), also when a later step failed: the caller's rollback then
// deletes it.
func ConvergeBridge(n *netxml.Network, ex Executor) (created bool, err error) {
	if snap := snapshotOf(ex); snap != nil {
		// Nothing to change according to the pass's snapshot: done
		// without a read of our own. Otherwise read it all live.
		if _, err := convergeBridge(n, confirmOnly{}, snap); err == nil {
			return false, nil
		}
	}
	return convergeBridge(n, ex, nil)
}

// convergeBridge is ConvergeBridge reading the bridge from snap, or live
// when snap is nil.
func convergeBridge(n *netxml.Network, ex Executor, snap *Snapshot) (created bool, err error) {
	s, err := specOf(n)
	if err != nil {
		return false, err
	}
	obj := fmt.Sprintf("bridge %q", s.name)
	var (
		h    handle
		link netlink.Link
		st   bridgeState
	)
	switch {
	case snap != nil:
		// Only the reads come from the snapshot; confirmOnly makes
		// sure no step runs with its stale link.
		if link, st, err = snap.bridge(s); err != nil {
			return false, err
		}
		if link.Type() != "bridge" || !ownedBy(link, n.Name) {
			return false, foreignLink(s.name)
		}
	default:
		if h, err = newHandle(); err != nil {
			return false, fmt.Errorf("%s: %w", obj, err)
		}
		defer h.Close()
		if link, err = h.linkByName(s.name); err != nil {
			return false, fmt.Errorf("%s: look up: %w", obj, err)
		}
		if link == nil {
			if err := createBridge(h, n, s, ex); err != nil {
				return false, err
			}
			created = true
			if ex.Live() {
				if link, err = h.linkByName(s.name); err != nil || link == nil {
					return created, fmt.Errorf("%s: look up after create: %w", obj, orGone(err))
				}
				st, err = readBridgeState(h, link, s)
			} else {
				st, err = newBridgeState(s)
			}
			if err != nil {
				return created, err
			}
			break
		}
		if link.Type() != "bridge" || !ownedBy(link, n.Name) {
			return false, foreignLink(s.name)
		}
		if st, err = readBridgeState(h, link, s); err != nil {
			return false, err
		}
	}
	// The rest of a new bridge's setup is part of its creation, not drift.
	problem := func(format string, args ...any) string {
		if created {
			return ""
		}
		return obj + ": " + fmt.Sprintf(format, args...)
	}
	fail := func(step string, err error) error { return fmt.Errorf("%s: %s: %w", obj, step, err) }
	run := func(p, cmd, step string, do func() error) error {
		return ex.Run(Step{Problem: p, Cmd: cmd, Do: func() error {
			if err := do(); err != nil {
				return fail(step, err)
			}
			return nil
		}})
	}
	index := func() int { return link.Attrs().Index }

	if s.mac != nil && !bytes.Equal(st.mac, s.mac) {
		err := run(problem("mac is %s, want %s", st.mac, s.mac), fmt.Sprintf("ip link set %s address %s", s.name, s.mac),
			"set mac "+s.mac.String(), func() error { return h.LinkSetHardwareAddr(link, s.mac) })
		if err != nil {
			return created, err
		}
	}
	// Why set the MTU on a new bridge even when it already has that value:
	// only a SETLINK marks it as chosen by the user; otherwise the kernel
	// lowers (or raises) the bridge MTU to its ports' minimum when a guest
	// port joins.
	if s.mtu != 0 && (created || st.mtu != s.mtu) {
		err := run(problem("mtu is %d, want %d", st.mtu, s.mtu), fmt.Sprintf("ip link set %s mtu %d", s.name, s.mtu),
			fmt.Sprintf("set mtu %d", s.mtu), func() error { return h.LinkSetMTU(link, s.mtu) })
		if err != nil {
			return created, err
		}
	}
	for _, c := range stpChanges(st.stp, s.stp) {
		var p, cmd string
		if c.on != nil {
			p = problem("stp is %s, want %s", onOff(st.stp.On), onOff(*c.on))
			cmd = fmt.Sprintf("ip link set %s type bridge stp_state %d", s.name, map[bool]int{false: 0, true: 1}[*c.on])
		} else {
			p = problem("forward delay is %s, want %s", centis(st.stp.Delay), centis(*c.delay))
			cmd = fmt.Sprintf("ip link set %s type bridge forward_delay %d", s.name, *c.delay)
		}
		if err := run(p, cmd, "set stp", func() error { return setBridgeSTP(index(), c.on, c.delay) }); err != nil {
			return created, err
		}
	}
	for _, key := range bridgeSysctlKeys {
		cur, ok := st.sysctls[key]
		want := s.wantSysctl(key)
		if !ok || cur == want {
			continue
		}
		sc := bridgeSysctl(s.name, key)
		if err := ex.Run(sc.step(problem("sysctl %s is %s, want %s", sc, cur, want), want)); err != nil {
			return created, err
		}
	}
	for _, p := range s.addrs {
		if hasAddr(st.addrs, p) {
			continue
		}
		err := run(problem("address %s missing", p), fmt.Sprintf("ip addr add %s dev %s", p, s.name), "add address "+p.String(), func() error {
			if err := h.AddrAdd(link, &netlink.Addr{IPNet: netIPNet(p)}); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
			return nil
		})
		if err != nil {
			return created, err
		}
	}
	if !st.up {
		if err := run(problem("is down"), fmt.Sprintf("ip link set %s up", s.name), "set up", func() error { return h.LinkSetUp(link) }); err != nil {
			return created, err
		}
	}
	for _, r := range s.routes {
		if hasRoute(st.routes, r) {
			continue
		}
		cmd := fmt.Sprintf("ip route add %s via %s dev %s metric %d proto boot", r.Dst, r.Gw, s.name, r.Metric)
		err := run(problem("route %s missing", r), cmd, "add route "+r.String(), func() error {
			return h.RouteAdd(&netlink.Route{
				LinkIndex: index(),
				Dst:       netIPNet(r.Dst),
				Gw:        net.IP(r.Gw.AsSlice()),
				Priority:  r.Metric,
				// As libvirt (and `ip route add`) do.
				Protocol: unix.RTPROT_BOOT,
			})
		})
		if err != nil {
			return created, err
		}
	}
	return created, nil
}

func orGone(err error) error {
	if err == nil {
		return errors.New("link disappeared")
	}
	return err
}

// setAlias sets the interface alias of the link named name.
func setAlias(h handle, name, alias string) error {
	link, err := h.linkByName(name)
	if err == nil && link == nil {
		err = errors.New("link disappeared")
	}
	if err == nil {
		err = h.LinkSetAlias(link, alias)
	}
	if err != nil {
		return fmt.Errorf("bridge %q: set alias: %w", name, err)
	}
	return nil
}

// stpChange is one STP message: the state or the forward delay.
type stpChange struct {
	on    *bool
	delay *uint32
}

// stpChanges returns the STP messages that take a bridge from cur to want, in
// the order the kernel accepts: with STP on, delays outside 2..30 s are
// rejected, so the delay is set while STP is off (or already in range) and
// STP is switched off before an out-of-range delay is written. The kernel
// applies IFLA_BR_FORWARD_DELAY before IFLA_BR_STP_STATE within one message,
// hence one message each.
func stpChanges(cur, want stpState) []stpChange {
	var delay, state []stpChange
	if cur.Delay != want.Delay {
		delay = []stpChange{{delay: &want.Delay}}
	}
	if cur.On != want.On {
		state = []stpChange{{on: &want.On}}
	}
	if want.On {
		return append(delay, state...)
	}
	return append(state, delay...)
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

// DeleteBridge deletes the bridge vnet created for network (the rollback of
// a failed start). A missing link is not an error; a link of that name vnet
// did not create for network is left alone (ErrNotOurs).
func DeleteBridge(name, network string) error {
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
	if link.Type() != "bridge" || !ownedBy(link, network) {
		return fmt.Errorf("bridge %q: %w", name, ErrNotOurs)
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("bridge %q: delete: %w", name, err)
	}
	return nil
}

// VerifyBridge compares the live bridge with the network: it is the bridge
// vnet created for the network, is up, has the network's MAC, MTU, STP state
// and forward delay, every <ip> address, every static route and the
// per-bridge IPv6 sysctls. It returns nil, a *DriftError listing the
// differences, or another error (a foreign link, state that could not be
// read). It is ConvergeBridge with a recording executor: it changes nothing.
func VerifyBridge(n *netxml.Network) error {
	var rec Record
	if _, err := ConvergeBridge(n, &rec); err != nil {
		return err
	}
	if len(rec.Steps) == 0 {
		return nil
	}
	obj := fmt.Sprintf("bridge %q", n.BridgeName())
	drift := &DriftError{Object: obj}
	for _, p := range Problems(rec.Steps) {
		drift.Problems = append(drift.Problems, strings.TrimPrefix(p, obj+": "))
	}
	return drift
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
