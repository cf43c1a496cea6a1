package passt

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"vnet/internal/atomicfile"
	"vnet/internal/crashloop"
	"vnet/internal/pidfd"
)

// Config configures the keepers' manager.
type Config struct {
	// Binary is passt's path; "" finds "passt" in PATH.
	Binary string
	// RunDir holds each port's socket, pid files, passt's arguments and log.
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

// keeperProc is a port's running keeper, started by this manager or
// adopted.
type keeperProc struct {
	proc *pidfd.Process
	// args are passt's arguments the keeper runs passt with.
	args []string
	// reloadable: the keeper reads args from the port's args file, and on
	// SIGHUP restarts passt with them on the guest's connection. A keeper
	// started by an older vnetd has them on its command line instead.
	reloadable bool
	// argsUnknown: an adopted keeper's args could not be read; they differ
	// from any wanted ones.
	argsUnknown bool
	// staleWarned: a non-reloadable keeper's outdated args were reported.
	staleWarned bool
	// exited is closed once the keeper has exited or is no longer watched.
	exited chan struct{}
	// policy paces restarts of the port's successive keepers (m.mu).
	policy *crashloop.Policy
}

// running reports whether the keeper has not been seen to exit.
func (k *keeperProc) running() bool {
	select {
	case <-k.exited:
		return false
	default:
		return true
	}
}

// maxSocketPath is sun_path's size less its terminating NUL (107), less
// the ".tmp" the keeper binds under first.
const maxSocketPath = 103

// termTimeout is how long a keeper has to exit after SIGTERM (and after
// SIGKILL) before Stop gives up waiting.
const termTimeout = 2 * time.Second

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
func (m *Manager) argsFile(id string) string     { return filepath.Join(m.c.RunDir, id+".args") }
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
	p := m.findPasst(id)
	if p == nil {
		return 0
	}
	defer p.Close()
	return p.Pid()
}

// findPasst pins the port's running passt, nil when none runs.
func (m *Manager) findPasst(id string) *pidfd.Process {
	pid, err := readPid(m.passtPidFile(id))
	if err != nil {
		return nil
	}
	return pidfd.OpenMatching(pid, []byte("passt"))
}

// keeperCmd is what a keeper's command line holds: the flag and its socket.
func keeperCmd(socket string) []byte { return []byte(KeeperFlag + "\x00" + socket + "\x00") }

// findKeeper pins the keeper named by the port's pid file, nil when it
// does not run.
func (m *Manager) findKeeper(id string) *pidfd.Process {
	pid, err := readPid(m.pidFile(id))
	if err != nil {
		return nil
	}
	return pidfd.OpenMatching(pid, keeperCmd(m.Socket(id)))
}

// Ensure makes the port's keeper run passt with args: a known one is left
// alone, one running from an earlier daemon is adopted (pid file and
// command line), a missing one is started. A running keeper whose passt
// arguments differ from args (a port forward or address changed) is told
// to restart passt with args on the guest's connection, which it keeps, so
// the guest sees only a pause (QEMU cannot reconnect a stream netdev, so
// restarting the keeper itself would cut the guest off). It returns what
// it fixed.
func (m *Manager) Ensure(id string, args []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.keepers[id]
	if k == nil || !k.running() {
		k = nil
		if proc := m.findKeeper(id); proc != nil {
			k = m.adopt(id, proc)
		}
	}
	if k == nil {
		if err := m.start(id, args); err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("passt keeper of port %s started", id)}, nil
	}
	if !k.argsUnknown && slices.Equal(k.args, args) {
		return nil, nil
	}
	return m.converge(id, k, args)
}

