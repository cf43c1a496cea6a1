package dbusapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"vnet/daemon"
	"vnet/daemon/api"
	netxml "vnet/xml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// busConfig lets every connection own any name and talk to anyone: the
// tests exercise our authorization, not the bus policy.
const openPolicy = `
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>`

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>%s
</busconfig>
`

// startBus runs a private dbus-daemon for the test and returns its address.
func startBus(t *testing.T) string {
	t.Helper()
	return startBusWith(t, openPolicy)
}

// startBusWith runs a private dbus-daemon with the given policy elements.
func startBusWith(t *testing.T, policy string) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon is not installed")
	}
	dir := t.TempDir()
	// Let other users reach the socket (TestUnprivilegedCaller).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, filepath.Join(dir, "bus"), policy)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+conf, "--print-address", "--nofork", "--nopidfile")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// dbus-daemon complains harmlessly (fd limit) when not run by systemd;
	// show its messages only when the test fails.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t.Cleanup(func() {
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("dbus-daemon: %s", stderr.String())
		}
	})
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		s, _ := r.ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case addr := <-line:
		if addr == "" {
			t.Fatal("dbus-daemon printed no address")
		}
		return addr
	case <-time.After(5 * time.Second):
		t.Fatal("dbus-daemon did not start")
	}
	return ""
}

// env is a bus with a served manager and a client connection.
type env struct {
	t      *testing.T
	addr   string
	m      *daemon.Manager
	srv    *Server
	client *dbus.Conn
	host   *fakeHost
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newTestEnv serves libvirt's test:///default fixture at /org/libvirt/Test.
func newTestEnv(t *testing.T, o Options) *env {
	return serveEnv(t, daemon.NewTestDriver(testLogger(t)), nil, o)
}

// newRealEnv serves a manager over a memory store and a fake host at
// /org/libvirt/QEMU: the real network driver's behaviour without the kernel.
func newRealEnv(t *testing.T, o Options) *env {
	h := &fakeHost{links: map[string]bool{"virbr0": true}}
	m := daemon.NewManagerWith(daemon.NewMemoryStore(), h, testLogger(t))
	return serveEnv(t, m, h, o)
}

func serveEnv(t *testing.T, m *daemon.Manager, h *fakeHost, o Options) *env {
	t.Helper()
	return serveOn(t, startBus(t), m, h, o)
}

// serveOn serves m on the bus at addr until the test ends.
func serveOn(t *testing.T, addr string, m *daemon.Manager, h *fakeHost, o Options) *env {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	srv := New(m, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, addr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	client := newClient(t, addr)
	waitOwner(t, client, done)
	return &env{t: t, addr: addr, m: m, srv: srv, client: client, host: h}
}

func newClient(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	c, err := Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitOwner waits until org.libvirt has an owner (as clients do).
func waitOwner(t *testing.T, c *dbus.Conn, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var has bool
		if err := c.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, BusName).Store(&has); err != nil {
			t.Fatal(err)
		}
		if has {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("server stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatal("org.libvirt has no owner after 5 s")
}

// call calls a method on path and returns the reply body.
func (e *env) call(path dbus.ObjectPath, method string, a ...any) ([]any, error) {
	c := e.client.Object(BusName, path).Call(method, 0, a...)
	return c.Body, c.Err
}

// must calls and fails the test on error.
func (e *env) must(path dbus.ObjectPath, method string, a ...any) []any {
	e.t.Helper()
	body, err := e.call(path, method, a...)
	if err != nil {
		e.t.Fatalf("%s on %s: %v", method, path, err)
	}
	return body
}

func (e *env) connectPath() dbus.ObjectPath { return e.srv.ConnectPath() }

func (e *env) netPath(uuid string) dbus.ObjectPath { return e.srv.networkPath(uuid) }

// wantError checks a D-Bus error's name and message.
func wantError(t *testing.T, err error, name, msg string) {
	t.Helper()
	var de dbus.Error
	if !errors.As(err, &de) {
		t.Fatalf("error = %v (%T), want D-Bus error %s", err, err, name)
	}
	got := ""
	if len(de.Body) > 0 {
		got, _ = de.Body[0].(string)
	}
	if de.Name != name || (msg != "" && got != msg) {
		t.Fatalf("error = %s %q, want %s %q", de.Name, got, name, msg)
	}
}

// wantErrorPrefix checks a D-Bus error's name and the start of its message.
func wantErrorPrefix(t *testing.T, err error, name, prefix string) {
	t.Helper()
	var de dbus.Error
	if !errors.As(err, &de) {
		t.Fatalf("error = %v (%T), want D-Bus error %s", err, err, name)
	}
	got, _ := de.Body[0].(string)
	if de.Name != name || !strings.HasPrefix(got, prefix) {
		t.Fatalf("error = %s %q, want %s %q…", de.Name, got, name, prefix)
	}
}

// events subscribes to NetworkEvent from org.libvirt.
type events struct {
	t  *testing.T
	ch chan *dbus.Signal
	e  *env
}

func (e *env) subscribe() *events {
	e.t.Helper()
	if err := e.client.AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchInterface(ifaceConnect), dbus.WithMatchMember("NetworkEvent")); err != nil {
		e.t.Fatal(err)
	}
	ch := make(chan *dbus.Signal, 64)
	e.client.Signal(ch)
	return &events{t: e.t, ch: ch, e: e}
}

// next waits up to 1 s for the next NetworkEvent and checks it.
func (ev *events) next(path dbus.ObjectPath, want daemon.EventType) {
	ev.t.Helper()
	select {
	case s := <-ev.ch:
		if s.Name != ifaceConnect+".NetworkEvent" {
			ev.t.Fatalf("signal %s, want NetworkEvent", s.Name)
		}
		if s.Path != ev.e.connectPath() {
			ev.t.Fatalf("signal from path %s, want %s", s.Path, ev.e.connectPath())
		}
		if len(s.Body) != 2 {
			ev.t.Fatalf("NetworkEvent has %d arguments (%v), want exactly 2", len(s.Body), s.Body)
		}
		var owner string
		if err := ev.e.client.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner); err != nil {
			ev.t.Fatal(err)
		}
		if s.Sender != owner {
			ev.t.Fatalf("NetworkEvent from %s, want the owner of org.libvirt %s", s.Sender, owner)
		}
		p, ok1 := s.Body[0].(dbus.ObjectPath)
		typ, ok2 := s.Body[1].(int32)
		if !ok1 || !ok2 {
			ev.t.Fatalf("NetworkEvent body %#v, want (o, i)", s.Body)
		}
		if p != path || daemon.EventType(typ) != want {
			ev.t.Fatalf("NetworkEvent(%s, %d), want (%s, %d %s)", p, typ, path, want, want)
		}
	case <-time.After(time.Second):
		ev.t.Fatalf("no NetworkEvent %s for %s within 1 s", want, path)
	}
}

// none checks that no further event arrives for a while.
func (ev *events) none() {
	ev.t.Helper()
	select {
	case s := <-ev.ch:
		ev.t.Fatalf("unexpected signal %s %v", s.Name, s.Body)
	case <-time.After(150 * time.Millisecond):
	}
}

// fakeHost records what the manager asks of the host and changes nothing.
// It embeds daemon.Host so that methods added to the interface later compile
// (they panic if called, which a test would notice).
type fakeHost struct {
	daemon.Host
	mu      sync.Mutex
	links   map[string]bool
	up      map[string]bool
	leases  []api.Lease
	ensures []string
}

func (h *fakeHost) Check(*netxml.Network) error { return nil }

func (h *fakeHost) Start(n *netxml.Network) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up == nil {
		h.up = map[string]bool{}
	}
	h.up[n.Name] = true
	h.ensures = append(h.ensures, n.Name)
	return nil
}

func (h *fakeHost) Verify(*netxml.Network) ([]string, error)   { return nil, nil }
func (h *fakeHost) Converge(*netxml.Network) ([]string, error) { return nil, nil }

func (h *fakeHost) Remove(n *netxml.Network) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.up, n.Name)
	return nil
}

func (h *fakeHost) Forget(string) error { return nil }

func (h *fakeHost) LinkExists(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.links[name]
}

func (h *fakeHost) Detach() {}

func (h *fakeHost) Leases(*netxml.Network) ([]api.Lease, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]api.Lease(nil), h.leases...), nil
}

func (h *fakeHost) Plan(n *netxml.Network) (string, error) {
	return "ip link add " + n.BridgeName() + " type bridge\n", nil
}

// paths returns the sorted object paths of a ListNetworks reply.
func paths(body []any) []string {
	var out []string
	for _, p := range body[0].([]dbus.ObjectPath) {
		out = append(out, string(p))
	}
	sort.Strings(out)
	return out
}
