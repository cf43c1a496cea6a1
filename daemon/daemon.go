// Package daemon is vnetd's core: the registry of networks (persistent or
// transient, active or not, autostart), per-network locking, the on-disk
// store, startup (adopt what runs, autostart), and the local API front door.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"vnet/daemon/api"
	"vnet/dnsmasq"
	"vnet/firewall"
	"vnet/network"
	"vnet/network/frr"
	"vnet/passt"
	netxml "vnet/xml"
)

// Config is vnetd's configuration; cmd/vnetd fills it from flags.
type Config struct {
	ConfigDir string // definitions (default /etc/vnet)
	StateDir  string // dnsmasq files, leases, markers (default /var/lib/vnet)
	RunDir    string // live status, pid files, the socket (default /run/vnet)
	// Firewall is the backend: "nftables", "iptables" or "auto".
	Firewall string
	// NoDefaultNetwork skips defining the embedded 'default' network on first start.
	NoDefaultNetwork bool
	// DHCPPing keeps dnsmasq's address-in-use ping before each new lease
	// (libvirt's behaviour, 3 s per new client). Off by default: vnet passes
	// --no-ping so a new guest gets its lease at once.
	DHCPPing bool
	// DnsmasqBinary overrides the dnsmasq path.
	DnsmasqBinary string
	// ResolvConf is the resolver configuration whose name servers the
	// networks' dnsmasq forward to (default /etc/resolv.conf), followed
	// with one inotify watch for all networks.
	ResolvConf string
	// Driver is "host" (default) or "test": libvirt's test:///default
	// driver, all in memory, touching nothing on the host.
	Driver string
	// FrontDoors run beside the local API (the D-Bus server).
	FrontDoors []FrontDoor
	// VerifyInterval is how often every active network is checked for drift
	// even without a kernel event (default 30 s).
	VerifyInterval time.Duration
	// OverlayConfig is this host's overlay settings file (VTEP, BGP AS,
	// peers: see frr.ParseSettings); default <config-dir>/overlay.conf.
	// Without the file, networks with <vnet:overlay> are refused.
	OverlayConfig string
	// Session makes a user's session daemon (vnetd --session): networks of
	// forward mode 'user' only, each port a passt, the API for this user
	// only; no bridges, firewall, dnsmasq or D-Bus.
	Session bool
	// PasstBinary overrides the passt path (session daemon).
	PasstBinary string
	Logger      *slog.Logger
}

// FrontDoor is an additional way in to the manager (D-Bus), run for the
// daemon's lifetime; it returns when ctx is done.
type FrontDoor func(ctx context.Context, m *Manager) error

func (c Config) driverName() string {
	if c.Session {
		return "session"
	}
	if c.Driver == "" {
		return "host"
	}
	return c.Driver
}

