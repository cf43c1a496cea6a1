package test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnet/daemon/api"
	"vnet/internal/netnstest"
)

// counters hides nftables counter values, which traffic changes.
var counters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

func ruleset(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	return counters.ReplaceAllString(ns.MustRun("nft", "list", "ruleset"), "counter")
}

func dnsmasqPid(t *testing.T, d *daemon, network string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.runDir, "dnsmasq", network+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid > 0 && syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

func ifindex(t *testing.T, ns *netnstest.NS, link string) string {
	t.Helper()
	out, err := ns.Run("cat", "/sys/class/net/"+link+"/ifindex")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// upGuestWithLease starts vnetd with the default network, plugs a guest that
// gets a lease, and returns everything.
func upGuestWithLease(t *testing.T) (*netnstest.NS, *netnstest.NS, *daemon, *guest) {
	host := netnstest.New(t, "host")
	up := addUpstream(t, host)
	d := newDaemon(t, host)
	d.start()
	g := addGuest(t, host, "virbr0", "g")
	g.dhcp(t)
	return host, up, d, g
}

// TestRestartUnderPing: a guest pings upstream through NAT every 10 ms while
// vnetd is restarted 10 times (SIGTERM and kill -9 alternately): no ping is
// lost, and dnsmasq's pid, the bridge's ifindex and the ruleset are unchanged.
func TestRestartUnderPing(t *testing.T) {
	netnstest.RequireRoot(t)
	host, _, d, g := upGuestWithLease(t)
	pid := dnsmasqPid(t, d, "default")
	idx := ifindex(t, host, "virbr0")
	rules := ruleset(t, host)
	if pid == 0 || idx == "" {
		t.Fatalf("network not up: pid %d ifindex %q", pid, idx)
	}

	ping := g.Command("ping", "-i", "0.01", "-W", "1", "172.31.255.2")
	var out strings.Builder
	ping.Stdout = &out
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	// Each phase waits for replies instead of a fixed time: the guest's
	// pings flowed before, between and after the restarts.
	waitReplies := func(more int) {
		t.Helper()
		want := echoReplies(t, g.NS) + more
		deadline := time.Now().Add(10 * time.Second)
		for got := echoReplies(t, g.NS); got < want; got = echoReplies(t, g.NS) {
			if time.Now().After(deadline) {
				t.Fatalf("guest got %d echo replies, waited for %d", got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitReplies(10)
	for i := 0; i < 10; i++ {
		if i%2 == 0 {
			d.stop()
		} else {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
			d.cmd = nil
		}
		d.start()
		waitReplies(5)
	}
	waitReplies(10)
	_ = ping.Process.Signal(syscall.SIGINT)
	_ = ping.Wait()
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("ping output: %s", out.String())
	}
	sent, got := m[1], m[2]
	t.Logf("pings sent %s, received %s over 10 restarts", sent, got)
	if sent != got || sent == "0" {
		t.Errorf("lost pings: %s sent, %s received", sent, got)
	}
	if p := dnsmasqPid(t, d, "default"); p != pid {
		t.Errorf("dnsmasq pid %d, was %d", p, pid)
	}
	if i := ifindex(t, host, "virbr0"); i != idx {
		t.Errorf("virbr0 ifindex %s, was %s", i, idx)
	}
	if r := ruleset(t, host); r != rules {
		t.Errorf("ruleset changed:\n%s\n---\n%s", rules, r)
	}
	// Adoption found everything in place: nothing was re-created.
	if strings.Contains(d.log.String(), "restored what was missing") {
		t.Errorf("a restart re-created parts of the network:\n%s", d.log)
	}
}

// echoReplies returns how many ICMP echo replies the namespace received
// (the kernel's count, Icmp InEchoReps of /proc/net/snmp).
func echoReplies(t *testing.T, ns *netnstest.NS) int {
	t.Helper()
	out, err := ns.Run("cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InEchoReps" && i < len(f) {
				v, err := strconv.Atoi(f[i])
				if err != nil {
					t.Fatalf("/proc/net/snmp: %q", line)
				}
				return v
			}
		}
	}
	t.Fatalf("no Icmp InEchoReps in /proc/net/snmp:\n%s", out)
	return 0
}

// events subscribes to every event of the daemon (repairs included).
func events(t *testing.T, d *daemon) <-chan api.Event {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.socket())
	}}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://vnetd/v1/events?types=all", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan api.Event, 64)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var e api.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				ch <- e
			}
		}
	}()
	return ch
}

