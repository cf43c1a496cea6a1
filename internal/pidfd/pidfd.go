// Package pidfd pins a process with a pidfd, so that its signals and the
// wait for its end go to that process even when it has exited and its pid
// has been reused by another: the daemon signals processes it did not start
// (adopted after a restart) and processes whose pid it read from a file.
package pidfd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Process is a process pinned by a pidfd.
type Process struct {
	pid int
	f   *os.File
	rc  syscall.RawConn
}

// Open pins the process pid. A child of the caller must be pinned before
// it is reaped (before cmd.Wait returns), so that its pid cannot be reused
// in between.
func Open(pid int) (*Process, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pidfd of process %d: not a pid", pid)
	}
	// Non-blocking: the file goes to the runtime's poller, so Wait parks a
	// goroutine instead of an OS thread.
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd of process %d: %w", pid, err)
	}
	return FromFD(pid, fd)
}

// FromFD pins process pid by a pidfd the caller already has (e.g. from
// clone, syscall.SysProcAttr.PidFD); the Process owns it from then on.
func FromFD(pid, fd int) (*Process, error) {
	// Non-blocking, for the runtime's poller (a pidfd from clone is not).
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pidfd of process %d: %w", pid, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pidfd of process %d: %w", pid, err)
	}
	return &Process{pid: pid, f: f, rc: rc}, nil
}

// OpenMatching pins pid when its command line contains want (its
// NUL-separated arguments), and returns nil otherwise: a pid read from a
// pid file is the process named there only if it still runs that command.
func OpenMatching(pid int, want []byte) *Process {
	p, err := Open(pid)
	if err != nil {
		return nil
	}
	cmdline, err := p.Cmdline()
	if err != nil || !bytes.Contains(cmdline, want) {
		p.Close()
		return nil
	}
	return p
}

// Pid is the pinned process's pid.
func (p *Process) Pid() int { return p.pid }

// Cmdline returns the pinned process's command line (its arguments, each
// ended by a NUL). It fails once the process has exited: the pid may then
// name another process.
func (p *Process) Cmdline() ([]byte, error) {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
	if err != nil {
		return nil, fmt.Errorf("command line of process %d: %w", p.pid, err)
	}
	// Alive after the read: the pid was not reused before it.
	if p.Exited() {
		return nil, fmt.Errorf("command line of process %d: %w", p.pid, os.ErrProcessDone)
	}
	return cmdline, nil
}

// Signal sends s to the pinned process; it fails with ESRCH once the
// process has exited, whoever has its pid now.
func (p *Process) Signal(s syscall.Signal) error {
	var serr error
	if err := p.rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), s, nil, 0) }); err != nil {
		return fmt.Errorf("signal process %d: %w", p.pid, err)
	}
	if serr != nil {
		return fmt.Errorf("signal process %d: %w", p.pid, serr)
	}
	return nil
}

// Exited reports, without waiting, whether the pinned process has exited.
func (p *Process) Exited() bool {
	exited := false
	_ = p.rc.Control(func(fd uintptr) { exited = readable(fd) })
	return exited
}

// Wait waits in the runtime's poller until the process exits (true) or the
// Process is closed (false). It does not reap a child: cmd.Wait does.
func (p *Process) Wait() bool {
	exited := false
	err := p.rc.Read(func(fd uintptr) bool {
		exited = readable(fd)
		return exited
	})
	return err == nil && exited
}

// Close releases the pidfd; a Wait in progress returns false.
func (p *Process) Close() error {
	if err := p.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("pidfd of process %d: %w", p.pid, err)
	}
	return nil
}

// readable reports whether the pidfd polls readable: its process exited.
func readable(fd uintptr) bool {
	n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
	return n > 0
}
