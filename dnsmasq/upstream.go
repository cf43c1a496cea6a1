package dnsmasq

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vnet/internal/atomicfile"
	netxml "vnet/xml"
)

// Upstream DNS servers: dnsmasq would watch resolv.conf itself, with one
// inotify instance per process, and root may hold only 128 instances
// (fs.inotify.max_user_instances), so the 127th network would fail to start.
// Instead the Manager reads resolv.conf, writes its name servers as server=
// lines into one servers file that every network's conf names
// (servers-file=, with no-resolv), watches resolv.conf with one inotify
// instance for all networks, and sends SIGHUP to the dnsmasq processes when
// the servers change: dnsmasq re-reads the servers file on SIGHUP.

// serversFileName is the servers file in the state directory. No network
// file has this extension.
const serversFileName = "resolv.servers"

// resolvPoll is how often resolv.conf is checked when it cannot be watched
// (no inotify instance left for root).
const resolvPoll = 2 * time.Second

// ServersFromResolvConf renders the name servers of a resolv.conf as the
// lines of a dnsmasq servers file, in order ("server=ADDR\n" each), as
// dnsmasq itself would take them from resolv.conf (see nameServers).
func ServersFromResolvConf(data []byte) string { return renderServers(nameServers(data)) }

// renderServers renders name servers as the lines of a servers file.
func renderServers(servers []netip.Addr) string {
	var b strings.Builder
	for _, a := range servers {
		b.WriteString("server=" + a.String() + "\n")
	}
	return b.String()
}

// nameServers returns the name servers of a resolv.conf, in order, as
// dnsmasq itself would take them: only `nameserver` lines, IPv4 or IPv6
// with an interface scope. Anything else is skipped, so nothing in
// resolv.conf can add another kind of server line.
func nameServers(data []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		if z := a.Zone(); z != "" && checkIfName("nameserver scope", z) != nil {
			continue
		}
		out = append(out, a.Unmap())
	}
	return out
}

// Upstreams returns the servers the dnsmasq of n forwards to (port 53
// unless a forwarder names one): its <forwarder addr=…> elements and, when
// its conf reads the servers file (readsResolv), the host's name servers
// as the servers file has them. net-doctor asks each of them.
func (m *Manager) Upstreams(n *netxml.Network) []netip.AddrPort {
	var out []netip.AddrPort
	if n.DNS != nil {
		for _, f := range n.DNS.Forwarders {
			if f.Addr == "" {
				continue
			}
			a, err := parseAddr("dns forwarder addr", f.Addr)
			if err != nil {
				continue
			}
			port := uint16(53)
			if f.Port > 0 && f.Port <= 65535 {
				port = uint16(f.Port)
			}
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	if readsResolv(n) {
		m.serversMu.Lock()
		for _, a := range m.servers {
			out = append(out, netip.AddrPortFrom(a, 53))
		}
		m.serversMu.Unlock()
	}
	return out
}

// readsResolv reports whether a network whose dnsmasq answers DNS takes
// the host's name servers (the servers file) besides its forwarders: not
// when isolated (libvirt's no-resolv) nor when a forwarder for all names
// replaces them.
func readsResolv(n *netxml.Network) bool {
	if n.ForwardMode() == "" {
		return false
	}
	if n.DNS != nil {
		for _, f := range n.DNS.Forwarders {
			if f.Addr != "" && f.Domain == "" {
				return false
			}
		}
	}
	return true
}

// ServersFile returns the path of the servers file (for Options.ServersFile).
func (m *Manager) ServersFile() string { return filepath.Join(m.c.StateDir, serversFileName) }

// refreshServers reads resolv.conf and, when its servers differ from the
// servers file, rewrites the file and reports true. The file is always
// written when missing, so a dnsmasq never starts without it.
func (m *Manager) refreshServers() (changed bool, err error) {
	data, err := os.ReadFile(m.c.ResolvConf)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("dnsmasq: read %s: %w", m.c.ResolvConf, err)
	}
	// A missing resolv.conf means no upstream servers, as for dnsmasq.
	servers := nameServers(data)
	want := renderServers(servers)
	cur, err := os.ReadFile(m.ServersFile())
	if err != nil || string(cur) != want {
		if err := atomicfile.Write(m.ServersFile(), []byte(want), 0o644, atomicfile.Volatile); err != nil {
			return false, fmt.Errorf("dnsmasq: %w", err)
		}
		changed = true
	}
	m.serversMu.Lock()
	m.servers = servers
	m.serversMu.Unlock()
	return changed, nil
}

// serversChanged refreshes the servers file and tells every dnsmasq that
// reads it. The write lock keeps starts out meanwhile: a dnsmasq started
// before the file changed is registered, and so signalled, before it.
func (m *Manager) serversChanged() {
	m.upMu.Lock()
	defer m.upMu.Unlock()
	changed, err := m.refreshServers()
	if err != nil {
		m.log.Warn("upstream DNS servers not updated", "err", err)
		return
	}
	if !changed {
		return
	}
	m.mu.Lock()
	var insts []*instance
	var names []string
	for _, p := range m.nets {
		p.mu.Lock()
		if inst := p.inst; inst != nil && p.files != nil && ReadsServersFile(p.files.Conf) {
			insts = append(insts, inst)
			names = append(names, p.name)
		}
		p.mu.Unlock()
	}
	m.mu.Unlock()
	for i, inst := range insts {
		if err := inst.signal(syscall.SIGHUP); err != nil {
			m.log.Warn("dnsmasq: reload upstream servers", "network", names[i], "pid", inst.pid, "err", err)
		}
	}
	m.log.Info("upstream DNS servers changed", "resolv_conf", m.c.ResolvConf, "networks", len(insts))
}

// WatchUpstream follows the host's resolv.conf until ctx is done and keeps
// every dnsmasq's upstream servers in step with it (a VPN coming up or going
// down). It watches with one inotify instance; when none can be had, it says
// so with the setting to change, and polls.
func (m *Manager) WatchUpstream(ctx context.Context) {
	m.serversChanged() // changes while no daemon ran
	w, err := newResolvWatch(m.c.ResolvConf)
	if err != nil {
		if errors.Is(err, unix.EMFILE) {
			m.log.Warn("cannot watch resolv.conf: root has no inotify instance left; checking it every 2 s instead. "+
				"Raise the limit with: sysctl -w fs.inotify.max_user_instances=256",
				"resolv_conf", m.c.ResolvConf, "err", err)
		} else {
			m.log.Warn("cannot watch resolv.conf; checking it every 2 s instead", "resolv_conf", m.c.ResolvConf, "err", err)
		}
		t := time.NewTicker(resolvPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.serversChanged()
			}
		}
	}
	go func() {
		<-ctx.Done()
		w.close()
	}()
	for w.wait() {
		m.serversChanged()
		if err := w.rewatch(); err != nil {
			m.log.Warn("watching resolv.conf", "resolv_conf", m.c.ResolvConf, "err", err)
		}
	}
}

