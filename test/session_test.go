package test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// sessionUID is the unprivileged user the session tests run as (nobody).
const sessionUID = 65534

// sessionDaemon is a vnetd --session run by an unprivileged user in a
// passtHost skips the test without passt, and returns a host namespace with
// an upstream namespace behind it, a default route through it (passt takes
// its template interface from the default route) and a started session
// vnetd.
func passtHost(t *testing.T, name string) (host, up *netnstest.NS, s *sessionDaemon) {
	t.Helper()
	if _, err := exec.LookPath("passt"); err != nil {
		t.Skip("passt not installed (Debian package passt; scripts/deps.sh installs it)")
	}
	host = netnstest.New(t, name)
	up = addUpstream(t, host)
	host.MustRun("ip", "route", "add", "default", "via", "172.31.255.2")
	s = newSessionDaemon(t, host)
	s.start()
	return host, up, s
}

// namespace, with its XDG directories.
type sessionDaemon struct {
	t           testing.TB
	ns          *netnstest.NS
	runtime     string // XDG_RUNTIME_DIR
	config      string // XDG_CONFIG_HOME
	cmd         *exec.Cmd
	log         *logBuffer
	passtBinary string
}

func newSessionDaemon(t testing.TB, ns *netnstest.NS) *sessionDaemon {
	t.Helper()
	root, err := os.MkdirTemp("", "vnet-session-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	s := &sessionDaemon{t: t, ns: ns, runtime: filepath.Join(root, "run"), config: filepath.Join(root, "cfg"), log: &logBuffer{}}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{s.runtime, s.config} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, sessionUID, sessionUID); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		s.stop()
		// vnetd here is the race-detector build (as are its keepers).
		logs, _ := filepath.Glob(filepath.Join(s.runtime, "vnet", "passt", "*.log"))
		for _, l := range logs {
			if data, _ := os.ReadFile(l); bytes.Contains(data, []byte("DATA RACE")) {
				t.Errorf("data race in a passt keeper:\n%s", data)
			}
		}
		if strings.Contains(s.log.String(), "DATA RACE") {
			t.Error("data race in the session vnetd")
		}
		if t.Failed() {
			t.Logf("session vnetd log:\n%s", s.log)
			logs, _ := filepath.Glob(filepath.Join(s.runtime, "vnet", "passt", "*.log"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, data)
			}
		}
	})
	return s
}

// asUser runs argv in the namespace as the session user with its XDG dirs.
func (s *sessionDaemon) asUser(argv ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", s.ns.Name(), "setpriv",
		"--reuid=" + strconv.Itoa(sessionUID), "--regid=" + strconv.Itoa(sessionUID), "--clear-groups",
		"env", "XDG_RUNTIME_DIR=" + s.runtime, "XDG_CONFIG_HOME=" + s.config, "HOME=/nonexistent"}, argv...)
	return exec.Command("ip", full...)
}

func (s *sessionDaemon) start() {
	s.t.Helper()
	argv := []string{filepath.Join(binDir, raceVnetd), "--session", "--verbose"}
	if s.passtBinary != "" {
		argv = append(argv, "--passt", s.passtBinary)
	}
	s.cmd = s.asUser(argv...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { _, _, code := s.ctl("net-list", "--all"); return code == 0 }) {
		s.t.Fatalf("session vnetd does not answer:\n%s", s.log)
	}
}

func (s *sessionDaemon) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

