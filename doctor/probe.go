package doctor

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"vnet/network"
)

// Probe plugs a throwaway guest into the bridge: a veth whose far end lives
// in a temporary, unnamed network namespace. There it asks the network's
// dnsmasq for a lease (discover, request; released at the end, so no lease
// is left behind) and resolves its own DHCP hostname. The namespace and the
// veth are removed before Probe returns.
func (l *Live) Probe(ctx context.Context, n Network, timeout time.Duration) ProbeResult {
	p4, ok := n.v4()
	if !ok {
		return ProbeResult{Err: errors.New("no IPv4 address to probe")}
	}
	br, err := network.RetryDump(func() (netlink.Link, error) { return netlink.LinkByName(n.Bridge) })
	if err != nil {
		return ProbeResult{Err: fmt.Errorf("bridge %q: %w", n.Bridge, err)}
	}
	tag := make([]byte, 3)
	_, _ = rand.Read(tag)
	id := hex.EncodeToString(tag)
	hostEnd, guestEnd := "vdoc"+id, "vdocp"+id
	mac := net.HardwareAddr{0x52, 0x54, 0x00, tag[0], tag[1], tag[2]}

	done := make(chan ProbeResult, 1)
	go func() {
		// This goroutine's thread enters the probe's namespace; it never
		// serves other goroutines while there (see the deferred Set).
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- ProbeResult{Err: err}
			return
		}
		defer orig.Close()
		probeNS, err := netns.New() // switches this thread into it
		if err != nil {
			_ = netns.Set(orig)
			runtime.UnlockOSThread()
			done <- ProbeResult{Err: fmt.Errorf("create probe namespace: %w", err)}
			return
		}
		defer probeNS.Close()
		back := func() bool { return netns.Set(orig) == nil }
		if !back() {
			done <- ProbeResult{Err: errors.New("cannot return from the probe namespace")}
			return // the thread stays locked and dies with the goroutine
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: hostEnd, MTU: br.Attrs().MTU, MasterIndex: br.Attrs().Index},
			PeerName:      guestEnd,
			PeerNamespace: netlink.NsFd(probeNS),
		}
		veth.PeerHardwareAddr = mac
		if err := netlink.LinkAdd(veth); err != nil {
			runtime.UnlockOSThread()
			done <- ProbeResult{Err: fmt.Errorf("create probe veth %s: %w", hostEnd, err)}
			return
		}
		host, err := network.RetryDump(func() (netlink.Link, error) { return netlink.LinkByName(hostEnd) })
		if err != nil {
			runtime.UnlockOSThread()
			done <- ProbeResult{Err: fmt.Errorf("probe veth %s: %w", hostEnd, err)}
			return
		}
		defer func() {
			// Deleting one end deletes both (the namespace goes with its
			// last handle).
			_ = netlink.LinkDel(host)
		}()
		_ = netlink.LinkSetUp(host)
		if err := netns.Set(probeNS); err != nil {
			runtime.UnlockOSThread()
			done <- ProbeResult{Err: fmt.Errorf("enter probe namespace: %w", err)}
			return
		}
		r := probeInside(ctx, n, p4, guestEnd, mac, orig, hostEnd, timeout)
		if back() {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	return <-done
}

// probeInside runs in the probe namespace (the calling thread is there).
func probeInside(ctx context.Context, n Network, p4 netip.Prefix, dev string, mac net.HardwareAddr, orig netns.NsHandle, hostEnd string, timeout time.Duration) ProbeResult {
	var r ProbeResult
	link, err := network.RetryDump(func() (netlink.Link, error) { return netlink.LinkByName(dev) })
	if err != nil {
		r.Err = fmt.Errorf("probe veth %s: %w", dev, err)
		return r
	}
	if err := netlink.LinkSetUp(link); err != nil {
		r.Err = fmt.Errorf("probe veth %s up: %w", dev, err)
		return r
	}
	// Until the kernel's linkwatch marks both ends operationally up,
	// their qdisc drops whatever is sent: wait for it.
	if err := waitOperUp(orig, hostEnd, dev, timeout); err != nil {
		r.Err = err
		return r
	}
	host := "vnet-doctor-" + hex.EncodeToString(mac[3:])
	var lease, server netip.Addr
	if n.DHCPv4Pool {
		start := time.Now()
		lease, server, err = dhcpLease(ctx, dev, mac, host, timeout)
		r.DHCPTook = time.Since(start)
		if err != nil {
			r.DHCPErr = err
			return r
		}
	}
	addr := netip.PrefixFrom(lease, p4.Bits())
	if !lease.IsValid() {
		if !n.DNS {
			return r
		}
		// No DHCP on this network: a static address at the subnet's end.
		last := p4.Masked().Addr()
		for a := last; p4.Masked().Contains(a); a = a.Next() {
			last = a
		}
		addr = netip.PrefixFrom(last.Prev(), p4.Bits())
		host = "localhost"
	}
	// The address: for the DNS query, and the release is sent from it.
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}); err != nil {
		r.Err = fmt.Errorf("probe address %s: %w", addr, err)
		return r
	}
	dns := netip.AddrPortFrom(p4.Addr(), 53)
	if lease.IsValid() {
		r.Lease = lease
		defer func() {
			releaseLease(dev, mac, lease, server)
			if n.DNS {
				waitNameGone(ctx, dns, host)
			}
		}()
	}
	if !n.DNS {
		return r
	}
	r.DNSRan = true
	start := time.Now()
	r.DNSErr = dnsQuery(ctx, dns, host, 1, timeout)
	r.DNSTook = time.Since(start)
	return r
}

