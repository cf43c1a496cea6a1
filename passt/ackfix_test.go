package passt

import (
	"encoding/binary"
	"testing"
)

// tcpFrame builds an Ethernet/IPv4/TCP frame for the fixer's tests.
func tcpFrame(srcMAC, dstMAC [6]byte, src, dst [4]byte, sport, dport uint16, seq, ack uint32, flags byte, win uint16, opts []byte) []byte {
	f := tcpAck(srcMAC, dstMAC, src, dst, sport, dport, seq, ack, win)
	f = append(f[:54], opts...)
	binary.BigEndian.PutUint16(f[16:18], uint16(40+len(opts)))
	f[46] = byte((20+len(opts))/4) << 4
	f[47] = flags
	return f
}

var (
	passtMAC = [6]byte{0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55}
	guestMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	peerIP   = [4]byte{172, 31, 255, 2}
	guestIP  = [4]byte{10, 0, 2, 15}
	// passt's SYN options: MSS 65480, NOP, window scale 7.
	passtSynOpts = []byte{2, 4, 0xff, 0xc8, 1, 3, 3, 7}
	// Linux's SYN-ACK options: MSS, SACK permitted, timestamps, NOP, window scale 7.
	linuxOpts = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
)

// TestAckFixer: the guest's SYN-ACK to passt's SYN gets the ACK passt
// omits (sequence, window scaling, addresses, checksums); other frames
// get nothing.
func TestAckFixer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		synOpts []byte
		sackOpt []byte
		win     uint16
	}{
		{"window scaling", passtSynOpts, linuxOpts, 65535 >> 7},
		{"guest without scaling", passtSynOpts, []byte{2, 4, 0x05, 0xb4}, 65535},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			s, ok := parseTCP4(f)
			if !ok {
				t.Fatalf("no ACK: %x", f)
			}
			if s.srcMAC != passtMAC || s.dstMAC != guestMAC || s.src != peerIP || s.dst != guestIP || s.sport != 40000 || s.dport != 8080 {
				t.Fatalf("addresses: %+v", s)
			}
			if s.flags != tcpACK || s.seq != 112 || s.ack != 5001 || s.win != tc.win {
				t.Fatalf("flags %#x seq %d ack %d win %d", s.flags, s.seq, s.ack, s.win)
			}
			if checksum(0, f[14:34]) != 0 {
				t.Fatal("bad IPv4 header checksum")
			}
			pseudo := uint32(172<<8|31) + uint32(255<<8|2) + uint32(10<<8) + uint32(2<<8|15) + 6 + 20
			if checksum(pseudo, f[34:]) != 0 {
				t.Fatal("bad TCP checksum")
			}
			// Once only: a retransmitted SYN-ACK is passt's business.
			if f := a.fromGuest(tcpFrame(guestMAC, passtMAC, guestIP, peerIP, 8080, 40000, 5000, 112, tcpSYN|tcpACK, 64240, tc.sackOpt)); f != nil {
				t.Fatal("second ACK")
			}
		})
	}
	a := newAckFixer()
	for _, f := range [][]byte{nil, make([]byte, 60), {1, 2, 3}} {
		a.fromPasst(f)
		if a.fromGuest(f) != nil {
			t.Fatalf("ACK for %x", f)
		}
	}
	// Outbound connections (the guest's SYN, passt's SYN-ACK) are not
	// touched.
	a.fromPasst(tcpFrame(passtMAC, guestMAC, peerIP, guestIP, 80, 50000, 7, 1001, tcpSYN|tcpACK, 65535, passtSynOpts))
	if len(a.syns) != 0 {
		t.Fatal("passt's SYN-ACK recorded")
	}
}
