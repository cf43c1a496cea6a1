package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"sync"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Snapshot is the host's links (with each bridge's STP settings and each
// link's per-interface IPv6 sysctls) and addresses, read with one netlink
// dump each on first use, and the host-wide sysctls read once: the shared
// input of the converges of one periodic check of every network.
//
// Why: reading each network's bridge, STP, addresses and sysctls one by one
// cost about 0.3 ms of CPU per network and pass; one dump serves them all.
//
// A snapshot only ever confirms that a part is healthy: a converge that finds
// anything to change in it (or anything missing from it, e.g. a bridge
// created after the dump) reads the live state again and decides on that, so
// a stale snapshot can delay a repair to the next check but never cause a
// wrong change. The executor carries it (Apply.Pass, Record.Pass); a nil
// snapshot means "read everything live".
type Snapshot struct {
	once  sync.Once
	err   error
	links map[string]*snapLink
	addrs map[int][]netlink.Addr

	mu      sync.Mutex
	sysctls map[string]string
}

// snapLink is one link of the dump.
type snapLink struct {
	link   netlink.Link
	stp    stpState
	hasSTP bool
	// sysctls holds the per-interface IPv6 sysctls, in the order of
	// bridgeSysctlKeys (hasSysctls false: the link has no IPv6 state).
	sysctls    [3]int32
	hasSysctls bool
}

// parseSnapLink reads what a converge needs of one RTM_NEWLINK message:
// index, name, up, MTU, MAC and alias, a bridge's STP state and forward
// delay, and the per-interface IPv6 sysctls; nil for a message it cannot
// read. Why not netlink.LinkDeserialize: it decodes every attribute into
// allocated values (statistics, every link kind's data), which made the
// shared dump of a check of a thousand networks its largest cost; this walk
// allocates only the link it returns.
func parseSnapLink(m []byte) *snapLink {
	if len(m) < unix.SizeofIfInfomsg {
		return nil
	}
	info := (*unix.IfInfomsg)(unsafe.Pointer(&m[0]))
	attrs := netlink.LinkAttrs{Index: int(info.Index), RawFlags: info.Flags}
	if info.Flags&unix.IFF_UP != 0 {
		attrs.Flags |= net.FlagUp
	}
	sl := &snapLink{}
	kind := ""
	eachAttr(m[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
		switch typ {
		case unix.IFLA_IFNAME:
			attrs.Name = cString(v)
		case unix.IFLA_IFALIAS:
			attrs.Alias = cString(v)
		case unix.IFLA_MTU:
			if len(v) >= 4 {
				attrs.MTU = int(binary.NativeEndian.Uint32(v))
			}
		case unix.IFLA_ADDRESS:
			// An all-zero address (the loopback's) is none, as for
			// netlink.LinkDeserialize.
			if bytes.ContainsFunc(v, func(r rune) bool { return r != 0 }) {
				attrs.HardwareAddr = net.HardwareAddr(bytes.Clone(v))
			}
		case unix.IFLA_LINKINFO:
			eachAttr(v, func(typ uint16, v []byte) {
				switch typ {
				case nl.IFLA_INFO_KIND:
					kind = cString(v)
				case nl.IFLA_INFO_DATA:
					eachAttr(v, func(typ uint16, v []byte) {
						if len(v) < 4 {
							return
						}
						switch typ {
						case unix.IFLA_BR_STP_STATE:
							sl.stp.On = binary.NativeEndian.Uint32(v) != 0
							sl.hasSTP = true
						case unix.IFLA_BR_FORWARD_DELAY:
							sl.stp.Delay = binary.NativeEndian.Uint32(v)
						}
					})
				}
			})
		case unix.IFLA_AF_SPEC:
			eachAttr(v, func(typ uint16, v []byte) {
				if typ != unix.AF_INET6 {
					return
				}
				eachAttr(v, func(typ uint16, v []byte) {
					if typ != unix.IFLA_INET6_CONF {
						return
					}
					for k, i := range devconfIndex {
						if len(v) < 4*(i+1) {
							return
						}
						sl.sysctls[k] = int32(binary.NativeEndian.Uint32(v[4*i:]))
					}
					sl.hasSysctls = true
				})
			})
		}
	})
	if attrs.Name == "" {
		return nil
	}
	if kind == "bridge" {
		sl.link = &netlink.Bridge{LinkAttrs: attrs}
	} else {
		// Only bridges are converged from the snapshot; other links are
		// looked up by index (LinkIndex).
		sl.link = &netlink.Device{LinkAttrs: attrs}
		sl.hasSTP = false
	}
	return sl
}

