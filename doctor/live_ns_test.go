package doctor

import (
	"net/netip"
	"strings"
	"testing"

	"vnet/internal/netnstest"
)

// Checks whose faults vnetd itself repairs at once (forwarding sysctls, a
// port's TAP) are tested here on the package, with Live in a namespace
// the test builds by hand: a bridge "vbr-t" (10.66.0.1/24), a guest on a
// veth "tapg" in it, and an upstream behind "up0".

type lab struct {
	host, guest, up *netnstest.NS
}

func newLab(t *testing.T) *lab {
	t.Helper()
	netnstest.RequireRoot(t)
	l := &lab{host: netnstest.New(t, "dlh"), guest: netnstest.New(t, "dlg"), up: netnstest.New(t, "dlu")}
	h := l.host
	h.MustRun("ip", "link", "add", "vbr-t", "type", "bridge")
	// An MTU set by hand (a change: setting the current value is a no-op)
	// keeps the bridge's MTU when a port's changes.
	h.MustRun("ip", "link", "set", "vbr-t", "mtu", "1400")
	h.MustRun("ip", "link", "set", "vbr-t", "mtu", "1500", "up")
	h.MustRun("ip", "addr", "add", "10.66.0.1/24", "dev", "vbr-t")
	netnstest.Veth(t, h, "tapg", l.guest, "eth0")
	h.MustRun("ip", "link", "set", "tapg", "master", "vbr-t")
	l.guest.MustRun("ip", "addr", "add", "10.66.0.2/24", "dev", "eth0")
	l.guest.MustRun("ip", "route", "add", "default", "via", "10.66.0.1")
	netnstest.Veth(t, h, "up0", l.up, "eth0")
	h.MustRun("ip", "addr", "add", "172.31.254.1/24", "dev", "up0")
	l.up.MustRun("ip", "addr", "add", "172.31.254.2/24", "dev", "eth0")
	l.up.MustRun("ip", "route", "add", "10.66.0.0/24", "via", "172.31.254.1")
	return l
}

func (l *lab) network() Network {
	return Network{Name: "t", Bridge: "vbr-t", Active: true, Forward: "route",
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.66.0.1/24")}, TAPs: []string{"tapg"}}
}

// run runs the check of id on the thread in the host namespace (Run's
// goroutines would leave it) and returns its problems.
func (l *lab) run(t *testing.T, n Network, id string) []Result {
	t.Helper()
	checks := map[string]func(Host, []Network) []Result{
		CheckIPForward: checkSysctls,
		CheckAcceptRA:  checkSysctls,
		CheckGuestTAP:  checkGuests,
	}
	var rs []Result
	if err := l.host.Do(func() error {
		rs = checks[id](&Live{}, []Network{n})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var out []Result
	for _, r := range Problems(rs) {
		if r.ID == id {
			out = append(out, r)
		}
	}
	return out
}

func (l *lab) ping(args ...string) error {
	_, err := l.guest.Run(append([]string{"ping", "-c", "3", "-i", "0.2", "-W", "1"}, args...)...)
	return err
}

func wantProblem(t *testing.T, ps []Result, words ...string) {
	t.Helper()
	for _, p := range ps {
		all := p.Fix != ""
		for _, w := range words {
			all = all && strings.Contains(p.Detail, w)
		}
		if all {
			return
		}
	}
	t.Fatalf("no problem naming %q in %+v", words, ps)
}

// TestLiveIPForward: with net.ipv4.ip_forward=0 the guest cannot reach
// the upstream; the check names the sysctl; with 1 it can and the check
// passes.
func TestLiveIPForward(t *testing.T) {
	l := newLab(t)
	l.host.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=0")
	if err := l.ping("172.31.254.2"); err == nil {
		t.Fatal("guest reaches the upstream without forwarding")
	}
	wantProblem(t, l.run(t, l.network(), CheckIPForward), "net.ipv4.ip_forward is 0")
	l.host.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	if err := l.ping("172.31.254.2"); err != nil {
		t.Fatalf("guest → upstream with forwarding: %v", err)
	}
	if ps := l.run(t, l.network(), CheckIPForward); len(ps) != 0 {
		t.Fatalf("problems with forwarding on: %+v", ps)
	}
}

// TestLiveGuestTAP: a port's TAP off the bridge, down, with another MTU,
// or gone cuts its guest off (ping, or a full-size ping for the MTU); the
// check names the TAP and what is wrong; put right, the check passes.
func TestLiveGuestTAP(t *testing.T) {
	l := newLab(t)
	if err := l.ping("10.66.0.1"); err != nil {
		t.Fatalf("guest → bridge: %v", err)
	}
	for _, c := range []struct {
		name      string
		fault     []string
		repair    []string
		words     []string
		pingExtra []string
	}{
		{"nomaster", []string{"ip", "link", "set", "tapg", "nomaster"}, []string{"ip", "link", "set", "tapg", "master", "vbr-t"}, []string{"port TAP tapg is on no bridge, not on vbr-t"}, nil},
		{"down", []string{"ip", "link", "set", "tapg", "down"}, []string{"ip", "link", "set", "tapg", "up"}, []string{"port TAP tapg is down"}, nil},
		{"mtu", []string{"ip", "link", "set", "tapg", "mtu", "1400"}, []string{"ip", "link", "set", "tapg", "mtu", "1500"}, []string{"port TAP tapg has MTU 1400, bridge vbr-t has 1500"}, []string{"-s", "1450", "-M", "do"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Full-size pings need the guest's MTU to allow them.
			l.host.MustRun(c.fault...)
			if err := l.ping(append(c.pingExtra, "10.66.0.1")...); err == nil {
				t.Fatal("guest still reaches the bridge")
			}
			wantProblem(t, l.run(t, l.network(), CheckGuestTAP), c.words...)
			l.host.MustRun(c.repair...)
			if err := l.ping(append(c.pingExtra, "10.66.0.1")...); err != nil {
				t.Fatalf("guest → bridge once repaired: %v", err)
			}
			if ps := l.run(t, l.network(), CheckGuestTAP); len(ps) != 0 {
				t.Fatalf("problems once repaired: %+v", ps)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		n := l.network()
		n.TAPs = []string{"vnet-gone"}
		wantProblem(t, l.run(t, n, CheckGuestTAP), "port TAP vnet-gone is missing")
	})
}

// TestLiveAcceptRA: with IPv6 forwarding on, an uplink whose routes came
// from router advertisements and whose accept_ra is 1 is named; with
// accept_ra=2 the check passes. (The loss itself, minutes later when the
// routes expire, is the kernel's and not reproduced here.)
func TestLiveAcceptRA(t *testing.T) {
	l := newLab(t)
	l.host.MustRun("sysctl", "-qw", "net.ipv6.conf.up0.disable_ipv6=0")
	l.host.MustRun("ip", "-6", "route", "add", "2001:db8:1::/64", "dev", "up0", "proto", "ra")
	l.host.MustRun("sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=1")
	l.host.MustRun("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	ps := l.run(t, l.network(), CheckAcceptRA)
	wantProblem(t, ps, "up0 has routes learned from router advertisements but net.ipv6.conf.up0.accept_ra is 1")
	if ps[0].Fix != "sysctl -w net.ipv6.conf.up0.accept_ra=2" {
		t.Fatalf("fix: %q", ps[0].Fix)
	}
	l.host.MustRun("sysctl", "-qw", "net.ipv6.conf.up0.accept_ra=2")
	if ps := l.run(t, l.network(), CheckAcceptRA); len(ps) != 0 {
		t.Fatalf("problems with accept_ra=2: %+v", ps)
	}
}