// resolvWatch is an inotify instance on the directories of resolv.conf and
// of every symlink on the way to its target (e.g. /etc/resolv.conf →
// /run/systemd/resolve/stub-resolv.conf): files there are replaced by
// rename, which a watch on the file itself would miss.
type resolvWatch struct {
	path    string
	f       *os.File
	watched map[string]bool // directories
	names   map[string]bool // base names of the path and its link targets
}

func newResolvWatch(path string) (*resolvWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &resolvWatch{path: path, f: os.NewFile(uintptr(fd), "inotify"), watched: map[string]bool{}, names: map[string]bool{}}
	if err := w.rewatch(); err != nil {
		w.f.Close()
		return nil, err
	}
	return w, nil
}

// rewatch adds watches for the directories of the path's current chain of
// symlinks (a link may point elsewhere now).
func (w *resolvWatch) rewatch() error {
	p := w.path
	for range 16 {
		dir := filepath.Dir(p)
		w.names[filepath.Base(p)] = true
		if !w.watched[dir] {
			rc, err := w.f.SyscallConn()
			if err != nil {
				return err
			}
			var werr error
			if err := rc.Control(func(fd uintptr) {
				_, werr = unix.InotifyAddWatch(int(fd), dir, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_CREATE|unix.IN_DELETE)
			}); err != nil {
				return err
			}
			if werr != nil {
				return fmt.Errorf("watch %s: %w", dir, werr)
			}
			w.watched[dir] = true
		}
		target, err := os.Readlink(p)
		if err != nil {
			return nil // not a link (or gone): the end of the chain
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		p = target
	}
	return nil
}

// wait blocks until an event names a file of the chain; false once closed.
func (w *resolvWatch) wait() bool {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return false
		}
		hit := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			// struct inotify_event: wd, mask, cookie, len, then the name.
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			size := int(binary.NativeEndian.Uint32(buf[off+12:]))
			end := min(off+unix.SizeofInotifyEvent+size, n)
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:end], "\x00"))
			off = end
			if w.names[name] || mask&unix.IN_Q_OVERFLOW != 0 {
				hit = true
			}
		}
		if hit {
			return true
		}
	}
}

func (w *resolvWatch) close() { w.f.Close() }