// newHostManager builds the manager of the real host: firewall backend,
// dnsmasq supervision, stored definitions, adoption of active networks and
// the default network.
func newHostManager(ctx context.Context, c Config, log *slog.Logger) (*Manager, string, error) {
	// The overlay settings are checked before anything on the host changes.
	overlayPath := c.OverlayConfig
	if overlayPath == "" {
		overlayPath = filepath.Join(c.ConfigDir, "overlay.conf")
	}
	overlay, err := frr.LoadSettings(overlayPath)
	if err != nil {
		return nil, "", err
	}
	fw, err := firewall.New(c.Firewall, firewall.Options{Logger: log})
	if err != nil {
		return nil, "", err // names the backend already
	}
	// A switch of backend leaves the other one's rules behind: remove them
	// before any network is applied with the new one.
	if err := firewall.CleanupOthers(fw.Name(), firewall.Options{Logger: log}); err != nil {
		log.Warn("cleaning up the other firewall backend's rules", "err", err)
	}
	var extra []string
	if !c.DHCPPing {
		extra = append(extra, "--no-ping")
	}
	dns, err := dnsmasq.NewManager(dnsmasq.Config{
		Binary:     c.DnsmasqBinary,
		StateDir:   filepath.Join(c.StateDir, "dnsmasq"),
		RunDir:     filepath.Join(c.RunDir, "dnsmasq"),
		ExtraArgs:  extra,
		Logger:     log,
		ResolvConf: c.ResolvConf,
	})
	if err != nil {
		return nil, "", err
	}
	warnFileLimit(log)
	host := &realHost{fw: fw, dns: dns, log: log, stamps: newFileStamps(), overlay: overlay, overlayPath: overlayPath, conflicts: network.NewHostIndex(),
		namesDir: filepath.Join(c.RunDir, "overlay-names")}
	m, err := NewManager(c.ConfigDir, c.RunDir, host, log)
	if err != nil {
		return nil, "", err
	}
	m.acl = newGuestACL(filepath.Join(c.ConfigDir, GuestACLFile), log)
	// Adopted in the background: each network is listed and locked at
	// once, and served as soon as it is adopted.
	if err := m.LoadInBackground(); err != nil {
		return nil, "", err
	}
	// Rules of networks stopped or undefined while no daemon ran (a crash
	// mid-destroy) belong to nobody now.
	if err := firewall.Prune(fw, m.activePlans()); err != nil {
		log.Warn("removing firewall rules of networks that are not active", "err", err)
	}
	// Likewise bridges we created for networks no longer active (a crash
	// between a destroy's status update and the kernel's deletion).
	pruned, err := network.PruneBridges(m.activeBridges())
	if err != nil {
		log.Warn("removing bridges of networks that are not active", "err", err)
	}
	for _, br := range pruned {
		log.Info("removed a bridge left by an earlier run", "bridge", br)
	}
	vx, err := network.PruneVXLANs(m.activeVXLANs())
	if err != nil {
		log.Warn("removing VXLAN devices of overlays that are not active", "err", err)
	}
	for _, dev := range vx {
		log.Info("removed a VXLAN device left by an earlier run", "device", dev)
	}
	if !c.NoDefaultNetwork {
		m.installDefault(c.StateDir)
	}
	return m, fw.Name(), nil
}

