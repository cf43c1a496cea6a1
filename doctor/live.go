package doctor

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnet/network"
)

// Live is the Host of the calling process's network namespace.
type Live struct {
	// ProcDir is /proc (tests may point it elsewhere).
	ProcDir string
}

func (l *Live) proc() string {
	if l.ProcDir == "" {
		return "/proc"
	}
	return l.ProcDir
}

// Firewall reads nftables and, when present, legacy iptables.
func (l *Live) Firewall() ([]*Table, error) {
	ts, err := ReadNFT()
	if err != nil {
		return nil, err
	}
	legacy, err := ReadLegacy()
	if err != nil {
		return nil, err
	}
	return append(ts, legacy...), nil
}

// Routes lists the routes of every table and family.
func (l *Live) Routes() ([]Route, error) {
	rs, err := network.RetryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, err
	}
	names := listLinkNames()
	out := make([]Route, 0, len(rs))
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		p, ok := prefixOf(r.Dst)
		if !ok {
			continue
		}
		rt := Route{Dst: p, Table: r.Table, Type: routeType(r.Type), Proto: int(r.Protocol)}
		if r.LinkIndex > 0 {
			rt.Dev = names.of(r.LinkIndex)
		}
		if len(r.MultiPath) > 0 {
			for _, nh := range r.MultiPath {
				h := rt
				h.Dev = names.of(nh.LinkIndex)
				out = append(out, h)
			}
			continue
		}
		out = append(out, rt)
	}
	return out, nil
}

func routeType(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_MULTICAST:
		return "multicast"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	case unix.RTN_ANYCAST:
		return "anycast"
	}
	return fmt.Sprint(t)
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// linkNames maps interface indexes to names; an index missing from the
// dump (a link created since) is asked for by itself.
type linkNames map[int]string

func listLinkNames() linkNames {
	links, _ := network.RetryDump(netlink.LinkList)
	names := linkNames{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	return names
}

func (n linkNames) of(index int) string {
	if name, ok := n[index]; ok {
		return name
	}
	name := fmt.Sprintf("if%d", index)
	if l, err := netlink.LinkByIndex(index); err == nil {
		name = l.Attrs().Name
	}
	n[index] = name
	return name
}

// Addrs lists every interface address.
func (l *Live) Addrs() ([]Addr, error) {
	as, err := network.RetryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, err
	}
	names := listLinkNames()
	out := make([]Addr, 0, len(as))
	for _, a := range as {
		p, ok := prefixOf(a.IPNet)
		if !ok {
			continue
		}
		out = append(out, Addr{Prefix: p, Dev: names.of(a.LinkIndex)})
	}
	return out, nil
}

// RouteDev asks the kernel which device it routes dst through.
func (l *Live) RouteDev(dst netip.Addr) string {
	rs, err := netlink.RouteGet(dst.AsSlice())
	if err != nil || len(rs) == 0 || rs[0].LinkIndex == 0 {
		return ""
	}
	link, err := netlink.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return ""
	}
	return link.Attrs().Name
}

// Link describes an interface.
func (l *Live) Link(name string) Link {
	if name == "" {
		return Link{}
	}
	link, err := network.RetryDump(func() (netlink.Link, error) { return netlink.LinkByName(name) })
	if err != nil {
		return Link{}
	}
	a := link.Attrs()
	out := Link{Exists: true, Index: a.Index, Up: a.Flags&net.FlagUp != 0, MTU: a.MTU}
	if a.MasterIndex > 0 {
		if m, err := netlink.LinkByIndex(a.MasterIndex); err == nil {
			out.Master = m.Attrs().Name
		}
	}
	return out
}

// Sysctl reads /proc/sys/PATH.
func (l *Live) Sysctl(path string) (string, error) {
	b, err := os.ReadFile(filepath.Join(l.proc(), "sys", path))
	return strings.TrimSpace(string(b)), err
}

// Alive reports whether pid exists and is no zombie.
func (l *Live) Alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join(l.proc(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

// FDs reads fs.file-nr: allocated handles and fs.file-max.
func (l *Live) FDs() (used, limit int, err error) {
	v, err := l.Sysctl("fs/file-nr")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(v)
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("fs.file-nr: unexpected %q", v)
	}
	used, _ = strconv.Atoi(f[0])
	limit, err = strconv.Atoi(f[2])
	if limit < 0 || limit > 1<<40 {
		limit = 1 << 40
	}
	return used, limit, err
}

// OwnFDs counts /proc/self/fd against RLIMIT_NOFILE (soft).
func (l *Live) OwnFDs() (used, limit int, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	fds, err := os.ReadDir(filepath.Join(l.proc(), "self", "fd"))
	if err != nil {
		return 0, 0, err
	}
	limit = int(min(rl.Cur, 1<<30))
	return len(fds), limit, nil
}

// Inotify counts the inotify instances of root (the kernel's
// fs.inotify.max_user_instances counts per user) from the fds of processes
// owned by root and of vnet's own, whose dnsmasq creates its instance as
// root before it drops to nobody.
func (l *Live) Inotify(own []int) (used, limit int, err error) {
	v, err := l.Sysctl("fs/inotify/max_user_instances")
	if err != nil {
		return 0, 0, err
	}
	if limit, err = strconv.Atoi(v); err != nil {
		return 0, 0, fmt.Errorf("fs.inotify.max_user_instances: %w", err)
	}
	mine := map[int]bool{}
	for _, p := range own {
		mine[p] = true
	}
	inotify := []byte("anon_inode:inotify")
	var n atomic.Int64
	err = l.eachFD(func(pid, uid int) bool { return uid == 0 || mine[pid] }, func(_, _ int, target []byte) {
		if bytes.Equal(target, inotify) {
			n.Add(1)
		}
	})
	return int(n.Load()), limit, err
}

// eachFD calls f for every open fd of every process that want accepts
// (by pid and owner uid), with the fd's link target. f may be called
// concurrently; target is only valid during the call.
//
// Why so careful: a host has tens of thousands of fds; each readlink is
// made relative to the process's open fd directory (no path walk through
// /proc each time), by a few workers.
func (l *Live) eachFD(want func(pid, uid int) bool, f func(pid, uid int, target []byte)) error {
	dir, err := os.Open(l.proc())
	if err != nil {
		return err
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return err
	}
	pids := make(chan int, len(names))
	for _, name := range names {
		if pid, err := strconv.Atoi(name); err == nil {
			pids <- pid
		}
	}
	close(pids)
	var wg sync.WaitGroup
	for range max(2, runtime.NumCPU()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128)
			for pid := range pids {
				l.fdsOf(pid, buf, want, f)
			}
		}()
	}
	wg.Wait()
	return nil
}

