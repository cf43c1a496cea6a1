package dnsmasq

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

// emittedKeys are the conf keys Generate writes (besides raw dnsmasq:options).
var emittedKeys = map[string]bool{
	"strict-order": true, "port": true, "server": true, "no-resolv": true, "local": true,
	"domain": true, "expand-hosts": true, "domain-needed": true, "pid-file": true,
	"except-interface": true, "bind-dynamic": true, "interface": true, "dhcp-option": true,
	"ra-param": true, "txt-record": true, "srv-host": true, "enable-tftp": true, "tftp-root": true,
	"dhcp-range": true, "dhcp-no-override": true, "dhcp-authoritative": true, "dhcp-boot": true,
	"dhcp-lease-max": true, "dhcp-hostsfile": true, "addn-hosts": true, "enable-ra": true,
}

// dnsmasqView is what dnsmasq's line reader makes of one physical line:
// quotes removed, white space normalised, a comment (a '#' at the start of a
// word) cut off, surrounding spaces trimmed. ok is false for an unterminated
// quote. It mirrors dnsmasq 2.90's read_file.
func dnsmasqView(line string) (view string, ok bool) {
	if i := strings.IndexByte(line, 0); i >= 0 {
		line = line[:i] // fgets + strlen
	}
	b := []byte(line)
	var out []byte
	white := true
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			i++
			for ; i < len(b) && b[i] != '"'; i++ {
				out = append(out, b[i])
			}
			if i >= len(b) {
				return "", false
			}
			white = false
			continue
		}
		if c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' {
			c = ' '
		}
		if white && c == '#' {
			break
		}
		out = append(out, c)
		white = c == ' '
	}
	return strings.Trim(string(out), " "), true
}

// splitKey splits "key=value" as dnsmasq does (spaces around '=' allowed).
func splitKey(s string) (key, arg string) {
	k, a, found := strings.Cut(s, "=")
	if !found {
		return strings.TrimRight(s, " "), ""
	}
	return strings.TrimRight(k, " "), strings.TrimLeft(a, " ")
}

