package passt

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

// ackFixer supplies the ACK that Debian 12's passt (0.0~git20230309) never
// sends for an inbound (port-forwarded) TCP connection. passt answers a
// connection accepted on a forwarded host port with a SYN to the guest;
// when the guest's SYN-ACK comes back, tcp_conn_from_sock_finish() in that
// passt sets its "acknowledged up to" sequence to the guest's ISN+1 first
// and then calls tcp_send_flag(ACK_IF_NEEDED), which therefore sends
// nothing: the ACK completing the handshake goes out only with the first
// data or FIN from the host side. A guest whose service speaks first (the
// usual SSH and SMTP servers, a greeting) never accept()s the connection,
// retransmits its SYN-ACK (which that passt also leaves unanswered) and
// gives up. Newer passt (Debian 13) sends tcp_send_flag(ACK) there. The
// keeper relays every frame, so it records each SYN passt sends to the
// guest and, when the matching SYN-ACK passes the other way, sends the
// guest the ACK passt should have sent (sequence ISN+1, passt's window
// scaled as negotiated). With a passt that sends it too, the guest gets
// one duplicate ACK, which TCP ignores. The same passt code serves both
// families (TestSessionPasstIPv6 sees the ACK missing over IPv6 too), so
// the fixer reads and writes IPv4 and IPv6.
type ackFixer struct {
	mu   sync.Mutex
	syns map[flowKey]synInfo
}

// flowKey names a connection from passt's side of the guest link.
type flowKey struct {
	guest, peer         netip.Addr
	guestPort, peerPort uint16
}

// synInfo is what passt's SYN said: its ISN, window and window scale
// (-1 without the option).
type synInfo struct {
	seq uint32
	win uint16
	ws  int
}

// maxPendingSyns bounds the SYNs waiting for a SYN-ACK; beyond it the
// oldest state is dropped wholesale (a guest that never answers).
const maxPendingSyns = 1024

func newAckFixer() *ackFixer { return &ackFixer{syns: map[flowKey]synInfo{}} }

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// tcpSeg is the part of an Ethernet/IP/TCP frame the fixer reads.
type tcpSeg struct {
	srcMAC, dstMAC [6]byte
	src, dst       netip.Addr
	sport, dport   uint16
	seq, ack       uint32
	flags          byte
	win            uint16
	ws             int
}

// Ethernet types.
const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
)

// parseTCP reads a TCP segment in an untagged Ethernet frame: IPv4
// unfragmented, IPv6 without extension headers (passt sends none, nor does
// a guest's SYN-ACK); ok is false for anything else.
func parseTCP(f []byte) (s tcpSeg, ok bool) {
	if len(f) < 14 {
		return s, false
	}
	var t []byte
	switch ip := f[14:]; binary.BigEndian.Uint16(f[12:14]) {
	case etherIPv4:
		if len(ip) < 20 {
			return s, false
		}
		ihl := int(ip[0]&0x0f) * 4
		if ip[0]>>4 != 4 || ihl < 20 || ip[9] != 6 || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
			return s, false
		}
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if total > len(ip) || total < ihl+20 {
			return s, false
		}
		s.src = netip.AddrFrom4([4]byte(ip[12:16]))
		s.dst = netip.AddrFrom4([4]byte(ip[16:20]))
		t = ip[ihl:total]
	case etherIPv6:
		if len(ip) < 40+20 || ip[0]>>4 != 6 || ip[6] != 6 {
			return s, false
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) || plen < 20 {
			return s, false
		}
		s.src = netip.AddrFrom16([16]byte(ip[8:24]))
		s.dst = netip.AddrFrom16([16]byte(ip[24:40]))
		t = ip[40 : 40+plen]
	default:
		return s, false
	}
	off := int(t[12]>>4) * 4
	if off < 20 || off > len(t) {
		return s, false
	}
	copy(s.dstMAC[:], f[0:6])
	copy(s.srcMAC[:], f[6:12])
	s.sport = binary.BigEndian.Uint16(t[0:2])
	s.dport = binary.BigEndian.Uint16(t[2:4])
	s.seq = binary.BigEndian.Uint32(t[4:8])
	s.ack = binary.BigEndian.Uint32(t[8:12])
	s.flags = t[13]
	s.win = binary.BigEndian.Uint16(t[14:16])
	s.ws = -1
	for opts := t[20:off]; len(opts) > 0; {
		switch opts[0] {
		case 0:
			opts = nil
			continue
		case 1:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || opts[1] < 2 || int(opts[1]) > len(opts) {
			break
		}
		if opts[0] == 3 && opts[1] == 3 {
			s.ws = int(opts[2])
		}
		opts = opts[opts[1]:]
	}
	return s, true
}

