package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// TestSystemdNotify: under Type=notify vnetd says READY=1 only after the
// default network was autostarted, pings the watchdog, and says STOPPING=1 on
// SIGTERM.
func TestSystemdNotify(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "sd")
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 32)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	d := newDaemon(t, host)
	d.env = []string{"NOTIFY_SOCKET=" + sockPath, "WATCHDOG_USEC=400000"}
	d.start()
	want := func(what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, what) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q from vnetd", what)
			}
		}
	}
	want("READY=1")
	// READY comes after autostart: the default network is already up.
	if out := d.mustCtl("net-list", "--name"); out != "default\n\n" {
		t.Fatalf("active networks at READY: %q", out)
	}
	want("WATCHDOG=1")
	d.stop()
	want("STOPPING=1")
}

// TestMakeInstall: make install puts every file in place under DESTDIR and
// make uninstall removes them all.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	dest := t.TempDir()
	root, _ := filepath.Abs("..")
	run := func(args ...string) {
		cmd := exec.Command("make", append([]string{"-C", root}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
	}
	run("install", "DESTDIR="+dest, "BIN="+t.TempDir())
	for _, f := range []string{
		"usr/local/sbin/vnetd", "usr/local/bin/vnetctl", "etc/systemd/system/vnetd.service",
		"usr/lib/tmpfiles.d/vnetd.conf", "usr/share/dbus-1/system.d/org.libvirt.conf",
		"usr/share/dbus-1/system-services/org.libvirt.service", "usr/local/share/man/man8/vnetd.8",
		"usr/local/share/man/man1/vnetctl.1", "usr/share/bash-completion/completions/vnetctl",
	} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %s", f)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/vnetd.service"))
	for _, line := range []string{"Type=notify", "KillMode=process", "WatchdogSec="} {
		if !strings.Contains(string(unit), line) {
			t.Errorf("unit lacks %s", line)
		}
	}
	run("uninstall", "DESTDIR="+dest)
	filepath.Walk(dest, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			t.Errorf("left after uninstall: %s", p)
		}
		return nil
	})
}
