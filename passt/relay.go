package passt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

// QEMU's stream netdev and passt frame each Ethernet frame with a 32-bit
// big-endian length. maxFrame bounds a frame (passt's MTU is at most
// 65520, QEMU's frames at most 64 KiB plus headers); a larger length
// means the stream is out of step.
const (
	maxFrame  = 1 << 17
	relayBufs = 256 << 10
)

// relay moves frames between the guest's connection and the current passt.
type relay struct {
	guest *net.UnixConn
	log   *slog.Logger
	fix   *ackFixer

	// wmu serializes whole frames towards the guest (passt's and the
	// keeper's own ACKs).
	wmu sync.Mutex
	gw  *bufio.Writer

	mu        sync.Mutex
	cond      *sync.Cond
	passt     net.Conn // nil between passt runs
	gone      bool
	guestGone chan struct{}
}

func newRelay(guest *net.UnixConn, log *slog.Logger) *relay {
	r := &relay{guest: guest, log: log, fix: newAckFixer(), gw: bufio.NewWriterSize(guest, relayBufs), guestGone: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// setPasst makes c (nil: none) the passt the guest's frames go to.
func (r *relay) setPasst(c net.Conn) {
	r.mu.Lock()
	r.passt = c
	r.mu.Unlock()
	r.cond.Broadcast()
}

// currentPasst waits for a running passt; nil once the guest is gone.
func (r *relay) currentPasst() net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.passt == nil && !r.gone {
		r.cond.Wait()
	}
	if r.gone {
		return nil
	}
	return r.passt
}

func (r *relay) isGuestGone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}

// readFrame reads one length-prefixed frame into buf (4+maxFrame bytes)
// and returns the frame with its prefix.
func readFrame(br *bufio.Reader, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(br, buf[:4]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(buf[:4])
	if n > maxFrame {
		return nil, fmt.Errorf("frame length %d: stream out of step", n)
	}
	if _, err := io.ReadFull(br, buf[4:4+n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf[:4+n], nil
}

// frameBuffered reports whether a whole next frame is already buffered:
// writes are flushed only when no more frames are at hand to batch.
func frameBuffered(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false
	}
	hdr, err := br.Peek(4) // buffered: does not block
	if err != nil {
		return false
	}
	return br.Buffered() >= 4+int(binary.BigEndian.Uint32(hdr))
}

// fromGuest forwards the guest's frames to the current passt (waiting
// while passt restarts, like the socket buffer did when passt read the
// guest's connection itself) until the guest disconnects. A frame passt
// cannot take because it just died is dropped, as a NIC would.
func (r *relay) fromGuest() {
	br := bufio.NewReaderSize(r.guest, relayBufs)
	buf := make([]byte, 4+maxFrame)
	var w *bufio.Writer
	var wc net.Conn
	for {
		f, err := readFrame(br, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.log.Warn("guest connection", "err", err)
			}
			break
		}
		c := r.currentPasst()
		if c == nil {
			break
		}
		if c != wc {
			wc, w = c, bufio.NewWriterSize(c, relayBufs)
		}
		if _, err := w.Write(f); err == nil && !frameBuffered(br) {
			err = w.Flush()
		}
		if ack := r.fix.fromGuest(f[4:]); ack != nil {
			r.toGuestFrame(ack)
		}
	}
	r.mu.Lock()
	r.gone = true
	r.mu.Unlock()
	r.cond.Broadcast()
	close(r.guestGone)
}

// toGuest forwards passt's frames to the guest until passt's end closes.
func (r *relay) toGuest(c net.Conn) {
	br := bufio.NewReaderSize(c, relayBufs)
	buf := make([]byte, 4+maxFrame)
	for {
		f, err := readFrame(br, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.log.Warn("passt connection", "err", err)
				c.Close()
			}
			return
		}
		r.fix.fromPasst(f[4:])
		r.wmu.Lock()
		_, err = r.gw.Write(f)
		if err == nil && !frameBuffered(br) {
			err = r.gw.Flush()
		}
		r.wmu.Unlock()
		if err != nil {
			// The guest is gone: fromGuest notices and ends the run.
			return
		}
	}
}

// toGuestFrame sends the guest one frame of the keeper's own.
func (r *relay) toGuestFrame(frame []byte) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
	r.wmu.Lock()
	defer r.wmu.Unlock()
	_, _ = r.gw.Write(hdr[:])
	_, _ = r.gw.Write(frame)
	_ = r.gw.Flush()
}
