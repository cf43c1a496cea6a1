package passt

import (
	"encoding/binary"
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
// one duplicate ACK, which TCP ignores. IPv4 only, like vnet's user-mode
// networks.
type ackFixer struct {
	mu   sync.Mutex
	syns map[flowKey]synInfo
}

// flowKey names a connection from passt's side of the guest link.
type flowKey struct {
	guest, peer         [4]byte
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

// tcpSeg is the part of an Ethernet/IPv4/TCP frame the fixer reads.
type tcpSeg struct {
	srcMAC, dstMAC [6]byte
	src, dst       [4]byte
	sport, dport   uint16
	seq, ack       uint32
	flags          byte
	win            uint16
	ws             int
}

// parseTCP4 reads an unfragmented IPv4 TCP segment in an untagged
// Ethernet frame; ok is false for anything else.
func parseTCP4(f []byte) (s tcpSeg, ok bool) {
	if len(f) < 14+20 || f[12] != 0x08 || f[13] != 0x00 {
		return s, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != 6 || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return s, false
	}
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total > len(ip) || total < ihl+20 {
		return s, false
	}
	t := ip[ihl:total]
	off := int(t[12]>>4) * 4
	if off < 20 || off > len(t) {
		return s, false
	}
	copy(s.dstMAC[:], f[0:6])
	copy(s.srcMAC[:], f[6:12])
	copy(s.src[:], ip[12:16])
	copy(s.dst[:], ip[16:20])
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
	s, ok := parseTCP4(frame)
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
	s, ok := parseTCP4(frame)
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

// tcpAck builds an Ethernet/IPv4 frame with a bare TCP ACK, as passt
// would send it (TTL 255, DF, no options).
func tcpAck(srcMAC, dstMAC [6]byte, src, dst [4]byte, sport, dport uint16, seq, ack uint32, win uint16) []byte {
	f := make([]byte, 14+20+20)
	copy(f[0:6], dstMAC[:])
	copy(f[6:12], srcMAC[:])
	f[12], f[13] = 0x08, 0x00
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], 40)
	binary.BigEndian.PutUint16(ip[6:8], 0x4000)
	ip[8] = 255
	ip[9] = 6
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(0, ip))
	t := f[34:54]
	binary.BigEndian.PutUint16(t[0:2], sport)
	binary.BigEndian.PutUint16(t[2:4], dport)
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	t[12] = 5 << 4
	t[13] = tcpACK
	binary.BigEndian.PutUint16(t[14:16], win)
	pseudo := uint32(binary.BigEndian.Uint16(src[0:2])) + uint32(binary.BigEndian.Uint16(src[2:4])) +
		uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4])) + 6 + uint32(len(t))
	binary.BigEndian.PutUint16(t[16:18], checksum(pseudo, t))
	return f
}

// checksum is the Internet checksum of b, starting from the partial sum.
func checksum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
