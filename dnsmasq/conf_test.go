package dnsmasq

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"vnet/internal/testdata"
	netxml "vnet/xml"
)

func TestConfGolden(t *testing.T) {
	dir, cases := testdata.Cases(t, "conf-cases.tsv")
	var skips testdata.Skips
	for _, c := range cases {
		t.Run(c["name"], func(t *testing.T) {
			if c["pidfile"] != "-" {
				skips.Skip(t, "case passes a pid file")
			}
			n, err := netxml.Parse(testdata.Read(t, dir, c["input"]))
			if err != nil {
				t.Fatalf("parse %s: %v", c["input"], err)
			}
			f, err := Generate(n, Options{StateDir: c["state_dir"]})
			if err != nil {
				t.Fatalf("generate: %v", err)
			}
			if want := string(testdata.Read(t, dir, c["conf"])); f.Conf != want {
				t.Errorf("conf differs\n--- got\n%s--- want\n%s", f.Conf, want)
			}
			want := ""
			if c["hostsfile"] != "-" {
				want = string(testdata.Read(t, dir, c["hostsfile"]))
			}
			if f.Hostsfile != want {
				t.Errorf("hostsfile differs\n--- got\n%s--- want\n%s", f.Hostsfile, want)
			}
			checkFiles(t, n, f)
		})
	}
	skips.Report(t, len(cases))
}

