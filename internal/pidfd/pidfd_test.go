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

// TestNotify: Notify calls back once when the process exits, for many
// processes on the one watcher; a watch cancelled before the exit never
// calls back, and cancel reports whether it came first.
func TestNotify(t *testing.T) {
	const n = 20
	fired := make(chan int, n)
	var cancels []func() bool
	var cmds []*exec.Cmd
	for i := range n {
		cmd := startSleep(t)
		p, err := Open(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		cancel, err := p.Notify(func() { fired <- i })
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
		cmds = append(cmds, cmd)
	}
	// The last one is cancelled while its process runs.
	if !cancels[n-1]() {
		t.Fatal("cancel of a running process's watch reported it too late")
	}
	for _, cmd := range cmds {
		_ = cmd.Process.Kill()
	}
	seen := map[int]bool{}
	for range n - 1 {
		select {
		case i := <-fired:
			if seen[i] {
				t.Fatalf("process %d reported twice", i)
			}
			seen[i] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d exits reported", len(seen), n-1)
		}
	}
	if seen[n-1] {
		t.Fatal("a cancelled watch reported the exit")
	}
	if cancels[0]() {
		t.Fatal("cancel after the exit was reported claims to have come first")
	}
	select {
	case i := <-fired:
		t.Fatalf("extra report for process %d", i)
	case <-time.After(100 * time.Millisecond):
	}
}
