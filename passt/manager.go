package passt

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config configures the keepers' manager.
type Config struct {
	// Binary is passt's path; "" finds "passt" in PATH.
	Binary string
	// RunDir holds each port's socket, pid files and log.
	RunDir string
	// Self is the vnetd binary the keepers run ("" is os.Executable()).
	Self   string
	Logger *slog.Logger
}

// Manager starts, adopts, supervises and stops the ports' keepers.
type Manager struct {
	c   Config
	log *slog.Logger

	mu       sync.Mutex
	keepers  map[string]*keeperProc
	detached bool
}

type keeperProc struct {
	pid  int
	args []string
	// deaths are the recent times the keeper itself died.
	deaths []time.Time
}

// maxSocketPath is sun_path's size less its terminating NUL (107), less
// the ".tmp" the keeper binds under first.
const maxSocketPath = 103

// NewManager returns a manager; it checks nothing yet (Check does).
func NewManager(c Config) (*Manager, error) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("passt keepers: find vnetd's own binary: %w", err)
		}
		c.Self = self
	}
	if err := os.MkdirAll(c.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("create directory %s: %w", c.RunDir, err)
	}
	return &Manager{c: c, log: c.Logger, keepers: map[string]*keeperProc{}}, nil
}

// Socket is the UNIX socket path of the port id, for QEMU's
// -netdev stream,server=off,addr.type=unix,addr.path=….
func (m *Manager) Socket(id string) string { return filepath.Join(m.c.RunDir, id+".socket") }

func (m *Manager) pidFile(id string) string      { return filepath.Join(m.c.RunDir, id+".pid") }
func (m *Manager) passtPidFile(id string) string { return filepath.Join(m.c.RunDir, id+".passt.pid") }
func (m *Manager) logFile(id string) string      { return filepath.Join(m.c.RunDir, id+".log") }

// Binary returns passt's path, or a precise error when it is not installed.
func (m *Manager) Binary() (string, error) {
	name := m.c.Binary
	if name == "" {
		name = "passt"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("passt binary '%s' not found (install Debian's passt package): %w", name, err)
	}
	return p, nil
}

// Check fails, changing nothing, when a port id cannot run: no passt, or a
// socket path longer than a UNIX socket address allows.
func (m *Manager) Check(id string) error {
	if _, err := m.Binary(); err != nil {
		return err
	}
	if s := m.Socket(id); len(s) > maxSocketPath {
		return fmt.Errorf("passt socket path %s is %d bytes, longer than the %d usable in a UNIX socket address (use a shorter XDG_RUNTIME_DIR)", s, len(s), maxSocketPath)
	}
	return nil
}

// PasstPid is the pid of the port's running passt, 0 when none runs (no
// guest connected).
func (m *Manager) PasstPid(id string) int {
	pid, err := readPid(m.passtPidFile(id))
	if err != nil || !isProcess(pid, []byte("passt")) {
		return 0
	}
	return pid
}

// keeperAlive reports whether pid is the keeper of the socket.
func keeperAlive(pid int, socket string) bool {
	return isProcess(pid, []byte(KeeperFlag+"\x00"+socket+"\x00"))
}

// isProcess reports whether pid runs and its command line contains want.
func isProcess(pid int, want []byte) bool {
	if pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(cmdline, want)
}

// Ensure makes the port's keeper run: a known one is left alone, one
// running from an earlier daemon is adopted (pid file and command line),
// a missing one is started. It returns what it fixed.
func (m *Manager) Ensure(id string, args []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sock := m.Socket(id)
	if k := m.keepers[id]; k != nil && keeperAlive(k.pid, sock) {
		return nil, nil
	}
	if pid, err := readPid(m.pidFile(id)); err == nil && keeperAlive(pid, sock) {
		k := &keeperProc{pid: pid, args: args}
		m.keepers[id] = k
		m.watchAdopted(id, k)
		m.log.Info("adopted passt keeper", "port", id, "pid", pid, "passt_pid", m.PasstPid(id))
		return nil, nil
	}
	if err := m.start(id, args); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("passt keeper of port %s started", id)}, nil
}

