package test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnet/internal/netnstest"
	"vnet/test/vm"
)

// TestGuestVMPasst: an unprivileged user's QEMU (nobody, no capabilities)
// on a port of a user-mode network of its session vnetd, through
// -netdev stream on the port's passt socket: the guest gets its address
// from passt by DHCP, pings the upstream namespace, and a TCP connection to
// the forwarded host port reaches a listener in the guest that speaks
// first (the ACK Debian 12's passt omits comes from the keeper). kill -9 of passt
// is bridged by the port's keeper (a new passt on the same connection);
// restarts of the session vnetd lose no ping.
func TestGuestVMPasst(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("passt"); err != nil {
		t.Skip("passt not installed (Debian package passt; scripts/deps.sh installs it)")
	}
	assets := vm.Prepare(t, vm.NetModules)
	host := netnstest.New(t, "vmpasst")
	up := addUpstream(t, host)
	host.MustRun("ip", "route", "add", "default", "via", "172.31.255.2")
	// passt answers the guest's pings with ICMP echo sockets, which the
	// kernel gives only to groups in ping_group_range (per namespace).
	host.MustRun("sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
	s := newSessionDaemon(t, host)
	s.start()
	s.mustCtl("net-define", s.file("user.xml", fmt.Sprintf(userNetXML, 2222)))
	s.mustCtl("net-start", "usernet")
	const uuid, mac = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207f", "52:54:00:7e:57:03"
	s.mustCtl("net-port-create", "usernet", s.file("port.xml", portXML(uuid, mac, "")))
	m := regexp.MustCompile(`socket='([^']+)'`).FindStringSubmatch(s.mustCtl("net-port-dumpxml", "usernet", uuid))
	if m == nil {
		t.Fatal("no socket in net-port-dumpxml")
	}
	sock := m[1]

	g := vm.Start(t, assets, vm.Config{NetNS: host.Name(), MAC: mac, Target: "172.31.255.2", Listen: 8080,
		Netdev: "stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
		Wrap:   []string{"setpriv", "--reuid=" + strconv.Itoa(sessionUID), "--regid=" + strconv.Itoa(sessionUID), "--clear-groups"}})
	_, nic, _ := g.MustWait(0, regexp.MustCompile(`VNET-MAC `), 5*time.Minute)
	lm, lease, next := g.MustWait(0, leaseRE, 5*time.Minute)
	t.Logf("vm (passt, QEMU as nobody): lease %s %v after NIC up, %v after QEMU start", lm[1],
		lease.At.Sub(nic.At).Round(time.Millisecond), lease.At.Sub(g.Started).Round(time.Millisecond))
	if lm[1] != "10.0.2.15" || lm[2] != "24" || lm[3] != "10.0.2.2" {
		t.Fatalf("lease from passt: %s", lm[0])
	}
	g.MustWait(next, regexp.MustCompile(`VNET-LISTEN 8080`), time.Minute)
	g.MustWait(next, pingRE, time.Minute)
	if _, err := g.WaitPings(-1, 5, time.Minute); err != nil {
		t.Fatalf("guest → upstream through passt: %v", err)
	}

	// Host port 2222 → guest port 8080.
	hello := func() error {
		return up.Do(func() error {
			c, err := net.DialTimeout("tcp", "172.31.255.1:2222", 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "VNET-HELLO" {
				return fmt.Errorf("read %q: %v", line, err)
			}
			return nil
		})
	}
	// vnet's part of the forward: passt runs with libvirt's translation
	// of the <portForward> and holds the host port.
	forwardWorks := false
	t.Run("port-forward", func(t *testing.T) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.passtPid(uuid)))
		if !strings.Contains(string(cmdline), "\x00--tcp-ports\x002222:8080\x00") {
			t.Fatalf("passt's command line lacks --tcp-ports 2222:8080: %q", cmdline)
		}
		if ss := host.MustRun("ss", "-Htlnp", "sport", "= :2222"); !strings.Contains(ss, "passt") {
			t.Fatalf("port 2222 not held by passt: %q", ss)
		}
		// A server that speaks first: Debian 12's passt alone never ACKs
		// the guest's SYN-ACK (TestPasstInboundAck); the keeper does.
		t0 := time.Now()
		if err := hello(); err != nil {
			t.Fatalf("host port 2222 → guest listener on 8080: %v", err)
		}
		t.Logf("vm (passt): connect + greeting through the forward in %v", time.Since(t0).Round(time.Millisecond))
		forwardWorks = true
	})

	t.Run("kill9-passt", func(t *testing.T) {
		pid := s.passtPid(uuid)
		t0 := time.Now()
		_ = syscall.Kill(pid, syscall.SIGKILL)
		back, err := g.FirstReplyAfter(t0, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("vm (passt): after kill -9 of passt the guest pings again in %v (new passt pid %d on the same connection)", back.Sub(t0).Round(time.Millisecond), s.passtPid(uuid))
		if forwardWorks {
			if err := hello(); err != nil {
				t.Fatalf("port forward after the passt restart: %v", err)
			}
		}
	})

	t.Run("session-restart", func(t *testing.T) {
		before := g.PingMark()
		keeper, pid := s.keeperPid(uuid), s.passtPid(uuid)
		s.stop()
		s.start()
		s.kill9()
		s.start()
		mark, err := g.WaitPings(g.PingMark(), 5, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if lost := g.Lost(before, mark); len(lost) != 0 {
			t.Fatalf("%d pings lost over session vnetd restarts: %v", len(lost), lost)
		}
		if s.keeperPid(uuid) != keeper || s.passtPid(uuid) != pid {
			t.Fatalf("keeper/passt changed: %d→%d, %d→%d", keeper, s.keeperPid(uuid), pid, s.passtPid(uuid))
		}
		if forwardWorks {
			if err := hello(); err != nil {
				t.Fatalf("port forward after restarts: %v", err)
			}
		}
		t.Logf("vm (passt): 0 of %d pings lost over a SIGTERM and a kill -9 restart of the session vnetd", mark-before)
	})
}

// passtVersion is the installed passt package's version.
func passtVersion() string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "passt").Output()
	if err != nil {
		return "unknown version"
	}
	return "passt " + string(out)
}