// newSessionManager builds a session daemon's manager: user-mode networks
// whose ports are passt keepers under <run-dir>/passt.
func newSessionManager(ctx context.Context, c Config, log *slog.Logger) (*Manager, error) {
	pm, err := passt.NewManager(passt.Config{Binary: c.PasstBinary, RunDir: filepath.Join(c.RunDir, "passt"), Logger: log})
	if err != nil {
		return nil, err
	}
	m, err := NewManager(c.ConfigDir, c.RunDir, &sessionHost{passt: pm}, log)
	if err != nil {
		return nil, err
	}
	if err := m.Load(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// fdsPerNetwork is what vnetd holds open per running network: dnsmasq's
// stderr buffer and process handles (measured: 3).
const fdsPerNetwork = 3

// scaleTarget is the number of networks vnetd is built to run at once.
const scaleTarget = 1000

// warnFileLimit says at start, with the setting to change, when the open
// file limit (Go raises the soft limit to the hard one) would stop vnetd
// short of scaleTarget networks.
func warnFileLimit(log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if room := (int64(rl.Cur) - 256) / fdsPerNetwork; room < scaleTarget {
		log.Warn("the open file limit allows fewer networks than vnet is made for: each running network holds 3 files; "+
			"raise it with LimitNOFILE=4096 in vnetd.service (or ulimit -n 4096)",
			"limit", rl.Cur, "networks", max(room, 0))
	}
}

// SocketPath is the read-write API socket under a run dir (root only).
func SocketPath(runDir string) string { return filepath.Join(runDir, "vnetd.sock") }

// ReadOnlySocketPath is the read-only API socket under a run dir (anyone).
func ReadOnlySocketPath(runDir string) string { return filepath.Join(runDir, "vnetd-ro.sock") }

const (
	defaultMarker   = "default-network-installed" // in StateDir: defined once, never again
	autostartMarker = "autostarted"               // in RunDir: autostart ran this boot
)

// Run runs the daemon until ctx is cancelled. Networks keep running after it
// returns.
func Run(ctx context.Context, c Config) error {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	for _, d := range []string{c.ConfigDir, c.StateDir, c.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create directory %s: %w", d, err)
		}
	}
	lock, err := lockRunDir(c.RunDir)
	if err != nil {
		return err
	}
	defer lock.Close()

	var m *Manager
	var fwName string
	switch {
	case c.Session:
		if m, err = newSessionManager(ctx, c, log); err != nil {
			return err
		}
	case c.Driver == "test":
		// libvirt's test:///default: everything in memory, nothing on the host.
		m = NewTestDriver(log)
	default:
		if m, fwName, err = newHostManager(ctx, c, log); err != nil {
			return err
		}
	}
	// Front doors listen at once but answer only when the manager is ready:
	// after adoption and autostart.
	release := m.HoldReady()
	defer release()
	// Every goroutine Run starts is joined before the host is detached, so
	// none can reach dnsmasq or the firewall after that.
	var wg sync.WaitGroup
	defer wg.Wait()
	fdCtx, stopFrontDoors := context.WithCancel(ctx)
	defer stopFrontDoors()
	for _, fd := range c.FrontDoors {
		wg.Go(func() {
			if err := fd(fdCtx, m); err != nil && fdCtx.Err() == nil {
				log.Error("front door stopped", "err", err)
			}
		})
	}

	// Cancelled before Shutdown so that long-lived requests (event streams)
	// end instead of holding the shutdown for its whole timeout.
	reqCtx, cancelReqs := context.WithCancel(context.Background())
	defer cancelReqs()
	sock, roSock := SocketPath(c.RunDir), ReadOnlySocketPath(c.RunDir)
	// The read-write socket is root's only (0600, and the peer's uid is
	// checked); the read-only one (0666) serves queries to anyone, like
	// libvirt's libvirt-sock-ro. A session daemon's are its user's only.
	owner, roMode := uint32(0), os.FileMode(0o666)
	if c.Session {
		owner, roMode = uint32(os.Geteuid()), 0o600
	}
	ln, err := listenUnix(sock, 0o600)
	if err != nil {
		return err
	}
	roLn, err := listenUnix(roSock, roMode)
	if err != nil {
		ln.Close()
		return err
	}
	// vnet-bridge-helper's socket is open to everyone: the access list
	// decides (guests.go).
	helperSock := filepath.Join(c.RunDir, api.HelperSocketName)
	var hl net.Listener
	if m.acl != nil {
		if hl, err = listenUnixNet("unixpacket", helperSock, 0o666); err != nil {
			ln.Close()
			roLn.Close()
			return err
		}
	}
	// Requests are accepted at once but answered only after autostart, so
	// a client never sees the half-started state of a booting host.
	handler := waitReady(m, m.Handler())
	servers := []*http.Server{
		{Handler: ownerOnly(owner, handler), ConnContext: withPeerCred, ReadHeaderTimeout: 10 * time.Second,
			BaseContext: func(net.Listener) context.Context { return reqCtx }},
		{Handler: readOnly(handler), ReadHeaderTimeout: 10 * time.Second,
			BaseContext: func(net.Listener) context.Context { return reqCtx }},
	}
	serveErr := make(chan error, 2)
	wg.Go(func() { serveErr <- servers[0].Serve(ln) })
	wg.Go(func() { serveErr <- servers[1].Serve(roLn) })
	log.Info("vnetd listening", "socket", sock, "read_only_socket", roSock, "firewall", fwName, "driver", c.driverName())
	if hl != nil {
		defer os.Remove(helperSock)
		wg.Go(func() { m.serveHelper(fdCtx, hl.(*net.UnixListener)) })
	}

	marker := filepath.Join(c.RunDir, autostartMarker)
	if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) && !m.testDriver {
		// The marker goes first: a crash during autostart must not make
		// the next start re-start networks an admin destroyed meanwhile.
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			log.Warn("cannot write autostart marker", "err", err)
		}
		m.Autostart()
	}
	release()
	// A session daemon has no kernel state to repair: its keepers are
	// supervised by the passt manager.
	if !m.testDriver && !c.Session {
		m.startRepair(c.VerifyInterval, fwName == "iptables")
		m.startWarnings()
		if h, ok := m.host.(*realHost); ok {
			m.goBackground(h.dns.WatchUpstream)
			m.goBackground(func(ctx context.Context) {
				if err := h.conflicts.Run(ctx, log); err != nil {
					log.Warn("no netlink events for the conflict check; every start lists the host's addresses and routes", "err", err)
				}
			})
		}
	}
	wg.Go(func() { watchdog(fdCtx, log) })
	_, _ = daemon.SdNotify(false, "READY=1\nSTATUS=serving")

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("API server failed", "err", err)
		}
	}
	_, _ = daemon.SdNotify(false, "STOPPING=1")
	log.Info("vnetd stopping; networks keep running")
	stopFrontDoors()
	cancelReqs()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
	_ = os.Remove(sock)
	_ = os.Remove(roSock)
	// Front doors return only after their calls in progress finished; the
	// HTTP servers' Shutdown waited for theirs.
	wg.Wait()
	m.Shutdown()
	return nil
}