func TestNeeded(t *testing.T) {
	ip := libvirtxml.NetworkIP{Address: "10.0.0.1", Prefix: 24}
	dhcp := ip
	dhcp.DHCP = &libvirtxml.NetworkDHCP{Ranges: []libvirtxml.NetworkDHCPRange{{Start: "10.0.0.2", End: "10.0.0.9"}}}
	for _, tc := range []struct {
		name string
		n    libvirtxml.Network
		want bool
	}{
		{"no ip", libvirtxml.Network{Name: "a"}, false},
		{"isolated with ip", libvirtxml.Network{Name: "a", IPs: []libvirtxml.NetworkIP{ip}}, true},
		{"dns off no dhcp", libvirtxml.Network{Name: "a", DNS: &libvirtxml.NetworkDNS{Enable: "no"}, IPs: []libvirtxml.NetworkIP{ip}}, false},
		{"dns off with dhcp", libvirtxml.Network{Name: "a", DNS: &libvirtxml.NetworkDNS{Enable: "no"}, IPs: []libvirtxml.NetworkIP{dhcp}}, true},
		{"bridge mode", libvirtxml.Network{Name: "a", Forward: &libvirtxml.NetworkForward{Mode: "bridge"}, IPs: []libvirtxml.NetworkIP{dhcp}}, false},
		{"open", libvirtxml.Network{Name: "a", Forward: &libvirtxml.NetworkForward{Mode: "open"}, IPs: []libvirtxml.NetworkIP{ip}}, true},
	} {
		if got := Needed(&netxml.Network{Network: tc.n}); got != tc.want {
			t.Errorf("%s: Needed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestGenerateRejects(t *testing.T) {
	base := func() *netxml.Network {
		return &netxml.Network{Network: libvirtxml.Network{
			Name:   "n1",
			Bridge: &libvirtxml.NetworkBridge{Name: "br1"},
			IPs: []libvirtxml.NetworkIP{{Address: "10.0.0.1", Prefix: 24, DHCP: &libvirtxml.NetworkDHCP{
				Ranges: []libvirtxml.NetworkDHCPRange{{Start: "10.0.0.2", End: "10.0.0.9"}},
			}}},
		}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(n *netxml.Network)
		field string
	}{
		{"newline in name", func(n *netxml.Network) { n.Name = "a\nstrict-order" }, "network name"},
		{"slash in name", func(n *netxml.Network) { n.Name = "../x" }, "network name"},
		{"bridge comma", func(n *netxml.Network) { n.Bridge.Name = "br,x" }, "bridge name"},
		{"txt newline", func(n *netxml.Network) {
			n.DNS = &libvirtxml.NetworkDNS{TXTs: []libvirtxml.NetworkDNSTXT{{Name: "a", Value: "v\ndhcp-script=/bin/sh"}}}
		}, "dns txt value"},
		{"txt comment", func(n *netxml.Network) {
			n.DNS = &libvirtxml.NetworkDNS{TXTs: []libvirtxml.NetworkDNSTXT{{Name: "a", Value: "v #x"}}}
		}, "dns txt value"},
		{"hostname space", func(n *netxml.Network) {
			n.DNS = &libvirtxml.NetworkDNS{Host: []libvirtxml.NetworkDNSHost{{IP: "10.0.0.5", Hostnames: []libvirtxml.NetworkDNSHostHostname{{Hostname: "a b"}}}}}
		}, "dns host hostname"},
		{"dhcp host name comma", func(n *netxml.Network) {
			n.IPs[0].DHCP.Hosts = []libvirtxml.NetworkDHCPHost{{MAC: "52:54:00:00:00:01", Name: "a,ignore", IP: "10.0.0.5"}}
		}, "dhcp host name"},
		{"domain slash", func(n *netxml.Network) { n.Domain = &libvirtxml.NetworkDomain{Name: "a/b"} }, "domain name"},
		{"option newline", func(n *netxml.Network) {
			n.DnsmasqOptions = &libvirtxml.NetworkDnsmasqOptions{Option: []libvirtxml.NetworkDnsmasqOption{{Value: "a\nb"}}}
		}, "dnsmasq:option value"},
		{"tftp comma", func(n *netxml.Network) { n.IPs[0].TFTP = &libvirtxml.NetworkTFTP{Root: "/srv,eth0"} }, "tftp root"},
	} {
		n := base()
		tc.edit(n)
		_, err := Generate(n, Options{StateDir: "/s"})
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if k := netxml.KindOf(err); k != netxml.KindUnsupported && k != netxml.KindXML && k != netxml.KindInternal {
			t.Errorf("%s: kind %v", tc.name, k)
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %q does not name %q", tc.name, err, tc.field)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q spans lines", tc.name, err)
		}
	}
}

func TestGenerateOptionsAndPidFile(t *testing.T) {
	n := &netxml.Network{Network: libvirtxml.Network{
		Name:           `q"n`,
		Bridge:         &libvirtxml.NetworkBridge{Name: "br1"},
		IPs:            []libvirtxml.NetworkIP{{Address: "10.0.0.1", Prefix: 24}},
		DnsmasqOptions: &libvirtxml.NetworkDnsmasqOptions{Option: []libvirtxml.NetworkDnsmasqOption{{Value: "no-ping"}}},
		DNS: &libvirtxml.NetworkDNS{
			Host: []libvirtxml.NetworkDNSHost{
				{IP: "10.0.0.5", Hostnames: []libvirtxml.NetworkDNSHostHostname{{Hostname: "a"}, {Hostname: "b"}}},
				{IP: "10.0.0.6", Hostnames: []libvirtxml.NetworkDNSHostHostname{{Hostname: "c"}}},
				{IP: "10.0.0.5", Hostnames: []libvirtxml.NetworkDNSHostHostname{{Hostname: "d"}}},
			},
			SRVs: []libvirtxml.NetworkDNSSRV{{Service: "http", Protocol: "tcp", Domain: "x.test", Target: "web", Weight: 5}},
		},
	}}
	f, err := Generate(n, Options{StateDir: "/s", PidFile: "/run/p.pid"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"##    virsh net-edit q\"n\n",
		"pid-file=/run/p.pid\nexcept-interface=lo\n",
		"srv-host=_http._tcp.x.test,web,1,0,5\n",
		"addn-hosts=/s/q&quot;n.addnhosts\nno-ping\n",
	} {
		if !strings.Contains(f.Conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, f.Conf)
		}
	}
	if want := "10.0.0.5\ta\tb\td\t\n10.0.0.6\tc\t\n"; f.Addnhosts != want {
		t.Errorf("addnhosts = %q, want %q", f.Addnhosts, want)
	}
	checkFiles(t, n, f)
}
