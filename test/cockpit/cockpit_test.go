// Package cockpit tests vnetd's D-Bus front door the way cockpit-machines uses
// it: Debian's cockpit-ws, cockpit-bridge and cockpit-machines, headless
// Chromium driven by playwright-core (networks.cjs), and vnetd owning
// org.libvirt on a private system bus with vnet's own policy. See README.md.
package cockpit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"vnet/daemon/client"
	"vnet/internal/netnstest"
)

// playwrightVersion is the playwright-core the test installs with npm (only
// the library: it drives Debian's chromium, it never downloads a browser).
// 1.64 needs Node.js 20; Debian 12's own nodejs is 18, which 1.57 supports.
func playwrightVersion(nodeMajor int) string {
	if nodeMajor >= 20 {
		return "1.64.1"
	}
	return "1.57.0"
}

// cockpitPort is cockpit-ws's port on the loopback of the test's namespace
// (its own loopback: nothing else listens there).
const cockpitPort = "9090"

// runTimeout bounds the browser part (about 20 s when all is well).
const runTimeout = 4 * time.Minute

// TestCockpitMachinesNetworks drives cockpit-machines' Networks page against
// vnetd: list, details, create, activate, autostart on, add a static DHCP host,
// reload, remove the host, autostart off, deactivate, delete. networks.cjs
// checks each result on the page and in vnetd's own state (vnetctl, files).
func TestCockpitMachinesNetworks(t *testing.T) {
	began := time.Now()
	defer func() { t.Logf("cockpit test took %s", time.Since(began).Round(100*time.Millisecond)) }()
	if os.Geteuid() != 0 {
		t.Skip("cockpit: needs root (network namespace, mount namespace, vnetd); run as root")
	}
	requireTools(t)

	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(here, "..", "..")
	cache := filepath.Join(here, ".cache") // ignored by git (.gitignore here)
	xdg := cockpitMachines(t, cache)
	nodePath := playwrightCore(t, cache)
	policy := projectPolicy(t, root)

	// Screenshots and logs: kept (and named in the log) when the test fails.
	art := os.Getenv("VNET_COCKPIT_ARTIFACTS")
	if art == "" {
		if art, err = os.MkdirTemp("", "vnt-cockpit-artifacts-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("VNET_COCKPIT_ARTIFACTS") != "" {
			t.Logf("cockpit: screenshots and logs are in %s", art)
			return
		}
		os.RemoveAll(art)
	})

	d := tempDir(t)
	bins := buildVnet(t, root, d)
	for _, sub := range []string{"etc", "lib", "run", "home", "bus", "profile", "xdgrun"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(d, "xdgrun"), 0o700)

	// Everything runs in one throwaway network namespace: vnetd's bridges,
	// nftables and dnsmasq, and cockpit-ws and the browser on a loopback of
	// their own, so nothing is sent anywhere else.
	ns := netnstest.New(t, "cockpit")
	r := &runner{t: t, ns: ns, busDir: filepath.Join(d, "bus"), art: art, env: baseEnv(d, xdg)}

	// The private system bus, at the system bus's own path inside the mount
	// namespaces of the processes started here.
	busConf := filepath.Join(d, "system-bus.conf")
	if err := os.WriteFile(busConf, []byte(systemBusConfig(t, policy)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start("dbus-system", "dbus-daemon", "--config-file="+busConf, "--nofork", "--nopidfile")
	busSocket := filepath.Join(d, "bus", "system_bus_socket")
	conn := connectBus(t, busSocket)
	r.start("dbus-monitor", "dbus-monitor", "--system", "destination='org.libvirt'", "sender='org.libvirt'")
	r.start("dbus-session", "dbus-daemon", "--session", "--address=unix:path="+filepath.Join(d, "session_bus_socket"), "--nofork", "--nopidfile")

	// vnetd with its default --dbus auto: it finds the system bus at
	// /run/dbus/system_bus_socket, as it would on a real host.
	r.start("vnetd", bins.vnetd, "--verbose", "--config-dir", filepath.Join(d, "etc"),
		"--state-dir", filepath.Join(d, "lib"), "--run-dir", filepath.Join(d, "run"))
	sock := filepath.Join(d, "run", "vnetd.sock")
	waitFor(t, "vnetd's API socket", 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := client.New(sock).List(ctx)
		return err
	}, r.logOf("vnetd"))
	waitFor(t, "vnetd to own org.libvirt on the private system bus", 20*time.Second, func() error {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.libvirt").Store(&has); err != nil {
			return err
		}
		if !has {
			return errors.New("no owner")
		}
		return nil
	}, r.logOf("vnetd"))
	r.checkPolicy()

	// cockpit-ws serves one bridge session, as root, without login.
	r.start("cockpit-ws", "/usr/lib/cockpit/cockpit-ws", "--no-tls", "--address", "127.0.0.1",
		"--port", cockpitPort, "--local-session=cockpit-bridge")
	waitFor(t, "cockpit-ws to listen", 20*time.Second, func() error {
		return ns.Do(func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+cockpitPort, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}, r.logOf("cockpit-ws"))

	// The browser part: networks.cjs prints PASS/FAIL per step.
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	browse := time.Now()
	out, err := r.run(ctx, "networks", []string{
		"NODE_PATH=" + nodePath, "VNETCTL=" + bins.vnetctl, "VNET_SOCKET=" + sock,
	}, "node", filepath.Join(here, "networks.cjs"), "http://127.0.0.1:"+cockpitPort, art,
		filepath.Join(d, "profile"), d)
	t.Logf("browser steps took %s:\n%s", time.Since(browse).Round(100*time.Millisecond), out)
	if err != nil {
		t.Errorf("networks.cjs: %v", err)
		for _, name := range []string{"vnetd", "cockpit-ws"} {
			t.Logf("%s log:\n%s", name, r.logOf(name)())
		}
	}
}

