package doctor

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

func dhcpPacket() *Packet {
	return &Packet{Hook: HookInput, Kind: "dhcp", What: "DHCP (udp 67)", IIf: "virbr1", IIfIndex: 7,
		Src: netip.IPv4Unspecified(), Dst: netip.MustParseAddr("255.255.255.255"), Proto: protoUDP, SPort: 68, DPort: 67, CtState: CtNew}
}

func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

// nftRule builds a rule from expressions as the kernel returns them.
func nftRule(exprs ...expr.Any) Rule { return compileNFT(1, exprs, nil) }

func table(fam string, chains ...*Chain) *Table {
	t := &Table{Source: SourceNFT, Family: fam, Name: "t", Chains: map[string]*Chain{}}
	for _, c := range chains {
		t.Chains[c.Name] = c
	}
	return t
}

func TestNFTInterpret(t *testing.T) {
	udpDport := func(port uint16) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(port >> 8), byte(port)}},
		}
	}
	for _, c := range []struct {
		name  string
		exprs []expr.Any
		match bool
		known bool
	}{
		{"iifname exact", []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Register: 1, Data: ifname("virbr1")}}, true, true},
		{"iifname other", []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Register: 1, Data: ifname("eth0")}}, false, true},
		{"iifname wildcard", []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Register: 1, Data: []byte("vir")}}, true, true},
		{"iifname !=", []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")}}, true, true},
		{"iif index", []expr.Any{&expr.Meta{Key: expr.MetaKeyIIF, Register: 1}, &expr.Cmp{Register: 1, Data: []byte{7, 0, 0, 0}}}, true, true},
		{"udp dport 67", udpDport(67), true, true},
		{"udp dport 53", udpDport(53), false, true},
		{"ip daddr 255.255.255.0/24 (bitwise)", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Register: 1, Data: []byte{255, 255, 255, 0}},
		}, true, true},
		{"ct state established", []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{CtEstablished | CtRelated, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		}, false, true},
		{"port range 60-70", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{0, 60}, ToData: []byte{0, 70}},
		}, true, true},
		{"4-byte register alias", []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 8}, &expr.Cmp{Register: 1, Data: []byte{unix.IPPROTO_UDP}}}, true, true},
		{"fib is not modelled", []expr.Any{&expr.Fib{Register: 1, FlagSADDR: true, FlagIIF: true, ResultOIF: true}}, false, false},
		{"xt udp dport", []expr.Any{&expr.Match{Name: "udp", Info: &xt.Udp{SrcPorts: [2]uint16{0, 65535}, DstPorts: [2]uint16{67, 67}}}}, true, true},
		{"xt conntrack established", []expr.Any{&expr.Match{Name: "conntrack", Rev: 3, Info: &xt.ConntrackMtinfo3{ConntrackMtinfo2: xt.ConntrackMtinfo2{ConntrackMtinfoBase: xt.ConntrackMtinfoBase{MatchFlags: uint16(xt.ConntrackState)}, StateMask: CtEstablished}}}}, false, true},
	} {
		m, k := interpret(c.exprs, dhcpPacket(), nil)
		if m != c.match || k != c.known {
			t.Errorf("%s: match=%v known=%v, want %v %v", c.name, m, k, c.match, c.known)
		}
	}
}

func TestNFTSetLookup(t *testing.T) {
	s := newSet(true, false, []nftables.SetElement{
		{Key: []byte{0, 53}}, {Key: []byte{0, 54}, IntervalEnd: true},
		{Key: []byte{0, 60}}, {Key: []byte{0, 71}, IntervalEnd: true},
	})
	for port, want := range map[uint16]bool{52: false, 53: true, 54: false, 67: true, 70: true, 71: false} {
		if got := s.contains([]byte{byte(port >> 8), byte(port)}); got != want {
			t.Errorf("port %d in {53, 60-70}: %v", port, got)
		}
	}
	exact := newSet(false, false, []nftables.SetElement{{Key: []byte{0, 67}}})
	if !exact.contains([]byte{0, 67}) || exact.contains([]byte{0, 68}) {
		t.Error("exact set")
	}
}

