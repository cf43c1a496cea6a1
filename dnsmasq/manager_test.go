package dnsmasq

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"vnet/internal/crashloop"
	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

// nsEnv is a namespace with a bridge br0 (10.77.0.1/24) and a Config whose
// dnsmasq runs inside it.
type nsEnv struct {
	ns  *netnstest.NS
	cfg Config
}

func newNSEnv(t *testing.T) *nsEnv {
	t.Helper()
	netnstest.RequireRoot(t)
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("dnsmasq not installed")
	}
	ns := netnstest.New(t, "dnsmasq")
	ns.MustRun("ip", "link", "add", "br0", "type", "bridge")
	ns.MustRun("ip", "addr", "add", "10.77.0.1/24", "dev", "br0")
	ns.MustRun("ip", "link", "set", "br0", "up")
	// Why not t.TempDir: its parent is 0700, and dnsmasq, running as nobody
	// after start-up, must still read the hosts files.
	dir, err := os.MkdirTemp("", "vnet-dnsmasq-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &nsEnv{ns: ns, cfg: Config{
		Binary:    bin,
		StateDir:  filepath.Join(dir, "state"),
		RunDir:    filepath.Join(dir, "run"),
		ExtraArgs: []string{"--no-ping"},
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Command: func(argv []string) *exec.Cmd {
			return exec.Command("ip", append([]string{"netns", "exec", ns.Name()}, argv...)...)
		},
	}}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testNetwork(name string, hosts ...string) *netxml.Network {
	var dh []libvirtxml.NetworkDNSHost
	for i, h := range hosts {
		dh = append(dh, libvirtxml.NetworkDNSHost{IP: fmt.Sprintf("10.77.0.%d", 50+i),
			Hostnames: []libvirtxml.NetworkDNSHostHostname{{Hostname: h}}})
	}
	return &netxml.Network{Network: libvirtxml.Network{
		Name:    name,
		Forward: &libvirtxml.NetworkForward{Mode: "nat"},
		Bridge:  &libvirtxml.NetworkBridge{Name: "br0"},
		DNS:     &libvirtxml.NetworkDNS{Host: dh},
		IPs: []libvirtxml.NetworkIP{{Address: "10.77.0.1", Netmask: "255.255.255.0", DHCP: &libvirtxml.NetworkDHCP{
			Ranges: []libvirtxml.NetworkDHCPRange{{Start: "10.77.0.100", End: "10.77.0.150"}},
			Hosts:  []libvirtxml.NetworkDHCPHost{{MAC: "52:54:00:00:00:01", Name: "vm1", IP: "10.77.0.10"}},
		}}},
	}}
}

func (e *nsEnv) dig(t *testing.T, name string) string {
	t.Helper()
	out, err := e.ns.Run("dig", "@10.77.0.1", name, "+short", "+time=1", "+tries=2")
	if err != nil {
		t.Fatalf("dig %s: %v", name, err)
	}
	return strings.TrimSpace(out)
}

func pidFileOf(t *testing.T, c Config, name string) int {
	t.Helper()
	pid, err := readPidFile(filepath.Join(c.RunDir, name+".pid"))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return pid
}