// requireTools skips (or, under CI, fails) when the Debian packages the test
// uses are missing; scripts/deps.sh installs them.
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	for _, f := range []string{"/usr/lib/cockpit/cockpit-ws", "/usr/share/cockpit/shell/manifest.json"} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	for _, c := range []string{"cockpit-bridge", "chromium", "node", "npm", "dbus-daemon", "dbus-monitor",
		"unshare", "runuser", "dbus-send", "apt-get", "dpkg-deb", "ip", "dnsmasq", "nft"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		unavailable(t, "missing %s (scripts/deps.sh installs cockpit-ws, cockpit-system, cockpit-bridge, chromium, nodejs, npm, dbus)", strings.Join(missing, ", "))
	}
}

// unavailable skips the test because something cannot be installed here; in
// CI, where scripts/deps.sh has just installed everything, it fails instead.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := "cockpit: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// cockpitMachines returns a directory for XDG_DATA_DIRS holding Debian's
// cockpit-machines, unpacked, not installed: the package Depends on
// libvirt-daemon-system and libvirt-dbus, and libvirt-dbus must never run next
// to vnetd (one owner of org.libvirt). The bridge only needs its static files.
func cockpitMachines(t *testing.T, cache string) string {
	t.Helper()
	xdg := filepath.Join(cache, "xdg")
	if _, err := os.Stat(filepath.Join(xdg, "cockpit", "machines", "manifest.json")); err == nil {
		return xdg
	}
	dl := filepath.Join(cache, "deb")
	os.RemoveAll(dl)
	if err := os.MkdirAll(dl, 0o755); err != nil {
		t.Fatal(err)
	}
	get := func() ([]byte, error) {
		c := exec.Command("apt-get", "download", "-qq", "cockpit-machines")
		c.Dir = dl
		return c.CombinedOutput()
	}
	if out, err := get(); err != nil {
		// The package lists may be missing on a fresh machine.
		if uout, uerr := exec.Command("apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
			unavailable(t, "cannot fetch cockpit-machines: apt-get update: %v: %s", uerr, uout)
		}
		if out2, err := get(); err != nil {
			unavailable(t, "cannot fetch cockpit-machines: apt-get download: %v: %s / %s", err, out, out2)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "cockpit-machines_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download cockpit-machines left %v in %s", debs, dl)
	}
	pkg := filepath.Join(dl, "pkg")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], pkg).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v: %s", debs[0], err, out)
	}
	tmp := xdg + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Join(tmp, "cockpit"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(pkg, "usr/share/cockpit/machines"), filepath.Join(tmp, "cockpit", "machines")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(xdg)
	if err := os.Rename(tmp, xdg); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dl)
	return xdg
}