// installDefault defines the embedded 'default' network with autostart the
// first time vnetd runs, like libvirt's libvirt-daemon-config-network, on a
// bridge and subnet free on this host (defineDefault). The marker keeps an
// admin's later net-undefine from being undone.
func (m *Manager) installDefault(stateDir string) {
	marker := filepath.Join(stateDir, defaultMarker)
	if _, err := os.Stat(marker); err == nil {
		return
	}
	if _, err := m.lookup("default", "name"); err != nil {
		if _, err := m.defineDefault(); err != nil {
			m.log.Error("cannot define the default network", "err", netxml.Message(err))
			return
		}
		if _, err := m.SetAutostart("default", true); err != nil {
			m.log.Error("cannot mark the default network for autostart", "err", netxml.Message(err))
		}
		m.log.Info("defined the default network")
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		m.log.Warn("cannot write marker", "file", marker, "err", err)
	}
}

// lockRunDir takes an exclusive lock so that two daemons never manage the
// same directories.
func lockRunDir(runDir string) (*os.File, error) {
	path := filepath.Join(runDir, "vnetd.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another vnetd is running (lock %s held): %w", path, err)
	}
	return f, nil
}

// startRepair starts drift repair: kernel event watchers feeding hints, and
// the periodic check, as background goroutines that Shutdown joins.
func (m *Manager) startRepair(interval time.Duration, iptables bool) {
	m.startRepairWith(interval,
		func(ctx context.Context, r *repairer) {
			if err := network.Watch(ctx, m.log, r.linkChanged); err != nil {
				m.log.Warn("no netlink events; drift is found by the periodic check only", "err", err)
			}
		},
		func(ctx context.Context, r *repairer) {
			// Forwarding sysctls reset by someone: check every network.
			if err := network.WatchForwarding(ctx, m.log, func() { r.hint(allNetworks) }); err != nil {
				m.log.Warn("no netconf events; sysctl drift is found by the periodic check only", "err", err)
			}
		},
		func(ctx context.Context, r *repairer) {
			// A deleted or changed <bandwidth> qdisc, class or filter.
			if err := network.WatchTC(ctx, m.log, r.linkChanged); err != nil {
				m.log.Warn("no tc events; bandwidth drift is found by the periodic check only", "err", err)
			}
		},
		func(ctx context.Context, r *repairer) {
			err := firewall.Watch(ctx, firewall.Options{Logger: m.log}, func(c firewall.Change) { r.tableChanged(c, iptables) })
			if err != nil {
				m.log.Warn("no nftables events; firewall drift is found by the periodic check only", "err", err)
			}
		},
		m.watchFRR,
		m.syncNames)
}

// startRepairWith starts the repairer and the given watchers.
func (m *Manager) startRepairWith(interval time.Duration, watchers ...func(ctx context.Context, r *repairer)) {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	r := newRepairer(m)
	m.goBackground(func(ctx context.Context) { r.run(ctx, interval) })
	for _, w := range watchers {
		m.goBackground(func(ctx context.Context) { w(ctx, r) })
	}
}

// watchdog pings systemd's watchdog at half its interval when one is set.
func watchdog(ctx context.Context, log *slog.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := daemon.SdNotify(false, daemon.SdNotifyWatchdog); err != nil {
				log.Warn("watchdog notification failed", "err", err)
			}
		}
	}
}

// activePlans returns the firewall plans of every active network.
func (m *Manager) activePlans() []*firewall.Plan {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var plans []*firewall.Plan
	for _, o := range m.byName {
		if o.live == nil || !o.live.OwnsBridge() {
			continue
		}
		if p, err := firewall.PlanFor(o.live); err == nil {
			plans = append(plans, p)
		}
	}
	return plans
}

// waitReady holds every request until the manager is ready.
func waitReady(m *Manager, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-m.Ready():
			h.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	})
}

// activeBridges returns the bridge names of every active network.
func (m *Manager) activeBridges() map[string]bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	keep := map[string]bool{}
	for _, o := range m.byName {
		if o.live != nil {
			keep[o.live.BridgeName()] = true
		}
	}
	return keep
}