// TestDriftRepair: whatever someone else removes of an active network is
// restored within 2 s, with a log line and a "Repaired" event; the guest keeps
// its connectivity. Where the kernel lets vnetd own its nftables table, other
// processes cannot touch it: `nft flush ruleset` leaves it and `nft delete
// table` is refused, so there is nothing to repair.
func TestDriftRepair(t *testing.T) {
	netnstest.RequireRoot(t)
	host, _, d, g := upGuestWithLease(t)
	ev := events(t, d)
	killed := 0
	table := func() string {
		return counters.ReplaceAllString(host.MustRun("nft", "list", "table", "ip", virbr0Table), "counter")
	}
	owned := strings.Contains(table(), "flags owner")
	t.Logf("vnetd owns its nftables table: %v", owned)
	healthy := func() bool {
		if p := dnsmasqPid(t, d, "default"); p == 0 || p == killed {
			return false
		}
		addrs, err := host.Run("ip", "-o", "addr", "show", "virbr0")
		if err != nil || !strings.Contains(addrs, "192.168.122.1/24") {
			return false
		}
		if flags, err := host.Run("ip", "-o", "link", "show", "virbr0"); err != nil || !regexp.MustCompile(`[<,]UP[,>]`).MatchString(flags) {
			return false
		}
		r, err := host.Run("nft", "list", "table", "ip", virbr0Table)
		return err == nil && strings.Contains(r, "masquerade")
	}
	drifts := []struct {
		name string
		do   func()
	}{
		{"nft flush ruleset", func() { host.MustRun("nft", "flush", "ruleset") }},
		{"delete our table", func() {
			out, err := host.Run("nft", "delete", "table", "ip", virbr0Table)
			switch {
			case owned && (err == nil || !strings.Contains(out, "Operation not permitted")):
				t.Errorf("deleting the owned table: %v %s, want refused (EPERM)", err, out)
			case !owned && err != nil:
				t.Fatal(err)
			}
		}},
		{"remove bridge address", func() { host.MustRun("ip", "addr", "del", "192.168.122.1/24", "dev", "virbr0") }},
		{"set bridge down", func() { host.MustRun("ip", "link", "set", "virbr0", "down") }},
		{"kill dnsmasq", func() {
			killed = dnsmasqPid(t, d, "default")
			_ = syscall.Kill(killed, syscall.SIGKILL)
		}},
		{"delete bridge", func() { host.MustRun("ip", "link", "del", "virbr0") }},
	}
	for _, dr := range drifts {
		t.Run(strings.ReplaceAll(dr.name, " ", "_"), func(t *testing.T) {
			if !healthy() {
				t.Fatal("network not healthy before the drift")
			}
			if owned && (dr.name == "nft flush ruleset" || dr.name == "delete our table") {
				before := table()
				dr.do()
				if after := table(); after != before || !healthy() {
					t.Fatalf("owned table changed by %s:\n%s\n---\n%s", dr.name, before, after)
				}
				select {
				case e := <-ev:
					t.Fatalf("event %+v, want none: nothing to repair", e)
				case <-time.After(300 * time.Millisecond):
				}
				return
			}
			dr.do()
			start := time.Now()
			for !healthy() {
				if time.Since(start) > 2*time.Second {
					t.Fatalf("not repaired within 2 s; vnetd log:\n%s", d.log)
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("%s: repaired after %v", dr.name, time.Since(start).Round(time.Millisecond))
			if dr.name == "kill dnsmasq" {
				return // dnsmasq's own supervision restarts it; no network repair event
			}
			select {
			case e := <-ev:
				if e.Event != "Repaired" || e.Network != "default" {
					t.Fatalf("event %+v, want Repaired for default", e)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("no Repaired event")
			}
		})
	}
	if !strings.Contains(d.log.String(), "repaired network drift") {
		t.Error("no log line names the repair")
	}
	// The guest port was on the deleted bridge; re-plug it and check the
	// repaired network works end to end.
	host.MustRun("ip", "link", "set", g.port, "master", "virbr0")
	g.MustRun("ping", "-c", "1", "-W", "2", "192.168.122.1")
	g.MustRun("ping", "-c", "1", "-W", "2", "172.31.255.2")
	// dnsmasq was restarted for the new bridge: DHCP answers on it.
	g.dhcp(t)
}

// virbr0Table is the nftables bucket table of bridge virbr0: "vnet_" and
// FNV-1a 32 of the name mod 16 (firewall's nftTable; TestDriftRepair fails
// on a wrong value, as the table would be missing).
const virbr0Table = "vnet_e"
