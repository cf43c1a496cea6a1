package passt

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"

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