// playwrightCore installs playwright-core with npm into the cache (once per
// version) and returns the NODE_PATH that finds it.
func playwrightCore(t *testing.T, cache string) string {
	t.Helper()
	out, err := exec.Command("node", "-p", "process.versions.node").Output()
	if err != nil {
		unavailable(t, "node does not run: %v", err)
	}
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0])
	version := playwrightVersion(major)
	dir := filepath.Join(cache, "node")
	modules := filepath.Join(dir, "node_modules")
	if b, err := os.ReadFile(filepath.Join(modules, "playwright-core", "package.json")); err == nil &&
		strings.Contains(string(b), `"version": "`+version+`"`) {
		return modules
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("npm", "install", "--prefix", dir, "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
		"--loglevel=error", "playwright-core@"+version)
	if out, err := c.CombinedOutput(); err != nil {
		unavailable(t, "cannot install playwright-core %s with npm: %v: %s", version, err, out)
	}
	return modules
}

// projectPolicy returns vnet's own D-Bus policy file (systemd/*.conf for
// org.libvirt), the one `make install` installs.
func projectPolicy(t *testing.T, root string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "systemd", "*.conf"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte("<busconfig>")) &&
			bytes.Contains(b, []byte(`own="org.libvirt"`)) {
			return f
		}
	}
	t.Fatalf("no D-Bus policy for org.libvirt in %s/systemd", root)
	return ""
}

var policyBlock = regexp.MustCompile(`(?s)<policy\b.*?</policy>`)