// checkFiles checks that dnsmasq reads every generated line exactly as we
// meant it: one key per conf line, keys only from emittedKeys (plus one line
// per dnsmasq:option), one hostsfile line per static host, one addnhosts line
// per address.
func checkFiles(t *testing.T, n *netxml.Network, f *Files) {
	t.Helper()
	nOpts := 0
	if n.DnsmasqOptions != nil {
		nOpts = len(n.DnsmasqOptions.Option)
	}
	for name, text := range map[string]string{"conf": f.Conf, "hostsfile": f.Hostsfile, "addnhosts": f.Addnhosts} {
		if text != "" && !strings.HasSuffix(text, "\n") {
			t.Errorf("%s does not end with a newline", name)
		}
		if strings.ContainsAny(text, "\x00\r") {
			t.Errorf("%s contains NUL or CR: %q", name, text)
		}
		for _, l := range strings.Split(text, "\n") {
			if len(l) > 1000 {
				t.Errorf("%s line longer than dnsmasq's buffer: %d bytes", name, len(l))
			}
		}
	}
	lines := strings.Split(strings.TrimSuffix(f.Conf, "\n"), "\n")
	if len(lines) < 7 {
		t.Fatalf("conf has %d lines", len(lines))
	}
	for i, l := range lines[:6] {
		if !strings.HasPrefix(l, "##") {
			t.Errorf("header line %d is not a comment: %q", i+1, l)
		}
	}
	body := lines[6:]
	limit := keyLimits(n)
	count := map[string]int{}
	for i, l := range body[len(body)-nOpts:] {
		if want := n.DnsmasqOptions.Option[i].Value; l != want {
			t.Errorf("dnsmasq:option line %q, want %q", l, want)
		}
	}
	for i, l := range body {
		v, ok := dnsmasqView(l)
		if i >= len(body)-nOpts {
			// Raw option: at most one line, whatever its key.
			continue
		}
		if !ok {
			t.Errorf("conf line %q: unterminated quote", l)
			continue
		}
		k, a := splitKey(v)
		rk, ra := splitKey(l)
		if k != rk || a != ra || v != l {
			t.Errorf("conf line %q reads as %q", l, v)
		}
		if !emittedKeys[k] {
			t.Errorf("conf line %q has key %q we never emit", l, k)
		}
		if count[k]++; count[k] > limit[k] {
			t.Errorf("conf has %d %q lines, at most %d possible:\n%s", count[k], k, limit[k], f.Conf)
		}
	}

	wantHosts := 0
	seen4, seen6 := false, false
	for _, ip := range n.IPs {
		if !hasDHCP(&ip) {
			continue
		}
		v6 := strings.Contains(ip.Address, ":")
		if v6 && seen6 || !v6 && seen4 {
			continue
		}
		if v6 {
			seen6 = true
		} else {
			seen4 = true
		}
		for _, h := range ip.DHCP.Hosts {
			if h.IP != "" {
				wantHosts++
			}
		}
	}
	hl := strings.Split(strings.TrimSuffix(f.Hostsfile, "\n"), "\n")
	if f.Hostsfile == "" {
		hl = nil
	}
	if len(hl) != wantHosts {
		t.Errorf("hostsfile has %d lines for %d hosts:\n%s", len(hl), wantHosts, f.Hostsfile)
	}
	for _, l := range hl {
		if v, ok := dnsmasqView(l); !ok || v != l {
			t.Errorf("hostsfile line %q reads as %q", l, v)
		}
		if c := strings.Count(l, ","); c < 1 || c > 3 {
			t.Errorf("hostsfile line %q has %d fields", l, c+1)
		}
	}

	wantAddr := map[string]bool{}
	wantNames := 0
	if n.DNS != nil && n.DNS.Enable != "no" {
		for _, h := range n.DNS.Host {
			if h.IP != "" && len(h.Hostnames) > 0 {
				wantAddr[h.IP] = true
				wantNames += len(h.Hostnames)
			}
		}
	}
	al := strings.Split(strings.TrimSuffix(f.Addnhosts, "\n"), "\n")
	if f.Addnhosts == "" {
		al = nil
	}
	names := 0
	for _, l := range al {
		fields := strings.Fields(l)
		if len(fields) < 2 {
			t.Errorf("addnhosts line %q has no name", l)
			continue
		}
		for _, fl := range fields {
			if strings.ContainsAny(fl, "#\"") {
				t.Errorf("addnhosts line %q has a comment or quote", l)
			}
		}
		names += len(fields) - 1
	}
	if len(al) > len(wantAddr) || names != wantNames {
		t.Errorf("addnhosts has %d lines / %d names, want ≤%d / %d:\n%s", len(al), names, len(wantAddr), wantNames, f.Addnhosts)
	}
}