// adopt watches a keeper started by an earlier daemon and learns the
// arguments it runs passt with. m.mu is held.
func (m *Manager) adopt(id string, proc *pidfd.Process) *keeperProc {
	k := &keeperProc{proc: proc, argsUnknown: true, exited: make(chan struct{}), policy: new(crashloop.Policy)}
	if cmdline, err := proc.Cmdline(); err == nil {
		argv := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		if i := slices.Index(argv, KeeperFlag); i >= 0 {
			kargs := argv[i+1:]
			switch {
			case len(kargs) == 5 && kargs[3] == "--":
				k.reloadable = true
				if k.args, err = readArgs(kargs[2]); err == nil {
					k.argsUnknown = false
				} else {
					m.log.Warn("adopted passt keeper's arguments unreadable; rewriting them", "port", id, "err", err)
				}
			case len(kargs) >= 4 && kargs[2] == "--":
				k.args, k.argsUnknown = kargs[4:], false
			}
		}
	}
	m.keepers[id] = k
	go func() {
		exited := k.proc.Wait()
		close(k.exited)
		if exited {
			m.died(id, k)
		}
		k.proc.Close()
	}()
	m.log.Info("adopted passt keeper", "port", id, "pid", proc.Pid(), "passt_pid", m.PasstPid(id), "reloadable", k.reloadable)
	return k
}

// converge brings a running keeper to args. m.mu is held.
func (m *Manager) converge(id string, k *keeperProc, args []string) ([]string, error) {
	if k.reloadable {
		if err := writeArgs(m.argsFile(id), args); err != nil {
			return nil, fmt.Errorf("passt keeper of port %s: %w", id, err)
		}
		if err := k.proc.Signal(syscall.SIGHUP); err != nil {
			return nil, fmt.Errorf("passt keeper of port %s: restart passt: %w", id, err)
		}
		k.args, k.argsUnknown = args, false
		m.log.Info("passt keeper told to restart passt with new arguments", "port", id, "pid", k.proc.Pid())
		return []string{fmt.Sprintf("passt of port %s restarted with its new arguments", id)}, nil
	}
	// A keeper of an older vnetd cannot change passt's arguments. With no
	// guest connected it is replaced; with one, replacing it would cut the
	// guest off for good, so the old arguments stay until an Ensure finds
	// no guest connected.
	if passt := m.findPasst(id); passt != nil {
		passt.Close()
		if !k.staleWarned {
			k.staleWarned = true
			m.log.Warn("passt keeper of an older vnetd cannot change passt's arguments while a guest is connected; they apply once the port is ensured without a guest",
				"port", id, "pid", k.proc.Pid())
		}
		return nil, nil
	}
	delete(m.keepers, id)
	m.terminate(id, k)
	if err := m.start(id, args); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("passt keeper of port %s started again with new arguments", id)}, nil
}

// readArgs reads passt's arguments from an args file.
func readArgs(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var args []string
	if err := json.Unmarshal(data, &args); err != nil {
		return nil, fmt.Errorf("passt arguments %s: %w", path, err)
	}
	return args, nil
}

// writeArgs replaces an args file: the keeper may read it any time.
func writeArgs(path string, args []string) error {
	if args == nil {
		args = []string{}
	}
	data, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("passt arguments %s: %w", path, err)
	}
	return atomicfile.Write(path, data, 0o600, atomicfile.Volatile)
}

