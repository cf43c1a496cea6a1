package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childOf returns the first child of pid, 0 while it has none. Each
// thread lists the children it forked (Go forks from any thread).
func childOf(pid int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		if f := strings.Fields(string(data)); len(f) > 0 {
			c, _ := strconv.Atoi(f[0])
			return c
		}
	}
	return 0
}

// stealFD duplicates descriptor fd of process pid into the test
// (pidfd_getfd; root may).
func stealFD(pid, fd int) (*os.File, error) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pfd)
	n, err := unix.PidfdGetfd(pfd, fd, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_getfd %d of %d: %w", fd, pid, err)
	}
	return os.NewFile(uintptr(n), fmt.Sprintf("fd %d of %d", fd, pid)), nil
}

// TestSessionPasstAttach: vnetctl net-port-attach runs a command with a
// connection to the port's passt socket as descriptor 3 (the
// socketpair/fd form of -netdev stream). The command here is sleep; the
// test takes its descriptor 3 (pidfd_getfd) and acts as the guest on it:
// passt answers ARP through the keeper. Signals reach the command and its
// status is vnetctl's; the port stays for the next guest. With QEMU
// installed, QEMU 7.2 accepts -netdev stream,addr.type=fd,addr.str=3 from
// net-port-attach (CPU never started) and shows the stream netdev.
func TestSessionPasstAttach(t *testing.T) {
	_, _, s := passtHost(t, "attach")
	s.mustCtl("net-define", s.file("user.xml", fmt.Sprintf(userNetXML, 2222)))
	s.mustCtl("net-start", "usernet")
	const uuid = "5d744f21-ba4a-4d6e-bdb2-30a35ff320a7"
	s.mustCtl("net-port-create", "usernet", s.file("port.xml", portXML(uuid, "52:54:00:12:34:56", "")))

	vnetctl := filepath.Join(binDir, "vnetctl")
	attach := s.asUser(vnetctl, "net-port-attach", "usernet", uuid, "--", "sleep", "60")
	var out strings.Builder
	attach.Stdout, attach.Stderr = &out, &out
	t0 := time.Now()
	if err := attach.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- attach.Wait() }()
	defer func() {
		_ = attach.Process.Kill()
		<-done
	}()
	var child int
	if !waitFor(10*time.Second, func() bool {
		child = childOf(attach.Process.Pid)
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", child))
		return child != 0 && strings.HasPrefix(target, "socket:")
	}) {
		t.Fatalf("no command with a socket on descriptor 3:\n%s", out.String())
	}
	f, err := stealFD(child, 3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := arpProbe(c, 10*time.Second); err != nil {
		t.Fatalf("no ARP reply through the attached descriptor: %v\n%s", err, out.String())
	}
	t.Logf("net-port-attach: passt answered ARP on the command's descriptor 3 %v after vnetctl started", time.Since(t0).Round(time.Millisecond))
	passtPid := s.passtPid(uuid)
	if passtPid == 0 {
		t.Fatal("no passt for the attached command")
	}

	// SIGTERM to vnetctl reaches the command; its status is vnetctl's.
	_ = attach.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
			t.Fatalf("vnetctl after SIGTERM: %v, want exit status %d (the command's signal)\n%s", err, 128+int(syscall.SIGTERM), out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("vnetctl still running 10 s after SIGTERM")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", child)); err == nil {
		t.Fatalf("the command (pid %d) outlived vnetctl's SIGTERM", child)
	}
	// The guest's last descriptor (the test's copy) closes: passt ends,
	// the port stays.
	c.Close()
	if !waitFor(10*time.Second, func() bool { return s.passtPid(uuid) == 0 }) {
		t.Fatal("passt still running after the attached guest left")
	}
	if _, _, code := s.ctl("net-port-attach", "usernet", uuid, "--", "sh", "-c", "exit 7"); code != 7 {
		t.Fatalf("net-port-attach -- sh -c 'exit 7': exit %d", code)
	}
	// Nested, for two NICs: the outer connection on 3 passes through the
	// inner vnetctl, whose own goes on 4.
	const uuid2 = "5d744f21-ba4a-4d6e-bdb2-30a35ff320a8"
	s.mustCtl("net-port-create", "usernet", s.file("port2.xml", portXML(uuid2, "52:54:00:12:34:57", "")))
	if out, errs, code := s.ctl("net-port-attach", "usernet", uuid2, "--", vnetctl, "net-port-attach", "usernet", uuid, "--fd", "4", "--",
		"sh", "-c", "test -S /proc/self/fd/3 && test -S /proc/self/fd/4"); code != 0 {
		t.Fatalf("nested net-port-attach: exit %d (descriptors 3 and 4 not both sockets)\n%s%s", code, out, errs)
	}

	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return
	}
	t.Run("qemu", func(t *testing.T) {
		qmp := filepath.Join(s.runtime, "qmp.sock")
		qemu := s.asUser(vnetctl, "net-port-attach", "usernet", uuid, "--",
			"qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-display", "none", "-monitor", "none", "-S",
			"-qmp", "unix:"+qmp+",server=on,wait=off",
			"-netdev", "stream,id=n0,addr.type=fd,addr.str=3", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56")
		var qout strings.Builder
		qemu.Stdout, qemu.Stderr = &qout, &qout
		if err := qemu.Start(); err != nil {
			t.Fatal(err)
		}
		qdone := make(chan error, 1)
		go func() { qdone <- qemu.Wait() }()
		defer func() {
			_ = qemu.Process.Kill()
			<-qdone
		}()
		info, err := qmpHuman(qmp, "info network", qdone)
		if err != nil {
			t.Fatalf("%v\n%s", err, qout.String())
		}
		if !strings.Contains(info, "n0: index=0,type=stream") || strings.Contains(info, "error") {
			t.Fatalf("QEMU's info network:\n%s", info)
		}
		if !waitFor(10*time.Second, func() bool { return s.passtPid(uuid) != 0 }) {
			t.Fatal("no passt for QEMU's connection")
		}
		t.Logf("QEMU 7.2 took -netdev stream,addr.type=fd,addr.str=3 from net-port-attach: %s", strings.TrimSpace(info))
		_ = qemu.Process.Signal(syscall.SIGTERM)
		select {
		case <-qdone:
			qdone <- nil
		case <-time.After(10 * time.Second):
			t.Fatal("QEMU still running 10 s after SIGTERM to vnetctl")
		}
		if !waitFor(10*time.Second, func() bool { return s.passtPid(uuid) == 0 }) {
			t.Fatal("passt still running after QEMU ended")
		}
	})
}

// qmpHuman runs a human monitor command over QMP and returns its output;
// it gives up when QEMU ends first (exited).
func qmpHuman(path, command string, exited chan error) (string, error) {
	var c net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		var err error
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			return "", fmt.Errorf("QEMU ended before its QMP socket answered: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no QMP socket %s", path)
		}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		return "", err
	}
	cmd, _ := json.Marshal(map[string]any{"execute": "human-monitor-command", "arguments": map[string]string{"command-line": command}})
	if _, err := c.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n" + string(cmd) + "\n")); err != nil {
		return "", err
	}
	answers := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  any             `json:"error"`
		}
		if json.Unmarshal([]byte(line), &msg) != nil || (msg.Return == nil && msg.Error == nil) {
			continue // an event
		}
		if msg.Error != nil {
			return "", fmt.Errorf("QMP: %s", line)
		}
		if answers++; answers == 2 {
			var s string
			_ = json.Unmarshal(msg.Return, &s)
			return s, nil
		}
	}
}