// systemBusConfig is a system bus like Debian's: its policies from
// /usr/share/dbus-1/system.conf (method calls and owning names denied unless a
// policy file allows them, root may monitor), plus vnet's own policy file, and
// no other (libvirt-dbus's org.libvirt.conf, if installed, is not read).
func systemBusConfig(t *testing.T, policy string) string {
	t.Helper()
	b, err := os.ReadFile("/usr/share/dbus-1/system.conf")
	if err != nil {
		t.Fatalf("Debian's system bus policy: %v", err)
	}
	blocks := policyBlock.FindAllString(string(b), -1)
	joined := strings.Join(blocks, "\n  ")
	if !strings.Contains(joined, `<deny send_type="method_call"/>`) || !strings.Contains(joined, `<deny own="*"/>`) {
		t.Fatalf("/usr/share/dbus-1/system.conf: no default deny policy found")
	}
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  ` + joined + `
  <include>` + policy + `</include>
</busconfig>
`
}

// tempDir is a temp dir whose parents are searchable by others: dnsmasq drops
// to nobody and re-reads its hosts files under vnetd's state dir.
func tempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for dir := d; dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

type binaries struct{ vnetd, vnetctl string }

// buildVnet builds vnetd and vnetctl from this tree, static as the Makefile does.
func buildVnet(t *testing.T, root, d string) binaries {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	b := binaries{vnetd: filepath.Join(d, "vnetd"), vnetctl: filepath.Join(d, "vnetctl")}
	for out, pkg := range map[string]string{b.vnetd: "./cmd/vnetd", b.vnetctl: "./cmd/vnetctl"} {
		c := exec.Command(goBin, "build", "-o", out, pkg)
		c.Dir = root
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := c.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v: %s", pkg, err, o)
		}
	}
	return b
}

// baseEnv is the environment of every process: no bus address from the
// caller (the system bus is found at its standard path), a session bus of the
// test's own (without one, cockpit-bridge launches one that outlives it), and
// the unpacked cockpit-machines first in XDG_DATA_DIRS.
func baseEnv(d, xdg string) []string {
	var env []string
	for _, e := range os.Environ() {
		switch strings.SplitN(e, "=", 2)[0] {
		case "DBUS_SYSTEM_BUS_ADDRESS", "DBUS_SESSION_BUS_ADDRESS", "HOME", "XDG_DATA_DIRS", "XDG_RUNTIME_DIR",
			"XDG_CONFIG_HOME", "DISPLAY", "WAYLAND_DISPLAY", "LANG", "LANGUAGE", "LC_ALL":
			continue
		}
		env = append(env, e)
	}
	return append(env,
		"LANG=C.UTF-8", // the one locale every Debian has
		"HOME="+filepath.Join(d, "home"),
		"XDG_RUNTIME_DIR="+filepath.Join(d, "xdgrun"),
		"XDG_DATA_DIRS="+xdg+":/usr/local/share:/usr/share",
		"DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(d, "session_bus_socket"),
	)
}

// runner starts the test's processes in its network namespace, each in a
// private mount namespace where the test's bus directory is mounted over
// /run/dbus, and stops each by its process group when the test ends.
type runner struct {
	t      *testing.T
	ns     *netnstest.NS
	busDir string
	art    string
	env    []string
	logs   map[string]string
}

// mountScript makes the private bus the system bus inside the process's own
// mount namespace; the host's /run/dbus stays as it is.
const mountScript = `set -e
mkdir -p /run/dbus
mount --bind "$0" /run/dbus
exec "$@"`

func (r *runner) command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"netns", "exec", r.ns.Name(), "unshare", "-m", "--propagation", "private",
		"sh", "-c", mountScript, r.busDir}, argv...)
	c := exec.CommandContext(ctx, "ip", args...)
	c.Env = r.env
	// Its own process group: children (cockpit-bridge, chromium) are stopped with it.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	return c
}

// start runs argv in the background, logging to the artifact dir, and stops it
// at cleanup: SIGTERM to its process group, SIGKILL after 5 s.
func (r *runner) start(name string, argv ...string) {
	r.t.Helper()
	logPath := filepath.Join(r.art, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		r.t.Fatal(err)
	}
	if r.logs == nil {
		r.logs = map[string]string{}
	}
	r.logs[name] = logPath
	c := r.command(context.Background(), argv...)
	c.Stdout, c.Stderr = f, f
	if err := c.Start(); err != nil {
		f.Close()
		r.t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); f.Close(); close(done) }()
	r.t.Cleanup(func() {
		pgid := c.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		// Whatever is left of the group (a child that ignored SIGTERM).
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// run runs argv to completion with extra environment and returns its output.
func (r *runner) run(ctx context.Context, name string, extraEnv []string, argv ...string) (string, error) {
	c := r.command(ctx, argv...)
	c.Env = append(append([]string{}, r.env...), extraEnv...)
	c.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	_ = os.WriteFile(filepath.Join(r.art, name+".log"), out.Bytes(), 0o644)
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (after %s)", ctx.Err(), runTimeout)
	}
	return out.String(), err
}

// logOf returns a function reading the log of a started process.
func (r *runner) logOf(name string) func() string {
	return func() string {
		b, _ := os.ReadFile(r.logs[name])
		return string(b)
	}
}

// checkPolicy makes sure the bus policy is in force: user nobody (neither
// root nor in group libvirt) is refused by the bus itself.
func (r *runner) checkPolicy() {
	r.t.Helper()
	c := r.command(context.Background(), "runuser", "-u", "nobody", "--", "dbus-send", "--system", "--print-reply",
		"--dest=org.libvirt", "/org/libvirt/QEMU", "org.libvirt.Connect.ListNetworks", "uint32:0")
	out, err := c.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "AccessDenied") {
		r.t.Fatalf("user nobody called org.libvirt (err %v): the bus policy is not in force: %s", err, out)
	}
}

// connectBus connects the test itself to the private system bus (as root)
// once dbus-daemon listens.
func connectBus(t *testing.T, socket string) *dbus.Conn {
	t.Helper()
	var conn *dbus.Conn
	waitFor(t, "the private system bus", 10*time.Second, func() error {
		c, err := dbus.Connect("unix:path=" + socket)
		if err != nil {
			return err
		}
		conn = c
		return nil
	}, func() string { return "" })
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitFor polls cond until it succeeds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error, log func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v\n%s", what, err, log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
