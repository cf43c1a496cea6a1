package passt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary is also the keeper (Manager runs Self with KeeperFlag)
// and, under the name passt, a passt stand-in.
func TestMain(m *testing.M) {
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

// TestKeeper: the manager starts a keeper that listens on the port's
// socket; a guest connection gets a passt; a killed passt is replaced on
// the same connection; a new manager (a restarted daemon) adopts the
// keeper; a killed keeper is started again; Stop removes everything.
func TestKeeper(t *testing.T) {
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
	newManager := func() *Manager {
		m, err := NewManager(Config{Binary: bin, RunDir: filepath.Join(dir, "run"), Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := newManager()
	const id = "port1"
	t.Cleanup(func() { _ = m.Stop(id) })
	fixed, err := m.Ensure(id, []string{"--foreground"})
	if err != nil || len(fixed) != 1 {
		t.Fatalf("Ensure: %v %v", fixed, err)
	}
	if fixed, err := m.Ensure(id, nil); err != nil || len(fixed) != 0 {
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
	if fixed, err := m.Ensure(id, nil); err != nil || len(fixed) != 0 {
		t.Fatalf("adopting Ensure: %v %v", fixed, err)
	}
	echo(t, c, "three")

	// The adopted keeper killed: started again (a new socket).
	_ = syscall.Kill(keeper, syscall.SIGKILL)
	waitUntil(t, "keeper restarted", func() bool {
		p, _ := readPid(m.pidFile(id))
		_, err := os.Stat(m.Socket(id))
		return p != keeper && keeperAlive(p, m.Socket(id)) && err == nil
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
	waitUntil(t, "passt gone", func() bool { return !isProcess(passtPid, []byte("passt")) })
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
