package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"vnet/dnsmasq"
	"vnet/internal/atomicfile"
	"vnet/network"
	netxml "vnet/xml"
)

// DHCP names across hosts: every host's dnsmasq knows only the leases it
// gave. So each vnetd serves its overlay networks' own leases (name and
// address, nothing else) over HTTP on its VTEP address (names-port in
// overlay.conf), and asks every remote VTEP of each overlay network for
// theirs every namesInterval. The remote VTEPs are those of the VXLAN
// device's flood list, which zebra fills from the EVPN type-3 routes: a
// host whose FRR stops or that leaves the underlay drops out of it within
// BGP's timers, and its names go at the next poll. A host that stays in the
// flood list but stops answering keeps its names for namesGrace. The
// validated names become <dns><host> entries of this host's view of the
// network (overlayView), so dnsmasq's addnhosts file carries them through
// the network's one converge (and --dry-run, verification and repair see
// them). Only a host's own leases are served, never the names it learnt,
// so nothing echoes between hosts, and no DNS query is ever forwarded.
// The names are kept in <run-dir>/overlay-names/NAME.json too, so that a
// restarted vnetd's first converge (adoption) does not drop them.

const (
	// namesInterval is how often each remote VTEP is asked.
	namesInterval = 2 * time.Second
	// namesGrace is how long the names of a host that stops answering
	// (its vnetd restarting) are kept while it is still in the flood list.
	namesGrace = 3 * namesInterval
	// namesSettle is how long after an FDB change of an overlay the
	// others are asked (the new guest's DHCP exchange finishes meanwhile).
	namesSettle = 300 * time.Millisecond
	// namesTimeout bounds one request.
	namesTimeout = time.Second
	// maxNames bounds the names taken from one host, maxNamesBody its
	// reply.
	maxNames     = 4096
	maxNamesBody = 1 << 20
)

// overlayName is one DHCP name of a guest on the host that serves it.
type overlayName struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// overlayNames is the names service's reply.
type overlayNames struct {
	Names []overlayName `json:"names"`
}

// remoteName is a validated name of a guest on another host.
type remoteName struct {
	name string
	addr netip.Addr
}

// remoteNames returns the names of guests on other hosts that this host
// serves for the network (sorted).
func (h *realHost) remoteNames(network string) []remoteName {
	h.namesMu.Lock()
	defer h.namesMu.Unlock()
	return h.remote[network]
}

// setRemoteNames stores the network's remote names (in memory and in the
// run directory, for the next vnetd) and reports whether they changed.
func (h *realHost) setRemoteNames(network string, names []remoteName) bool {
	h.namesMu.Lock()
	defer h.namesMu.Unlock()
	if h.loaded == nil {
		h.loaded = map[string]bool{}
	}
	h.loaded[network] = true
	if slices.Equal(h.remote[network], names) {
		return false
	}
	if h.remote == nil {
		h.remote = map[string][]remoteName{}
	}
	if len(names) == 0 {
		delete(h.remote, network)
	} else {
		h.remote[network] = names
	}
	h.saveNames(network, names)
	return true
}

// namesFile is where the network's remote names are kept across vnetd
// restarts ("" without a run directory).
func (h *realHost) namesFile(network string) string {
	base, err := dnsmasq.FileBase(network)
	if h.namesDir == "" || err != nil {
		return ""
	}
	return filepath.Join(h.namesDir, base+".json")
}

// saveNames writes the network's remote names to its names file, so that
// a restarted vnetd serves them from its first converge on (else its
// adoption would drop them from dnsmasq until its first poll).
func (h *realHost) saveNames(network string, names []remoteName) {
	path := h.namesFile(network)
	if path == "" {
		return
	}
	if len(names) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			h.log.Warn("overlay names", "network", network, "err", err)
		}
		return
	}
	out := overlayNames{Names: make([]overlayName, 0, len(names))}
	for _, r := range names {
		out.Names = append(out.Names, overlayName{Name: r.name, Addr: r.addr.String()})
	}
	data, _ := json.Marshal(out)
	err := os.MkdirAll(h.namesDir, 0o755)
	if err == nil {
		err = atomicfile.Write(path, data, 0o644, atomicfile.Volatile)
	}
	if err != nil {
		h.log.Warn("overlay names", "network", network, "err", err)
	}
}

