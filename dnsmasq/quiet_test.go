package dnsmasq

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wakeups is the number of times a process went to sleep voluntarily (each
// wake-up of dnsmasq's main loop ends with one).
func wakeups(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no voluntary_ctxt_switches")
	return 0
}

// TestQuietNetlink: with its netlink socket filtered, dnsmasq sleeps through
// the address and route events of other bridges, and still serves DNS and
// sees its own bridge's events.
func TestQuietNetlink(t *testing.T) {
	e := newNSEnv(t)
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(testNetwork("q", "vm.test")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("q") })
	pid := m.Pid("q")
	others := func(from, n int) {
		for i := from; i < from+n; i++ {
			br := fmt.Sprintf("o%d", i)
			e.ns.MustRun("ip", "link", "add", br, "type", "bridge")
			e.ns.MustRun("ip", "addr", "add", fmt.Sprintf("10.78.%d.1/24", i), "dev", br)
			e.ns.MustRun("ip", "link", "set", br, "up")
		}
		time.Sleep(200 * time.Millisecond)
	}
	before := wakeups(t, pid)
	others(0, 10)
	loud := wakeups(t, pid) - before
	var ifindex int
	if err := e.ns.Do(func() error {
		ifi, err := net.InterfaceByName("br0")
		if err == nil {
			ifindex = ifi.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := quietNetlink(pid, ifindex); err != nil {
		t.Fatal(err)
	}
	before = wakeups(t, pid)
	others(10, 10)
	quiet := wakeups(t, pid) - before
	t.Logf("wake-ups for 10 other bridges: %d unfiltered, %d filtered", loud, quiet)
	if loud < 10 || quiet > 2 {
		t.Errorf("wake-ups for 10 other bridges: %d unfiltered, %d filtered; want ≥ 10 and ≤ 2", loud, quiet)
	}
	before = wakeups(t, pid)
	e.ns.MustRun("ip", "addr", "add", "10.77.1.1/24", "dev", "br0")
	time.Sleep(200 * time.Millisecond)
	if own := wakeups(t, pid) - before; own == 0 {
		t.Error("no wake-up for an address of its own bridge")
	}
	if got := e.dig(t, "vm.test"); got != "10.77.0.50" {
		t.Errorf("vm.test = %q after filtering, want 10.77.0.50", got)
	}
}

// TestMuteNetlink: with its netlink socket out of every group, dnsmasq
// sleeps through all address and route events, its own bridge's too, and
// still serves DNS.
func TestMuteNetlink(t *testing.T) {
	e := newNSEnv(t)
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(testNetwork("m", "vm.test")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("m") })
	pid := m.Pid("m")
	if err := muteNetlink(pid); err != nil {
		t.Fatal(err)
	}
	if err := muteNetlink(pid); err == nil {
		t.Error("a muted socket was found again as one with multicast groups")
	}
	before := wakeups(t, pid)
	for i := range 5 {
		br := fmt.Sprintf("o%d", i)
		e.ns.MustRun("ip", "link", "add", br, "type", "bridge")
		e.ns.MustRun("ip", "addr", "add", fmt.Sprintf("10.78.%d.1/24", i), "dev", br)
		e.ns.MustRun("ip", "link", "set", br, "up")
	}
	e.ns.MustRun("ip", "addr", "add", "10.77.1.1/24", "dev", "br0")
	time.Sleep(200 * time.Millisecond)
	if n := wakeups(t, pid) - before; n > 1 {
		t.Errorf("%d wake-ups for address and route events after muting, want at most 1", n)
	}
	if got := e.dig(t, "vm.test"); got != "10.77.0.50" {
		t.Errorf("vm.test = %q after muting, want 10.77.0.50", got)
	}
}
