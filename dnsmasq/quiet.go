package dnsmasq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Every dnsmasq listens to the host's address and route events on an
// rtnetlink socket (whatever its bind mode) and runs its main loop for each
// of them. With N networks, each new bridge (an address, a local, broadcast
// and prefix route: four messages) woke all N processes: thousands of
// wake-ups per net-start at a thousand networks, which made every start
// slower the more networks ran. quietNetlink attaches a socket filter to
// that socket, so the kernel hands dnsmasq only the events of its own
// bridge and the replies to its own requests. A filter attached through a
// duplicate of the descriptor (pidfd_getfd) is the socket's, so it holds for
// dnsmasq's own descriptor too. When the bridge is re-created, its dnsmasq
// is restarted (new index, new filter).

// quietNetlink filters the rtnetlink socket of process pid down to the
// events of link ifindex.
func quietNetlink(pid, ifindex int) error {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		return errors.New("socket filter written for little-endian hosts only")
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	fd, portid, err := rtnetlinkSocket(pid, pidfd)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	prog := netlinkFilter(portid, uint32(ifindex))
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
}

// muteNetlink drops every multicast group of the rtnetlink socket of
// process pid: it then gets only the replies to its own requests. Why more
// than quietNetlink: the kernel hands each address or route event to every
// member of its group and runs the member's filter in the context of the
// change, so a thousand filtered dnsmasq sockets still made each netlink
// change of vnetd's (a new bridge: about twenty events) cost more the more
// networks ran; a socket that left the groups costs nothing.
func muteNetlink(pid int) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	fd, _, err := rtnetlinkSocket(pid, pidfd)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	nl, ok := sa.(*unix.SockaddrNetlink)
	if err != nil || !ok {
		return fmt.Errorf("rtnetlink socket of %d: groups: %v", pid, err)
	}
	// dnsmasq joins its groups by bind (the first 32, a bitmask).
	for g := range 32 {
		if nl.Groups&(1<<g) == 0 {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_DROP_MEMBERSHIP, g+1); err != nil {
			return fmt.Errorf("rtnetlink socket of %d: leave group %d: %w", pid, g+1, err)
		}
	}
	return nil
}

// rtnetlinkSocket returns a duplicate (ours to close) of the process's
// rtnetlink socket that listens to multicast groups, and its port id. Why
// each of the process's own descriptors is asked rather than
// /proc/PID/net/netlink read: that file lists every netlink socket of the
// network namespace, a thousand and more with a thousand networks, which
// made each start cost more the more networks ran.
func rtnetlinkSocket(pid, pidfd int) (fd int, portid uint32, err error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1, 0, err
	}
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); !strings.HasPrefix(l, "socket:") {
			continue
		}
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			return -1, 0, fmt.Errorf("descriptor %d of %d: %w", n, pid, err)
		}
		if p, ok := multicastRtnetlink(fd); ok {
			return fd, p, nil
		}
		unix.Close(fd)
	}
	return -1, 0, errors.New("no rtnetlink socket with multicast groups")
}

// multicastRtnetlink reports whether fd is an rtnetlink socket bound to
// multicast groups, and its port id.
func multicastRtnetlink(fd int) (uint32, bool) {
	if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || d != unix.AF_NETLINK {
		return 0, false
	}
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.NETLINK_ROUTE {
		return 0, false
	}
	sa, err := unix.Getsockname(fd)
	nl, ok := sa.(*unix.SockaddrNetlink)
	if err != nil || !ok || nl.Groups == 0 {
		return 0, false
	}
	return nl.Pid, true
}

// bpf is a classic BPF program under construction with symbolic jumps.
type bpf struct {
	ins    []unix.SockFilter
	labels map[string]int
	jumps  map[int][2]string // instruction → true and false labels ("" = next)
}

func (b *bpf) op(code uint16, k uint32) { b.ins = append(b.ins, unix.SockFilter{Code: code, K: k}) }
func (b *bpf) label(l string)           { b.labels[l] = len(b.ins) }
func (b *bpf) jeq(k uint32, t, f string) {
	b.jumps[len(b.ins)] = [2]string{t, f}
	b.op(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, k)
}

