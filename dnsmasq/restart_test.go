package dnsmasq

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRestartPolicy: deaths now and then restart at once; only more than
// crashBurst deaths within crashWindow back off, doubling up to maxBackoff,
// and the backoff ends once the deaths fall out of the window.
func TestRestartPolicy(t *testing.T) {
	var p restartPolicy
	now := time.Unix(1_000_000, 0)
	// Five deaths a second apart (an admin killing it): all immediate.
	for i := range crashBurst {
		if d := p.died(now); d != 0 {
			t.Fatalf("death %d: delay %v, want 0", i+1, d)
		}
		now = now.Add(time.Second)
	}
	// A crash loop: the sixth death within the window backs off, doubling.
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	for i, w := range want {
		if d := p.died(now); d != w {
			t.Fatalf("loop death %d: delay %v, want %v", i+1, d, w)
		}
		now = now.Add(10 * time.Millisecond)
	}
	for range 20 {
		now = now.Add(time.Millisecond)
		if d := p.died(now); d > maxBackoff {
			t.Fatalf("delay %v above the cap %v", d, maxBackoff)
		}
	}
	if d := p.died(now); d != maxBackoff {
		t.Fatalf("long loop: delay %v, want the cap %v", d, maxBackoff)
	}
	// Quiet for a whole window: the next death is immediate again.
	now = now.Add(crashWindow)
	if d := p.died(now); d != 0 {
		t.Fatalf("death after a quiet window: delay %v, want 0", d)
	}
}

// TestRestartPolicySlowDeaths: one death every 7 s never counts as a loop
// (at most 5 fall within 30 s).
func TestRestartPolicySlowDeaths(t *testing.T) {
	var p restartPolicy
	now := time.Unix(1_000_000, 0)
	for i := range 50 {
		if d := p.died(now); d != 0 {
			t.Fatalf("death %d: delay %v, want 0", i+1, d)
		}
		now = now.Add(7 * time.Second)
	}
	if len(p.deaths) > crashBurst {
		t.Fatalf("policy keeps %d deaths, want at most %d", len(p.deaths), crashBurst)
	}
}

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
	for i := range crashBurst {
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