func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie ("Z") has exited.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func waitFor(t *testing.T, what string, d time.Duration, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("timeout after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestManagerLifecycle(t *testing.T) {
	e := newNSEnv(t)
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("t1") })
	n := testNetwork("t1", "db")
	if err := m.Start(n); err != nil {
		t.Fatal(err)
	}
	if got := e.dig(t, "db"); got != "10.77.0.50" {
		t.Fatalf("dig db = %q, want 10.77.0.50", got)
	}
	pid := m.Pid("t1")
	if pid <= 0 || pid != pidFileOf(t, e.cfg, "t1") {
		t.Fatalf("Pid = %d, pid file %d", pid, pidFileOf(t, e.cfg, "t1"))
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil && !bytes.Contains(st, []byte("\nUid:\t65534\t")) {
		t.Errorf("dnsmasq does not run as nobody:\n%s", st)
	}
	if !slices.Equal(m.Argv("t1"), procCmdline(t, pid)) {
		t.Errorf("cmdline %q, Argv %q", procCmdline(t, pid), m.Argv("t1"))
	}

	// Starting again with the same definition changes nothing.
	if err := m.Start(n); err != nil {
		t.Fatal(err)
	}
	if m.Pid("t1") != pid {
		t.Fatalf("second Start restarted dnsmasq: pid %d -> %d", pid, m.Pid("t1"))
	}

	// A new DNS host only reloads the hosts files (SIGHUP), same process.
	n2 := testNetwork("t1", "db", "web")
	if err := m.Start(n2); err != nil {
		t.Fatal(err)
	}
	if m.Pid("t1") != pid {
		t.Fatalf("hosts update restarted dnsmasq")
	}
	waitFor(t, "web to resolve", 2*time.Second, func() bool { return e.dig(t, "web") == "10.77.0.51" })

	// kill -9: the supervisor restarts it.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var newPid int
	took := waitFor(t, "restart after kill -9", 3*time.Second, func() bool {
		newPid = m.Pid("t1")
		return newPid > 0 && newPid != pid
	})
	t.Logf("restarted after kill -9 in %v (pid %d -> %d)", took.Round(time.Millisecond), pid, newPid)
	if took > 1500*time.Millisecond {
		t.Errorf("restart took %v", took)
	}
	if newPid != pidFileOf(t, e.cfg, "t1") {
		t.Errorf("pid file does not name the new process")
	}
	if got := e.dig(t, "web"); got != "10.77.0.51" {
		t.Fatalf("after restart dig web = %q", got)
	}

	// Detach leaves it running; a new manager adopts it.
	m.Detach()
	if !alive(newPid) {
		t.Fatal("Detach stopped dnsmasq")
	}
	m2, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Pid("t1"); got != newPid {
		t.Fatalf("new manager Pid = %d, want %d", got, newPid)
	}
	if err := m2.Start(n2); err != nil {
		t.Fatal(err)
	}
	if got := m2.Pid("t1"); got != newPid {
		t.Fatalf("Start after Detach did not adopt: pid %d, want %d", got, newPid)
	}
	// The adopted process is supervised too.
	if err := syscall.Kill(newPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var pid3 int
	waitFor(t, "restart of adopted dnsmasq", 3*time.Second, func() bool {
		pid3 = m2.Pid("t1")
		return pid3 > 0 && pid3 != newPid
	})

	// Leases live in the state dir; Stop keeps them, Forget removes them.
	if err := m2.Stop("t1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dnsmasq to exit", 2*time.Second, func() bool { return !alive(pid3) })
	if m2.Pid("t1") != 0 {
		t.Errorf("Pid after Stop = %d", m2.Pid("t1"))
	}
	for _, p := range []string{
		filepath.Join(e.cfg.RunDir, "t1.pid"),
		filepath.Join(e.cfg.StateDir, "t1.conf"),
		filepath.Join(e.cfg.StateDir, "t1.hostsfile"),
		filepath.Join(e.cfg.StateDir, "t1.addnhosts"),
	} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left after Stop", p)
		}
	}
	leases := filepath.Join(e.cfg.StateDir, "t1.leases")
	if _, err := os.Stat(leases); err != nil {
		t.Errorf("lease file gone after Stop: %v", err)
	}
	if err := m2.Stop("t1"); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := m2.Forget("t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leases); err == nil {
		t.Errorf("lease file left after Forget")
	}
}

func procCmdline(t *testing.T, pid int) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

func TestManagerStartFailure(t *testing.T) {
	e := newNSEnv(t)
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := testNetwork("bad")
	n.DnsmasqOptions = &libvirtxml.NetworkDnsmasqOptions{Option: []libvirtxml.NetworkDnsmasqOption{{Value: "no-such-option-xyz"}}}
	err = m.Start(n)
	if err == nil {
		_ = m.Stop("bad")
		t.Fatal("Start succeeded with a bad option")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "bad option") {
		t.Errorf("error lacks dnsmasq's stderr: %v", err)
	}
	if m.Pid("bad") != 0 {
		t.Errorf("process left: pid %d", m.Pid("bad"))
	}
	for _, d := range []string{e.cfg.StateDir, e.cfg.RunDir} {
		ents, _ := os.ReadDir(d)
		for _, en := range ents {
			if en.Name() == serversFileName {
				continue // the manager's, shared by all networks
			}
			t.Errorf("file left after failed Start: %s", filepath.Join(d, en.Name()))
		}
	}
}