// TestDrops: policies, jumps, returns, gotos, families and nat chains.
func TestDrops(t *testing.T) {
	accept := func(c string) *Chain {
		return &Chain{Name: c, Base: true, Hook: HookInput, Policy: VerdictAccept}
	}
	always := func(p *Packet) (bool, bool) { return true, true }
	never := func(p *Packet) (bool, bool) { return false, true }
	unknown := func(p *Packet) (bool, bool) { return false, false }

	in := &Chain{Name: "input", Base: true, Hook: HookInput, Policy: VerdictDrop}
	if d := Drops([]*Table{table("inet", in)}, dhcpPacket()); len(d) != 1 || d[0].Rule != nil {
		t.Fatalf("policy drop: %+v", d)
	}
	if d := Drops([]*Table{table("ip6", in)}, dhcpPacket()); len(d) != 0 {
		t.Fatal("an ip6 table judged an IPv4 packet")
	}
	in.Rules = []Rule{{Match: always, Verdict: VerdictAccept}}
	if d := Drops([]*Table{table("ip", in)}, dhcpPacket()); len(d) != 0 {
		t.Fatal("an accepting rule did not save the packet")
	}

	sub := &Chain{Name: "sub", Rules: []Rule{{Match: never, Verdict: VerdictAccept}, {Text: "the drop", Match: always, Verdict: VerdictDrop}}}
	base := accept("input")
	base.Rules = []Rule{{Match: always, Verdict: VerdictJump, Target: "sub"}}
	d := Drops([]*Table{table("inet", base, sub)}, dhcpPacket())
	if len(d) != 1 || d[0].Rule.Text != "the drop" || d[0].In != sub {
		t.Fatalf("drop in a jumped-to chain: %+v", d)
	}

	ret := &Chain{Name: "ret", Rules: []Rule{{Match: always, Verdict: VerdictReturn}, {Match: always, Verdict: VerdictDrop}}}
	base2 := &Chain{Name: "input", Base: true, Hook: HookInput, Policy: VerdictDrop,
		Rules: []Rule{{Match: always, Verdict: VerdictJump, Target: "ret"}, {Match: always, Verdict: VerdictAccept}}}
	if d := Drops([]*Table{table("inet", base2, ret)}, dhcpPacket()); len(d) != 0 {
		t.Fatalf("return did not come back to the caller: %+v", d)
	}
	base3 := &Chain{Name: "input", Base: true, Hook: HookInput, Policy: VerdictDrop,
		Rules: []Rule{{Match: always, Verdict: VerdictGoto, Target: "ret"}, {Match: always, Verdict: VerdictAccept}}}
	if d := Drops([]*Table{table("inet", base3, ret)}, dhcpPacket()); len(d) != 1 || d[0].Rule != nil {
		t.Fatalf("return from a goto ends in the base chain's policy: %+v", d)
	}

	base4 := accept("input")
	base4.Rules = []Rule{{Match: unknown, Verdict: VerdictDrop}}
	if d := Drops([]*Table{table("inet", base4)}, dhcpPacket()); len(d) != 0 {
		t.Fatal("a rule that is not understood was blamed")
	}

	nat := &Chain{Name: "post", Base: true, Hook: HookPostrouting, Type: "nat", Policy: VerdictDrop}
	p := dhcpPacket()
	p.Hook, p.CtState = HookPostrouting, CtEstablished
	if d := Drops([]*Table{table("ip", nat)}, p); len(d) != 0 {
		t.Fatal("a nat chain judged an established packet")
	}
}

const dockerSave = `# Generated by iptables-save v1.8.9
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A INPUT -i virbr1 -p udp -m udp --dport 53 -m comment --comment "no \"dns\"" -j DROP
-A INPUT ! -i virbr1 -p udp -m udp --dport 67 -j DROP
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -s 10.0.0.0/8 -p tcp -m multiport --dports 22,443 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
COMMIT
`