func FuzzGenerate(f *testing.F) {
	f.Add("default", "virbr0", "example.com", "host", "txtname", "txt value", "http", "tcp", "target.example.com",
		"vm1", "52:54:00:00:00:01", "0:1:2:3", "8.8.8.8", "no-ping", uint(80))
	f.Add("a\nb", "br\n0", "x\ny", "h #c", "t,x", "v\"q", "s vc", "t\x00cp", "#t",
		"vm,ignore", "52:54:00:00:00:0g", "zz", "1.2.3.4\n", "a\nserver=1.1.1.1", uint(70000))
	f.Add(`quo"te&<>'`, "br-x", "d.test", "a b", "n", "v #c", "_s", "udp", ".",
		"x.y", "52:54:00:AA:00:01", "0:a:b", "fe80::1%eth0", strings.Repeat("x", 2000), uint(0))
	f.Fuzz(func(t *testing.T, name, bridge, domain, hostname, txtName, txtValue, srvService, srvProto, srvTarget,
		dhcpName, mac, duid, fwdAddr, option string, port uint) {
		n := &netxml.Network{Network: libvirtxml.Network{
			Name:   name,
			Bridge: &libvirtxml.NetworkBridge{Name: bridge},
			Domain: &libvirtxml.NetworkDomain{Name: domain, LocalOnly: "yes"},
			DNS: &libvirtxml.NetworkDNS{
				Forwarders: []libvirtxml.NetworkDNSForwarder{{Addr: fwdAddr, Port: port}, {Domain: domain, Addr: fwdAddr}},
				TXTs:       []libvirtxml.NetworkDNSTXT{{Name: txtName, Value: txtValue}},
				Host: []libvirtxml.NetworkDNSHost{{IP: "10.9.0.5", Hostnames: []libvirtxml.NetworkDNSHostHostname{
					{Hostname: hostname}, {Hostname: dhcpName}}}},
				SRVs: []libvirtxml.NetworkDNSSRV{{Service: srvService, Protocol: srvProto, Domain: domain, Target: srvTarget, Port: port}},
			},
			IPs: []libvirtxml.NetworkIP{
				{Address: "10.9.0.1", Prefix: 24, DHCP: &libvirtxml.NetworkDHCP{
					Ranges: []libvirtxml.NetworkDHCPRange{{Start: "10.9.0.10", End: "10.9.0.20"}},
					Hosts: []libvirtxml.NetworkDHCPHost{
						{MAC: mac, Name: dhcpName, IP: "10.9.0.30"},
						{Name: hostname, IP: "10.9.0.31"},
					},
					Bootp: []libvirtxml.NetworkBootp{{File: txtValue, Server: fwdAddr}},
				}, TFTP: &libvirtxml.NetworkTFTP{Root: txtValue}},
				{Family: "ipv6", Address: "fd00::1", Prefix: 64, DHCP: &libvirtxml.NetworkDHCP{
					Hosts: []libvirtxml.NetworkDHCPHost{{ID: duid, Name: dhcpName, IP: "fd00::5"}},
				}},
			},
			DnsmasqOptions: &libvirtxml.NetworkDnsmasqOptions{Option: []libvirtxml.NetworkDnsmasqOption{{Value: option}}},
		}}
		// Try the full network and simpler variants, so one bad field does
		// not hide the others behind an early error.
		variants := []func(*netxml.Network){
			func(*netxml.Network) {},
			func(n *netxml.Network) { n.DNS.Forwarders = nil; n.IPs[0].DHCP.Bootp = nil; n.IPs[0].TFTP = nil },
			func(n *netxml.Network) { n.DNS.SRVs = nil; n.DNS.TXTs = nil; n.DnsmasqOptions = nil },
			func(n *netxml.Network) {
				n.Domain = nil
				n.IPs = n.IPs[:1]
				n.IPs[0].DHCP.Hosts = n.IPs[0].DHCP.Hosts[1:]
			},
		}
		for _, v := range variants {
			v(n)
			files, err := Generate(n, Options{StateDir: "/var/lib/vnet/dnsmasq", PidFile: "/run/vnet/x.pid"})
			if err != nil {
				if strings.ContainsAny(err.Error(), "\n\x00") {
					t.Errorf("error message spans lines: %q", err)
				}
				continue
			}
			checkFiles(t, n, files)
		}
	})
}

// keyLimits is the most lines of each key the network can produce; an
// injected line shows up as one too many.
func keyLimits(n *netxml.Network) map[string]int {
	ranges := 0
	for _, ip := range n.IPs {
		if ip.DHCP != nil {
			ranges += len(ip.DHCP.Ranges)
		}
	}
	var fwd, txt, srv int
	if n.DNS != nil {
		fwd, txt, srv = len(n.DNS.Forwarders), len(n.DNS.TXTs), len(n.DNS.SRVs)
	}
	nip := len(n.IPs)
	return map[string]int{
		"strict-order": 1, "port": 1, "server": fwd, "no-resolv": 2, "local": nip + 2,
		"domain": 1, "expand-hosts": 1, "domain-needed": 1, "pid-file": 1,
		"except-interface": 1, "bind-dynamic": 1, "interface": 1, "dhcp-option": 2,
		"ra-param": 1, "txt-record": txt, "srv-host": srv, "enable-tftp": nip, "tftp-root": nip,
		"dhcp-range": ranges + 2*nip, "dhcp-no-override": 1, "dhcp-authoritative": 1, "dhcp-boot": 1,
		"dhcp-lease-max": 1, "dhcp-hostsfile": 1, "addn-hosts": 1, "enable-ra": 1,
	}
}