func TestManagerReplacesChangedConf(t *testing.T) {
	e := newNSEnv(t)
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("t2") })
	n := testNetwork("t2", "db")
	if err := m.Start(n); err != nil {
		t.Fatal(err)
	}
	pid := m.Pid("t2")
	m.Detach()
	// A changed conf (new domain) cannot be adopted: the old process is
	// replaced, and the new one serves the domain.
	n.Domain = &libvirtxml.NetworkDomain{Name: "lab.test"}
	m2, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m2.Stop("t2") })
	if err := m2.Start(n); err != nil {
		t.Fatal(err)
	}
	if p := m2.Pid("t2"); p == pid || p == 0 {
		t.Fatalf("changed conf: pid %d -> %d", pid, p)
	}
	waitFor(t, "old dnsmasq to exit", 2*time.Second, func() bool { return !alive(pid) })
	if got := e.dig(t, "db.lab.test"); got != "10.77.0.50" {
		t.Fatalf("dig db.lab.test = %q", got)
	}
}

func TestManagerStartTiming(t *testing.T) {
	e := newNSEnv(t)
	e.cfg.Logger = nil
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	const runs = 20
	var d []time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		if err := m.Start(testNetwork("tm", "db")); err != nil {
			t.Fatal(err)
		}
		d = append(d, time.Since(start))
		if err := m.Stop("tm"); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(d)
	t.Logf("Start (incl. `ip netns exec` wrapper) over %d runs: min %v median %v max %v",
		runs, d[0].Round(10*time.Microsecond), d[runs/2].Round(10*time.Microsecond), d[runs-1].Round(10*time.Microsecond))

	// As the daemon runs it: dnsmasq exec'd directly. The fork happens on
	// the calling thread, which ns.Do has moved into the namespace.
	cfg := e.cfg
	cfg.Command = nil
	direct, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d = d[:0]
	var stops []time.Duration
	for i := 0; i < runs; i++ {
		var took time.Duration
		if err := e.ns.Do(func() error {
			start := time.Now()
			err := direct.Start(testNetwork("tm", "db"))
			took = time.Since(start)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		d = append(d, took)
		start := time.Now()
		if err := direct.Stop("tm"); err != nil {
			t.Fatal(err)
		}
		stops = append(stops, time.Since(start))
	}
	slices.Sort(d)
	slices.Sort(stops)
	t.Logf("Start (dnsmasq exec'd directly) over %d runs: min %v median %v max %v; Stop median %v",
		runs, d[0].Round(10*time.Microsecond), d[runs/2].Round(10*time.Microsecond), d[runs-1].Round(10*time.Microsecond),
		stops[runs/2].Round(10*time.Microsecond))

	// What the test's `ip netns exec` wrapper adds to every start.
	var w []time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		if err := exec.Command("ip", "netns", "exec", e.ns.Name(), "true").Run(); err != nil {
			t.Fatal(err)
		}
		w = append(w, time.Since(start))
	}
	slices.Sort(w)
	t.Logf("`ip netns exec NS true` alone: median %v", w[runs/2].Round(10*time.Microsecond))
}

// TestManagerDHCP leases an address to a client on the bridge: the static
// host from the hostsfile, with its name in DNS and the lease in the lease
// file (written by dnsmasq after dropping privileges).
func TestManagerDHCP(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox (udhcpc) not installed")
	}
	e := newNSEnv(t)
	client := netnstest.New(t, "dhcpc")
	netnstest.Veth(t, e.ns, "vh0", client, "vc0")
	e.ns.MustRun("ip", "link", "set", "vh0", "master", "br0")
	client.MustRun("ip", "link", "set", "vc0", "down")
	client.MustRun("ip", "link", "set", "vc0", "address", "52:54:00:00:00:01")
	client.MustRun("ip", "link", "set", "vc0", "up")
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("t3") })
	if err := m.Start(testNetwork("t3")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := client.Run("busybox", "udhcpc", "-i", "vc0", "-f", "-q", "-n", "-t", "10", "-T", "1", "-A", "1",
		"-x", "hostname:vm1", "-s", "/bin/true")
	if err != nil {
		t.Fatalf("udhcpc: %v", err)
	}
	t.Logf("lease after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	if !strings.Contains(out, "10.77.0.10") {
		t.Fatalf("static host did not get 10.77.0.10: %s", out)
	}
	leases := filepath.Join(e.cfg.StateDir, "t3.leases")
	waitFor(t, "lease in lease file", 2*time.Second, func() bool {
		data, _ := os.ReadFile(leases)
		return bytes.Contains(data, []byte("52:54:00:00:00:01 10.77.0.10"))
	})
	if got := e.dig(t, "vm1"); got != "10.77.0.10" {
		t.Errorf("dig vm1 = %q, want 10.77.0.10", got)
	}
	ls, err := m.Leases("t3")
	if err != nil || len(ls) != 1 || ls[0].MAC != "52:54:00:00:00:01" || ls[0].IP.String() != "10.77.0.10" || ls[0].Hostname != "vm1" {
		t.Errorf("Leases = %+v, %v", ls, err)
	}
}