func TestParseIptablesSave(t *testing.T) {
	ts, err := ParseIptablesSave(dockerSave, "ip")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || !ts[0].IsDocker() || !ts[0].IsXtables() || ts[0].Describe() != "legacy iptables-legacy table filter" {
		t.Fatalf("tables: %+v", ts)
	}
	if d := Drops(ts, dhcpPacket()); len(d) != 0 {
		t.Fatalf("DHCP from virbr1 dropped by `! -i virbr1`: %+v", d)
	}
	dns := &Packet{Hook: HookInput, IIf: "virbr1", Src: netip.MustParseAddr("192.168.1.2"), Dst: netip.MustParseAddr("192.168.1.1"), Proto: protoUDP, SPort: 4000, DPort: 53, CtState: CtNew}
	d := Drops(ts, dns)
	if len(d) != 1 || d[0].Rule == nil || !strings.Contains(d[0].Rule.Text, "--dport 53") {
		t.Fatalf("DNS: %+v", d)
	}
	fwd := &Packet{Hook: HookForward, Kind: "forward", IIf: "virbr1", OIf: "eth0", Src: netip.MustParseAddr("192.168.1.2"), Dst: netip.MustParseAddr("198.51.100.1"), Proto: protoTCP, SPort: 4000, DPort: 443, CtState: CtNew}
	d = Drops(ts, fwd)
	if len(d) != 1 || d[0].Rule != nil || d[0].Chain.Name != "FORWARD" {
		t.Fatalf("forward: %+v", d)
	}
	n := Network{Name: "n", Bridge: "virbr1"}
	if fix := dropFix(d[0], fwd, n); !strings.HasPrefix(fix, "iptables-legacy -I DOCKER-USER -i virbr1 -j ACCEPT; ") {
		t.Fatalf("fix: %s", fix)
	}
	if det := dropDetail(d[0], fwd, n); !strings.HasPrefix(det, "Docker's legacy iptables-legacy table filter, chain FORWARD (forward hook, priority 0) drops") {
		t.Fatalf("detail: %s", det)
	}
	fwd.Src = netip.MustParseAddr("10.1.1.1")
	if d := Drops(ts, fwd); len(d) != 0 {
		t.Fatalf("multiport accept: %+v", d)
	}
}

// fakeHost serves the checks from fields.
type fakeHost struct {
	tables   []*Table
	socks    []Socket
	routes   []Route
	addrs    []Addr
	links    map[string]Link
	sysctls  map[string]string
	routeDev map[netip.Addr]string
	inotify  [2]int
	fds      [2]int
	ownFDs   [2]int
	probe    ProbeResult
	upErr    error
}

func (f *fakeHost) Firewall() ([]*Table, error)                               { return f.tables, nil }
func (f *fakeHost) Sockets(_ []uint16, _ []int) ([]Socket, error)             { return f.socks, nil }
func (f *fakeHost) Routes() ([]Route, error)                                  { return f.routes, nil }
func (f *fakeHost) Addrs() ([]Addr, error)                                    { return f.addrs, nil }
func (f *fakeHost) RouteDev(dst netip.Addr) string                            { return f.routeDev[dst] }
func (f *fakeHost) Link(name string) Link                                     { return f.links[name] }
func (f *fakeHost) Inotify(_ []int) (int, int, error)                         { return f.inotify[0], f.inotify[1], nil }
func (f *fakeHost) FDs() (int, int, error)                                    { return f.fds[0], f.fds[1], nil }
func (f *fakeHost) OwnFDs() (int, int, error)                                 { return f.ownFDs[0], f.ownFDs[1], nil }
func (f *fakeHost) Alive(pid int) bool                                        { return pid != 0 }
func (f *fakeHost) Probe(context.Context, Network, time.Duration) ProbeResult { return f.probe }
func (f *fakeHost) QueryDNS(context.Context, netip.AddrPort, time.Duration) (time.Duration, error) {
	return time.Millisecond, f.upErr
}
func (f *fakeHost) Sysctl(path string) (string, error) { return f.sysctls[path], nil }

func healthyFake() *fakeHost {
	return &fakeHost{
		links:    map[string]Link{"virbr1": {Exists: true, Index: 7, Up: true, MTU: 1500}, "eth0": {Exists: true, Index: 2, Up: true, MTU: 1500}},
		sysctls:  map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/virbr1/rp_filter": "0"},
		routeDev: map[netip.Addr]string{external4: "eth0", netip.MustParseAddr("192.168.1.2"): "virbr1"},
		inotify:  [2]int{3, 128},
		fds:      [2]int{1000, 100000},
		ownFDs:   [2]int{20, 1024},
		probe:    ProbeResult{Lease: netip.MustParseAddr("192.168.1.50"), DNSRan: true},
	}
}