// loadNames reads the network's names file once per vnetd run (names
// checked again, as if they came from a peer).
func (h *realHost) loadNames(n *netxml.Network) {
	h.namesMu.Lock()
	defer h.namesMu.Unlock()
	if h.loaded[n.Name] {
		return
	}
	if h.loaded == nil {
		h.loaded = map[string]bool{}
	}
	h.loaded[n.Name] = true
	path := h.namesFile(n.Name)
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var in overlayNames
	if json.Unmarshal(data, &in) != nil {
		return
	}
	var names []remoteName
	for _, e := range in.Names {
		if r, err := validRemoteName(n, e); err == nil {
			names = append(names, r)
		}
	}
	if len(names) > 0 {
		if h.remote == nil {
			h.remote = map[string][]remoteName{}
		}
		h.remote[n.Name] = names
	}
}

// addRemoteNames adds the network's remote names to v (this host's view)
// as <dns><host> entries, one per address. A network without DNS gets
// none.
func (h *realHost) addRemoteNames(v *netxml.Network) {
	h.loadNames(v)
	names := h.remoteNames(v.Name)
	if len(names) == 0 || v.DNS != nil && v.DNS.Enable == "no" {
		return
	}
	if v.DNS == nil {
		v.DNS = &libvirtxml.NetworkDNS{}
	}
	byAddr := map[netip.Addr]int{}
	for _, r := range names {
		i, ok := byAddr[r.addr]
		if !ok {
			i = len(v.DNS.Host)
			byAddr[r.addr] = i
			v.DNS.Host = append(v.DNS.Host, libvirtxml.NetworkDNSHost{IP: r.addr.String()})
		}
		v.DNS.Host[i].Hostnames = append(v.DNS.Host[i].Hostnames, libvirtxml.NetworkDNSHostHostname{Hostname: r.name})
	}
}

// validRemoteName checks one name from another host: a DNS name that
// dnsmasq's files accept (one label, so a remote host cannot claim names
// under a domain), an address in one of the network's subnets that is not
// the gateway's. Anything else is dropped: a peer never writes into our
// files what our own XML could not.
func validRemoteName(n *netxml.Network, e overlayName) (remoteName, error) {
	if err := dnsmasq.CheckName("name", e.Name); err != nil {
		return remoteName{}, err
	}
	if len(e.Name) > 63 || strings.Contains(e.Name, ".") || strings.HasPrefix(e.Name, "-") {
		return remoteName{}, fmt.Errorf("name %q is not one DNS label", e.Name)
	}
	a, err := netip.ParseAddr(e.Addr)
	if err != nil || a.Zone() != "" {
		return remoteName{}, fmt.Errorf("address %q of %s is not an IP address", e.Addr, e.Name)
	}
	a = a.Unmap()
	for _, ip := range n.IPs {
		p, err := netxml.IPNet(ip)
		if err != nil {
			continue
		}
		if p.Masked().Contains(a) && a != p.Addr() && a != p.Masked().Addr() {
			return remoteName{name: e.Name, addr: a}, nil
		}
	}
	return remoteName{}, fmt.Errorf("address %s of %s is not a guest address of network '%s'", a, e.Name, n.Name)
}

// ownNames returns the names of the network's current leases on this host
// (a lease without a name, expired or with a name dnsmasq's files would not
// take is left out).
func (h *realHost) ownNames(n *netxml.Network) ([]overlayName, error) {
	leases, err := h.dns.Leases(n.Name)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []overlayName{}
	for _, l := range leases {
		if l.Hostname == "" || !l.Expiry.IsZero() && !l.Expiry.After(now) {
			continue
		}
		e := overlayName{Name: l.Hostname, Addr: l.IP.String()}
		if _, err := validRemoteName(n, e); err != nil {
			continue
		}
		out = append(out, e)
		if len(out) == maxNames {
			break
		}
	}
	return out, nil
}

