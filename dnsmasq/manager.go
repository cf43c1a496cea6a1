package dnsmasq

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vnet/internal/atomicfile"
	"vnet/internal/crashloop"
	"vnet/internal/ifindex"
	"vnet/internal/pidfd"
	netxml "vnet/xml"
)

const (
	termTimeout  = 2 * time.Second
	stderrKeep   = 4096
	readyPollGap = 500 * time.Microsecond
)

// Config configures a Manager.
type Config struct {
	// Binary is the dnsmasq executable; "" looks up "dnsmasq" in $PATH.
	Binary string
	// StateDir holds NAME.conf, NAME.hostsfile, NAME.addnhosts and
	// NAME.leases (created 0755 if missing).
	StateDir string
	// RunDir holds NAME.pid (created 0755 if missing).
	RunDir string
	// ExtraArgs are appended to dnsmasq's command line (e.g. "--no-ping").
	ExtraArgs []string
	// Logger receives supervision events; nil discards them.
	Logger *slog.Logger
	// Command builds the command that runs argv; nil means exec.Command.
	// A wrapper (tests use `ip netns exec NS`) must exec argv in place so
	// the started process is dnsmasq itself.
	Command func(argv []string) *exec.Cmd
	// ReadyTimeout bounds how long Start waits for dnsmasq to serve
	// (default 5 s).
	ReadyTimeout time.Duration
	// ResolvConf is the host's resolver configuration whose name servers
	// are the networks' upstream servers (default /etc/resolv.conf; see
	// WatchUpstream).
	ResolvConf string
}

// Manager starts, supervises and stops one dnsmasq per network. It is safe
// for concurrent use; operations on different networks run in parallel.
type Manager struct {
	c   Config
	log *slog.Logger

	mu   sync.Mutex
	nets map[string]*netProc    // supervised networks
	ops  map[string]*sync.Mutex // per-network operation locks

	// upMu orders starts against changes of the upstream servers: a
	// start holds it for reading from before dnsmasq reads the servers
	// file until the process is registered; serversChanged holds it for
	// writing while it rewrites the file and signals every registered
	// process.
	upMu sync.RWMutex
	// serversMoved: the servers file changed at NewManager, so adopted
	// processes (started by an earlier daemon) read an old one.
	serversMoved bool
	// servers are the name servers of the servers file as last refreshed
	// (Upstreams), under serversMu: upMu may be held for seconds by a start.
	serversMu sync.Mutex
	servers   []netip.Addr
	// quietOnce says once that dnsmasq's netlink socket cannot be filtered.
	quietOnce sync.Once
}

// netProc is one supervised network. Its supervisor goroutine owns the
// running instance; Stop and Detach talk to it through channels.
type netProc struct {
	name   string
	base   string
	bridge string
	stop   chan struct{} // closed: terminate the process and return
	detach chan struct{} // closed: leave the process running and return
	done   chan struct{} // closed when the supervisor returned

	mu    sync.Mutex
	files *Files
	inst  *instance // nil while restarting
}

func (p *netProc) current() *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inst
}

func (p *netProc) setCurrent(i *instance) {
	p.mu.Lock()
	p.inst = i
	p.mu.Unlock()
}

// instance is one running dnsmasq process, started by us or adopted.
type instance struct {
	pid     int
	started time.Time
	exited  chan struct{} // closed once the process has exited
	status  string        // how it exited, set before exited is closed
	signal  func(syscall.Signal) error
	stderr  *os.File       // memfd with the child's stderr; nil when adopted
	pidfd   *pidfd.Process // adopted processes only
	unwatch func()         // ends the watch of pidfd before it is closed
}

func (i *instance) release() {
	if i.stderr != nil {
		i.stderr.Close()
	}
	if i.unwatch != nil {
		i.unwatch()
	}
	if i.pidfd != nil {
		i.pidfd.Close()
	}
}

