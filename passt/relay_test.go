package passt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func connPair(tb testing.TB) (net.Conn, net.Conn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	var cs [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		cs[i] = c
	}
	return cs[0], cs[1]
}

// BenchmarkRelay: frames from the guest through the keeper's relay to a
// passt stand-in that echoes them, and back (what the relay adds per
// frame, both directions).
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{1514, 65534} {
		b.Run(fmt.Sprintf("frame=%d", size), func(b *testing.B) {
			guest, keeperSide := connPair(b)
			passtSide, passt := connPair(b)
			defer guest.Close()
			defer passt.Close()
			r := newRelay(keeperSide.(*net.UnixConn), slog.New(slog.NewTextHandler(io.Discard, nil)))
			go r.fromGuest()
			go r.toGuest(passtSide)
			r.setPasst(passtSide)
			go func() { _, _ = io.Copy(passt, passt) }()
			frame := binary.BigEndian.AppendUint32(nil, uint32(size))
			frame = append(frame, make([]byte, size)...)
			b.SetBytes(int64(len(frame)))
			go func() {
				for i := 0; i < b.N; i++ {
					if _, err := guest.Write(frame); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, len(frame))
			for i := 0; i < b.N; i++ {
				if _, err := io.ReadFull(guest, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			keeperSide.Close()
			passtSide.Close()
		})
	}
}

// frame returns payload with the stream's 32-bit length prefix.
func frame(payload string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// readFrames reads n frames from c (5 s at most) and returns their
// payloads.
func readFrames(t *testing.T, c net.Conn, n int) []string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var got []string
	for range n {
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("after frames %q: %v", got, err)
		}
		p := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, p); err != nil {
			t.Fatalf("after frames %q: %v", got, err)
		}
		got = append(got, string(p))
	}
	return got
}

func equal(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

// testPasst is one passt run on the relay: the keeper's end (the relay
// reads it in toGuest, as serve does) and passt's end.
type testPasst struct {
	keeper, passt net.Conn
	done          chan struct{} // toGuest returned
}

func startPasst(t *testing.T, r *relay) *testPasst {
	t.Helper()
	keeper, passt := connPair(t)
	p := &testPasst{keeper: keeper, passt: passt, done: make(chan struct{})}
	go func() {
		r.toGuest(keeper)
		close(p.done)
	}()
	r.setPasst(keeper)
	t.Cleanup(func() {
		keeper.Close()
		passt.Close()
	})
	return p
}

// ended waits for toGuest to return on passt's connection.
func (p *testPasst) ended(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("toGuest did not return after passt's end closed")
	}
}

// TestRelay: frames both ways arrive whole and in order however they are
// cut into writes; while no passt runs the guest's frames wait for the
// next one; a passt dying in the middle of a frame (or out of step) never
// puts half a frame on the guest's stream; the guest's close ends the run.
func TestRelay(t *testing.T) {
	guest, keeperSide := connPair(t)
	defer guest.Close()
	defer keeperSide.Close()
	r := newRelay(keeperSide.(*net.UnixConn), slog.New(slog.NewTextHandler(io.Discard, nil)))
	fromGuestDone := make(chan struct{})
	go func() {
		r.fromGuest()
		close(fromGuestDone)
	}()
	p1 := startPasst(t, r)

	// Guest to passt: several frames in one write, one frame a byte at a
	// time, an empty frame and one of the largest size.
	big := string(bytes.Repeat([]byte{'x'}, maxFrame))
	if _, err := guest.Write(append(append(frame("a"), frame("bb")...), frame("")...)); err != nil {
		t.Fatal(err)
	}
	for _, b := range frame("slow") {
		if _, err := guest.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _, _ = guest.Write(frame(big)) }()
	equal(t, "passt got", readFrames(t, p1.passt, 5), "a", "bb", "", "slow", big)

	// Passt to guest, the same.
	if _, err := p1.passt.Write(append(frame("c"), frame("dd")...)); err != nil {
		t.Fatal(err)
	}
	for _, b := range frame("slow") {
		if _, err := p1.passt.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	equal(t, "guest got", readFrames(t, guest, 3), "c", "dd", "slow")

	// passt dies in the middle of a frame: the half frame is dropped.
	if _, err := p1.passt.Write(append(frame("whole"), frame("half")[:5]...)); err != nil {
		t.Fatal(err)
	}
	p1.passt.Close()
	p1.ended(t)
	r.setPasst(nil)
	equal(t, "guest got from the dying passt", readFrames(t, guest, 1), "whole")

	// No passt: the guest's frame waits for the next one.
	if _, err := guest.Write(frame("waiting")); err != nil {
		t.Fatal(err)
	}
	p2 := startPasst(t, r)
	equal(t, "next passt got", readFrames(t, p2.passt, 1), "waiting")
	if _, err := p2.passt.Write(frame("next")); err != nil {
		t.Fatal(err)
	}
	equal(t, "guest got from the next passt", readFrames(t, guest, 1), "next")

	// A length beyond maxFrame: passt's stream is out of step; the relay
	// drops it (closes its end) and forwards nothing of it.
	if _, err := p2.passt.Write(binary.BigEndian.AppendUint32(nil, maxFrame+1)); err != nil {
		t.Fatal(err)
	}
	p2.ended(t)
	r.setPasst(nil)
	_ = p2.passt.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := p2.passt.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("passt out of step: its connection not closed by the relay: %v", err)
	}
	p3 := startPasst(t, r)
	if _, err := p3.passt.Write(frame("after")); err != nil {
		t.Fatal(err)
	}
	equal(t, "guest got after an out-of-step passt", readFrames(t, guest, 1), "after")

	// The guest goes: fromGuest ends, the run is over.
	if r.isGuestGone() {
		t.Fatal("guest gone while connected")
	}
	guest.Close()
	select {
	case <-r.guestGone:
	case <-time.After(5 * time.Second):
		t.Fatal("guestGone not closed after the guest's close")
	}
	<-fromGuestDone
	if !r.isGuestGone() || r.currentPasst() != nil {
		t.Fatal("relay still hands out a passt after the guest went")
	}
	// passt's frames towards a gone guest end toGuest.
	deadline := time.Now().Add(5 * time.Second)
	for ended := false; !ended; {
		if time.Now().After(deadline) {
			t.Fatal("toGuest did not return after the guest went")
		}
		if _, err := p3.passt.Write(frame("late")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p3.done:
			ended = true
		case <-time.After(10 * time.Millisecond):
		}
	}
}