// floodVTEPs returns the remote VTEPs in the VXLAN device's flood list (the
// all-zero MAC entries zebra installs for EVPN type-3 routes).
func floodVTEPs(dev string) ([]netip.Addr, error) {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, err
	}
	neighs, err := netlink.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("fdb of %s: %w", dev, err)
	}
	var out []netip.Addr
	for _, n := range neighs {
		if len(n.HardwareAddr) != 6 || !slices.Equal([]byte(n.HardwareAddr), make([]byte, 6)) || n.IP == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(n.IP); ok && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// overlayNet is an active overlay network for the names service.
type overlayNet struct {
	name string
	vni  uint32
	live *netxml.Network
}

// activeOverlays returns the active overlay networks.
func (m *Manager) activeOverlays() []overlayNet {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []overlayNet
	for _, o := range m.byName {
		if o.live != nil && o.live.Overlay != nil {
			out = append(out, overlayNet{o.name, o.live.Overlay.VNI, o.live})
		}
	}
	return out
}

// namesHandler serves GET /v1/overlay/VNI/names to the peers and the
// remote VTEPs of this host's overlays, and to nobody else.
func (m *Manager) namesHandler(h *realHost) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/overlay/{vni}/names", func(w http.ResponseWriter, r *http.Request) {
		from, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !m.knownVTEP(h, from.Addr().Unmap()) {
			http.Error(w, "not a peer or remote VTEP of this host", http.StatusForbidden)
			return
		}
		vni, err := strconv.ParseUint(r.PathValue("vni"), 10, 32)
		if err != nil {
			http.Error(w, "bad vni", http.StatusBadRequest)
			return
		}
		for _, o := range m.activeOverlays() {
			if uint64(o.vni) != vni {
				continue
			}
			names, err := h.ownNames(o.live)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(overlayNames{Names: names})
			return
		}
		http.Error(w, "no active overlay network with that vni", http.StatusNotFound)
	})
	return mux
}

// knownVTEP reports whether a is a configured peer or a remote VTEP of
// one of this host's active overlays.
func (m *Manager) knownVTEP(h *realHost, a netip.Addr) bool {
	if slices.Contains(h.overlay.Peers, a) {
		return true
	}
	for _, o := range m.activeOverlays() {
		if vteps, err := floodVTEPs(network.VXLANName(o.vni)); err == nil && slices.Contains(vteps, a) {
			return true
		}
	}
	return false
}

// serveNames serves this host's names on VTEP:names-port until ctx ends.
// The VTEP address may appear after vnetd starts: the listen is retried.
func (m *Manager) serveNames(ctx context.Context, h *realHost) {
	addr := netip.AddrPortFrom(h.overlay.VTEP, uint16(h.overlay.NamesPort)).String()
	srv := &http.Server{Handler: m.namesHandler(h), ReadHeaderTimeout: namesTimeout, WriteTimeout: 2 * namesTimeout}
	warned := false
	for {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err == nil {
			m.log.Info("overlay names service listening", "addr", addr)
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Warn("overlay names service", "addr", addr, "err", err)
			}
			return
		}
		if !warned {
			m.log.Warn("overlay names service: cannot listen yet, retrying", "addr", addr, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(namesInterval):
		}
	}
}

// carried is the key of the names a previous vnetd served (not one VTEP's).
var carried netip.Addr

// peerNames are the names last received from one remote VTEP.
type peerNames struct {
	names []remoteName
	at    time.Time
}

