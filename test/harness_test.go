// Package test holds vnet's end-to-end tests: the real vnetd binary, driven by
// the real vnetctl, inside network namespaces the tests create and delete.
// Real bridges, real nftables rules read back from the kernel, real dnsmasq,
// guest namespaces that get DHCP leases and ping through NAT.
package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vnet/daemon/client"
	"vnet/internal/netnstest"
)

var binDir string // vnetd and vnetctl, built once by TestMain

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("test: not root; the end-to-end tests skip")
		os.Exit(m.Run())
	}
	// Where Go is not installed (the booted test VM runs this package's
	// test binary), vnetd and vnetctl are taken as built.
	if dir := os.Getenv("VNET_TEST_BINDIR"); dir != "" {
		binDir = dir
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "vnet-bin-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	// vnetd-race is vnetd built with the race detector, for the stress test
	// (daemon.binary = raceVnetd).
	for _, b := range []struct{ out, pkg, flags string }{
		{"vnetd", "vnetd", ""}, {"vnetctl", "vnetctl", ""}, {raceVnetd, "vnetd", "-race"},
		{"vnet-bridge-helper", "vnet-bridge-helper", ""}, {"vnet-qemu-ifup", "vnet-qemu-ifup", ""},
	} {
		args := []string{"build", "-o", filepath.Join(dir, b.out)}
		if b.flags != "" {
			args = append(args, b.flags)
		}
		cmd := exec.Command("go", append(args, "vnet/cmd/"+b.pkg)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if b.flags == "" {
			// Static, as the Makefile builds them: no dynamic loader at
			// every vnetctl start.
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if err := cmd.Run(); err != nil {
			fmt.Println("build", b.out, err)
			os.Exit(1)
		}
	}
	// vnet-qemu-ifdown is vnet-qemu-ifup under another name, as make
	// build makes it.
	if err := os.Symlink("vnet-qemu-ifup", filepath.Join(dir, "vnet-qemu-ifdown")); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	// Unprivileged users run the helpers (TestBridgeHelper).
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a vnetd running inside a namespace with its own directories.
type daemon struct {
	t         testing.TB
	ns        *netnstest.NS
	configDir string
	stateDir  string
	runDir    string
	cmd       *exec.Cmd
	log       *logBuffer
	// binary is the vnetd binary under binDir ("" is "vnetd"; raceVnetd is
	// the race-detector build).
	binary string
	// mountSetup, when set, is a shell script run in a private mount
	// namespace right before vnetd is exec'd there (read-only or tiny
	// config dirs that the rest of the host never sees).
	mountSetup string
	// env is extra environment for vnetd.
	env []string
	// readyAt is when the last start first got an answer (the daemon may
	// still be adopting networks in the background then).
	readyAt time.Time
	// readyTimeout bounds how long start waits for vnetd to answer
	// (default 10 s; a restart adopting a thousand networks takes longer
	// on a loaded machine).
	readyTimeout time.Duration
}

// raceVnetd is the name under binDir of vnetd built with -race.
const raceVnetd = "vnetd-race"

// pid is the running vnetd's pid (its /proc/PID/root shows the daemon's
// mount namespace).
func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) socket() string { return filepath.Join(d.runDir, "vnetd.sock") }

// newDaemon prepares directories for a vnetd in ns; start runs it.
func newDaemon(t testing.TB, ns *netnstest.NS) *daemon {
	t.Helper()
	root := t.TempDir()
	// dnsmasq drops to nobody and re-reads its hosts files: like /var/lib,
	// the directories above them must be searchable by others.
	for dir := root; dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The run dir is on tmpfs, as /run is in production.
	runDir, err := os.MkdirTemp("/run", "vnet-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	if err := os.Chmod(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, ns: ns, configDir: filepath.Join(root, "etc"), stateDir: filepath.Join(root, "lib"), runDir: runDir}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() && d.log != nil {
			t.Logf("vnetd log:\n%s", d.log.String())
		}
	})
	return d
}

// start runs vnetd and waits until its socket answers.
func (d *daemon) start(extra ...string) {
	d.t.Helper()
	if err := d.launch(extra...); err != nil {
		d.t.Fatal(err)
	}
}

