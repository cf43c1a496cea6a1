package passt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnet/internal/pidfd"
)

// legacyKeeperEnv makes the test binary a stand-in legacy keeper.
const legacyKeeperEnv = "VNET_TEST_LEGACY_KEEPER"

// The test binary is also the keeper (Manager runs Self with KeeperFlag)
// and, under the name passt, a passt stand-in.
func TestMain(m *testing.M) {
	if os.Getenv(legacyKeeperEnv) != "" {
		// A keeper of an older vnetd, for adoption: it runs until killed
		// and, like it, ends on SIGTERM and SIGHUP.
		for {
			time.Sleep(time.Hour)
		}
	}
	if len(os.Args) > 1 && os.Args[1] == KeeperFlag {
		os.Exit(KeeperMain(os.Args[2:]))
	}
	if filepath.Base(os.Args[0]) == "passt" {
		fakePasst(os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

// fakePasst echoes what it reads on fd 3 back, until fd 3 closes; on the
// frame "die-mid-frame" it writes half a frame and exits, as a passt
// killed in the middle of a write.
func fakePasst(args []string) {
	conn := os.NewFile(3, "guest")
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			os.Exit(0)
		}
		if bytes.HasSuffix(buf[:n], []byte("die-mid-frame")) {
			_, _ = conn.Write([]byte{0, 0, 0, 100, 'h', 'a', 'l', 'f'})
			os.Exit(1)
		}
		if _, err := conn.Write(buf[:n]); err != nil {
			os.Exit(0)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echo sends msg as one frame of the stream protocol (the keeper relays
// frames) and waits for the fake passt to send it back.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	frame = append(frame, msg...)
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(frame))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, frame) {
		t.Fatalf("echo %q: got %q, %v", msg, buf, err)
	}
}

// running reports whether pid runs a process whose command line holds want.
func running(pid int, want []byte) bool {
	p := pidfd.OpenMatching(pid, want)
	if p == nil {
		return false
	}
	p.Close()
	return true
}

// testManagers returns a maker of managers sharing one run directory (a
// daemon and its restarts), whose passt is the test binary (fakePasst).
func testManagers(t *testing.T) func() *Manager {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "passt")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return func() *Manager {
		m, err := NewManager(Config{Binary: bin, RunDir: filepath.Join(dir, "run"), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

// passtArgs returns the arguments of the port's running passt (none when
// no passt runs).
func passtArgs(m *Manager, id string) string {
	p := m.findPasst(id)
	if p == nil {
		return ""
	}
	defer p.Close()
	cmdline, _ := p.Cmdline()
	return strings.ReplaceAll(string(cmdline), "\x00", " ")
}

// TestKeeper: the manager starts a keeper that listens on the port's
// socket; a guest connection gets a passt; a killed passt is replaced on
// the same connection; a new manager (a restarted daemon) adopts the
// keeper; a killed keeper is started again; Stop removes everything.
func TestKeeper(t *testing.T) {
	newManager := testManagers(t)
	m := newManager()
	const id = "port1"
	t.Cleanup(func() { _ = m.Stop(id) })
	fixed, err := m.Ensure(id, []string{"--foreground"})
	if err != nil || len(fixed) != 1 {
		t.Fatalf("Ensure: %v %v", fixed, err)
	}
	if fixed, err := m.Ensure(id, []string{"--foreground"}); err != nil || len(fixed) != 0 {
		t.Fatalf("Ensure of a running keeper: %v %v", fixed, err)
	}
	if d := m.Verify(id); d != nil {
		t.Fatalf("Verify: %v", d)
	}
	c, err := net.Dial("unix", m.Socket(id))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "one")
	first := m.PasstPid(id)
	if first == 0 {
		t.Fatal("no passt pid")
	}

	_ = syscall.Kill(first, syscall.SIGKILL)
	waitUntil(t, "passt restarted", func() bool { p := m.PasstPid(id); return p != 0 && p != first })
	echo(t, c, "two")

	// A passt dying in the middle of a frame: the guest never sees the
	// half frame, and the next passt's frames arrive whole.
	second := m.PasstPid(id)
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, 13), "die-mid-frame"...)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "passt restarted after dying mid-frame", func() bool { p := m.PasstPid(id); return p != 0 && p != second })
	echo(t, c, "whole")

	// A restarted daemon: the old manager detaches, a new one adopts.
	m.Detach()
	keeper, _ := readPid(m.pidFile(id))
	m = newManager()
	if fixed, err := m.Ensure(id, []string{"--foreground"}); err != nil || len(fixed) != 0 {
		t.Fatalf("adopting Ensure: %v %v", fixed, err)
	}
	echo(t, c, "three")

	// The adopted keeper killed: started again (a new socket).
	_ = syscall.Kill(keeper, syscall.SIGKILL)
	waitUntil(t, "keeper restarted", func() bool {
		p, _ := readPid(m.pidFile(id))
		_, err := os.Stat(m.Socket(id))
		return p != keeper && running(p, keeperCmd(m.Socket(id))) && err == nil
	})
	c2, err := net.Dial("unix", m.Socket(id))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	echo(t, c2, "four")

	passtPid := m.PasstPid(id)
	if err := m.Stop(id); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{m.Socket(id), m.pidFile(id), m.passtPidFile(id)} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left after Stop", f)
		}
	}
	waitUntil(t, "passt gone", func() bool { return !running(passtPid, []byte("passt")) })
	if d := m.Verify(id); len(d) != 1 || !strings.Contains(d[0], "not running") {
		t.Fatalf("Verify after Stop: %v", d)
	}
}

