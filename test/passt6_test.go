package test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// addUpstream6 gives the host/upstream link of addUpstream IPv6 (host
// fd99::1, upstream fd99::2, the host's IPv6 default route through it:
// passt takes its IPv6 template interface from that route) and lets every
// group of host open ICMP echo sockets, which passt, run as an ordinary
// user, pings with.
func addUpstream6(t testing.TB, host, up *netnstest.NS) {
	t.Helper()
	host.MustRun("ip", "addr", "add", "fd99::1/64", "dev", "up0", "nodad")
	up.MustRun("ip", "addr", "add", "fd99::2/64", "dev", "eth0", "nodad")
	host.MustRun("ip", "-6", "route", "add", "default", "via", "fd99::2")
	host.MustRun("sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
}

// The raw guest's IPv6 identity: its link-local address (from its MAC)
// and the address the network gives it.
var (
	guestLL = netip.MustParseAddr("fe80::5054:ff:fe12:3456")
	guest6  = netip.MustParseAddr("fd00::15")
)

// icmp6 builds the guest's ICMPv6 message (with its checksum) in a frame.
func (g *rawGuest) icmp6(dstMAC [6]byte, src, dst netip.Addr, typ byte, body []byte) []byte {
	m := append([]byte{typ, 0, 0, 0}, body...)
	binary.BigEndian.PutUint16(m[2:4], inetSum(pseudoSum(src, dst, 58, len(m)), m))
	return g.ipFrame(dstMAC, src, dst, 58, 255, m)
}

// multicastMAC is the Ethernet address of an IPv6 multicast group.
func multicastMAC(a netip.Addr) [6]byte {
	b := a.As16()
	return [6]byte{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// ip6Packet is an IPv6 packet the guest received.
type ip6Packet struct {
	srcMAC   [6]byte
	src, dst netip.Addr
	proto    byte
	payload  []byte
}

// next6 returns the next IPv6 packet passt sends the guest for which match
// is true, skipping others.
func (g *rawGuest) next6(within time.Duration, what string, match func(p ip6Packet) bool) (ip6Packet, error) {
	deadline := time.Now().Add(within)
	for {
		f, err := g.next(deadline)
		if err != nil {
			return ip6Packet{}, fmt.Errorf("no %s from passt within %v: %w", what, within, err)
		}
		if len(f) < 54 || f[12] != 0x86 || f[13] != 0xdd {
			continue
		}
		n := int(binary.BigEndian.Uint16(f[18:20]))
		if 54+n > len(f) {
			continue
		}
		p := ip6Packet{src: netip.AddrFrom16([16]byte(f[22:38])), dst: netip.AddrFrom16([16]byte(f[38:54])), proto: f[20], payload: f[54 : 54+n]}
		copy(p.srcMAC[:], f[6:12])
		if match(p) {
			return p, nil
		}
	}
}

// ndpOption returns the first NDP option of type typ (its whole TLV).
func ndpOption(opts []byte, typ byte) []byte {
	for len(opts) >= 8 && opts[1] != 0 && int(opts[1])*8 <= len(opts) {
		if opts[0] == typ {
			return opts[:int(opts[1])*8]
		}
		opts = opts[int(opts[1])*8:]
	}
	return nil
}

// routerSolicit sends a router solicitation and returns passt's router
// advertisement: its source (the guest's default router) and the prefix
// of its prefix information option.
func (g *rawGuest) routerSolicit() (router netip.Addr, routerMAC [6]byte, prefix netip.Prefix, err error) {
	allRouters := netip.MustParseAddr("ff02::2")
	if err = g.send(g.icmp6(multicastMAC(allRouters), guestLL, allRouters, 133, append([]byte{0, 0, 0, 0, 1, 1}, g.mac[:]...))); err != nil {
		return
	}
	p, err := g.next6(5*time.Second, "router advertisement", func(p ip6Packet) bool {
		return p.proto == 58 && len(p.payload) >= 16 && p.payload[0] == 134
	})
	if err != nil {
		return
	}
	pi := ndpOption(p.payload[16:], 3)
	if len(pi) != 32 {
		return p.src, p.srcMAC, prefix, fmt.Errorf("router advertisement without a prefix option: %x", p.payload)
	}
	return p.src, p.srcMAC, netip.PrefixFrom(netip.AddrFrom16([16]byte(pi[16:32])), int(pi[2])), nil
}

// neighborSolicit asks for target's link-layer address and returns the
// target of passt's neighbour advertisement.
func (g *rawGuest) neighborSolicit(target netip.Addr) (netip.Addr, error) {
	t := target.As16()
	snm := netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]})
	body := append(append([]byte{0, 0, 0, 0}, t[:]...), append([]byte{1, 1}, g.mac[:]...)...)
	if err := g.send(g.icmp6(multicastMAC(snm), guestLL, snm, 135, body)); err != nil {
		return netip.Addr{}, err
	}
	p, err := g.next6(5*time.Second, "neighbour advertisement", func(p ip6Packet) bool {
		return p.proto == 58 && len(p.payload) >= 24 && p.payload[0] == 136
	})
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.AddrFrom16([16]byte(p.payload[8:24])), nil
}