// start runs a keeper in its own session (it outlives vnetd) and waits
// until its socket listens. m.mu is held.
func (m *Manager) start(id string, args []string) error {
	if err := m.Check(id); err != nil {
		return err
	}
	bin, _ := m.Binary()
	sock := m.Socket(id)
	if err := writeArgs(m.argsFile(id), args); err != nil {
		return fmt.Errorf("passt keeper of port %s: %w", id, err)
	}
	logf, err := os.OpenFile(m.logFile(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("passt keeper of port %s: log: %w", id, err)
	}
	defer logf.Close()
	_ = os.Remove(sock)
	cmd := exec.Command(m.c.Self, KeeperFlag, sock, m.passtPidFile(id), m.argsFile(id), "--", bin)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("passt keeper of port %s: start: %w", id, err)
	}
	// Pinned before it can be reaped: the pid cannot be reused under it.
	proc, err := pidfd.Open(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("passt keeper of port %s: %w", id, err)
	}
	pid := proc.Pid()
	k := &keeperProc{proc: proc, args: args, reloadable: true, exited: make(chan struct{}), policy: new(crashloop.Policy)}
	if old := m.keepers[id]; old != nil {
		k.policy = old.policy
	}
	m.keepers[id] = k
	go func() {
		// Waits in the runtime's poller, not in a thread blocked in
		// waitid; cmd.Wait then only reaps.
		k.proc.Wait()
		_ = cmd.Wait()
		close(k.exited)
		m.died(id, k)
		k.proc.Close()
	}()
	if err := os.WriteFile(m.pidFile(id), []byte(fmt.Sprintf("%d\n", pid)), 0o600); err != nil {
		delete(m.keepers, id)
		_ = k.proc.Signal(syscall.SIGKILL)
		return fmt.Errorf("passt keeper of port %s: pid file: %w", id, err)
	}
	// Ready when the socket exists: the keeper renames it into place once
	// it listens.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			m.log.Info("passt keeper started", "port", id, "pid", pid, "socket", sock)
			return nil
		}
		select {
		case <-k.exited:
			return fmt.Errorf("passt keeper of port %s exited at start (see %s)", id, m.logFile(id))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("passt keeper of port %s: socket %s not there after 5 s", id, sock)
		}
	}
}

// died restarts a keeper that ended while still wanted (not stopped, the
// daemon not detached), after a pause in a crash loop (crashloop.Policy).
func (m *Manager) died(id string, k *keeperProc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.detached || m.keepers[id] != k {
		return
	}
	wait := k.policy.Died(time.Now())
	m.log.Warn("passt keeper died; starting it again", "port", id, "pid", k.proc.Pid(), "recent_deaths", k.policy.Recent(), "delay", wait)
	if wait > 0 {
		m.mu.Unlock()
		time.Sleep(wait)
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
	if k := m.keepers[id]; k != nil && k.running() {
		return nil
	}
	if proc := m.findKeeper(id); proc != nil {
		proc.Close()
		return nil
	}
	return []string{fmt.Sprintf("passt keeper of port %s is not running", id)}
}

// Stop ends the port's keeper and its passt and removes their files.
func (m *Manager) Stop(id string) error {
	m.mu.Lock()
	k := m.keepers[id]
	delete(m.keepers, id)
	if k == nil || !k.running() {
		k = nil
		if proc := m.findKeeper(id); proc != nil {
			k = &keeperProc{proc: proc, exited: make(chan struct{})}
			go func() {
				k.proc.Wait()
				close(k.exited)
			}()
			defer proc.Close()
		}
	}
	m.mu.Unlock()
	// Pinned before the keeper ends: passt may outlive it.
	passt := m.findPasst(id)
	if k != nil {
		m.terminate(id, k)
	}
	if passt != nil {
		_ = passt.Signal(syscall.SIGKILL)
		passt.Close()
	}
	var errs []error
	for _, f := range []string{m.Socket(id), m.pidFile(id), m.passtPidFile(id), m.argsFile(id), m.logFile(id)} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	m.log.Info("passt keeper stopped", "port", id)
	return errors.Join(errs...)
}

// terminate ends a keeper no longer in m.keepers: SIGTERM (it stops its
// passt and removes its socket), then SIGKILL.
func (m *Manager) terminate(id string, k *keeperProc) {
	_ = k.proc.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
		return
	case <-time.After(termTimeout):
	}
	m.log.Warn("passt keeper ignored SIGTERM, killing it", "port", id, "pid", k.proc.Pid())
	_ = k.proc.Signal(syscall.SIGKILL)
	select {
	case <-k.exited:
	case <-time.After(termTimeout):
		m.log.Error("passt keeper did not exit after SIGKILL", "port", id, "pid", k.proc.Pid())
	}
}

// Detach stops supervising: keepers and their passt keep running for the
// next daemon to adopt.
func (m *Manager) Detach() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.detached = true
}
