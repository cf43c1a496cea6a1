package network

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linkAddrs returns the addresses of one link.
//
// Why not netlink.AddrList(link): it dumps every address of the host and
// filters here, so reading one bridge's addresses cost as much as all of
// them, and adopting or checking N networks cost O(N²). With
// NETLINK_GET_STRICT_CHK and the index in the request the kernel (≥ 5.0)
// dumps that link's addresses only; an older kernel ignores the index and
// the filter below keeps the answer right.
func linkAddrs(index int) ([]netlink.Addr, error) {
	sock, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer sock.Close()
	// An error (a kernel before 4.20) only means an unfiltered dump.
	_ = unix.SetsockoptInt(sock.GetFd(), unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1)
	req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	msg := nl.NewIfAddrmsg(unix.AF_UNSPEC)
	msg.Index = uint32(index)
	req.AddData(msg)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	if err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, m := range msgs {
		ifa := nl.DeserializeIfAddrmsg(m)
		if int(ifa.Index) != index {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[ifa.Len():])
		if err != nil {
			return nil, fmt.Errorf("parse address of link %d: %w", index, err)
		}
		a := netlink.Addr{LinkIndex: index, Scope: int(ifa.Scope), Flags: int(ifa.Flags)}
		var local, dst net.IP
		for _, at := range attrs {
			switch at.Attr.Type {
			case unix.IFA_LOCAL:
				local = net.IP(at.Value)
			case unix.IFA_ADDRESS:
				dst = net.IP(at.Value)
			case unix.IFA_LABEL:
				a.Label = string(at.Value[:len(at.Value)-1])
			case unix.IFA_FLAGS:
				if len(at.Value) >= 4 {
					a.Flags = int(binary.NativeEndian.Uint32(at.Value))
				}
			}
		}
		ip := dst
		if local != nil {
			ip = local // IPv4: IFA_ADDRESS is the peer's on point-to-point links
			if dst != nil && !dst.Equal(local) {
				a.Peer = &net.IPNet{IP: dst, Mask: net.CIDRMask(int(ifa.Prefixlen), 8*len(dst))}
			}
		}
		if ip == nil {
			continue
		}
		a.IPNet = &net.IPNet{IP: ip, Mask: net.CIDRMask(int(ifa.Prefixlen), 8*len(ip))}
		out = append(out, a)
	}
	return out, nil
}
