package test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"vnet/internal/netnstest"
)

// helperCall runs vnet-bridge-helper the way QEMU does (a socketpair end
// as --fd=3) as uid/gid 65534 (nobody) with the given supplementary groups,
// and returns the TAP fd it passed back (nil when it failed) and its stderr.
func helperCall(t testing.TB, d *daemon, groups string, args ...string) (*os.File, string) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "qemu"), os.NewFile(uintptr(fds[1]), "helper")
	defer ours.Close()
	argv := append([]string{"--reuid=65534", "--regid=65534", "--groups=" + groups, filepath.Join(binDir, "vnet-bridge-helper")}, args...)
	cmd := exec.Command("setpriv", argv...)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Env = append(os.Environ(), "VNET_HELPER_SOCKET="+filepath.Join(d.runDir, "vnetd-helper.sock"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	theirs.Close()
	if err != nil {
		return nil, stderr.String()
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(ours.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		t.Fatalf("recvmsg from the helper: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("helper sent %d control messages: %v", len(msgs), err)
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(got) != 1 {
		t.Fatalf("helper sent fds %v: %v", got, err)
	}
	return os.NewFile(uintptr(got[0]), "tap"), stderr.String()
}

// TestBridgeHelper: vnet-bridge-helper run as an unprivileged user (nobody,
// with a supplementary group in the access list) gets a TAP plugged into
// the network's bridge, owned by that user, listed as a port owned by
// nobody; the TAP is re-plugged when the bridge is deleted and survives a
// daemon restart; when the fd is closed the TAP and its port are gone.
// Users not in the list, a changed list, a bridge vnet does not manage and
// a forged --fd are refused with precise messages, creating nothing.
func TestBridgeHelper(t *testing.T) {
	host := netnstest.New(t, "helper")
	d := newDaemon(t, host)
	args := []string{"--no-default-network", "--dnsmasq", "/bin/false"}
	d.start(args...)
	h := nlIn(t, host)
	d.mustCtl("net-define", writeFile(t, "hnet.xml", portNetXML("hnet", "vbr-helper", "10.78.0")))
	d.mustCtl("net-start", "hnet")
	links := host.MustRun("ip", "-o", "link")
	noChange := func(what string) {
		t.Helper()
		if got := host.MustRun("ip", "-o", "link"); got != links {
			t.Fatalf("%s changed the host:\n%s\n---\n%s", what, links, got)
		}
		if list := d.mustCtl("net-port-list", "hnet", "--uuid"); list != "\n" {
			t.Fatalf("%s left ports: %q", what, list)
		}
	}
	acl := filepath.Join(d.configDir, "bridge-helper.conf")
	// No access list: denied.
	f, stderr := helperCall(t, d, "4711", "--use-vnet", "--br=vbr-helper", "--fd=3")
	if f != nil || !strings.HasPrefix(stderr, "vnet-bridge-helper: user 'nobody' may not attach to network 'hnet' (no access list: ") {
		t.Fatalf("without an access list: %q", stderr)
	}
	noChange("a call without access list")

	if err := os.WriteFile(acl, []byte("# guests of group 4711\nallow hnet 4711\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ groups, br, fd, want string }{
		{"4712", "vbr-helper", "3", "vnet-bridge-helper: user 'nobody' may not attach to network 'hnet'\n"},
		{"4711", "lo", "3", "vnet-bridge-helper: bridge 'lo' is not the bridge of an active vnet network\n"},
		{"4711", "vbr-helper", "0", "vnet-bridge-helper: --fd=0: not a socket; QEMU passes its end of a unix socketpair\n"},
		{"4711", "vbr-helper", "42", "vnet-bridge-helper: --fd=42: not an open file descriptor (bad file descriptor)\n"},
	} {
		f, stderr := helperCall(t, d, c.groups, "--use-vnet", "--br="+c.br, "--fd="+c.fd)
		if f != nil || stderr != c.want {
			t.Errorf("groups %s br %s fd %s: %q, want %q", c.groups, c.br, c.fd, stderr, c.want)
		}
	}
	noChange("refused calls")
	if !strings.Contains(d.log.String(), `msg="bridge helper call denied" user=nobody uid=65534`) {
		t.Fatalf("denial not logged:\n%s", d.log)
	}

	t0 := time.Now()
	tap, stderr := helperCall(t, d, "4711", "--use-vnet", "--br=vbr-helper", "--fd=3", "--mac=52:54:00:78:00:02")
	if tap == nil {
		t.Fatalf("allowed call failed: %s", stderr)
	}
	t.Logf("bridge helper: TAP received %v after the helper started", time.Since(t0).Round(time.Microsecond))
	defer tap.Close()
	if !plugged(h, "vnet0", "vbr-helper") {
		t.Fatal("vnet0 not plugged")
	}
	if owner := strings.TrimSpace(host.MustRun("cat", "/sys/class/net/vnet0/owner")); owner != "65534" {
		t.Fatalf("TAP owner %s", owner)
	}
	if flags := strings.TrimSpace(host.MustRun("cat", "/sys/class/net/vnet0/tun_flags")); flags != "0x5002" {
		t.Fatalf("tun_flags %s, want 0x5002 (TAP, NO_PI, VNET_HDR; not persistent)", flags)
	}
	uuid := strings.TrimSpace(d.mustCtl("net-port-list", "hnet", "--uuid"))
	xml := d.mustCtl("net-port-dumpxml", "hnet", uuid)
	for _, want := range []string{"<name>nobody</name>", "<mac address='52:54:00:78:00:02'/>",
		"<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='vnet0' user='65534' persist='no'/>"} {
		if !strings.Contains(xml, want) {
			t.Fatalf("dumpxml lacks %s:\n%s", want, xml)
		}
	}

	t0 = time.Now()
	host.MustRun("ip", "link", "del", "vbr-helper")
	t.Logf("helper's TAP re-plugged %v after the bridge was deleted", waitPlugged(t, h, "vnet0", "vbr-helper", t0, time.Second))

	before, _ := h.LinkByName("vnet0")
	d.stop()
	d.start(args...)
	if after, err := h.LinkByName("vnet0"); err != nil || after.Attrs().Index != before.Attrs().Index {
		t.Fatalf("TAP after a daemon restart: %v", err)
	}
	if list := d.mustCtl("net-port-list", "hnet", "--uuid"); list != uuid+"\n\n" {
		t.Fatalf("ports after restart %q", list)
	}

	// A changed list applies at once: now denied.
	if err := os.WriteFile(acl, []byte("allow all all\ndeny hnet 4711\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, stderr := helperCall(t, d, "4711", "--br=vbr-helper", "--fd=3"); f != nil || stderr != "vnet-bridge-helper: user 'nobody' may not attach to network 'hnet'\n" {
		t.Fatalf("after deny: %q", stderr)
	}

	// The guest closes its TAP: the port ends.
	t0 = time.Now()
	tap.Close()
	if !waitFor(5*time.Second, func() bool { return d.mustCtl("net-port-list", "hnet", "--uuid") == "\n" }) {
		t.Fatal("port still listed 5 s after its TAP was closed")
	}
	t.Logf("port ended %v after the guest closed its TAP", time.Since(t0).Round(time.Millisecond))
	if _, err := h.LinkByName("vnet0"); err == nil {
		t.Fatal("vnet0 still exists")
	}

	// A TAP closed while vnetd is down: the port ends at its next start.
	if err := os.WriteFile(acl, []byte("allow hnet all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tap, stderr = helperCall(t, d, "4711", "--br=vbr-helper", "--fd=3")
	if tap == nil {
		t.Fatal(stderr)
	}
	d.stop()
	tap.Close()
	d.start(args...)
	if list := d.mustCtl("net-port-list", "hnet", "--uuid"); list != "\n" {
		t.Fatalf("port of a TAP closed while vnetd was down still listed: %q", list)
	}

	// A user-mode network is a session daemon's, not the system's.
	_, stderr, code := d.ctl("net-create", writeFile(t, "user.xml", fmt.Sprintf(userNetXML, 2222)))
	if code == 0 || !strings.Contains(stderr, "network 'usernet' has forward mode 'user': it runs in its user's session vnetd (vnetd --session), not in the system one") {
		t.Fatalf("user-mode network in the system vnetd: %d %q", code, stderr)
	}
}

// qemuTAP makes a non-persistent TAP in ns the way QEMU's -netdev
// tap,ifname= does and returns its only fd.
func qemuTAP(t testing.TB, ns *netnstest.NS, name string) *os.File {
	t.Helper()
	var f *os.File
	err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	if err != nil {
		t.Fatalf("TAP %s: %v", name, err)
	}
	return f
}

// TestQemuIfup: vnet-qemu-ifup makes the TAP a root QEMU created an
// adopted, transient port of the configured network (plugged, re-plugged
// after the bridge is deleted); vnet-qemu-ifdown deletes the port and
// leaves the TAP; a TAP closed without the downscript ends its port.
func TestQemuIfup(t *testing.T) {
	host := netnstest.New(t, "ifup")
	d := newDaemon(t, host)
	d.start("--no-default-network", "--dnsmasq", "/bin/false")
	h := nlIn(t, host)
	d.mustCtl("net-define", writeFile(t, "inet.xml", portNetXML("inet", "vbr-ifup", "10.79.0")))
	d.mustCtl("net-start", "inet")
	conf := writeFile(t, "qemu-ifup.conf", "# vnet-qemu-ifup\nnetwork inet\n")
	script := func(name, ifname string) (string, error) {
		cmd := host.Command(filepath.Join(binDir, name), ifname)
		cmd.Env = append(os.Environ(), "VNET_SOCKET="+d.socket(), "VNET_QEMU_CONF="+conf)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	tap := qemuTAP(t, host, "qtap0")
	defer tap.Close()
	t0 := time.Now()
	if out, err := script("vnet-qemu-ifup", "qtap0"); err != nil {
		t.Fatalf("ifup: %v %s", err, out)
	}
	t.Logf("vnet-qemu-ifup took %v", time.Since(t0).Round(time.Millisecond))
	if !plugged(h, "qtap0", "vbr-ifup") {
		t.Fatal("qtap0 not plugged")
	}
	uuid := strings.TrimSpace(d.mustCtl("net-port-list", "inet", "--uuid"))
	if xml := d.mustCtl("net-port-dumpxml", "inet", uuid); !strings.Contains(xml, "<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='qtap0' adopt='yes' persist='no'/>") {
		t.Fatalf("dumpxml:\n%s", xml)
	}
	t0 = time.Now()
	host.MustRun("ip", "link", "del", "vbr-ifup")
	t.Logf("ifup's TAP re-plugged %v after the bridge was deleted", waitPlugged(t, h, "qtap0", "vbr-ifup", t0, time.Second))

	if out, err := script("vnet-qemu-ifdown", "qtap0"); err != nil {
		t.Fatalf("ifdown: %v %s", err, out)
	}
	if list := d.mustCtl("net-port-list", "inet", "--uuid"); list != "\n" {
		t.Fatalf("ports after ifdown %q", list)
	}
	if _, err := h.LinkByName("qtap0"); err != nil {
		t.Fatal("ifdown deleted QEMU's TAP")
	}

	// QEMU killed: no downscript, the TAP vanishes, and so does the port.
	if out, err := script("vnet-qemu-ifup", "qtap0"); err != nil {
		t.Fatalf("ifup: %v %s", err, out)
	}
	tap.Close()
	if !waitFor(5*time.Second, func() bool { return d.mustCtl("net-port-list", "inet", "--uuid") == "\n" }) {
		t.Fatal("port still listed 5 s after its TAP vanished")
	}

	// A real root QEMU (its CPU never started: no guest boots) with
	// script=/downscript=: the TAP it makes is a port while it runs; a quit
	// (QMP) runs the downscript, kill -9 leaves it to the TAP's end.
	if _, err := exec.LookPath("qemu-system-x86_64"); err == nil {
		netdev := "tap,id=n0,ifname=qtap1,script=" + filepath.Join(binDir, "vnet-qemu-ifup") + ",downscript=" + filepath.Join(binDir, "vnet-qemu-ifdown")
		for _, how := range []string{"quit", "kill"} {
			qmp := filepath.Join(t.TempDir(), "qmp.sock")
			qemu := host.Command("qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-display", "none", "-monitor", "none", "-S",
				"-qmp", "unix:"+qmp+",server=on,wait=off",
				"-name", "guest=ifupvm", "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:79:00:02")
			qemu.Env = append(os.Environ(), "VNET_SOCKET="+d.socket(), "VNET_QEMU_CONF="+conf)
			var out strings.Builder
			qemu.Stdout, qemu.Stderr = &out, &out
			t0 := time.Now()
			if err := qemu.Start(); err != nil {
				t.Fatal(err)
			}
			if !waitFor(30*time.Second, func() bool { return plugged(h, "qtap1", "vbr-ifup") }) {
				_ = qemu.Process.Kill()
				_ = qemu.Wait()
				t.Fatalf("QEMU's TAP not plugged within 30 s:\n%s", out.String())
			}
			t.Logf("root QEMU with script=vnet-qemu-ifup: TAP plugged %v after QEMU started", time.Since(t0).Round(time.Millisecond))
			uuid := strings.TrimSpace(d.mustCtl("net-port-list", "inet", "--uuid"))
			if xml := d.mustCtl("net-port-dumpxml", "inet", uuid); !strings.Contains(xml, "<name>ifupvm</name>") {
				t.Fatalf("port owner is not QEMU's -name:\n%s", xml)
			}
			if how == "quit" {
				qmpQuit(t, qmp)
			} else {
				_ = qemu.Process.Kill()
			}
			_ = qemu.Wait()
			if !waitFor(5*time.Second, func() bool { return d.mustCtl("net-port-list", "inet", "--uuid") == "\n" }) {
				t.Fatalf("port still listed after QEMU's %s:\n%s", how, out.String())
			}
			// quit: QEMU's downscript deleted the port; kill -9: the port
			// ended with the TAP.
			want := map[string]string{"quit": `msg="network port deleted" network=inet port=` + uuid,
				"kill": `msg="network port ended: its guest closed the device" network=inet port=` + uuid}[how]
			if !strings.Contains(d.log.String(), want) {
				t.Fatalf("after QEMU's %s the log lacks %s\nQEMU (%v):\n%s", how, want, qemu.ProcessState, out.String())
			}
		}
	}

	// Bad input: a device that does not exist, a bad name.
	for ifname, want := range map[string]string{
		"nosuch0": "vnet-qemu-ifup: network 'inet': operation failed: tap \"nosuch0\": does not exist, so it cannot be adopted\n",
		"a/b":     "vnet-qemu-ifup: XML error: Network interface name 'a/b' is invalid (no '/', ':', '%', whitespace, '.' or '..')\n",
	} {
		if out, err := script("vnet-qemu-ifup", ifname); err == nil || out != want {
			t.Errorf("ifup %s: %v %q, want %q", ifname, err, out, want)
		}
	}
}

// qmpQuit asks the QEMU listening on the QMP socket to quit.
func qmpQuit(t testing.TB, path string) {
	t.Helper()
	var c net.Conn
	if !waitFor(30*time.Second, func() bool {
		var err error
		c, err = net.Dial("unix", path)
		return err == nil
	}) {
		t.Fatal("no QMP socket")
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	for _, cmd := range []string{"", `{"execute":"qmp_capabilities"}`, `{"execute":"quit"}`} {
		if cmd != "" {
			if _, err := c.Write([]byte(cmd + "\n")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("QMP %s: %v", cmd, err)
		}
	}
}
