package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"vnet/internal/ifindex"
	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

// natNetwork is a NAT network with every bridge feature ConvergeBridge handles.
func natNetwork(br string) *netxml.Network {
	return &netxml.Network{Network: libvirtxml.Network{
		Name:    "nat-" + br,
		Forward: &libvirtxml.NetworkForward{Mode: "nat"},
		Bridge:  &libvirtxml.NetworkBridge{Name: br, STP: "on", Delay: "0"},
		MAC:     &libvirtxml.NetworkMAC{Address: "52:54:00:12:34:56"},
		MTU:     &libvirtxml.NetworkMTU{Size: 9000},
		IPs: []libvirtxml.NetworkIP{
			{Address: "192.168.150.1", Netmask: "255.255.255.0"},
			{Family: "ipv6", Address: "fd00:150::1", Prefix: 64},
		},
		Routes: []libvirtxml.NetworkRoute{
			{Address: "192.168.222.0", Prefix: 24, Gateway: "192.168.150.2"},
			{Family: "ipv6", Address: "fd00:222::", Prefix: 64, Gateway: "fd00:150::2", Metric: "5"},
		},
	}}
}

// ipJSON runs `ip -j ...` in ns and decodes the list it prints.
func ipJSON(t *testing.T, ns *netnstest.NS, args ...string) []map[string]any {
	t.Helper()
	out := mustRun(t, ns, append([]string{"ip", "-j"}, args...)...)
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ip -j %v: %v: %s", args, err, out)
	}
	return v
}

// linkJSON returns `ip -d -j link show dev NAME`.
func linkJSON(t *testing.T, ns *netnstest.NS, name string) map[string]any {
	t.Helper()
	v := ipJSON(t, ns, "-d", "link", "show", "dev", name)
	if len(v) != 1 {
		t.Fatalf("ip link show %s: %v", name, v)
	}
	return v[0]
}

func bridgeData(t *testing.T, l map[string]any) map[string]any {
	t.Helper()
	li, _ := l["linkinfo"].(map[string]any)
	if li["info_kind"] != "bridge" {
		t.Fatalf("not a bridge: %v", l["linkinfo"])
	}
	d, _ := li["info_data"].(map[string]any)
	return d
}

// addrSet returns the addresses of a link as "addr/len" (link-local excluded).
func addrSet(t *testing.T, ns *netnstest.NS, name string) []string {
	t.Helper()
	var out []string
	for _, l := range ipJSON(t, ns, "addr", "show", "dev", name) {
		infos, _ := l["addr_info"].([]any)
		for _, i := range infos {
			m := i.(map[string]any)
			if m["scope"] == "link" {
				continue
			}
			out = append(out, fmt.Sprintf("%v/%v", m["local"], m["prefixlen"]))
		}
	}
	slices.Sort(out)
	return out
}

// mustRun runs argv in ns and fails t (not the test that created ns) on error.
func mustRun(t *testing.T, ns *netnstest.NS, argv ...string) string {
	t.Helper()
	out, err := ns.Run(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// plainLink creates a non-bridge link named name in ns. It is one end of a
// veth pair because the test kernel may lack the dummy module.
func plainLink(t *testing.T, ns *netnstest.NS, name string, extra ...string) {
	t.Helper()
	argv := append([]string{"ip", "link", "add", name}, extra...)
	mustRun(t, ns, append(argv, "type", "veth", "peer", "name", "p"+name)...)
}

func sysctlIn(t *testing.T, ns *netnstest.NS, name string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, ns, "sysctl", "-n", name))
}

// ensureBridge converges the bridge with the executor that changes the host.
func ensureBridge(n *netxml.Network) (bool, error) { return ConvergeBridge(n, &Apply{}) }