var natNet = Network{Name: "n", Bridge: "virbr1", Active: true, Forward: "nat", DHCPv4: true, DHCPv4Pool: true, DNS: true, DnsmasqPid: 42,
	Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.53:53")}}

func problemsOf(rs []Result) map[string][]Result {
	m := map[string][]Result{}
	for _, r := range Problems(rs) {
		m[r.ID] = append(m[r.ID], r)
	}
	return m
}

func TestRunHealthy(t *testing.T) {
	rs := Run(context.Background(), healthyFake(), []Network{natNet}, Options{Probe: true})
	if p := Problems(rs); len(p) != 0 {
		t.Fatalf("problems on a healthy fake: %+v", p)
	}
	ids := map[string]bool{}
	for _, r := range rs {
		ids[r.ID] = true
	}
	for _, id := range []string{CheckForeignFirewall, CheckPortConflict, CheckRouteOverlap, CheckIPForward, CheckRPFilter, CheckBrNetfilter, CheckDHCP, CheckDNS, CheckUpstream, CheckInotify, CheckFDs, CheckAcceptRA} {
		if !ids[id] {
			t.Errorf("%s not reported", id)
		}
	}
}

func TestRunFaults(t *testing.T) {
	f := healthyFake()
	f.inotify = [2]int{128, 128}
	f.ownFDs = [2]int{1020, 1024}
	f.socks = []Socket{
		{Proto: "udp", Local: netip.MustParseAddrPort("0.0.0.0:67"), Pid: 99, Comm: "dhcpd"},
		{Proto: "udp", Local: netip.MustParseAddrPort("127.0.0.53:53"), Pid: 98, Comm: "systemd-resolve"},
		{Proto: "tcp", Local: netip.MustParseAddrPort("192.168.1.1:53"), Pid: 97, Comm: "named"},
	}
	f.routes = []Route{
		{Dst: netip.MustParsePrefix("192.168.0.0/16"), Dev: "tun0", Table: tableMain, Type: "unicast"}, // broader: loses
		{Dst: netip.MustParsePrefix("192.168.1.128/25"), Dev: "wg0", Table: tableMain, Type: "unicast"},
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "wg0", Table: 51820, Type: "unicast"},
	}
	f.addrs = []Addr{{Prefix: netip.MustParsePrefix("192.168.1.1/24"), Dev: "virbr1"}, {Prefix: netip.MustParsePrefix("192.168.0.7/16"), Dev: "docker0"}}
	f.sysctls["net/ipv4/conf/all/rp_filter"] = "1"
	f.routeDev[netip.MustParseAddr("192.168.1.2")] = "wg0"
	f.upErr = context.DeadlineExceeded
	f.probe = ProbeResult{DHCPErr: context.DeadlineExceeded}
	p := problemsOf(Run(context.Background(), f, []Network{natNet}, Options{Probe: true}))
	if r := p[CheckInotify]; len(r) != 1 || !strings.Contains(r[0].Detail, "128 of 128") {
		t.Errorf("inotify: %+v", r)
	}
	if r := p[CheckFDs]; len(r) != 1 || !strings.Contains(r[0].Detail, "vnetd has 1020 of 1024 file descriptors") {
		t.Errorf("fds: %+v", r)
	}
	if r := p[CheckPortConflict]; len(r) != 2 || !strings.Contains(r[0].Detail, "dhcpd (pid 99) holds udp 0.0.0.0:67") || !strings.Contains(r[1].Detail, "named (pid 97)") {
		t.Errorf("ports: %+v", r)
	}
	if r := p[CheckRouteOverlap]; len(r) != 2 || !strings.Contains(r[0].Detail, "address 192.168.0.7/16 on docker0 overlaps 192.168.1.0/24") || !strings.Contains(r[1].Detail, "route 192.168.1.128/25 dev wg0 (table main)") {
		t.Errorf("routes: %+v", r)
	}
	if r := p[CheckRPFilter]; len(r) != 1 || !strings.Contains(r[0].Detail, "goes through wg0") {
		t.Errorf("rp_filter: %+v", r)
	}
	if r := p[CheckDHCP]; len(r) != 1 || !strings.Contains(r[0].Detail, "dnsmasq (pid 42)") {
		t.Errorf("dhcp: %+v", r)
	}
	if r := p[CheckUpstream]; len(r) != 1 || !strings.Contains(r[0].Detail, "10.0.0.53:53") {
		t.Errorf("upstream: %+v", r)
	}
}

func TestParseProcNet(t *testing.T) {
	const udp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0
  2: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 4243 2 0000000000000000 0
  3: 00000000:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4244 2 0000000000000000 0
`
	ss, err := ParseProcNet(strings.NewReader(udp), "udp", map[uint16]bool{53: true, 67: true})
	if err != nil || len(ss) != 2 {
		t.Fatalf("%v %+v", err, ss)
	}
	if ss[0].Local.String() != "0.0.0.0:67" || ss[0].Inode != 4242 || ss[1].Local.String() != "127.0.0.53:53" {
		t.Fatalf("%+v", ss)
	}
}