// TestCheck: a missing passt and a socket path too long for sun_path are
// refused before anything starts.
func TestCheck(t *testing.T) {
	m, err := NewManager(Config{Binary: "/nonexistent/passt", RunDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Check("p"); err == nil || !strings.Contains(err.Error(), "passt binary '/nonexistent/passt' not found (install Debian's passt package)") {
		t.Fatalf("missing passt: %v", err)
	}
	long, err := NewManager(Config{Binary: "/bin/sh", RunDir: filepath.Join(t.TempDir(), strings.Repeat("d", 100))})
	if err != nil {
		t.Fatal(err)
	}
	if err := long.Check("p"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("longer than the %d usable in a UNIX socket address", maxSocketPath)) {
		t.Fatalf("long path: %v", err)
	}
	if _, err := long.Ensure("p", nil); err == nil {
		t.Fatal("Ensure with a long socket path succeeded")
	}
}

// TestEnsureNewArgs: changed passt arguments reach a running keeper (one
// this manager started, and one a restarted daemon adopted): passt is
// restarted with them on the guest's connection, which stays up; the
// same arguments again change nothing.
func TestEnsureNewArgs(t *testing.T) {
	newManager := testManagers(t)
	m := newManager()
	const id = "port2"
	t.Cleanup(func() { _ = m.Stop(id) })
	if _, err := m.Ensure(id, []string{"--foreground", "--tcp-ports", "8080"}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", m.Socket(id))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "one")
	if a := passtArgs(m, id); !strings.Contains(a, "--tcp-ports 8080 --fd 3") {
		t.Fatalf("passt runs with %q", a)
	}
	newArgs := func(m *Manager, args []string) {
		t.Helper()
		before := m.PasstPid(id)
		fixed, err := m.Ensure(id, args)
		if err != nil || len(fixed) != 1 || !strings.Contains(fixed[0], "new arguments") {
			t.Fatalf("Ensure with new arguments: %v %v", fixed, err)
		}
		want := strings.Join(args, " ") + " --fd 3"
		waitUntil(t, "passt restarted with "+want, func() bool {
			return m.PasstPid(id) != before && strings.HasSuffix(strings.TrimSpace(passtArgs(m, id)), want)
		})
		echo(t, c, "after "+want)
		if fixed, err := m.Ensure(id, args); err != nil || len(fixed) != 0 {
			t.Fatalf("Ensure with the same arguments: %v %v", fixed, err)
		}
	}
	newArgs(m, []string{"--foreground", "--tcp-ports", "8081"})

	m.Detach()
	m = newManager()
	if fixed, err := m.Ensure(id, []string{"--foreground", "--tcp-ports", "8081"}); err != nil || len(fixed) != 0 {
		t.Fatalf("adopting with the same arguments: %v %v", fixed, err)
	}
	newArgs(m, []string{"--foreground", "--udp-ports", "53"})

	// Without a guest, the next connection's passt gets the new arguments.
	c.Close()
	waitUntil(t, "passt gone with the guest", func() bool { return m.PasstPid(id) == 0 })
	if fixed, err := m.Ensure(id, []string{"--foreground"}); err != nil || len(fixed) != 1 {
		t.Fatalf("Ensure with new arguments, no guest: %v %v", fixed, err)
	}
	c, err = net.Dial("unix", m.Socket(id))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "new guest")
	if a := strings.TrimSpace(passtArgs(m, id)); !strings.HasSuffix(a, "passt --foreground --fd 3") {
		t.Fatalf("new guest's passt runs with %q", a)
	}
}

// TestEnsureNewArgsLegacyKeeper: a keeper of an older vnetd (passt's
// arguments on its command line, no SIGHUP) is replaced when no guest is
// connected, and left alone while one is (replacing it would cut the guest
// off).
func TestEnsureNewArgsLegacyKeeper(t *testing.T) {
	m := testManagers(t)()
	const id = "port3"
	t.Cleanup(func() { _ = m.Stop(id) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	legacy := func() int {
		t.Helper()
		cmd := exec.Command(self, KeeperFlag, m.Socket(id), m.passtPidFile(id), "--", "passt", "--foreground", "--old")
		cmd.Env = append(os.Environ(), legacyKeeperEnv+"=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		waitUntil(t, "legacy keeper running", func() bool { return running(cmd.Process.Pid, []byte("--old")) })
		if err := os.WriteFile(m.pidFile(id), []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o600); err != nil {
			t.Fatal(err)
		}
		return cmd.Process.Pid
	}

	// A guest connected: its passt (here the legacy keeper stands in)
	// keeps the old arguments.
	pid := legacy()
	if err := os.WriteFile(m.passtPidFile(id), []byte(fmt.Sprintf("%d\n", pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	if fixed, err := m.Ensure(id, []string{"--foreground", "--old"}); err != nil || len(fixed) != 0 {
		t.Fatalf("adopting a legacy keeper with its arguments: %v %v", fixed, err)
	}
	if fixed, err := m.Ensure(id, []string{"--foreground", "--new"}); err != nil || len(fixed) != 0 {
		t.Fatalf("legacy keeper with a guest, new arguments: %v %v", fixed, err)
	}
	if !running(pid, keeperCmd(m.Socket(id))) {
		t.Fatal("legacy keeper with a guest was ended")
	}

	// No guest: replaced by a keeper with the new arguments.
	_ = os.Remove(m.passtPidFile(id))
	fixed, err := m.Ensure(id, []string{"--foreground", "--new"})
	if err != nil || len(fixed) != 1 || !strings.Contains(fixed[0], "new arguments") {
		t.Fatalf("legacy keeper without a guest, new arguments: %v %v", fixed, err)
	}
	waitUntil(t, "legacy keeper ended", func() bool { return !running(pid, []byte("--old")) })
	c, err := net.Dial("unix", m.Socket(id))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo(t, c, "replaced")
	if a := passtArgs(m, id); !strings.Contains(a, "--foreground --new --fd 3") {
		t.Fatalf("passt runs with %q", a)
	}
}