// fromPasst notes a SYN passt sends to the guest.
func (a *ackFixer) fromPasst(frame []byte) {
	s, ok := parseTCP(frame)
	if !ok || s.flags&(tcpSYN|tcpACK|tcpRST|tcpFIN) != tcpSYN {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.syns) >= maxPendingSyns {
		clear(a.syns)
	}
	a.syns[flowKey{guest: s.dst, peer: s.src, guestPort: s.dport, peerPort: s.sport}] = synInfo{seq: s.seq, win: s.win, ws: s.ws}
}

// fromGuest returns the ACK to send the guest for its SYN-ACK answering a
// SYN of passt, nil for any other frame.
func (a *ackFixer) fromGuest(frame []byte) []byte {
	s, ok := parseTCP(frame)
	if !ok || s.flags&(tcpSYN|tcpACK|tcpRST|tcpFIN) != tcpSYN|tcpACK {
		return nil
	}
	key := flowKey{guest: s.src, peer: s.dst, guestPort: s.sport, peerPort: s.dport}
	a.mu.Lock()
	syn, found := a.syns[key]
	if found && s.ack == syn.seq+1 {
		delete(a.syns, key)
	}
	a.mu.Unlock()
	if !found || s.ack != syn.seq+1 {
		return nil
	}
	win := syn.win
	if syn.ws >= 0 && s.ws >= 0 {
		// Both offered scaling: windows after the SYNs are scaled.
		win = max(syn.win>>min(syn.ws, 14), 1)
	}
	return tcpAck(s.dstMAC, s.srcMAC, s.dst, s.src, s.dport, s.sport, syn.seq+1, s.seq+1, win)
}

// tcpAck builds an Ethernet/IPv4 or Ethernet/IPv6 frame (the family of
// src and dst) with a bare TCP ACK, as passt would send it (TTL or hop
// limit 255, IPv4's DF, no options).
func tcpAck(srcMAC, dstMAC [6]byte, src, dst netip.Addr, sport, dport uint16, seq, ack uint32, win uint16) []byte {
	var f, t []byte
	var pseudo uint32
	if src.Is4() {
		f = make([]byte, 14+20+20)
		binary.BigEndian.PutUint16(f[12:14], etherIPv4)
		ip := f[14:34]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:4], 40)
		binary.BigEndian.PutUint16(ip[6:8], 0x4000)
		ip[8] = 255
		ip[9] = 6
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:16], s4[:])
		copy(ip[16:20], d4[:])
		binary.BigEndian.PutUint16(ip[10:12], checksum(0, ip))
		t = f[34:54]
		pseudo = sum16(ip[12:20])
	} else {
		f = make([]byte, 14+40+20)
		binary.BigEndian.PutUint16(f[12:14], etherIPv6)
		ip := f[14:54]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:6], 20)
		ip[6] = 6
		ip[7] = 255
		s16, d16 := src.As16(), dst.As16()
		copy(ip[8:24], s16[:])
		copy(ip[24:40], d16[:])
		t = f[54:74]
		pseudo = sum16(ip[8:40])
	}
	copy(f[0:6], dstMAC[:])
	copy(f[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(t[0:2], sport)
	binary.BigEndian.PutUint16(t[2:4], dport)
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	t[12] = 5 << 4
	t[13] = tcpACK
	binary.BigEndian.PutUint16(t[14:16], win)
	// The pseudo header's protocol and TCP length complete the sum.
	binary.BigEndian.PutUint16(t[16:18], checksum(pseudo+6+uint32(len(t)), t))
	return f
}

// sum16 adds b's big-endian 16-bit words (an odd last byte is left out).
func sum16(b []byte) uint32 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return sum
}

// checksum is the Internet checksum of b, starting from the partial sum.
func checksum(sum uint32, b []byte) uint16 {
	sum += sum16(b)
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