// start runs a keeper in its own session (it outlives vnetd) and waits
// until its socket listens. m.mu is held.
func (m *Manager) start(id string, args []string) error {
	if err := m.Check(id); err != nil {
		return err
	}
	bin, _ := m.Binary()
	sock := m.Socket(id)
	logf, err := os.OpenFile(m.logFile(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("passt keeper of port %s: log: %w", id, err)
	}
	defer logf.Close()
	_ = os.Remove(sock)
	argv := append([]string{KeeperFlag, sock, m.passtPidFile(id), "--", bin}, args...)
	cmd := exec.Command(m.c.Self, argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("passt keeper of port %s: start: %w", id, err)
	}
	pid := cmd.Process.Pid
	k := &keeperProc{pid: pid, args: args}
	if old := m.keepers[id]; old != nil {
		k.deaths = old.deaths
	}
	m.keepers[id] = k
	if err := os.WriteFile(m.pidFile(id), []byte(fmt.Sprintf("%d\n", pid)), 0o600); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		delete(m.keepers, id)
		return fmt.Errorf("passt keeper of port %s: pid file: %w", id, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
		m.died(id, k)
	}()
	// Ready when the socket exists: the keeper renames it into place once
	// it listens.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			m.log.Info("passt keeper started", "port", id, "pid", pid, "socket", sock)
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("passt keeper of port %s exited at start (see %s)", id, m.logFile(id))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("passt keeper of port %s: socket %s not there after 5 s", id, sock)
		}
	}
}

// watchAdopted waits, through a pidfd, for the end of a keeper that is not
// our child.
func (m *Manager) watchAdopted(id string, k *keeperProc) {
	fd, err := unix.PidfdOpen(k.pid, 0)
	if err != nil {
		m.log.Warn("cannot watch adopted passt keeper; a death is noticed at the next check", "port", id, "pid", k.pid, "err", err)
		return
	}
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				break
			}
		}
		m.died(id, k)
	}()
}

// died restarts a keeper that ended while still wanted (not stopped, the
// daemon not detached), with a pause in a crash loop.
func (m *Manager) died(id string, k *keeperProc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.detached || m.keepers[id] != k {
		return
	}
	now := time.Now()
	k.deaths = append(k.deaths, now)
	recent := 0
	for _, d := range k.deaths {
		if now.Sub(d) < crashWindow {
			recent++
		}
	}
	m.log.Warn("passt keeper died; starting it again", "port", id, "pid", k.pid, "recent_deaths", recent)
	if recent > crashBurst {
		m.mu.Unlock()
		time.Sleep(crashDelay)
		m.mu.Lock()
		if m.detached || m.keepers[id] != k {
			return
		}
	}
	if err := m.start(id, k.args); err != nil {
		m.log.Error("restarting passt keeper failed", "port", id, "err", err)
	}
}

// Verify describes what is wrong with the port's keeper, changing nothing.
func (m *Manager) Verify(id string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	pid := 0
	if k := m.keepers[id]; k != nil {
		pid = k.pid
	} else if p, err := readPid(m.pidFile(id)); err == nil {
		pid = p
	}
	if !keeperAlive(pid, m.Socket(id)) {
		return []string{fmt.Sprintf("passt keeper of port %s is not running", id)}
	}
	return nil
}

// Stop ends the port's keeper and its passt and removes their files.
func (m *Manager) Stop(id string) error {
	m.mu.Lock()
	k := m.keepers[id]
	delete(m.keepers, id)
	m.mu.Unlock()
	sock := m.Socket(id)
	pid := 0
	if k != nil {
		pid = k.pid
	} else if p, err := readPid(m.pidFile(id)); err == nil {
		pid = p
	}
	passtPid := m.PasstPid(id)
	if keeperAlive(pid, sock) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if !waitGone(pid, []byte(KeeperFlag), 2*time.Second) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, []byte(KeeperFlag), time.Second)
		}
	}
	if passtPid != 0 && isProcess(passtPid, []byte("passt")) {
		_ = syscall.Kill(passtPid, syscall.SIGKILL)
	}
	var errs []error
	for _, f := range []string{sock, m.pidFile(id), m.passtPidFile(id), m.logFile(id)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	m.log.Info("passt keeper stopped", "port", id)
	return errors.Join(errs...)
}

// waitGone waits until pid no longer runs a process matching want.
func waitGone(pid int, want []byte, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for isProcess(pid, want) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Detach stops supervising: keepers and their passt keep running for the
// next daemon to adopt.
func (m *Manager) Detach() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.detached = true
}
