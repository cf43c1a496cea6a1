package pidfd

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestProcess: a pinned process is matched by its command line, signalled,
// waited for; once it is reaped, signals fail instead of reaching whoever
// gets its pid.
func TestProcess(t *testing.T) {
	cmd := startSleep(t)
	if OpenMatching(cmd.Process.Pid, []byte("no-such-argument")) != nil {
		t.Fatal("OpenMatching pinned a process without the wanted argument")
	}
	p := OpenMatching(cmd.Process.Pid, []byte("sleep\x003600\x00"))
	if p == nil {
		t.Fatal("OpenMatching did not pin the sleep")
	}
	defer p.Close()
	if p.Pid() != cmd.Process.Pid || p.Exited() {
		t.Fatalf("pid %d (want %d), exited %v", p.Pid(), cmd.Process.Pid, p.Exited())
	}
	waited := make(chan bool)
	go func() { waited <- p.Wait() }()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-waited:
		if !ok {
			t.Fatal("Wait returned false for an exited process")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after SIGTERM")
	}
	if !p.Exited() {
		t.Fatal("Exited false after Wait")
	}
	if _, err := p.Cmdline(); err == nil {
		t.Fatal("Cmdline of an exited process succeeded")
	}
	_ = cmd.Wait()
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("Signal after reaping: %v, want ESRCH", err)
	}
}

// TestCloseEndsWait: closing the pidfd ends a Wait with false.
func TestCloseEndsWait(t *testing.T) {
	cmd := startSleep(t)
	p, err := Open(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan bool)
	go func() { waited <- p.Wait() }()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-waited:
		if ok {
			t.Fatal("Wait returned true for a running process")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end Wait")
	}
	if _, err := Open(0); err == nil {
		t.Fatal("Open(0) succeeded")
	}
}