// waitNameGone waits (briefly) until dnsmasq no longer resolves the probe's
// DHCP hostname: then it has handled the release and the lease is gone
// when the probe returns.
func waitNameGone(ctx context.Context, server netip.AddrPort, host string) {
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		answers, err := dnsAnswers(ctx, server, host, 50*time.Millisecond)
		if err == nil && answers == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitOperUp polls until the probe veth's ends are operationally up.
func waitOperUp(orig netns.NsHandle, hostEnd, guestEnd string, timeout time.Duration) error {
	h, err := netlink.NewHandleAt(orig)
	if err != nil {
		return err
	}
	defer h.Close()
	deadline := time.Now().Add(timeout)
	for {
		g, err1 := netlink.LinkByName(guestEnd)
		o, err2 := h.LinkByName(hostEnd)
		if err1 == nil && err2 == nil && g.Attrs().OperState == netlink.OperUp && o.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("probe veth %s did not come up within %v", hostEnd, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// DHCP message types and options (RFC 2131/2132).
const (
	dhcpDiscover = 1
	dhcpOffer    = 2
	dhcpRequest  = 3
	dhcpAck      = 5
	dhcpNak      = 6
	dhcpRelease  = 7

	optHostname  = 12
	optRequested = 50
	optType      = 53
	optServer    = 54
	optClientID  = 61
	optEnd       = 255
)

// dhcpMessage builds a BOOTREQUEST.
func dhcpMessage(typ byte, xid uint32, mac net.HardwareAddr, ciaddr netip.Addr, opts [][]byte) []byte {
	b := make([]byte, 240, 300)
	b[0], b[1], b[2] = 1, 1, 6
	binary.BigEndian.PutUint32(b[4:], xid)
	if !ciaddr.IsValid() {
		binary.BigEndian.PutUint16(b[10:], 0x8000) // broadcast replies: we have no address yet
	} else {
		c := ciaddr.As4()
		copy(b[12:], c[:])
	}
	copy(b[28:], mac)
	copy(b[236:], []byte{99, 130, 83, 99})
	b = append(b, optType, 1, typ)
	b = append(b, optClientID, 7, 1)
	b = append(b, mac...)
	for _, o := range opts {
		b = append(b, o...)
	}
	return append(b, optEnd)
}

func opt(code byte, v []byte) []byte { return append([]byte{code, byte(len(v))}, v...) }

// parseDHCP returns a BOOTREPLY's type, yiaddr and server id.
func parseDHCP(b []byte, xid uint32) (typ byte, yiaddr, server netip.Addr, ok bool) {
	if len(b) < 240 || b[0] != 2 || binary.BigEndian.Uint32(b[4:]) != xid {
		return 0, netip.Addr{}, netip.Addr{}, false
	}
	yiaddr = netip.AddrFrom4([4]byte(b[16:20]))
	for i := 240; i < len(b); {
		code := b[i]
		if code == optEnd {
			break
		}
		if code == 0 {
			i++
			continue
		}
		if i+1 >= len(b) || i+2+int(b[i+1]) > len(b) {
			break
		}
		v := b[i+2 : i+2+int(b[i+1])]
		switch code {
		case optType:
			if len(v) == 1 {
				typ = v[0]
			}
		case optServer:
			if len(v) == 4 {
				server = netip.AddrFrom4([4]byte(v))
			}
		}
		i += 2 + len(v)
	}
	return typ, yiaddr, server, typ != 0
}

// dhcpSocket is a UDP socket on port 68 of dev that may broadcast.
func dhcpSocket(ctx context.Context, dev string, local string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(ctx, "udp4", local)
}

var bcast = &net.UDPAddr{IP: net.IPv4bcast, Port: 67}

// dhcpLease runs discover → offer → request → ack.
func dhcpLease(ctx context.Context, dev string, mac net.HardwareAddr, host string, timeout time.Duration) (lease, server netip.Addr, err error) {
	c, err := dhcpSocket(ctx, dev, "0.0.0.0:68")
	if err != nil {
		return lease, server, fmt.Errorf("dhcp socket: %w", err)
	}
	defer c.Close()
	var x [4]byte
	_, _ = rand.Read(x[:])
	xid := binary.BigEndian.Uint32(x[:])
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	exchange := func(msg []byte, want byte) (netip.Addr, netip.Addr, error) {
		// Resent after 100 ms, then at doubling gaps: a first packet can
		// meet a bridge port that is not forwarding yet.
		buf := make([]byte, 1500)
		gap := 100 * time.Millisecond
		for {
			if _, err := c.WriteTo(msg, bcast); err != nil {
				return netip.Addr{}, netip.Addr{}, err
			}
			resend := time.Now().Add(gap)
			gap *= 2
			if resend.After(deadline) {
				resend = deadline
			}
			_ = c.SetReadDeadline(resend)
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					if time.Now().Before(deadline) && errors.Is(err, os.ErrDeadlineExceeded) {
						break // resend
					}
					return netip.Addr{}, netip.Addr{}, err
				}
				typ, yi, srv, ok := parseDHCP(buf[:n], xid)
				if !ok {
					continue
				}
				if typ == dhcpNak {
					return netip.Addr{}, netip.Addr{}, errors.New("DHCPNAK")
				}
				if typ == want {
					return yi, srv, nil
				}
			}
		}
	}
	hostOpt := opt(optHostname, []byte(host))
	offered, srv, err := exchange(dhcpMessage(dhcpDiscover, xid, mac, netip.Addr{}, [][]byte{hostOpt}), dhcpOffer)
	if err != nil {
		return lease, server, fmt.Errorf("no DHCPOFFER within %v: %w", timeout, shortErr(err))
	}
	a4, s4 := offered.As4(), srv.As4()
	acked, _, err := exchange(dhcpMessage(dhcpRequest, xid, mac, netip.Addr{}, [][]byte{hostOpt, opt(optRequested, a4[:]), opt(optServer, s4[:])}), dhcpAck)
	if err != nil {
		return lease, server, fmt.Errorf("offered %s but no DHCPACK: %w", offered, shortErr(err))
	}
	return acked, srv, nil
}

// releaseLease gives the probe's lease back (unicast from the lease).
func releaseLease(dev string, mac net.HardwareAddr, lease, server netip.Addr) {
	if !server.IsValid() {
		return
	}
	c, err := dhcpSocket(context.Background(), dev, netip.AddrPortFrom(lease, 68).String())
	if err != nil {
		return
	}
	defer c.Close()
	s4 := server.As4()
	var x [4]byte
	_, _ = rand.Read(x[:])
	msg := dhcpMessage(dhcpRelease, binary.BigEndian.Uint32(x[:]), mac, lease, [][]byte{opt(optServer, s4[:])})
	_, _ = c.WriteTo(msg, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 67)))
}

func shortErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errors.New("timed out")
	}
	return err
}

// dnsQuery sends one query (qtype) for name and waits for any answer with
// its id.
func dnsQuery(ctx context.Context, server netip.AddrPort, name string, qtype uint16, timeout time.Duration) error {
	_, err := dnsExchange(ctx, server, name, qtype, timeout)
	return err
}

// dnsAnswers returns the number of A records server answers for name.
func dnsAnswers(ctx context.Context, server netip.AddrPort, name string, timeout time.Duration) (int, error) {
	return dnsExchange(ctx, server, name, 1, timeout)
}

// dnsExchange sends a query (resent every second) and returns the answer
// count of the reply with its id.
func dnsExchange(ctx context.Context, server netip.AddrPort, name string, qtype uint16, timeout time.Duration) (int, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server.String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	q := []byte{idb[0], idb[1], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, label := range strings.Split(strings.Trim(name, "."), ".") {
		if label == "" {
			continue
		}
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	q = append(q, 0, byte(qtype>>8), byte(qtype), 0, 1)
	deadline := time.Now().Add(timeout)
	_ = c.SetDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		if _, err := c.Write(q); err != nil {
			return 0, err
		}
		resend := time.Now().Add(time.Second)
		if resend.After(deadline) {
			resend = deadline
		}
		_ = c.SetReadDeadline(resend)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(deadline) {
					break
				}
				return 0, shortErr(err)
			}
			if n >= 12 && buf[0] == idb[0] && buf[1] == idb[1] && buf[2]&0x80 != 0 {
				return int(binary.BigEndian.Uint16(buf[6:8])), nil
			}
		}
	}
}

// QueryDNS asks server for the root's NS records.
func (l *Live) QueryDNS(ctx context.Context, server netip.AddrPort, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := dnsQuery(ctx, server, ".", 2, timeout)
	return time.Since(start), err
}
