package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// PREFIX, under names that leave libvirt-dbus's files alone, with the unit's
// ExecStart following PREFIX; make uninstall removes exactly those files.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	root, _ := filepath.Abs("..")
	bin := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("make", append([]string{"-C", root, "BIN=" + bin}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	const (
		policy     = "usr/share/dbus-1/system.d/vnet-org.libvirt.conf"
		activation = "usr/share/dbus-1/system-services/org.libvirt.service"
		unitPath   = "etc/systemd/system/vnetd.service"
	)
	installed := []string{
		"opt/x/sbin/vnetd", "opt/x/bin/vnetctl", unitPath,
		"opt/x/libexec/vnet-bridge-helper", "opt/x/libexec/vnet-qemu-ifup", "opt/x/libexec/vnet-qemu-ifdown",
		"usr/lib/tmpfiles.d/vnetd.conf", policy, activation,
		"opt/x/share/man/man8/vnetd.8", "opt/x/share/man/man1/vnetctl.1",
		"usr/share/bash-completion/completions/vnetctl",
	}

	t.Run("alone", func(t *testing.T) {
		dest := t.TempDir()
		run("install", "DESTDIR="+dest, "PREFIX=/opt/x")
		var got []string
		filepath.Walk(dest, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				rel, _ := filepath.Rel(dest, p)
				got = append(got, rel)
			}
			return nil
		})
		slices.Sort(got)
		want := slices.Sorted(slices.Values(installed))
		if !slices.Equal(got, want) {
			t.Errorf("installed %q\nwant %q", got, want)
		}
		unit, _ := os.ReadFile(filepath.Join(dest, unitPath))
		for _, line := range []string{"ExecStart=/opt/x/sbin/vnetd\n", "Type=notify\n", "KillMode=process\n", "WatchdogSec="} {
			if !strings.Contains(string(unit), line) {
				t.Errorf("unit lacks %q:\n%s", line, unit)
			}
		}
		if strings.Contains(string(unit), "@") || strings.Contains(string(unit), "Template") {
			t.Errorf("unit keeps template text:\n%s", unit)
		}
		if info, err := os.Stat(filepath.Join(dest, unitPath)); err != nil || info.Mode().Perm() != 0o644 {
			t.Errorf("unit mode: %v %v", info, err)
		}
		run("uninstall", "DESTDIR="+dest, "PREFIX=/opt/x")
		filepath.Walk(dest, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				t.Errorf("left after uninstall: %s", p)
			}
			return nil
		})
	})

	// Where libvirt-dbus is installed, its policy and activation file stay
	// as they are, through install and uninstall.
	t.Run("beside libvirt-dbus", func(t *testing.T) {
		dest := t.TempDir()
		theirs := map[string]string{
			"usr/share/dbus-1/system.d/org.libvirt.conf": "<busconfig/>\n",
			activation: "[D-BUS Service]\nName=org.libvirt\nExec=/usr/sbin/libvirt-dbus\nUser=libvirtdbus\nSystemdService=libvirt-dbus.service\n",
		}
		for f, content := range theirs {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dest, f)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dest, f), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out := run("install", "DESTDIR="+dest, "PREFIX=/opt/x")
		if !strings.Contains(out, "left as it is") {
			t.Errorf("make install does not say it left libvirt-dbus's activation file:\n%s", out)
		}
		check := func(when string) {
			t.Helper()
			for f, content := range theirs {
				b, err := os.ReadFile(filepath.Join(dest, f))
				if err != nil || string(b) != content {
					t.Errorf("%s: libvirt-dbus's %s changed: %q %v", when, f, b, err)
				}
			}
		}
		check("after install")
		if _, err := os.Stat(filepath.Join(dest, policy)); err != nil {
			t.Errorf("vnet's policy not installed: %v", err)
		}
		run("uninstall", "DESTDIR="+dest, "PREFIX=/opt/x")
		check("after uninstall")
		if _, err := os.Stat(filepath.Join(dest, policy)); err == nil {
			t.Errorf("vnet's policy left after uninstall")
		}
	})
}