func (l *Live) fdsOf(pid int, buf []byte, want func(pid, uid int) bool, f func(pid, uid int, target []byte)) {
	base := filepath.Join(l.proc(), strconv.Itoa(pid))
	var st unix.Stat_t
	if unix.Stat(base, &st) != nil || !want(pid, int(st.Uid)) {
		return
	}
	dfd, err := unix.Open(base+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(dfd), "fd")
	defer d.Close()
	fds, _ := d.Readdirnames(-1)
	for _, fd := range fds {
		n, err := unix.Readlinkat(dfd, fd, buf)
		if err != nil {
			continue
		}
		f(pid, int(st.Uid), buf[:n])
	}
}

// Sockets reads /proc/net/{udp,udp6,tcp,tcp6} for sockets on the ports
// (TCP: listening only), then finds their owners in /proc/*/fd.
func (l *Live) Sockets(ports []uint16, skip []int) ([]Socket, error) {
	want := map[uint16]bool{}
	for _, p := range ports {
		want[p] = true
	}
	var socks []Socket
	for _, f := range []struct{ file, proto string }{
		{"net/udp", "udp"}, {"net/udp6", "udp"}, {"net/tcp", "tcp"}, {"net/tcp6", "tcp"},
	} {
		ss, err := parseProcNet(filepath.Join(l.proc(), "thread-self", f.file), f.proto, want)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		socks = append(socks, ss...)
	}
	if len(socks) == 0 {
		return nil, nil
	}
	// Our own processes' sockets first: their fds only.
	mine := map[uint64]bool{}
	for _, pid := range skip {
		fdDir := filepath.Join(l.proc(), strconv.Itoa(pid), "fd")
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			if t, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil {
				if ino, ok := socketInode(t); ok {
					mine[ino] = true
				}
			}
		}
	}
	var rest []Socket
	for _, s := range socks {
		if !mine[s.Inode] {
			rest = append(rest, s)
		}
	}
	if len(rest) == 0 {
		return nil, nil
	}
	owners := map[uint64]int{}
	for _, s := range rest {
		owners[s.Inode] = 0
	}
	var mu sync.Mutex
	_ = l.eachFD(func(int, int) bool { return true }, func(pid, _ int, target []byte) {
		if !bytes.HasPrefix(target, []byte("socket:[")) {
			return
		}
		if ino, ok := socketInode(string(target)); ok {
			mu.Lock()
			if cur, found := owners[ino]; found && (cur == 0 || pid < cur) {
				owners[ino] = pid
			}
			mu.Unlock()
		}
	})
	for i := range rest {
		if pid := owners[rest[i].Inode]; pid != 0 {
			rest[i].Pid = pid
			comm, _ := os.ReadFile(filepath.Join(l.proc(), strconv.Itoa(pid), "comm"))
			rest[i].Comm = strings.TrimSpace(string(comm))
		}
	}
	return rest, nil
}

func socketInode(target string) (uint64, bool) {
	s, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return n, err == nil
}

// parseProcNet reads one /proc/net/{udp,tcp}[6] table.
func parseProcNet(path, proto string, ports map[uint16]bool) ([]Socket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseProcNet(f, proto, ports)
}

// ParseProcNet parses a /proc/net/{udp,tcp}[6] table and returns the
// sockets bound to one of the ports (TCP: in state LISTEN).
func ParseProcNet(r interface{ Read([]byte) (int, error) }, proto string, ports map[uint16]bool) ([]Socket, error) {
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	var out []Socket
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		local, err := parseHexAddr(f[1])
		if err != nil {
			continue
		}
		if !ports[local.Port()] {
			continue
		}
		if proto == "tcp" && f[3] != "0A" {
			continue
		}
		ino, _ := strconv.ParseUint(f[9], 10, 64)
		out = append(out, Socket{Proto: proto, Local: local, Inode: ino})
	}
	return out, sc.Err()
}

// parseHexAddr reads "0100007F:0035" (the address as 32-bit words in host
// order, the port big-endian hex).
func parseHexAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		w := binary.BigEndian.Uint32(raw[i:])
		binary.NativeEndian.PutUint32(raw[i:], w)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", s)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}
