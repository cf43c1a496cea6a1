// Package netnstest creates throwaway network namespaces for tests that touch
// the kernel. Every namespace is named with the prefix "vnt-" so a leftover one
// is recognisable, and is deleted (with every process still inside it) when the
// test ends, pass or fail. Nothing here ever touches the root namespace.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "vnt-"

// NS is a named network namespace owned by one test.
type NS struct {
	name string
	t    testing.TB
}

// RequireRoot skips the test unless it runs as root with `ip` available.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

// New creates a fresh namespace "vnt-<tag>-<random>" with loopback up and
// registers its deletion with t.Cleanup.
func New(t testing.TB, tag string) *NS {
	t.Helper()
	RequireRoot(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := Prefix + tag + "-" + hex.EncodeToString(b)
	if len(name) > 40 {
		name = name[:40]
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{name: name, t: t}
	t.Cleanup(ns.Delete)
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

// Name returns the namespace name (usable with `ip netns exec`).
func (ns *NS) Name() string { return ns.name }

// Path returns the bind-mount path of the namespace.
func (ns *NS) Path() string { return "/run/netns/" + ns.name }

// Delete kills every process left in the namespace and removes it. It is
// idempotent and is called automatically at the end of the test.
func (ns *NS) Delete() {
	KillAll(ns.name)
	_ = exec.Command("ip", "netns", "del", ns.name).Run()
}

// KillAll sends SIGKILL to every process whose network namespace is name.
func KillAll(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Do runs f with the calling goroutine's OS thread switched into the namespace.
// Code in f must not start goroutines that expect to be in the namespace.
func (ns *NS) Do(f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns.name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", ns.name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", ns.name, err)
	}
	defer func() {
		// If we cannot switch back, keep the thread locked: Go then kills it
		// when the goroutine ends instead of reusing a thread in the wrong netns.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return f()
}

// Handle opens the namespace; the caller closes it. Useful for netlink
// handles (netlink.NewHandleAt) and nftables connections (WithNetNSFd).
func (ns *NS) Handle() (netns.NsHandle, error) { return netns.GetFromName(ns.name) }

// Command returns an exec.Cmd running argv inside the namespace.
func (ns *NS) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.name}, argv...)...)
}

// Run runs argv inside the namespace and returns its combined output.
func (ns *NS) Run(argv ...string) (string, error) {
	out, err := ns.Command(argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), ns.name, err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(argv ...string) string {
	ns.t.Helper()
	out, err := ns.Run(argv...)
	if err != nil {
		ns.t.Fatal(err)
	}
	return out
}

// Veth creates a veth pair with one end (aName) in ns and the other (bName) in
// peer, both up.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	a.MustRun("ip", "link", "add", aName, "type", "veth", "peer", "name", bName, "netns", b.name)
	a.MustRun("ip", "link", "set", aName, "up")
	b.MustRun("ip", "link", "set", bName, "up")
}