// syncNames asks the remote VTEPs of every active overlay for their names
// every namesInterval and hints the network for a converge when the names
// it serves change (dnsmasq's addnhosts file follows, reloaded by SIGHUP).
func (m *Manager) syncNames(ctx context.Context, r *repairer) {
	h, ok := m.host.(*realHost)
	if !ok || h.overlay == nil || h.overlay.NamesPort == 0 {
		return
	}
	served := make(chan struct{})
	go func() { defer close(served); m.serveNames(ctx, h) }()
	defer func() { <-served }()
	// FDB changes on an overlay's VXLAN device (a remote MAC or VTEP
	// added or withdrawn by zebra) wake a poll namesSettle later: a new
	// guest's MAC crosses the overlay with its DHCP discover, before its
	// lease exists.
	var (
		devMu sync.Mutex
		devs  = map[int]bool{}
	)
	wake := make(chan struct{}, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		err := network.WatchFDB(ctx, m.log, func(ifindex int) {
			devMu.Lock()
			ours := ifindex == 0 || devs[ifindex]
			devMu.Unlock()
			if ours {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		})
		if err != nil {
			m.log.Warn("no fdb events: overlay names are polled every "+namesInterval.String()+" only", "err", err)
		}
	}()
	defer func() { <-watched }()
	client := &http.Client{Timeout: namesTimeout}
	state := map[string]map[netip.Addr]*peerNames{} // network → VTEP → names
	tick := time.NewTicker(namesInterval)
	defer tick.Stop()
	for {
		active := map[string]bool{}
		now := map[int]bool{}
		for _, o := range m.activeOverlays() {
			if l, err := netlink.LinkByName(network.VXLANName(o.vni)); err == nil {
				now[l.Attrs().Index] = true
			}
		}
		devMu.Lock()
		devs = now
		devMu.Unlock()
		for _, o := range m.activeOverlays() {
			active[o.name] = true
			if state[o.name] == nil {
				// The names a previous vnetd left (its names file)
				// stand for the hosts that do not answer the first
				// polls, for namesGrace as if they had answered now.
				state[o.name] = map[netip.Addr]*peerNames{}
				h.loadNames(o.live)
				if prev := h.remoteNames(o.name); len(prev) > 0 {
					state[o.name][carried] = &peerNames{names: prev, at: time.Now()}
				}
			}
			vteps, err := floodVTEPs(network.VXLANName(o.vni))
			if err != nil {
				vteps = nil // no device: no remote hosts
			}
			names := m.pollNames(ctx, client, uint16(h.overlay.NamesPort), o, vteps, state[o.name])
			if h.setRemoteNames(o.name, names) {
				m.log.Info("overlay names of other hosts changed", "network", o.name, "names", len(names))
				r.hint(o.name)
			}
		}
		for name := range state {
			if !active[name] {
				delete(state, name)
				h.setRemoteNames(name, nil)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
			select {
			case <-ctx.Done():
				return
			case <-time.After(namesSettle):
			}
		}
	}
}

// pollNames asks each remote VTEP of the overlay (in parallel) for its
// names on port, updates st and returns the names to serve, sorted: those
// of the VTEPs that answered within namesGrace, and those a previous vnetd
// served (carried) until every VTEP answered or namesGrace passed.
func (m *Manager) pollNames(ctx context.Context, client *http.Client, port uint16, o overlayNet, vteps []netip.Addr, st map[netip.Addr]*peerNames) []remoteName {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	now := time.Now()
	answered := 0
	for _, vtep := range vteps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names, err := fetchNames(ctx, client, netip.AddrPortFrom(vtep, port), o)
			if err != nil {
				m.log.Debug("overlay names", "network", o.name, "vtep", vtep, "err", err)
				return
			}
			mu.Lock()
			st[vtep] = &peerNames{names: names, at: now}
			answered++
			mu.Unlock()
		}()
	}
	wg.Wait()
	var out []remoteName
	for vtep, p := range st {
		gone := !slices.Contains(vteps, vtep)
		if vtep == carried {
			gone = answered == len(vteps)
		}
		if gone || now.Sub(p.at) > namesGrace {
			delete(st, vtep)
			continue
		}
		out = append(out, p.names...)
	}
	slices.SortFunc(out, func(a, b remoteName) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return a.addr.Compare(b.addr)
	})
	return slices.Compact(out)
}

// fetchNames asks one host for the overlay's names and keeps the valid
// ones.
func fetchNames(ctx context.Context, client *http.Client, at netip.AddrPort, o overlayNet) ([]remoteName, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v1/overlay/%d/names", at, o.vni), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", at, resp.Status)
	}
	var reply overlayNames
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxNamesBody)).Decode(&reply); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	var out []remoteName
	for _, e := range reply.Names {
		if len(out) == maxNames {
			break
		}
		if r, err := validRemoteName(o.live, e); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