func do(t *testing.T, ns *netnstest.NS, f func() error) {
	t.Helper()
	if err := ns.Do(f); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureBridgeNAT(t *testing.T) {
	ns := netnstest.New(t, "br")
	const br = "vbr-nat"
	n := natNetwork(br)

	var created bool
	start := time.Now()
	do(t, ns, func() (err error) { created, err = ensureBridge(n); return err })
	t.Logf("ConvergeBridge (create): %v", time.Since(start))
	if !created {
		t.Error("created = false for a new bridge")
	}

	l := linkJSON(t, ns, br)
	if l["mtu"] != float64(9000) {
		t.Errorf("mtu = %v, want 9000", l["mtu"])
	}
	if l["address"] != "52:54:00:12:34:56" {
		t.Errorf("mac = %v", l["address"])
	}
	if flags, _ := l["flags"].([]any); !slices.Contains(flags, any("UP")) {
		t.Errorf("flags = %v, want UP", flags)
	}
	d := bridgeData(t, l)
	// STP on with delay 0: the kernel clamps the forward delay to 2 s.
	if d["stp_state"] != float64(1) || d["forward_delay"] != float64(200) {
		t.Errorf("stp_state %v forward_delay %v, want 1 200", d["stp_state"], d["forward_delay"])
	}
	wantAddrs := []string{"192.168.150.1/24", "fd00:150::1/64"}
	if got := addrSet(t, ns, br); !slices.Equal(got, wantAddrs) {
		t.Errorf("addresses = %v, want %v", got, wantAddrs)
	}
	for name, want := range map[string]string{
		"net.ipv6.conf." + br + ".disable_ipv6": "0",
		"net.ipv6.conf." + br + ".accept_ra":    "0",
		"net.ipv6.conf." + br + ".autoconf":     "0",
	} {
		if got := sysctlIn(t, ns, name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	r4 := ns.MustRun("ip", "route", "show", "192.168.222.0/24")
	if !strings.Contains(r4, "via 192.168.150.2 dev "+br) || !strings.Contains(r4, "metric 1") {
		t.Errorf("ipv4 route: %q", r4)
	}
	r6 := ns.MustRun("ip", "-6", "route", "show", "fd00:222::/64")
	if !strings.Contains(r6, "via fd00:150::2 dev "+br) || !strings.Contains(r6, "metric 5") {
		t.Errorf("ipv6 route: %q", r6)
	}
	do(t, ns, func() error { return VerifyBridge(n) })

	// Second call: a no-op. Watch link and address events while it runs.
	var idx int
	do(t, ns, func() (err error) { idx, err = ifindex.ByName(br); return err })
	events := watch(t, ns)
	start = time.Now()
	do(t, ns, func() (err error) { created, err = ensureBridge(n); return err })
	t.Logf("ConvergeBridge (no-op): %v", time.Since(start))
	if created {
		t.Error("created = true on an existing bridge")
	}
	var idx2 int
	do(t, ns, func() (err error) { idx2, err = ifindex.ByName(br); return err })
	if idx2 != idx {
		t.Errorf("ifindex %d → %d: bridge re-created", idx, idx2)
	}
	for _, e := range events(100 * time.Millisecond) {
		t.Errorf("event during no-op ConvergeBridge: %s", e)
	}
	if got := addrSet(t, ns, br); !slices.Equal(got, wantAddrs) {
		t.Errorf("addresses after 2nd call = %v, want %v", got, wantAddrs)
	}

	do(t, ns, func() error { return DeleteBridge(br, n.Name) })
	do(t, ns, func() error {
		if LinkExists(br) {
			return errors.New("bridge still exists after DeleteBridge")
		}
		return DeleteBridge(br, n.Name) // absent: no error
	})
}

// watch subscribes to link and address events in ns; the returned function
// waits d and returns the events seen.
func watch(t *testing.T, ns *netnstest.NS) func(d time.Duration) []string {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	if err := netlink.LinkSubscribeAt(h, links, done); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	return func(d time.Duration) []string {
		var out []string
		timeout := time.After(d)
		for {
			select {
			case u := <-links:
				kind := "NEWLINK"
				if u.Header.Type == unix.RTM_DELLINK {
					kind = "DELLINK"
				}
				out = append(out, fmt.Sprintf("%s %s flags %s", kind, u.Attrs().Name, u.Attrs().Flags))
			case u := <-addrs:
				out = append(out, fmt.Sprintf("addr new=%v %s", u.NewAddr, &u.LinkAddress))
			case <-timeout:
				close(done)
				return out
			}
		}
	}
}

func TestEnsureBridgeVariants(t *testing.T) {
	ns := netnstest.New(t, "brv")

	t.Run("stp off with delay, ipv4 only", func(t *testing.T) {
		n := natNetwork("vbr-off")
		n.Bridge.STP, n.Bridge.Delay = "off", "5"
		n.IPs = n.IPs[:1]
		n.Routes = nil
		n.MAC, n.MTU = nil, nil
		do(t, ns, func() error { _, err := ensureBridge(n); return err })
		d := bridgeData(t, linkJSON(t, ns, "vbr-off"))
		if d["stp_state"] != float64(0) || d["forward_delay"] != float64(500) {
			t.Errorf("stp_state %v forward_delay %v, want 0 500", d["stp_state"], d["forward_delay"])
		}
		if got := sysctlIn(t, ns, "net.ipv6.conf.vbr-off.disable_ipv6"); got != "1" {
			t.Errorf("disable_ipv6 = %s, want 1 without IPv6 address", got)
		}
		do(t, ns, func() error { return VerifyBridge(n) })
	})

	t.Run("ipv6 added later", func(t *testing.T) {
		n := natNetwork("vbr-off")
		n.Bridge.STP, n.Bridge.Delay = "off", "5"
		n.Routes = nil
		n.MAC, n.MTU = nil, nil
		do(t, ns, func() error { _, err := ensureBridge(n); return err })
		if got := sysctlIn(t, ns, "net.ipv6.conf.vbr-off.disable_ipv6"); got != "0" {
			t.Errorf("disable_ipv6 = %s, want 0 with an IPv6 address", got)
		}
		want := []string{"192.168.150.1/24", "fd00:150::1/64"}
		if got := addrSet(t, ns, "vbr-off"); !slices.Equal(got, want) {
			t.Errorf("addresses = %v, want %v", got, want)
		}
	})

	t.Run("adopt existing bridge", func(t *testing.T) {
		// A bridge vnet created for the network (a daemon restart adopts it).
		mustRun(t, ns, "ip", "link", "add", "vbr-old", "type", "bridge", "stp_state", "1", "forward_delay", "1500")
		mustRun(t, ns, "ip", "link", "set", "vbr-old", "alias", "vnet:nat-vbr-old")
		mustRun(t, ns, "ip", "addr", "add", "10.99.0.1/24", "dev", "vbr-old")
		n := natNetwork("vbr-old")
		n.Bridge.STP, n.Bridge.Delay = "off", "0"
		var created bool
		do(t, ns, func() (err error) { created, err = ensureBridge(n); return err })
		if created {
			t.Error("created = true for an adopted bridge")
		}
		d := bridgeData(t, linkJSON(t, ns, "vbr-old"))
		if d["stp_state"] != float64(0) || d["forward_delay"] != float64(0) {
			t.Errorf("stp_state %v forward_delay %v, want 0 0", d["stp_state"], d["forward_delay"])
		}
		want := []string{"10.99.0.1/24", "192.168.150.1/24", "fd00:150::1/64"}
		if got := addrSet(t, ns, "vbr-old"); !slices.Equal(got, want) {
			t.Errorf("addresses = %v, want %v (foreign address kept)", got, want)
		}
		// Back to STP on: the delay must be set before STP goes on.
		n.Bridge.STP, n.Bridge.Delay = "on", "4"
		do(t, ns, func() error { _, err := ensureBridge(n); return err })
		d = bridgeData(t, linkJSON(t, ns, "vbr-old"))
		if d["stp_state"] != float64(1) || d["forward_delay"] != float64(400) {
			t.Errorf("stp_state %v forward_delay %v, want 1 400", d["stp_state"], d["forward_delay"])
		}
	})

	t.Run("mtu kept when a port joins", func(t *testing.T) {
		n := natNetwork("vbr-mtu")
		n.IPs, n.Routes = nil, nil
		do(t, ns, func() error { _, err := ensureBridge(n); return err })
		plainLink(t, ns, "port0", "mtu", "1500", "master", "vbr-mtu")
		if got := linkJSON(t, ns, "vbr-mtu")["mtu"]; got != float64(9000) {
			t.Errorf("bridge mtu after port joined = %v, want 9000", got)
		}
	})

	t.Run("name is a veth link", func(t *testing.T) {
		plainLink(t, ns, "vbr-dummy")
		err := ns.Do(func() error { _, err := ensureBridge(natNetwork("vbr-dummy")); return err })
		if err == nil || err.Error() != "error creating bridge interface vbr-dummy: File exists" {
			t.Errorf("ConvergeBridge on a veth: %v", err)
		}
		err = ns.Do(func() error { return DeleteBridge("vbr-dummy", "nat-vbr-dummy") })
		if !errors.Is(err, ErrNotOurs) {
			t.Errorf("DeleteBridge on a veth: %v", err)
		}
		do(t, ns, func() error {
			if !LinkExists("vbr-dummy") {
				return errors.New("DeleteBridge removed a veth link")
			}
			return nil
		})
	})

	t.Run("name too long", func(t *testing.T) {
		err := ns.Do(func() error { _, err := ensureBridge(natNetwork("vb-name-longer-than-15")); return err })
		want := `bridge "vb-name-longer-than-15": name is 22 bytes long, the kernel allows at most 15`
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})

	t.Run("host bridge mode unsupported", func(t *testing.T) {
		n := natNetwork("br0")
		n.Forward.Mode = "bridge"
		_, err := ensureBridge(n) // fails before touching the kernel
		if netxml.KindOf(err) != netxml.KindUnsupported {
			t.Errorf("got %v, want an unsupported-configuration error", err)
		}
	})

	t.Run("mtu error names the bridge", func(t *testing.T) {
		n := natNetwork("vbr-bigmtu")
		n.MTU.Size = 70000
		var created bool
		err := ns.Do(func() (err error) { created, err = ensureBridge(n); return err })
		if err == nil || !strings.HasPrefix(err.Error(), `bridge "vbr-bigmtu": set mtu 70000: `) {
			t.Errorf("got %v", err)
		}
		if !created {
			t.Error("created = false although the link was created before the failure")
		}
	})
}

func TestVerifyBridge(t *testing.T) {
	ns := netnstest.New(t, "vfy")
	const br = "vbr-vfy"
	n := natNetwork(br)
	do(t, ns, func() error { _, err := ensureBridge(n); return err })
	do(t, ns, func() error { return VerifyBridge(n) })

	ns.MustRun("ip", "addr", "del", "192.168.150.1/24", "dev", br)
	ns.MustRun("ip", "link", "set", br, "mtu", "1500")
	var drift *DriftError
	err := ns.Do(func() error { return VerifyBridge(n) })
	if !errors.As(err, &drift) {
		t.Fatalf("VerifyBridge = %v, want a *DriftError", err)
	}
	for _, p := range []string{"address 192.168.150.1/24 missing", "mtu is 1500, want 9000", "route 192.168.222.0/24 via 192.168.150.2 metric 1 missing"} {
		if !slices.Contains(drift.Problems, p) {
			t.Errorf("problems %q lack %q", drift.Problems, p)
		}
	}
	t.Log(err)

	// ConvergeBridge repairs it.
	do(t, ns, func() error { _, err := ensureBridge(n); return err })
	do(t, ns, func() error { return VerifyBridge(n) })

	ns.MustRun("ip", "link", "del", br)
	err = ns.Do(func() error { return VerifyBridge(n) })
	if !errors.As(err, &drift) || !slices.Equal(drift.Problems, []string{"does not exist"}) {
		t.Fatalf("VerifyBridge on a deleted bridge = %v", err)
	}
	if err.Error() != `bridge "vbr-vfy": does not exist` {
		t.Errorf("message %q", err)
	}
}
