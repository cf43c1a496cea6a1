package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"vnet/internal/netnstest"
)

const e2eBusConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

// privateBus starts a dbus-daemon of the test's own and returns its address.
func privateBus(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon is not installed")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(e2eBusConfig, filepath.Join(dir, "bus"))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--print-address", "--nofork", "--nopidfile")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	return strings.TrimSpace(addr)
}

func busClient(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitName waits until vnetd owns org.libvirt on the bus.
func waitName(t *testing.T, conn *dbus.Conn) {
	t.Helper()
	for i := 0; i < 500; i++ {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.libvirt").Store(&has); err == nil && has {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("vnetd did not take org.libvirt")
}

// TestDBusEventsFromCLI: the real vnetd serves libvirt-dbus's API on a bus;
// changes made with vnetctl arrive as NetworkEvent signals within a second,
// and the network is visible over D-Bus with the XML the CLI shows.
func TestDBusEventsFromCLI(t *testing.T) {
	netnstest.RequireRoot(t)
	addr := privateBus(t)
	host := netnstest.New(t, "dbus")
	d := newDaemon(t, host)
	d.start("--no-default-network", "--dbus", addr)
	conn := busClient(t, addr)
	waitName(t, conn)
	if err := conn.AddMatchSignal(dbus.WithMatchInterface("org.libvirt.Connect"), dbus.WithMatchMember("NetworkEvent")); err != nil {
		t.Fatal(err)
	}
	sig := make(chan *dbus.Signal, 16)
	conn.Signal(sig)

	d.mustCtl("net-define", writeFile(t, "iso.xml", isolatedXML))
	d.mustCtl("net-start", "iso")
	for _, want := range []int32{0, 2} { // DEFINED, STARTED
		select {
		case s := <-sig:
			if len(s.Body) != 2 || s.Body[1].(int32) != want || s.Path != "/org/libvirt/QEMU" {
				t.Fatalf("signal %v %v, want event %d with 2 arguments", s.Path, s.Body, want)
			}
		case <-time.After(time.Second):
			t.Fatalf("no NetworkEvent %d within 1 s", want)
		}
	}
	// A drift repair is vnet's own event, not a libvirt lifecycle one: no
	// NetworkEvent may carry it.
	host.MustRun("ip", "link", "set", "vbr-iso", "down")
	select {
	case s := <-sig:
		t.Fatalf("NetworkEvent %v after a drift repair", s.Body)
	case <-time.After(700 * time.Millisecond):
	}
	if !strings.Contains(d.log.String(), "repaired network drift") {
		t.Fatal("the bridge set down was not repaired")
	}
	var path dbus.ObjectPath
	if err := conn.Object("org.libvirt", "/org/libvirt/QEMU").Call("org.libvirt.Connect.NetworkLookupByName", 0, "iso").Store(&path); err != nil {
		t.Fatal(err)
	}
	var xml string
	if err := conn.Object("org.libvirt", path).Call("org.libvirt.Network.GetXMLDesc", 0, uint32(0)).Store(&xml); err != nil {
		t.Fatal(err)
	}
	if cli := d.mustCtl("net-dumpxml", "iso"); cli != xml+"\n" {
		t.Fatalf("D-Bus XML differs from the CLI's:\n%s\n---\n%s", xml, cli)
	}
	// A D-Bus Destroy is seen by the CLI.
	if err := conn.Object("org.libvirt", path).Call("org.libvirt.Network.Destroy", 0).Err; err != nil {
		t.Fatal(err)
	}
	if out := d.mustCtl("net-list", "--name"); out != "\n" {
		t.Fatalf("still active after D-Bus Destroy: %q", out)
	}
}

// TestDBusTestDriver: vnetd --driver test serves libvirt's test:///default
// fixture at /org/libvirt/Test and touches nothing on the host.
func TestDBusTestDriver(t *testing.T) {
	netnstest.RequireRoot(t)
	addr := privateBus(t)
	host := netnstest.New(t, "tdrv")
	before := host.MustRun("ip", "-o", "link") + host.MustRun("nft", "list", "ruleset")
	d := newDaemon(t, host)
	d.start("--driver", "test", "--dbus", addr)
	conn := busClient(t, addr)
	waitName(t, conn)
	var paths []dbus.ObjectPath
	if err := conn.Object("org.libvirt", "/org/libvirt/Test").Call("org.libvirt.Connect.ListNetworks", 0, uint32(0)).Store(&paths); err != nil {
		t.Fatal(err)
	}
	want := dbus.ObjectPath("/org/libvirt/Test/network/_dd8fe884_6c02_601e_7551_cca97df1c5df")
	if len(paths) != 1 || paths[0] != want {
		t.Fatalf("ListNetworks = %v, want [%s]", paths, want)
	}
	if out := d.mustCtl("net-list", "--all"); !strings.Contains(out, " default   active   no          yes") {
		t.Fatalf("net-list:\n%s", out)
	}
	if err := conn.Object("org.libvirt", want).Call("org.libvirt.Network.Destroy", 0).Err; err != nil {
		t.Fatal(err)
	}
	if err := conn.Object("org.libvirt", want).Call("org.libvirt.Network.Create", 0).Err; err != nil {
		t.Fatal(err)
	}
	after := host.MustRun("ip", "-o", "link") + host.MustRun("nft", "list", "ruleset")
	if before != after {
		t.Fatalf("the test driver changed the host:\n%s\n---\n%s", before, after)
	}
}