// dhcpv6Solicit sends a DHCPv6 Solicit for a non-temporary address and
// returns the address of the IA_NA in passt's answer.
func (g *rawGuest) dhcpv6Solicit() (netip.Addr, error) {
	duid := append([]byte{0, 3, 0, 1}, g.mac[:]...)
	msg := []byte{1, 0x12, 0x34, 0x56}                           // Solicit, transaction id
	msg = append(append(msg, 0, 1, 0, byte(len(duid))), duid...) // client id
	msg = append(msg, 0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0)
	msg = append(msg, 0, 8, 0, 2, 0, 0) // elapsed time
	udp := binary.BigEndian.AppendUint16(nil, 546)
	udp = binary.BigEndian.AppendUint16(udp, 547)
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(msg)))
	udp = append(append(udp, 0, 0), msg...)
	servers := netip.MustParseAddr("ff02::1:2")
	binary.BigEndian.PutUint16(udp[6:8], inetSum(pseudoSum(guestLL, servers, 17, len(udp)), udp))
	if err := g.send(g.ipFrame(multicastMAC(servers), guestLL, servers, 17, 1, udp)); err != nil {
		return netip.Addr{}, err
	}
	p, err := g.next6(5*time.Second, "DHCPv6 answer", func(p ip6Packet) bool {
		return p.proto == 17 && len(p.payload) >= 12 && binary.BigEndian.Uint16(p.payload[0:2]) == 547 &&
			binary.BigEndian.Uint16(p.payload[2:4]) == 546 && bytes.Equal(p.payload[9:12], msg[1:4])
	})
	if err != nil {
		return netip.Addr{}, err
	}
	opts := p.payload[12:]
	for len(opts) >= 4 {
		code, n := binary.BigEndian.Uint16(opts[0:2]), int(binary.BigEndian.Uint16(opts[2:4]))
		if 4+n > len(opts) {
			break
		}
		if code == 3 && n >= 12+4+16 { // IA_NA: IAID, T1, T2, then IAADDR
			if sub := opts[4+12 : 4+n]; binary.BigEndian.Uint16(sub[0:2]) == 5 {
				return netip.AddrFrom16([16]byte(sub[4:20])), nil
			}
		}
		opts = opts[4+n:]
	}
	return netip.Addr{}, fmt.Errorf("DHCPv6 answer (message type %d) without an IA_NA address: %x", p.payload[8], p.payload[8:])
}

// ping6 sends an ICMPv6 echo request from the guest's address to dst
// through the router and waits for the reply.
func (g *rawGuest) ping6(routerMAC [6]byte, dst netip.Addr) (time.Duration, error) {
	data := []byte("vnet-ping6")
	t0 := time.Now()
	if err := g.send(g.icmp6(routerMAC, guest6, dst, 128, append([]byte{0, 0x77, 0, 1}, data...))); err != nil {
		return 0, err
	}
	_, err := g.next6(5*time.Second, "echo reply from "+dst.String(), func(p ip6Packet) bool {
		return p.proto == 58 && p.src == dst && p.dst == guest6 && len(p.payload) >= 8 && p.payload[0] == 129 && bytes.Equal(p.payload[8:], data)
	})
	return time.Since(t0), err
}