func (b *bpf) resolve() []unix.SockFilter {
	for i, j := range b.jumps {
		for n, l := range j {
			off := 0
			if l != "" {
				off = b.labels[l] - i - 1
			}
			if off < 0 || off > 255 {
				panic(fmt.Sprintf("bpf: jump from %d to %s out of range", i, l))
			}
			if n == 0 {
				b.ins[i].Jt = uint8(off)
			} else {
				b.ins[i].Jf = uint8(off)
			}
		}
	}
	return b.ins
}

// The message types and attribute the filter looks at (linux/rtnetlink.h).
const (
	rtaOIF       = 4
	nlmsgHdrLen  = 16
	ifaIndexOff  = nlmsgHdrLen + 4  // ifaddrmsg.ifa_index
	rtAttrsOff   = nlmsgHdrLen + 12 // first attribute after struct rtmsg
	routeAttrMax = 12               // attributes looked at for RTA_OIF
)

// netlinkFilter passes replies to the socket's own requests (port id
// portid), address and route events of link ifindex, and every other kind
// of message; it drops address and route events of other links. Classic
// BPF loads words and halves in network byte order, so host-order fields
// are compared with swapped constants (little-endian hosts).
func netlinkFilter(portid, ifindex uint32) []unix.SockFilter {
	b := &bpf{labels: map[string]int{}, jumps: map[int][2]string{}}
	sw32, sw16 := bits.ReverseBytes32, func(v uint16) uint32 { return uint32(bits.ReverseBytes16(v)) }
	b.op(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 12) // nlmsg_pid
	b.jeq(sw32(portid), "accept", "")
	b.op(unix.BPF_LD|unix.BPF_H|unix.BPF_ABS, 4) // nlmsg_type
	b.jeq(sw16(unix.RTM_NEWADDR), "addr", "")
	b.jeq(sw16(unix.RTM_DELADDR), "addr", "")
	b.jeq(sw16(unix.RTM_NEWROUTE), "route", "")
	b.jeq(sw16(unix.RTM_DELROUTE), "route", "accept")
	b.label("addr")
	b.op(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, ifaIndexOff)
	b.jeq(sw32(ifindex), "accept", "drop")
	b.label("route")
	b.op(unix.BPF_LDX|unix.BPF_W|unix.BPF_IMM, rtAttrsOff)
	for range routeAttrMax {
		// A load past the message ends the program with 0: dropped
		// (a route without an output link is none of dnsmasq's).
		b.op(unix.BPF_LD|unix.BPF_H|unix.BPF_IND, 2) // rta_type
		b.jeq(sw16(rtaOIF), "oif", "")
		// X += align4(rta_len), rta_len read byte by byte (little-endian).
		b.op(unix.BPF_STX, 2)                        // M[2] = X
		b.op(unix.BPF_LD|unix.BPF_B|unix.BPF_IND, 1) // high byte
		b.op(unix.BPF_ALU|unix.BPF_LSH|unix.BPF_K, 8)
		b.op(unix.BPF_ST, 0)
		b.op(unix.BPF_LD|unix.BPF_B|unix.BPF_IND, 0) // low byte
		b.op(unix.BPF_LDX|unix.BPF_MEM, 0)
		b.op(unix.BPF_ALU|unix.BPF_OR|unix.BPF_X, 0)
		b.op(unix.BPF_ALU|unix.BPF_ADD|unix.BPF_K, 3)
		b.op(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0xfffc)
		b.jeq(0, "drop", "") // a zero length would loop in place
		b.op(unix.BPF_LDX|unix.BPF_MEM, 2)
		b.op(unix.BPF_ALU|unix.BPF_ADD|unix.BPF_X, 0)
		b.op(unix.BPF_MISC|unix.BPF_TAX, 0)
	}
	b.op(unix.BPF_RET|unix.BPF_K, 0xffffffff) // too many attributes: pass
	b.label("oif")
	b.op(unix.BPF_LD|unix.BPF_W|unix.BPF_IND, 4)
	b.jeq(sw32(ifindex), "accept", "drop")
	b.label("drop")
	b.op(unix.BPF_RET|unix.BPF_K, 0)
	b.label("accept")
	b.op(unix.BPF_RET|unix.BPF_K, 0xffffffff)
	return b.resolve()
}