// launch runs vnetd and waits until its socket answers; it returns an error
// (after reaping the process) when vnetd exits or does not answer, for tests
// that expect a start to fail (an unsupported --firewall backend).
func (d *daemon) launch(extra ...string) error {
	bin := d.binary
	if bin == "" {
		bin = "vnetd"
	}
	argv := append([]string{filepath.Join(binDir, bin),
		"--config-dir", d.configDir, "--state-dir", d.stateDir, "--run-dir", d.runDir, "--verbose"}, extra...)
	if d.mountSetup != "" {
		// exec keeps vnetd's pid that of the started process, so signals
		// and kills reach the daemon itself.
		argv = append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c",
			"set -e\n" + d.mountSetup + "\nexec \"$@\"", "sh"}, argv...)
	}
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", d.ns.Name()}, argv...)...)
	if d.log == nil {
		d.log = &logBuffer{}
	}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if d.env != nil {
		d.cmd.Env = append(os.Environ(), d.env...)
	}
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("start vnetd: %w", err)
	}
	// vnetd adopts the active networks in the background once it serves;
	// tests see the daemon after that, as before.
	adopted := -1
	if !slices.Contains(extra, "test") {
		adopted = strings.Count(d.log.String(), adoptedAll)
	}
	// Polled in-process: a vnetctl per try would add its own start-up time
	// to every daemon restart (the crash test restarts hundreds of times).
	c := client.New(d.socket())
	wait := d.readyTimeout
	if wait == 0 {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.List(ctx)
		cancel()
		if err == nil {
			d.readyAt = time.Now()
			return d.waitAdopted(adopted, deadline)
		}
		if exited(d.cmd.Process.Pid) {
			_ = d.cmd.Wait()
			d.cmd = nil
			return fmt.Errorf("vnetd exited: %v\n%s", err, d.log)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("vnetd did not answer within %v:\n%s", wait, d.log)
}

// adoptedAll is what vnetd logs when it has adopted every active network.
const adoptedAll = `msg="adopted every active network"`

// waitAdopted waits until the log has more adoptedAll lines than before
// (-1: a test driver, which adopts nothing).
func (d *daemon) waitAdopted(before int, deadline time.Time) error {
	for before >= 0 && strings.Count(d.log.String(), adoptedAll) <= before {
		if time.Now().After(deadline) {
			return fmt.Errorf("vnetd did not adopt its networks in time:\n%s", d.log)
		}
		if exited(d.cmd.Process.Pid) {
			return fmt.Errorf("vnetd exited while adopting its networks:\n%s", d.log)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// stop sends SIGTERM and waits; networks stay up.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
	d.cmd = nil
}

// ctl runs vnetctl against this daemon.
func (d *daemon) ctl(args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(filepath.Join(binDir, "vnetctl"), append([]string{"--socket", d.socket()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

// mustCtl runs vnetctl and fails the test unless it succeeds.
func (d *daemon) mustCtl(args ...string) string {
	d.t.Helper()
	out, errs, code := d.ctl(args...)
	if code != 0 {
		d.t.Fatalf("vnetctl %s: exit %d\nstdout: %s\nstderr: %s\nvnetd log:\n%s", strings.Join(args, " "), code, out, errs, d.log)
	}
	return out
}

// writeFile writes content to a temp file and returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// udhcpcScript configures the lease it gets: address, default route. It
// never touches resolv.conf (the guest shares the host's mount namespace).
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
	;;
esac
exit 0
`

// guest is a namespace plugged into a bridge in the daemon's namespace.
type guest struct {
	*netnstest.NS
	port string // the veth end on the bridge, in the host namespace
}

// addGuest creates a guest namespace with eth0 plugged into bridge br of host.
func addGuest(t testing.TB, host *netnstest.NS, br, tag string) *guest {
	t.Helper()
	g := netnstest.New(t, tag)
	port := "vp" + tag
	if len(port) > 15 {
		port = port[:15]
	}
	netnstest.Veth(t, host, port, g, "eth0")
	host.MustRun("ip", "link", "set", port, "master", br)
	return &guest{NS: g, port: port}
}

// dhcp runs udhcpc in the guest until it binds; returns the time it took.
func (g *guest) dhcp(t testing.TB) time.Duration {
	t.Helper()
	start := time.Now()
	g.dhcpAs(t)
	return time.Since(start)
}

// dhcpAs runs udhcpc in the guest until it binds, with extra options (e.g.
// -x hostname:NAME).
func (g *guest) dhcpAs(t testing.TB, extra ...string) {
	t.Helper()
	script := writeFile(t, "udhcpc.sh", udhcpcScript)
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "20", "-T", "1", "-A", "1", "-s", script}, extra...)
	if out, err := g.Run(args...); err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
}

// upstream is a namespace behind the daemon's namespace (uplink up0,
// 172.31.255.1/24 on the host side, .2 upstream), like a router's WAN side.
func addUpstream(t testing.TB, host *netnstest.NS) *netnstest.NS {
	t.Helper()
	up := netnstest.New(t, "up")
	netnstest.Veth(t, host, "up0", up, "eth0")
	host.MustRun("ip", "addr", "add", "172.31.255.1/24", "dev", "up0")
	up.MustRun("ip", "addr", "add", "172.31.255.2/24", "dev", "eth0")
	return up
}

// listenTCP listens on addr inside ns and reports the source address of each
// connection it accepts, so a test can see whether NAT happened.
func listenTCP(t testing.TB, ns *netnstest.NS, addr string) <-chan string {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns.Name(), err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			c.Write([]byte("hello\n"))
			c.Close()
			peers <- host
		}
	}()
	return peers
}

// connect opens a TCP connection from inside ns to addr and reads the greeting.
func connect(ns *netnstest.NS, addr string) error {
	return ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var dialer net.Dialer
		c, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 6)
		_, err = c.Read(buf)
		return err
	})
}

type ctlResult struct {
	stdout, stderr string
	code           int
}

// ctlIn runs vnetctl in directory dir (so FILE arguments are echoed relative).
func (d *daemon) ctlIn(dir string, args ...string) ctlResult {
	cmd := exec.Command(filepath.Join(binDir, "vnetctl"), append([]string{"--socket", d.socket()}, args...)...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := ctlResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		r.code = -1
	}
	return r
}

// exited reports whether a child process has exited (a zombie awaiting Wait,
// or already gone).
func exited(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	if i := bytes.LastIndexByte(data, ')'); i >= 0 && i+2 < len(data) {
		return data[i+2] == 'Z' || data[i+2] == 'X'
	}
	return false
}

// logBuffer collects a daemon's output; the process writes it while tests
// read it, so it is locked.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len returns the number of bytes written so far.
func (b *logBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