const userNet6XML = `<network>
  <name>usernet6</name>
  <vnet:forward xmlns:vnet='urn:vnet:network:1' mode='user'>
    <portForward proto='tcp'>
      <range start='2222' to='8080'/>
    </portForward>
  </vnet:forward>
  <ip address='10.0.2.2' prefix='24'>
    <dhcp>
      <range start='10.0.2.15' end='10.0.2.15'/>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00::2' prefix='64'>
    <dhcp>
      <range start='fd00::15' end='fd00::15'/>
    </dhcp>
  </ip>
</network>
`

// TestSessionPasstIPv6: a user-mode network with an IPv6 <ip> runs passt
// dual-stack. A raw guest on the port's socket gets passt's router
// advertisement (from its link-local address, with the network's /64), a
// neighbour advertisement for the gateway, its address by DHCPv6, and
// pings an upstream namespace's IPv6 address through passt; a connection
// to the forwarded host port over IPv6 reaches a guest server that speaks
// first (the keeper's handshake ACK, IPv6); ARP still works. Bad IPv6
// definitions are refused precisely and create nothing.
func TestSessionPasstIPv6(t *testing.T) {
	host, up, s := passtHost(t, "sess6")
	// passt reads the host's routes when a port starts it, not before.
	addUpstream6(t, host, up)

	for _, c := range []struct{ doc, want string }{
		{strings.Replace(userNet6XML, "prefix='64'", "prefix='48'", 1),
			"network 'usernet6': <ip family='ipv6' address='fd00::2' prefix='48'> needs prefix='64': passt announces the guest's address as a /64 and cannot use another prefix"},
		{strings.Replace(userNet6XML, "<range start='fd00::15' end='fd00::15'/>", "<range start='fd01::15' end='fd01::15'/>", 1),
			"is not entirely within network"},
		{strings.Replace(strings.Replace(userNet6XML, "<portForward proto='tcp'>", "<portForward proto='tcp' address='fd99::1'>", 1),
			userNet6XML[strings.Index(userNet6XML, "  <ip family"):strings.Index(userNet6XML, "</network>")], "", 1),
			"portForward address 'fd99::1' in network 'usernet6' is IPv6, but the network has no IPv6 <ip> (passt runs without that family and cannot bind it)"},
	} {
		if _, errs, code := s.ctl("net-define", s.file("bad6.xml", c.doc)); code == 0 || !strings.Contains(errs, c.want) {
			t.Fatalf("net-define: exit %d %q, want …%s", code, errs, c.want)
		}
	}
	if list := s.mustCtl("net-list", "--all", "--name"); strings.TrimSpace(list) != "" {
		t.Fatalf("networks after refused definitions: %q", list)
	}

	s.mustCtl("net-define", s.file("user6.xml", userNet6XML))
	s.mustCtl("net-start", "usernet6")
	const uuid = "5d744f21-ba4a-4d6e-bdb2-30a35ff32076"
	s.mustCtl("net-port-create", "usernet6", s.file("port6.xml", portXML(uuid, "52:54:00:12:34:56", "")))
	xml := s.mustCtl("net-port-dumpxml", "usernet6", uuid)
	sock := strings.Split(strings.Split(xml, "socket='")[1], "'")[0]
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := arpProbe(c, 10*time.Second); err != nil {
		t.Fatalf("no ARP reply from dual-stack passt: %v", err)
	}
	g := newRawGuest(c)
	router, routerMAC, prefix, err := g.routerSolicit()
	if err != nil {
		t.Fatal(err)
	}
	if !router.IsLinkLocalUnicast() || prefix.String() != "fd00::/64" {
		t.Fatalf("router advertisement from %v with prefix %v, want a link-local router and fd00::/64", router, prefix)
	}
	if target, err := g.neighborSolicit(netip.MustParseAddr("fd00::2")); err != nil || target.String() != "fd00::2" {
		t.Fatalf("neighbour solicitation for the gateway: %v %v", target, err)
	}
	if a, err := g.dhcpv6Solicit(); err != nil || a != guest6 {
		t.Fatalf("DHCPv6: %v %v, want %v", a, err, guest6)
	}
	rtt, err := g.ping6(routerMAC, netip.MustParseAddr("fd99::2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("router %v announces %v; DHCPv6 gives %v; echo to the upstream fd99::2 answered in %v", router, prefix, guest6, rtt.Round(time.Microsecond))
	inboundGreeting(t, c, up, "[fd99::1]:2222")
	s.mustCtl("net-port-delete", "usernet6", uuid)
}