// stderrTail returns the end of what the process wrote to stderr.
func (i *instance) stderrTail() string {
	if i.stderr == nil {
		return ""
	}
	st, err := i.stderr.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - stderrKeep
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	n, _ := i.stderr.ReadAt(buf, off)
	return strings.TrimSpace(string(buf[:n]))
}

// NewManager checks c, creates the directories and returns a Manager.
func NewManager(c Config) (*Manager, error) {
	if c.Binary == "" {
		p, err := exec.LookPath("dnsmasq")
		if err != nil {
			return nil, fmt.Errorf("dnsmasq: find binary: %w", err)
		}
		c.Binary = p
	}
	if abs, err := filepath.Abs(c.Binary); err == nil {
		c.Binary = abs
	}
	if c.StateDir == "" || c.RunDir == "" {
		return nil, errors.New("dnsmasq: StateDir and RunDir are required")
	}
	for _, d := range []string{c.StateDir, c.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("dnsmasq: create directory %s: %w", d, err)
		}
		// Why: dnsmasq runs as nobody after start-up and must still reach
		// the hostsfile and addnhosts in StateDir when it reloads them.
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("dnsmasq: chmod directory %s: %w", d, err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	warnUnreachable(c.Logger, c.StateDir)
	for _, err := range atomicfile.RemoveStale(c.StateDir) {
		c.Logger.Warn("dnsmasq: removing a stale temp file", "err", err)
	}
	if c.Command == nil {
		c.Command = func(argv []string) *exec.Cmd { return exec.Command(argv[0], argv[1:]...) }
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 5 * time.Second
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	m := &Manager{c: c, log: c.Logger, nets: map[string]*netProc{}, ops: map[string]*sync.Mutex{}}
	moved, err := m.refreshServers()
	if err != nil {
		return nil, err
	}
	m.serversMoved = moved
	return m, nil
}

// options are the generator options of this manager's networks.
func (m *Manager) options(base string) Options {
	return Options{StateDir: m.c.StateDir, PidFile: m.pidPath(base), ServersFile: m.ServersFile(), BindInterfaces: true}
}

func (m *Manager) opLock(name string) func() {
	m.mu.Lock()
	l := m.ops[name]
	if l == nil {
		l = &sync.Mutex{}
		m.ops[name] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (m *Manager) path(base, ext string) string { return filepath.Join(m.c.StateDir, base+ext) }
func (m *Manager) pidPath(base string) string   { return filepath.Join(m.c.RunDir, base+".pid") }

func (m *Manager) argv(base string) []string {
	a := []string{
		m.c.Binary,
		"--conf-file=" + m.path(base, ".conf"),
		"--keep-in-foreground",
		"--dhcp-leasefile=" + m.path(base, ".leases"),
	}
	return append(a, m.c.ExtraArgs...)
}

// Argv returns the command line Start runs for the network (nil for a name
// that cannot be used in a file name).
func (m *Manager) Argv(name string) []string {
	base, err := FileBase(name)
	if err != nil {
		return nil
	}
	return m.argv(base)
}

// Start writes the network's files, starts its dnsmasq and returns once it
// serves (its pid file is written, which dnsmasq does after binding its
// sockets). A dnsmasq already running for the network with the same
// configuration is adopted, not restarted; one with another configuration is
// replaced. For an already supervised network with an unchanged conf only the
// hostsfile and addnhosts are updated (and dnsmasq reloads them on SIGHUP).
// On failure nothing is left behind and the error carries dnsmasq's stderr.
func (m *Manager) Start(n *netxml.Network) error {
	if n == nil {
		return errors.New("dnsmasq: no network")
	}
	base, err := FileBase(n.Name)
	if err != nil {
		return err
	}
	files, err := Generate(n, m.options(base))
	if err != nil {
		// Unwrapped: the error names the field and keeps libvirt's prefix
		// at the start of the message.
		return err
	}
	unlock := m.opLock(n.Name)
	defer unlock()

	m.mu.Lock()
	p := m.nets[n.Name]
	m.mu.Unlock()
	if p != nil {
		p.mu.Lock()
		same := p.files.Conf == files.Conf && p.inst != nil
		p.mu.Unlock()
		if same {
			return m.update(p, files)
		}
		// A new conf needs a new process; one that is being restarted
		// gets a synchronous start so the caller sees its error.
		m.stopSupervised(p)
	}

	argv := m.argv(base)
	if old, exact := m.find(base, argv); old != nil {
		onDisk, _ := os.ReadFile(m.path(base, ".conf"))
		if exact && string(onDisk) == files.Conf {
			p := m.newProc(n.Name, base, n.BridgeName(), files, old)
			if m.serversMoved && ReadsServersFile(files.Conf) {
				// It read the servers of before the daemon's restart.
				if err := old.signal(syscall.SIGHUP); err != nil {
					m.log.Warn("dnsmasq: reload upstream servers", "network", n.Name, "pid", old.pid, "err", err)
				}
			}
			if err := m.update(p, files); err != nil {
				m.terminate(old)
				old.release()
				return err
			}
			m.log.Info("dnsmasq adopted", "network", n.Name, "pid", old.pid)
			m.supervise(p)
			return nil
		}
		m.log.Info("dnsmasq runs with an old configuration, replacing it", "network", n.Name, "pid", old.pid)
		m.terminate(old)
		old.release()
	}

	_, leaseErr := os.Stat(m.path(base, ".leases"))
	hadLeases := leaseErr == nil
	if err := m.writeFiles(base, files); err != nil {
		m.removeFiles(base)
		return fmt.Errorf("dnsmasq for network %q: %w", n.Name, err)
	}
	m.upMu.RLock()
	defer m.upMu.RUnlock()
	inst, err := m.spawnRetrying(n.Name, base, n.BridgeName(), BindsInterfaces(files.Conf), argv)
	if err != nil {
		m.removeFiles(base)
		if !hadLeases {
			_ = os.Remove(m.path(base, ".leases"))
		}
		return fmt.Errorf("dnsmasq for network %q: %w", n.Name, err)
	}
	m.log.Info("dnsmasq started", "network", n.Name, "pid", inst.pid, "elapsed", time.Since(inst.started))
	m.supervise(m.newProc(n.Name, base, n.BridgeName(), files, inst))
	return nil
}

func (m *Manager) newProc(name, base, bridge string, files *Files, inst *instance) *netProc {
	return &netProc{
		name: name, base: base, bridge: bridge, files: files, inst: inst,
		stop: make(chan struct{}), detach: make(chan struct{}), done: make(chan struct{}),
	}
}

// update rewrites the hostsfile and addnhosts when they changed on disk or in
// content and tells the running dnsmasq to reload them.
func (m *Manager) update(p *netProc, files *Files) error {
	changed := false
	for _, f := range []struct{ ext, text string }{{".hostsfile", files.Hostsfile}, {".addnhosts", files.Addnhosts}} {
		cur, err := os.ReadFile(m.path(p.base, f.ext))
		if err == nil && string(cur) == f.text {
			continue
		}
		if err := atomicfile.Write(m.path(p.base, f.ext), []byte(f.text), 0o644, atomicfile.Volatile); err != nil {
			return fmt.Errorf("dnsmasq for network %q: %w", p.name, err)
		}
		changed = true
	}
	if cur, err := os.ReadFile(m.path(p.base, ".conf")); err != nil || string(cur) != files.Conf {
		// Someone removed or edited our conf: restore it for the next restart.
		if err := atomicfile.Write(m.path(p.base, ".conf"), []byte(files.Conf), 0o600, atomicfile.Volatile); err != nil {
			return fmt.Errorf("dnsmasq for network %q: %w", p.name, err)
		}
	}
	p.mu.Lock()
	p.files = files
	inst := p.inst
	p.mu.Unlock()
	if changed && inst != nil {
		if err := inst.signal(syscall.SIGHUP); err != nil {
			return fmt.Errorf("dnsmasq for network %q: reload (pid %d): %w", p.name, inst.pid, err)
		}
	}
	return nil
}

// writeFiles writes the three files in parallel: each costs an fsync, and
// concurrent fsyncs share journal commits.
func (m *Manager) writeFiles(base string, f *Files) error {
	files := []struct {
		ext  string
		text string
		mode os.FileMode
	}{
		// The conf is read as root before dnsmasq drops privileges; the
		// hosts files are re-read as nobody on SIGHUP.
		{".conf", f.Conf, 0o600},
		{".hostsfile", f.Hostsfile, 0o644},
		{".addnhosts", f.Addnhosts, 0o644},
	}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, w := range files {
		wg.Go(func() { errs[i] = atomicfile.Write(m.path(base, w.ext), []byte(w.text), w.mode, atomicfile.Volatile) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (m *Manager) removeFiles(base string) {
	for _, p := range []string{m.path(base, ".conf"), m.path(base, ".hostsfile"), m.path(base, ".addnhosts"), m.pidPath(base)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("dnsmasq: remove file", "path", p, "err", err)
		}
	}
}

// interfacesChanged is what dnsmasq prints when the host's interfaces
// changed while it enumerated them at start-up: it lists the interfaces,
// then queries each one, and dies if one is gone in between (another
// network's bridge deleted at that moment). The errno it appends varies
// ("No such device", "Bad file descriptor"), so only the prefix is matched.
const interfacesChanged = "failed to find list of interfaces:"

// startAttempts bounds the starts of spawnRetrying.
const startAttempts = 3

// spawnRetrying is spawn, retried when dnsmasq died only because the host's
// interfaces changed under it during start-up: that is a race with another
// network's destroy, not a failure of this network.
func (m *Manager) spawnRetrying(name, base, bridge string, mute bool, argv []string) (*instance, error) {
	for attempt := 1; ; attempt++ {
		inst, err := m.spawn(base, bridge, mute, argv)
		if err == nil || attempt == startAttempts || !strings.Contains(err.Error(), interfacesChanged) {
			return inst, err
		}
		m.log.Info("dnsmasq start raced with an interface removal, retrying", "network", name, "attempt", attempt)
	}
}

// spawn starts dnsmasq as our child and waits until it serves; then its
// netlink socket is muted (mute: muteNetlink) or quietened to the events of
// bridge (quietNetlink).
func (m *Manager) spawn(base, bridge string, mute bool, argv []string) (*instance, error) {
	pidPath := m.pidPath(base)
	// A stale pid file must not be taken for the new process's.
	_ = os.Remove(pidPath)

	fd, err := unix.MemfdCreate("dnsmasq-stderr", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create stderr buffer: %w", err)
	}
	stderr := os.NewFile(uintptr(fd), "dnsmasq-stderr")

	cmd := m.c.Command(argv)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Why Setsid: dnsmasq must outlive vnetd (networks keep working across a
	// daemon restart) and must not get the signals of our terminal or
	// process group.
	cmd.SysProcAttr.Setsid = true
	// Why our own pidfd from clone: no pidfd_open after the start, and
	// os/exec keeps no pidfd of its own beside it (every descriptor of
	// vnetd's is copied and closed again at each fork).
	childPidfd := -1
	cmd.SysProcAttr.PidFD = &childPidfd
	start := time.Now()
	if err := cmd.Start(); err != nil {
		stderr.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	inst := &instance{
		pid:     cmd.Process.Pid,
		started: start,
		exited:  make(chan struct{}),
		stderr:  stderr,
		signal:  func(s syscall.Signal) error { return cmd.Process.Signal(s) },
	}
	// Why not cmd.Wait at once: it blocks an OS thread in waitid for the
	// child's whole life, one thread per network (about 100 kB of vnetd's
	// memory each). A pidfd is watched with everyone else's (pidfd.Notify);
	// cmd.Wait then only reaps. The child is not reaped before, so its pid
	// cannot be reused under the pidfd.
	reap := func() {
		err := cmd.Wait()
		if err != nil {
			inst.status = err.Error()
		} else {
			inst.status = "exit status 0"
		}
		close(inst.exited)
	}
	var proc *pidfd.Process
	if childPidfd >= 0 {
		proc, _ = pidfd.FromFD(cmd.Process.Pid, childPidfd)
	}
	if proc == nil {
		go reap()
	} else if _, err := proc.Notify(func() { proc.Close(); reap() }); err != nil {
		go func() { proc.Wait(); proc.Close(); reap() }()
	}

	deadline := start.Add(m.c.ReadyTimeout)
	for {
		if pid, err := readPidFile(pidPath); err == nil && pid == inst.pid {
			m.quiet(inst.pid, bridge, mute)
			return inst, nil
		}
		select {
		case <-inst.exited:
			err := fmt.Errorf("dnsmasq exited during start-up (%s)", inst.status)
			if s := inst.stderrTail(); s != "" {
				err = fmt.Errorf("dnsmasq exited during start-up (%s): %s", inst.status, s)
			}
			inst.release()
			_ = os.Remove(pidPath)
			return nil, err
		default:
		}
		if time.Now().After(deadline) {
			m.terminate(inst)
			err := fmt.Errorf("dnsmasq (pid %d) not serving after %v", inst.pid, m.c.ReadyTimeout)
			if s := inst.stderrTail(); s != "" {
				err = fmt.Errorf("%w: %s", err, s)
			}
			inst.release()
			_ = os.Remove(pidPath)
			return nil, err
		}
		time.Sleep(readyPollGap)
	}
}

// quiet mutes the rtnetlink socket of a dnsmasq that has no use for its
// events (mute, see BindsInterfaces), or else filters it down to the events
// of its bridge (quietNetlink). Only an optimisation: when it cannot
// (dnsmasq in another network namespace than vnetd, as in the package's
// tests), dnsmasq keeps seeing every event.
func (m *Manager) quiet(pid int, bridge string, mute bool) {
	// The bridge's index is looked up here: only right in dnsmasq's own
	// network namespace.
	ours, _ := os.Readlink("/proc/self/ns/net")
	if theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ours == "" || theirs != ours {
		m.log.Debug("dnsmasq: runs in another network namespace; its netlink events are not filtered", "pid", pid)
		return
	}
	var err error
	if mute {
		err = muteNetlink(pid)
	} else {
		var idx int
		if idx, err = ifindex.ByName(bridge); err == nil {
			err = quietNetlink(pid, idx)
		}
	}
	if err != nil {
		// Said once: with many networks every start then wakes every
		// dnsmasq (e.g. ptrace restricted by kernel.yama.ptrace_scope=3).
		m.quietOnce.Do(func() {
			m.log.Warn("dnsmasq: its netlink events cannot be filtered; each net-start will wake every running dnsmasq",
				"pid", pid, "bridge", bridge, "err", err)
		})
		m.log.Debug("dnsmasq: netlink events not filtered", "pid", pid, "bridge", bridge, "err", err)
	}
}

func readPidFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// dnsmasq writes "PID\n"; an empty or partial file is not ready yet.
	s, ok := strings.CutSuffix(string(data), "\n")
	if !ok {
		return 0, fmt.Errorf("pid file %s: incomplete", path)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, data)
	}
	return pid, nil
}

// find returns the running dnsmasq of the network, or nil: the process
// named by the pid file, or, when that is missing but our conf is still on
// disk (a dnsmasq may run without its pid file), a search of /proc. A process
// counts as the network's when its command line names the network's conf
// file; exact reports whether its command line is argv. The process is
// pinned with a pidfd before its command line is checked, so a recycled pid
// cannot fool us.
func (m *Manager) find(base string, argv []string) (inst *instance, exact bool) {
	confArg := "--conf-file=" + m.path(base, ".conf")
	if pid, err := readPidFile(m.pidPath(base)); err == nil {
		if inst, exact := m.pin(pid, confArg, argv); inst != nil {
			return inst, exact
		}
	}
	if _, err := os.Stat(m.path(base, ".conf")); err != nil {
		return nil, false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if inst, exact := m.pin(pid, confArg, argv); inst != nil {
			return inst, exact
		}
	}
	return nil, false
}

// pin returns a watched instance for pid if its command line holds confArg.
func (m *Manager) pin(pid int, confArg string, argv []string) (*instance, bool) {
	proc, err := pidfd.Open(pid)
	if err != nil {
		return nil, false
	}
	cmdline, err := proc.Cmdline()
	if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), confArg) {
		proc.Close()
		return nil, false
	}
	exact := bytes.Equal(cmdline, []byte(strings.Join(argv, "\x00")+"\x00"))
	inst := &instance{
		pid:     pid,
		started: time.Now(),
		exited:  make(chan struct{}),
		pidfd:   proc,
		signal:  proc.Signal,
	}
	exited := func() {
		inst.status = "exited (adopted process, status unknown)"
		close(inst.exited)
	}
	cancel, err := proc.Notify(exited)
	if err != nil {
		go func() {
			// Closing the pidfd (release) ends the wait too.
			if proc.Wait() {
				exited()
			} else {
				inst.status = "no longer watched"
				close(inst.exited)
			}
		}()
		return inst, exact
	}
	inst.unwatch = func() {
		if cancel() {
			inst.status = "no longer watched"
			close(inst.exited)
		}
	}
	return inst, exact
}

// terminate stops inst: SIGTERM, then SIGKILL if it has not exited after
// termTimeout.
func (m *Manager) terminate(inst *instance) {
	select {
	case <-inst.exited:
		return
	default:
	}
	_ = inst.signal(syscall.SIGTERM)
	select {
	case <-inst.exited:
		return
	case <-time.After(termTimeout):
	}
	m.log.Warn("dnsmasq ignored SIGTERM, killing it", "pid", inst.pid)
	_ = inst.signal(syscall.SIGKILL)
	select {
	case <-inst.exited:
	case <-time.After(termTimeout):
		m.log.Error("dnsmasq did not exit after SIGKILL", "pid", inst.pid)
	}
}

// supervise registers p and starts its supervisor goroutine.
func (m *Manager) supervise(p *netProc) {
	m.mu.Lock()
	m.nets[p.name] = p
	m.mu.Unlock()
	go m.run(p)
}

func (m *Manager) run(p *netProc) {
	defer close(p.done)
	inst := p.current()
	var policy crashloop.Policy
	for {
		select {
		case <-p.stop:
			m.terminate(inst)
			inst.release()
			return
		case <-p.detach:
			inst.release()
			return
		case <-inst.exited:
		}
		ran := time.Since(inst.started)
		m.log.Warn("dnsmasq exited unexpectedly", "network", p.name, "pid", inst.pid,
			"status", inst.status, "ran", ran.Round(time.Millisecond), "stderr", inst.stderrTail())
		inst.release()
		p.setCurrent(nil)
		wait := policy.Died(time.Now())
		for {
			if wait > 0 {
				m.log.Warn("dnsmasq keeps dying; restart delayed", "network", p.name, "delay", wait)
			}
			select {
			case <-p.stop:
				return
			case <-p.detach:
				return
			case <-time.After(wait):
			}
			p.mu.Lock()
			files := p.files
			p.mu.Unlock()
			var err error
			m.upMu.RLock()
			if err = m.writeFiles(p.base, files); err == nil {
				inst, err = m.spawn(p.base, p.bridge, BindsInterfaces(files.Conf), m.argv(p.base))
			}
			if err == nil {
				p.setCurrent(inst)
			}
			m.upMu.RUnlock()
			if err == nil {
				m.log.Info("dnsmasq restarted", "network", p.name, "pid", inst.pid)
				break
			}
			// A start that failed is one more death of the loop.
			wait = policy.Died(time.Now())
			m.log.Error("dnsmasq restart failed", "network", p.name, "err", err, "retry_in", wait)
		}
	}
}

func (m *Manager) stopSupervised(p *netProc) {
	m.mu.Lock()
	if m.nets[p.name] == p {
		delete(m.nets, p.name)
	}
	m.mu.Unlock()
	close(p.stop)
	<-p.done
}

// Stop stops supervising the network, terminates its dnsmasq (SIGTERM, then
// SIGKILL) and removes its pid file, conf, hostsfile and addnhosts. The lease
// file is kept. Stopping a network without a dnsmasq is not an error.
func (m *Manager) Stop(name string) error {
	base, err := FileBase(name)
	if err != nil {
		return err
	}
	unlock := m.opLock(name)
	defer unlock()
	m.mu.Lock()
	p := m.nets[name]
	m.mu.Unlock()
	if p != nil {
		m.stopSupervised(p)
	} else if inst, _ := m.find(base, m.argv(base)); inst != nil {
		// Not ours yet (e.g. left running by a previous vnetd): still stop it.
		m.terminate(inst)
		inst.release()
	}
	m.removeFiles(base)
	return nil
}

// Forget removes the network's lease file (net-undefine).
func (m *Manager) Forget(name string) error {
	base, err := FileBase(name)
	if err != nil {
		return err
	}
	if err := os.Remove(m.path(base, ".leases")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dnsmasq for network %q: remove leases: %w", name, err)
	}
	return nil
}

// Pid returns the pid of the network's running dnsmasq, 0 if none (also
// while a supervised dnsmasq is being restarted).
func (m *Manager) Pid(name string) int {
	m.mu.Lock()
	p := m.nets[name]
	m.mu.Unlock()
	if p != nil {
		if inst := p.current(); inst != nil {
			select {
			case <-inst.exited:
				return 0
			default:
				return inst.pid
			}
		}
		return 0
	}
	base, err := FileBase(name)
	if err != nil {
		return 0
	}
	if inst, _ := m.find(base, m.argv(base)); inst != nil {
		inst.release()
		return inst.pid
	}
	return 0
}

// Supervised reports whether this manager supervises the network's dnsmasq
// (started or adopted it, and restarts it when it dies). A dnsmasq that runs
// but is not supervised is adopted by Start.
func (m *Manager) Supervised(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nets[name] != nil
}

// Detach stops supervising every network and leaves the processes running,
// for a daemon shutdown that keeps the networks working.
func (m *Manager) Detach() {
	m.mu.Lock()
	procs := m.nets
	m.nets = map[string]*netProc{}
	m.mu.Unlock()
	for _, p := range procs {
		close(p.detach)
	}
	for _, p := range procs {
		<-p.done
	}
}

// warnUnreachable logs when a directory above dir is not searchable by
// others: dnsmasq runs as nobody after start-up and could then not reload the
// hosts files on SIGHUP.
func warnUnreachable(log *slog.Logger, dir string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	for d := abs; ; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
			log.Warn("dnsmasq: directory not searchable by others; dnsmasq (running as nobody) cannot reload its hosts files",
				"dir", d, "mode", st.Mode().Perm())
			return
		}
		if d == filepath.Dir(d) {
			return
		}
	}
}

// PlannedFiles returns the files Start would write for the network, by path,
// for --dry-run. It writes nothing.
func (m *Manager) PlannedFiles(n *netxml.Network) (map[string]string, error) {
	base, err := FileBase(n.Name)
	if err != nil {
		return nil, err
	}
	files, err := Generate(n, m.options(base))
	if err != nil {
		return nil, err
	}
	return map[string]string{
		m.path(base, ".conf"):      files.Conf,
		m.path(base, ".hostsfile"): files.Hostsfile,
		m.path(base, ".addnhosts"): files.Addnhosts,
	}, nil
}