func (s *sessionDaemon) kill9() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// ctl runs vnetctl as the session user, without --socket: it must find
// the session daemon by itself.
func (s *sessionDaemon) ctl(args ...string) (string, string, int) {
	cmd := s.asUser(append([]string{filepath.Join(binDir, "vnetctl")}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return out.String(), errb.String(), code
}

func (s *sessionDaemon) mustCtl(args ...string) string {
	s.t.Helper()
	out, errs, code := s.ctl(args...)
	if code != 0 {
		s.t.Fatalf("vnetctl %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

// file writes content readable by the session user.
func (s *sessionDaemon) file(name, content string) string {
	s.t.Helper()
	p := filepath.Join(filepath.Dir(s.runtime), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *sessionDaemon) passtPid(uuid string) int {
	data, err := os.ReadFile(filepath.Join(s.runtime, "vnet", "passt", uuid+".passt.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func (s *sessionDaemon) keeperPid(uuid string) int {
	data, err := os.ReadFile(filepath.Join(s.runtime, "vnet", "passt", uuid+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

const userNetXML = `<network>
  <name>usernet</name>
  <vnet:forward xmlns:vnet='urn:vnet:network:1' mode='user'>
    <portForward proto='tcp'>
      <range start='%d' to='8080'/>
    </portForward>
  </vnet:forward>
  <ip address='10.0.2.2' prefix='24'>
    <dhcp>
      <range start='10.0.2.15' end='10.0.2.15'/>
    </dhcp>
  </ip>
</network>
`

// arpProbe sends, as a guest on the stream connection would, an ARP
// request for the gateway 10.0.2.2 and waits for passt's reply.
func arpProbe(c net.Conn, timeout time.Duration) error {
	mac := []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	f := make([]byte, 0, 46)
	f = binary.BigEndian.AppendUint32(f, 42)
	f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, mac...)
	f = append(f, 0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1)
	f = append(f, mac...)
	f = append(f, 10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2)
	if _, err := c.Write(f); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	for {
		var hdr [4]byte
		if _, err := ioReadFull(c, hdr[:]); err != nil {
			return err
		}
		frame := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := ioReadFull(c, frame); err != nil {
			return err
		}
		if len(frame) >= 42 && frame[12] == 0x08 && frame[13] == 0x06 && frame[21] == 2 && bytes.Equal(frame[28:32], []byte{10, 0, 2, 2}) {
			return nil
		}
	}
}

func ioReadFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestSessionPasst: an unprivileged user's vnetd --session runs a
// user-mode network; a port is a passt keeper on a socket shown in
// net-port-dumpxml; a guest connection (here a raw stream client that
// speaks ARP) gets answers from passt, also after kill -9 of passt (a new
// passt on the same connection) and across restarts (and kill -9) of the
// session vnetd (keeper and passt adopted, untouched). Bad input is refused
// precisely: overlapping and privileged port forwards, a missing passt, a
// bridge network in the session, a user-mode network in the system vnetd.
func TestSessionPasst(t *testing.T) {
	_, up, s := passtHost(t, "session")

	// Bad definitions first: nothing may be left.
	overlap := strings.Replace(fmt.Sprintf(userNetXML, 2222), "</vnet:forward>", "<portForward proto='tcp'><range start='2200' end='2300'/></portForward></vnet:forward>", 1)
	if _, errs, code := s.ctl("net-define", s.file("overlap.xml", overlap)); code == 0 || !strings.Contains(errs, "port forwards overlap in network 'usernet': tcp 2200-2300 and tcp 2222") {
		t.Fatalf("overlapping forwards: %d %q", code, errs)
	}
	s.mustCtl("net-define", s.file("priv.xml", fmt.Sprintf(userNetXML, 80)))
	if _, errs, code := s.ctl("net-start", "usernet"); code == 0 || !strings.Contains(errs, "port forward tcp 80: ports below 1024 need CAP_NET_BIND_SERVICE") {
		t.Fatalf("privileged forward: %d %q", code, errs)
	}
	s.mustCtl("net-undefine", "usernet")
	if _, errs, code := s.ctl("net-create", s.file("nat.xml", portNetXML("natnet", "vbr-sess", "10.80.0"))); code == 0 || !strings.Contains(errs, "a session vnetd runs only networks of forward mode 'user'") {
		t.Fatalf("bridge network in a session: %d %q", code, errs)
	}

	s.mustCtl("net-define", s.file("user.xml", fmt.Sprintf(userNetXML, 2222)))
	s.mustCtl("net-start", "usernet")
	if _, errs, code := s.ctl("net-dhcp-leases", "usernet"); code == 0 || !strings.Contains(errs, "error: Operation not supported: network 'usernet' is a user-mode network: passt keeps no DHCP leases") {
		t.Fatalf("net-dhcp-leases on a user-mode network: %d %q", code, errs)
	}
	const uuid = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207e"
	s.mustCtl("net-port-create", "usernet", s.file("port.xml", portXML(uuid, "52:54:00:12:34:56", "")))
	sock := filepath.Join(s.runtime, "vnet", "passt", uuid+".socket")
	xml := s.mustCtl("net-port-dumpxml", "usernet", uuid)
	if !strings.Contains(xml, "<vnet:passt xmlns:vnet='urn:vnet:port:1' socket='"+sock+"'/>") {
		t.Fatalf("dumpxml:\n%s", xml)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != sessionUID {
		t.Fatalf("socket %s: %v %v", sock, st, err)
	}

	// The guest connects (as QEMU's -netdev stream does).
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Now()
	if err := arpProbe(c, 10*time.Second); err != nil {
		t.Fatalf("no ARP reply from passt: %v", err)
	}
	t.Logf("passt answered ARP %v after the guest connected", time.Since(t0).Round(time.Millisecond))
	first := s.passtPid(uuid)
	if first == 0 {
		t.Fatal("no passt pid")
	}

	// The forward host :2222 → guest :8080 to a server that speaks
	// first, the guest acting as Linux does (accept only after the
	// handshake's ACK): the keeper supplies the ACK Debian 12's passt
	// omits (TestPasstInboundAck).
	t.Run("port-forward", func(t *testing.T) {
		inboundGreeting(t, c, up, "172.31.255.1:2222")
	})

	// kill -9 passt: a new passt on the same connection.
	t0 = time.Now()
	_ = syscall.Kill(first, syscall.SIGKILL)
	if !waitFor(10*time.Second, func() bool { p := s.passtPid(uuid); return p != 0 && p != first }) {
		t.Fatal("passt not restarted")
	}
	if err := arpProbe(c, 5*time.Second); err != nil {
		t.Fatalf("no ARP reply after passt was killed: %v", err)
	}
	t.Logf("after kill -9 of passt the guest had answers again in %v (same connection, new passt)", time.Since(t0).Round(time.Millisecond))

	// Session vnetd restarts (SIGTERM and kill -9): nothing changes.
	keeper, second := s.keeperPid(uuid), s.passtPid(uuid)
	t.Logf("memory per port: keeper %s, passt %s (VmRSS)", vmRSS(keeper), vmRSS(second))
	s.stop()
	s.start()
	s.kill9()
	s.start()
	if k, p := s.keeperPid(uuid), s.passtPid(uuid); k != keeper || p != second {
		t.Fatalf("after restarts keeper %d→%d passt %d→%d", keeper, k, second, p)
	}
	if err := arpProbe(c, 5*time.Second); err != nil {
		t.Fatalf("no ARP reply after session vnetd restarts: %v", err)
	}
	if !strings.Contains(s.log.String(), "adopted passt keeper") {
		t.Fatalf("keeper not adopted:\n%s", s.log)
	}
	// ... and passt still comes back when killed after them.
	_ = syscall.Kill(second, syscall.SIGKILL)
	if !waitFor(10*time.Second, func() bool { p := s.passtPid(uuid); return p != 0 && p != second }) {
		t.Fatal("passt not restarted after the daemon restarts")
	}
	if err := arpProbe(c, 5*time.Second); err != nil {
		t.Fatalf("no ARP reply after passt was killed post-restart: %v", err)
	}

	// The keeper itself killed: the daemon starts a new one on the socket.
	_ = syscall.Kill(keeper, syscall.SIGKILL)
	if !waitFor(10*time.Second, func() bool {
		_, err := os.Stat(sock)
		k := s.keeperPid(uuid)
		return k != 0 && k != keeper && err == nil
	}) {
		t.Fatal("keeper not restarted")
	}

	// The guest goes: passt ends; the port and its socket stay for the next.
	c.Close()
	c2, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := arpProbe(c2, 10*time.Second); err != nil {
		t.Fatalf("no ARP reply for a new guest connection: %v", err)
	}

	// net-destroy keeps the port but stops its keeper and passt (no host
	// port forwards while the network is down); net-start brings them back.
	c2.Close()
	s.mustCtl("net-destroy", "usernet")
	if k := s.keeperPid(uuid); k != 0 {
		t.Fatalf("keeper %d still running after net-destroy", k)
	}
	if list := s.mustCtl("net-port-list", "usernet", "--uuid"); strings.TrimSpace(list) != uuid {
		t.Fatalf("ports after net-destroy: %q", list)
	}
	s.mustCtl("net-start", "usernet")
	c3, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("port socket after net-start: %v", err)
	}
	if err := arpProbe(c3, 10*time.Second); err != nil {
		t.Fatalf("no ARP reply after net-destroy + net-start: %v", err)
	}
	c3.Close()

	s.mustCtl("net-port-delete", "usernet", uuid)
	if _, err := os.Stat(sock); err == nil {
		t.Fatal("socket left after net-port-delete")
	}
	if p := s.passtPid(uuid); p != 0 {
		t.Fatalf("passt pid file left: %d", p)
	}

	// A missing passt: a precise error, no port.
	s.stop()
	s.passtBinary = "/nonexistent/passt"
	s.start()
	_, errs, code := s.ctl("net-port-create", "usernet", s.file("port2.xml", portXML(uuid, "52:54:00:12:34:57", "")))
	if code == 0 || !strings.Contains(errs, "passt binary '/nonexistent/passt' not found (install Debian's passt package)") {
		t.Fatalf("missing passt: %d %q", code, errs)
	}
	if list := s.mustCtl("net-port-list", "usernet", "--uuid"); list != "\n" {
		t.Fatalf("ports after a failed create: %q", list)
	}
}

// inboundGreeting connects from up to the host's forwarded port 2222 at
// addr while the raw guest on c accepts on 8080 and greets first.
func inboundGreeting(t *testing.T, c net.Conn, up *netnstest.NS, addr string) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		line, err := readGreeting(up, addr)
		if err == nil && line != "VNET-HELLO" {
			err = fmt.Errorf("read %q", line)
		}
		got <- err
	}()
	after, err := newRawGuest(c).acceptGreeting(8080, "VNET-HELLO\n", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("handshake ACK after %v, but the client got no greeting: %v", after, err)
	}
	t.Logf("inbound forward: the guest's SYN-ACK was ACKed after %v; the guest's greeting reached the client of %s", after.Round(time.Microsecond), addr)
}

// vmRSS is a process's resident set size as /proc shows it.
func vmRSS(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// TestSessionPasstNewArgs: a session vnetd that finds an active network's
// port keeper running passt with other arguments than the network asks
// for (here the stored live definition's port forward was changed while
// the daemon was down, as after an upgrade that words passt's options
// differently) restarts passt with the new ones on the guest's connection:
// the keeper and the guest's connection stay, the new forward works.
func TestSessionPasstNewArgs(t *testing.T) {
	_, up, s := passtHost(t, "passtargs")
	s.mustCtl("net-define", s.file("user.xml", fmt.Sprintf(userNetXML, 2222)))
	s.mustCtl("net-start", "usernet")
	const uuid = "0b0c6a51-3f55-4c1e-9d55-4d3a1f0e2b7c"
	s.mustCtl("net-port-create", "usernet", s.file("port.xml", portXML(uuid, "52:54:00:12:34:56", "")))
	c, err := net.Dial("unix", filepath.Join(s.runtime, "vnet", "passt", uuid+".socket"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := arpProbe(c, 10*time.Second); err != nil {
		t.Fatalf("no ARP reply from passt: %v", err)
	}
	inboundGreeting(t, c, up, "172.31.255.1:2222")
	keeper, first := s.keeperPid(uuid), s.passtPid(uuid)

	s.stop()
	var status string
	_ = filepath.WalkDir(s.runtime, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "usernet.xml" {
			status = p
		}
		return nil
	})
	data, err := os.ReadFile(status)
	if err != nil || !bytes.Contains(data, []byte("start='2222'")) {
		t.Fatalf("live status %q: %v\n%s", status, err, data)
	}
	if err := os.WriteFile(status, bytes.Replace(data, []byte("start='2222'"), []byte("start='2223'"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()

	t0 := time.Now()
	if !waitFor(10*time.Second, func() bool { p := s.passtPid(uuid); return p != 0 && p != first }) {
		t.Fatal("passt not restarted with the new arguments")
	}
	if k := s.keeperPid(uuid); k != keeper {
		t.Fatalf("keeper %d replaced by %d: the guest's connection would be gone", keeper, k)
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.passtPid(uuid)))
	if !bytes.Contains(cmdline, []byte("--tcp-ports\x002223:8080\x00")) {
		t.Fatalf("passt runs with %q", cmdline)
	}
	if err := arpProbe(c, 5*time.Second); err != nil {
		t.Fatalf("no ARP reply on the same connection after the new arguments: %v", err)
	}
	t.Logf("passt restarted with the new arguments, guest answered again in %v", time.Since(t0).Round(time.Millisecond))
	inboundGreeting(t, c, up, "172.31.255.1:2223")
}
