package firewall

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

func mustParse(t *testing.T, xml string) *netxml.Network {
	t.Helper()
	n, err := netxml.Parse([]byte(xml))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return n
}

// TestPlanForErrors also covers input the parser already rejects (built
// directly): PlanFor must not rely on it.
func TestPlanForErrors(t *testing.T) {
	direct := func(mode, netmask string) *netxml.Network {
		n := &netxml.Network{}
		n.Name = "x"
		n.Bridge = &libvirtxml.NetworkBridge{Name: "br1"}
		n.Forward = &libvirtxml.NetworkForward{Mode: mode}
		n.IPs = []libvirtxml.NetworkIP{{Address: "10.0.0.1", Netmask: netmask}}
		return n
	}
	// The parser rejects an inverted port range itself (with its own
	// message); PlanFor must still refuse one built directly.
	badPorts := direct("nat", "255.255.255.0")
	badPorts.Forward.NAT = &libvirtxml.NetworkForwardNAT{Ports: []libvirtxml.NetworkForwardNATPort{{Start: 2000, End: 1000}}}
	for _, c := range []struct {
		name string
		n    *netxml.Network
		kind netxml.Kind
		msg  string
	}{
		{"bad netmask", direct("route", "255.0.255.0"), netxml.KindInternal, "Invalid prefix or netmask for 'br1'"},
		{"unknown mode", direct("teleport", "255.255.255.0"), netxml.KindUnsupported, "forward mode 'teleport' is not supported"},
		{"bad port range", badPorts, netxml.KindInternal, "Invalid port range '2000-1000'."},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := PlanFor(c.n)
			if err == nil || netxml.KindOf(err) != c.kind || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("got %v, want kind %v with %q", err, c.kind, c.msg)
			}
		})
	}
	cases := []struct {
		name, xml string
		kind      netxml.Kind
		msg       string
	}{
		{"no bridge", `<network><name>x</name><forward mode='nat'/><ip address='10.0.0.1' prefix='24'/></network>`,
			netxml.KindInternal, "has no bridge name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := PlanFor(mustParse(t, c.xml))
			if err == nil {
				t.Fatal("no error")
			}
			if netxml.KindOf(err) != c.kind || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("got %v (kind %v), want kind %v with %q", err, netxml.KindOf(err), c.kind, c.msg)
			}
		})
	}
}

func TestPlanForModes(t *testing.T) {
	count := func(p *Plan, f Family, typ RuleType) int {
		n := 0
		for _, r := range p.Rules {
			if r.Family == f && r.Type == typ {
				n++
			}
		}
		return n
	}
	t.Run("open and bridge get nothing", func(t *testing.T) {
		for _, x := range []string{
			`<network><name>o</name><bridge name='br1'/><forward mode='open'/><ip address='10.0.0.1' prefix='24'/></network>`,
			`<network><name>b</name><bridge name='br0'/><forward mode='bridge'/></network>`,
		} {
			p, err := PlanFor(mustParse(t, x))
			if err != nil || !p.Empty() {
				t.Errorf("%s: plan %+v, err %v; want empty", x, p, err)
			}
		}
	})
	t.Run("ipv6=yes without address", func(t *testing.T) {
		p, err := PlanFor(mustParse(t, `<network ipv6='yes'><name>i</name><bridge name='br1'/><ip address='10.0.0.1' prefix='24'/></network>`))
		if err != nil {
			t.Fatal(err)
		}
		if count(p, IPv6, AllowCross) != 1 || count(p, IPv6, RejectIn) != 1 || count(p, IPv6, HostIn) != 0 {
			t.Errorf("want IPv6 reject/cross rules and no IPv6 host rules: %+v", p.Rules)
		}
	})
	t.Run("default prefix and interface pool", func(t *testing.T) {
		p, err := PlanFor(mustParse(t, `<network><name>c</name><bridge name='br1'/><forward mode='nat'><interface dev='eth7'/></forward><ip address='172.16.3.1'/></network>`))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Rules {
			if r.Type == AllowOut && (r.Subnet.String() != "172.16.0.0/16" || r.Dev != "eth7") {
				t.Errorf("AllowOut %+v: want subnet 172.16.0.0/16 (classful default) via eth7", r)
			}
		}
	})
	t.Run("snat of another family is masquerade", func(t *testing.T) {
		p, err := PlanFor(mustParse(t, `<network><name>s</name><bridge name='br1'/><forward mode='nat'><nat ipv6='yes'><address start='192.0.2.1' end='192.0.2.1'/></nat></forward><ip family='ipv6' address='fd00::1' prefix='64'/></network>`))
		if err != nil {
			t.Fatal(err)
		}
		if n := count(p, IPv6, Masquerade); n != 3 {
			t.Fatalf("%d IPv6 masquerade rules, want 3", n)
		}
		for _, r := range p.Rules {
			if r.Type == Masquerade && r.NAT.AddrStart.IsValid() {
				t.Errorf("IPv6 rule with an IPv4 SNAT address: %+v", r)
			}
		}
	})
}

func TestNew(t *testing.T) {
	want := "nftables"
	if nftUsable(Options{}) != nil {
		want = "iptables"
	}
	b, err := New("auto", Options{})
	if err != nil || b.Name() != want {
		t.Errorf("auto: %v, %v; want %s", b, err, want)
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		if b, err := New("iptables", Options{}); err != nil || b.Name() != "iptables" {
			t.Errorf("iptables: %v, %v", b, err)
		}
	}
	_, err = New("pf", Options{})
	if netxml.KindOf(err) != netxml.KindUnsupported || err.Error() != "unsupported configuration: unknown firewall backend 'pf'" {
		t.Errorf("pf: %v", err)
	}
}

// TestDescribeNft pins the dry-run text of the default NAT network with
// plain tables on a kernel without the csum action: no tc line, as Apply
// runs none there. (Before Describe, the dry run printed the tc commands
// whatever the kernel.)
func TestDescribeNft(t *testing.T) {
	b := &nftBackend{log: slogDiscard(), noCsum: true}
	got, err := b.Describe(planOf(t, "nat-default.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, "\ntc ") || strings.HasPrefix(got, "tc ") {
		t.Errorf("tc commands described although the kernel has no csum action:\n%s", got)
	}
	golden(t, filepath.Join("testdata", "describe-nat-default.txt"), got)
	if got, err := b.Describe(&Plan{Network: "x"}); got != "" || err != nil {
		t.Errorf("plan without a bridge: %q, %v", got, err)
	}
}
