package dnsmasq

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"vnet/internal/crashloop"
)

// standInConfig is a Config whose "dnsmasq" is a shell script that writes
// its pid file like dnsmasq and then sleeps: enough for supervision tests on
// a machine without dnsmasq or root.
func standInConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "dnsmasq")
	body := `#!/bin/sh
for a in "$@"; do case "$a" in --conf-file=*) conf="${a#--conf-file=}";; esac; done
pid=$(sed -n 's/^pid-file=//p' "$conf")
echo $$ > "$pid"
exec sleep 3600
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{Binary: script, StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run"),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
}

// TestManagerRestartsAtOnce: a dnsmasq killed a few times in a row is
// restarted at once each time (no backoff for deaths that are not a crash
// loop). It runs the real dnsmasq in a namespace where it can, else a
// stand-in process.
func TestManagerRestartsAtOnce(t *testing.T) {
	var cfg Config
	if _, err := exec.LookPath("dnsmasq"); err == nil && os.Geteuid() == 0 {
		cfg = newNSEnv(t).cfg
	} else {
		t.Log("no dnsmasq or not root: supervising a stand-in process")
		cfg = standInConfig(t)
	}
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("t7") })
	if err := m.Start(testNetwork("t7", "db")); err != nil {
		t.Fatal(err)
	}
	for i := range crashloop.Burst {
		pid := m.Pid("t7")
		if pid == 0 {
			t.Fatal("no dnsmasq running")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, "restart after kill", 5*time.Second, func() bool {
			p := m.Pid("t7")
			return p != 0 && p != pid
		})
		t.Logf("kill %d: restarted in %v", i+1, took.Round(time.Millisecond))
		// dnsmasq's own start-up (through `ip netns exec`) is tens of
		// milliseconds; the old doubling backoff gave 456 ms at the third.
		if took > 300*time.Millisecond {
			t.Errorf("kill %d: restart took %v, want an immediate restart", i+1, took.Round(time.Millisecond))
		}
	}
}
