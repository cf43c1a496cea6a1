package doctor

import (
	"context"
	"net/netip"
	"sync"
	"testing"
)

// countingHost counts the reads of a fakeHost (the checks run
// concurrently).
type countingHost struct {
	*fakeHost
	mu    sync.Mutex
	reads map[string]int
}

func (c *countingHost) count(what string) {
	c.mu.Lock()
	c.reads[what]++
	c.mu.Unlock()
}

func (c *countingHost) Firewall() ([]*Table, error) {
	c.count("firewall")
	return c.fakeHost.Firewall()
}
func (c *countingHost) Routes() ([]Route, error) { c.count("routes"); return c.fakeHost.Routes() }
func (c *countingHost) Addrs() ([]Addr, error)   { c.count("addrs"); return c.fakeHost.Addrs() }
func (c *countingHost) Link(name string) Link    { c.count("link " + name); return c.fakeHost.Link(name) }
func (c *countingHost) RouteDev(dst netip.Addr) string {
	c.count("routedev " + dst.String())
	return c.fakeHost.RouteDev(dst)
}
func (c *countingHost) Sysctl(path string) (string, error) {
	c.count("sysctl " + path)
	return c.fakeHost.Sysctl(path)
}

// One run reads each host-wide fact once, however many networks and checks
// need it: ip_forward for two forwarding networks, the routes for the
// overlap and the accept_ra checks, each link and route lookup.
func TestRunReadsHostFactsOnce(t *testing.T) {
	f := healthyFake()
	f.links["virbr2"] = Link{Exists: true, Index: 8, Up: true, MTU: 1500}
	f.links["vnet0"] = Link{Exists: true, Index: 9, Up: true, Master: "virbr1", MTU: 1500}
	f.sysctls["net/ipv6/conf/all/forwarding"] = "1"
	f.sysctls["net/bridge/bridge-nf-call-iptables"] = "1"
	f.routes = []Route{{Dst: netip.MustParsePrefix("2001:db8:1::/64"), Dev: "eth0", Table: tableMain, Type: "unicast", Proto: 9}}
	f.sysctls["net/ipv6/conf/eth0/accept_ra"] = "2"
	second := natNet
	second.Name, second.Bridge, second.DnsmasqPid = "m", "virbr2", 43
	second.Addrs = []netip.Prefix{netip.MustParsePrefix("192.168.2.1/24")}
	first := natNet
	first.TAPs = []string{"vnet0"}
	c := &countingHost{fakeHost: f, reads: map[string]int{}}
	rs := Run(context.Background(), c, []Network{first, second}, Options{Probe: true})
	if len(rs) == 0 {
		t.Fatal("no results")
	}
	for _, what := range []string{"sysctl net/ipv4/ip_forward", "sysctl net/ipv6/conf/all/forwarding", "sysctl net/bridge/bridge-nf-call-iptables",
		"routes", "addrs", "firewall", "link virbr1", "link virbr2", "routedev " + external4.String()} {
		if n := c.reads[what]; n != 1 {
			t.Errorf("%s read %d times, want once", what, n)
		}
	}
	for what, n := range c.reads {
		if n != 1 {
			t.Errorf("%s read %d times", what, n)
		}
	}
}