// cString is a netlink string attribute without its terminating NUL.
func cString(v []byte) string {
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	return string(v)
}

// NewSnapshot returns an empty snapshot; the dumps run on first use.
func NewSnapshot() *Snapshot { return &Snapshot{} }

// devconfIndex holds the kernel's DEVCONF_* indices into IFLA_INET6_CONF
// (linux/ipv6.h) of bridgeSysctlKeys, in their order: disable_ipv6,
// accept_ra, autoconf.
var devconfIndex = [3]int{26, 3, 5}

// errNotInSnapshot makes a converge read the live state instead.
var errNotInSnapshot = errors.New("not confirmed by the snapshot")

func (p *Snapshot) load() error {
	p.once.Do(func() {
		msgs, err := retryDump(func() ([][]byte, error) {
			req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
			req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
			return req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		})
		if err != nil {
			p.err = err
			return
		}
		p.links = make(map[string]*snapLink, len(msgs))
		for _, m := range msgs {
			if sl := parseSnapLink(m); sl != nil {
				p.links[sl.link.Attrs().Name] = sl
			}
		}
		h, err := newHandle()
		if err != nil {
			p.err = err
			return
		}
		defer h.Close()
		addrs, err := h.addrs(nil)
		if err != nil {
			p.err = err
			return
		}
		p.addrs = map[int][]netlink.Addr{}
		for _, a := range addrs {
			p.addrs[a.LinkIndex] = append(p.addrs[a.LinkIndex], a)
		}
	})
	return p.err
}

// bridge returns the link of the bridge and its state as readBridgeState
// reads it, or errNotInSnapshot.
func (p *Snapshot) bridge(s bridgeSpec) (netlink.Link, bridgeState, error) {
	if err := p.load(); err != nil {
		return nil, bridgeState{}, errNotInSnapshot
	}
	sl := p.links[s.name]
	if sl == nil || !sl.hasSTP || len(s.routes) > 0 {
		return nil, bridgeState{}, errNotInSnapshot
	}
	a := sl.link.Attrs()
	st := bridgeState{mac: a.HardwareAddr, mtu: a.MTU, up: a.Flags&net.FlagUp != 0, stp: sl.stp, addrs: p.addrs[a.Index], sysctls: map[string]string{}}
	switch {
	case sl.hasSysctls:
		for k, key := range bridgeSysctlKeys {
			st.sysctls[key] = strconv.Itoa(int(sl.sysctls[k]))
		}
	case s.v6:
		return nil, bridgeState{}, errNotInSnapshot
	}
	return sl.link, st, nil
}

// LinkIndex returns the index of the link named name in the snapshot.
func (p *Snapshot) LinkIndex(name string) (int, bool) {
	if p.load() != nil {
		return 0, false
	}
	if sl := p.links[name]; sl != nil {
		return sl.link.Attrs().Index, true
	}
	return 0, false
}

// sysctlIs reports whether the host-wide sysctl s has the value want, read
// once per snapshot; on false the caller reads it live.
func (p *Snapshot) sysctlIs(s sysctl, want string) bool {
	key := s.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.sysctls[key]
	if !ok {
		var err error
		if v, err = s.read(); err != nil {
			return false
		}
		if p.sysctls == nil {
			p.sysctls = map[string]string{}
		}
		p.sysctls[key] = v
	}
	return v == want
}

// passer is implemented by executors that carry a pass's snapshot.
type passer interface{ snapshot() *Snapshot }

// snapshotOf returns the snapshot ex carries (nil: none).
func snapshotOf(ex Executor) *Snapshot {
	if p, ok := ex.(passer); ok {
		return p.snapshot()
	}
	return nil
}

// confirmOnly is the executor of a converge from a snapshot: any step means
// the snapshot does not confirm the part as healthy.
type confirmOnly struct{}

func (confirmOnly) Run(Step) error { return errNotInSnapshot }
func (confirmOnly) Live() bool     { return false }
