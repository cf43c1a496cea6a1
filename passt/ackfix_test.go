package passt

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// tcpFrame builds an Ethernet/IP/TCP frame for the fixer's tests (its
// TCP checksum is not updated for the options: the fixer does not check).
func tcpFrame(srcMAC, dstMAC [6]byte, src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags byte, win uint16, opts []byte) []byte {
	f := append(tcpAck(srcMAC, dstMAC, src, dst, sport, dport, seq, ack, win), opts...)
	tcp := 34
	if src.Is4() {
		binary.BigEndian.PutUint16(f[16:18], uint16(40+len(opts)))
	} else {
		tcp = 54
		binary.BigEndian.PutUint16(f[18:20], uint16(20+len(opts)))
	}
	f[tcp+12] = byte((20+len(opts))/4) << 4
	f[tcp+13] = flags
	return f
}

var (
	passtMAC = [6]byte{0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55}
	guestMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	peer4    = netip.MustParseAddr("172.31.255.2")
	guest4   = netip.MustParseAddr("10.0.2.15")
	peer6    = netip.MustParseAddr("fd99::2")
	guest6   = netip.MustParseAddr("fd00::15")
	// passt's SYN options: MSS 65480, NOP, window scale 7.
	passtSynOpts = []byte{2, 4, 0xff, 0xc8, 1, 3, 3, 7}
	// Linux's SYN-ACK options: MSS, SACK permitted, timestamps, NOP, window scale 7.
	linuxOpts = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
)

// TestAckFixer: the guest's SYN-ACK to passt's SYN gets the ACK passt
// omits (sequence, window scaling, addresses, checksums); other frames
// get nothing. IPv4 and IPv6.
func TestAckFixer(t *testing.T) {
	for _, tc := range []struct {
		name            string
		synOpts         []byte
		sackOpt         []byte
		win             uint16
		peerIP, guestIP netip.Addr
	}{
		{"window scaling", passtSynOpts, linuxOpts, 65535 >> 7, peer4, guest4},
		{"guest without scaling", passtSynOpts, []byte{2, 4, 0x05, 0xb4}, 65535, peer4, guest4},
		{"IPv6", passtSynOpts, linuxOpts, 65535 >> 7, peer6, guest6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peerIP, guestIP := tc.peerIP, tc.guestIP
			a := newAckFixer()
			a.fromPasst(tcpFrame(passtMAC, guestMAC, peerIP, guestIP, 40000, 8080, 111, 0, tcpSYN, 65535, tc.synOpts))
			// An answer to another flow, a wrong ack number: nothing.
			if f := a.fromGuest(tcpFrame(guestMAC, passtMAC, guestIP, peerIP, 8080, 40001, 5000, 112, tcpSYN|tcpACK, 64240, tc.sackOpt)); f != nil {
				t.Fatal("ACK for another flow")
			}
			if f := a.fromGuest(tcpFrame(guestMAC, passtMAC, guestIP, peerIP, 8080, 40000, 5000, 999, tcpSYN|tcpACK, 64240, tc.sackOpt)); f != nil {
				t.Fatal("ACK for a SYN-ACK with the wrong ack number")
			}
			f := a.fromGuest(tcpFrame(guestMAC, passtMAC, guestIP, peerIP, 8080, 40000, 5000, 112, tcpSYN|tcpACK, 64240, tc.sackOpt))
			s, ok := parseTCP(f)
			if !ok {
				t.Fatalf("no ACK: %x", f)
			}
			if s.srcMAC != passtMAC || s.dstMAC != guestMAC || s.src != peerIP || s.dst != guestIP || s.sport != 40000 || s.dport != 8080 {
				t.Fatalf("addresses: %+v", s)
			}
			if s.flags != tcpACK || s.seq != 112 || s.ack != 5001 || s.win != tc.win {
				t.Fatalf("flags %#x seq %d ack %d win %d", s.flags, s.seq, s.ack, s.win)
			}
			tcp, pseudo := 34, uint32(6+20)
			if peerIP.Is4() {
				if len(f) != 54 || checksum(0, f[14:34]) != 0 || f[22] != 255 {
					t.Fatalf("bad IPv4 header: %x", f)
				}
				pseudo += sum16(f[26:34])
			} else {
				tcp = 54
				if len(f) != 74 || f[14] != 0x60 || f[20] != 6 || f[21] != 255 || binary.BigEndian.Uint16(f[18:20]) != 20 {
					t.Fatalf("bad IPv6 header: %x", f)
				}
				pseudo += sum16(f[22:54])
			}
			if checksum(pseudo, f[tcp:]) != 0 {
				t.Fatal("bad TCP checksum")
			}
			// Once only: a retransmitted SYN-ACK is passt's business.
			if f := a.fromGuest(tcpFrame(guestMAC, passtMAC, guestIP, peerIP, 8080, 40000, 5000, 112, tcpSYN|tcpACK, 64240, tc.sackOpt)); f != nil {
				t.Fatal("second ACK")
			}
		})
	}
	a := newAckFixer()
	syn6 := tcpFrame(passtMAC, guestMAC, peer6, guest6, 40000, 8080, 111, 0, tcpSYN, 65535, passtSynOpts)
	for _, f := range [][]byte{nil, make([]byte, 60), {1, 2, 3}, syn6[:60], syn6[:20]} {
		a.fromPasst(f)
		if a.fromGuest(f) != nil {
			t.Fatalf("ACK for %x", f)
		}
	}
	// Outbound connections (the guest's SYN, passt's SYN-ACK) are not
	// touched.
	a.fromPasst(tcpFrame(passtMAC, guestMAC, peer4, guest4, 80, 50000, 7, 1001, tcpSYN|tcpACK, 65535, passtSynOpts))
	if len(a.syns) != 0 {
		t.Fatal("passt's SYN-ACK recorded")
	}
}