// logCount counts log records by message.
type logCount struct {
	mu sync.Mutex
	n  map[string]int
	t  *testing.T
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.n[r.Message]++
	l.mu.Unlock()
	l.t.Logf("%s %s", r.Level, r.Message)
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }
func (l *logCount) get(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// TestManagerRestartBackoff: while dnsmasq cannot start, the supervisor
// retries with growing delays; once it can, the network is served again.
func TestManagerRestartBackoff(t *testing.T) {
	e := newNSEnv(t)
	dir := filepath.Dir(e.cfg.StateDir)
	flag := filepath.Join(dir, "fail")
	script := filepath.Join(dir, "dnsmasq.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ -e "+flag+" ] && { echo refusing >&2; exit 1; }\nexec "+e.cfg.Binary+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.cfg.Binary = script
	logs := &logCount{n: map[string]int{}, t: t}
	e.cfg.Logger = slog.New(logs)
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("t4") })
	if err := m.Start(testNetwork("t4", "db")); err != nil {
		t.Fatal(err)
	}
	pid := m.Pid("t4")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The first crashloop.Burst deaths restart at once; then the crash loop
	// backs off: the retries after that are at least crashloop.MinBackoff apart.
	waitFor(t, "a crash loop", 5*time.Second, func() bool { return logs.get("dnsmasq restart failed") >= crashloop.Burst })
	start, before := time.Now(), logs.get("dnsmasq restart failed")
	waitFor(t, "two more failed restarts", 5*time.Second, func() bool { return logs.get("dnsmasq restart failed") >= before+2 })
	if took := time.Since(start); took < crashloop.MinBackoff {
		t.Errorf("two failed restarts within %v in a crash loop, want backoff (>= %v)", took, crashloop.MinBackoff)
	}
	if m.Pid("t4") != 0 {
		t.Errorf("Pid = %d while dnsmasq cannot start", m.Pid("t4"))
	}
	os.Remove(flag)
	waitFor(t, "recovery", 3*time.Second, func() bool { return m.Pid("t4") > 0 })
	if got := e.dig(t, "db"); got != "10.77.0.50" {
		t.Fatalf("dig db after recovery = %q", got)
	}
}

// TestNewManagerRemovesStaleTemps: the temp files of an atomic write a crash
// interrupted are removed when a Manager is created; the real files stay.
func TestNewManagerRemovesStaleTemps(t *testing.T) {
	state, run := t.TempDir(), t.TempDir()
	stale := filepath.Join(state, ".net1.conf.tmp123")
	kept := filepath.Join(state, "net1.leases")
	for _, p := range []string{stale, kept} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewManager(Config{Binary: "/bin/true", StateDir: state, RunDir: run}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("%s not removed", stale)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("%s removed: %v", kept, err)
	}
}

// TestManagerRetriesInterfaceRace: a dnsmasq that died because an interface
// vanished while it listed them (another network's bridge deleted at that
// moment) is started again instead of failing the network's start.
func TestManagerRetriesInterfaceRace(t *testing.T) {
	e := newNSEnv(t)
	run := e.cfg.Command
	calls := 0
	e.cfg.Command = func(argv []string) *exec.Cmd {
		calls++
		if calls == 1 {
			return exec.Command("sh", "-c", "echo 'dnsmasq: "+interfacesChanged+" No such device' >&2; exit 5")
		}
		return run(argv)
	}
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("race") })
	if err := m.Start(testNetwork("race")); err != nil {
		t.Fatalf("Start after an interface race: %v", err)
	}
	if calls != 2 || m.Pid("race") == 0 {
		t.Fatalf("%d starts, pid %d; want a second start that serves", calls, m.Pid("race"))
	}
}
