package daemon

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"vnet/daemon/api"
)

// listenUnix listens on a fresh unix socket with exactly the given mode.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	return listenUnixNet("unix", path, mode)
}

// listenUnixNet is listenUnix for "unix" (stream) or "unixpacket"
// (SOCK_SEQPACKET).
func listenUnixNet(network, path string, mode os.FileMode) (net.Listener, error) {
	_ = os.Remove(path)
	// Why umask: the socket must never exist with wider permissions, not
	// even between listen and chmod.
	old := syscall.Umask(0o777 &^ int(mode))
	ln, err := net.Listen(network, path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

// peerKey is the context key of the connecting process's Caller.
type peerKey struct{}

// withPeerCred records the connecting process's credentials (SO_PEERCRED).
func withPeerCred(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	caller, err := peerCaller(uc, false)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, caller)
}

// peerCaller reads the connected process's credentials (SO_PEERCRED) from
// the kernel and, with groups, its supplementary groups (SO_PEERGROUPS).
func peerCaller(conn *net.UnixConn, groups bool) (Caller, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var c Caller
	var opErr error
	err = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			opErr = fmt.Errorf("SO_PEERCRED: %w", err)
			return
		}
		c = Caller{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
		if groups {
			c.Groups, opErr = peerGroups(int(fd))
		}
	})
	if err == nil {
		err = opErr
	}
	return c, err
}

// peerGroups is SO_PEERGROUPS (Linux ≥ 4.13): the peer's supplementary
// groups at connect time. x/sys/unix has no wrapper returning gid_t[].
func peerGroups(fd int) ([]uint32, error) {
	size := uint32(64 * 4)
	for {
		buf := make([]byte, size)
		l := size
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e == unix.ERANGE && l > size {
			size = l
			continue
		}
		if e != 0 {
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", e)
		}
		gids := make([]uint32, l/4)
		for i := range gids {
			gids[i] = binary.NativeEndian.Uint32(buf[i*4:])
		}
		return gids, nil
	}
}

// ownerOnly refuses callers whose uid is not owner (root for the system
// daemon, the user for a session daemon), whatever the socket's mode.
func ownerOnly(owner uint32, h http.Handler) http.Handler {
	msg := "access denied: the read-write socket is for root only; use the read-only socket for queries"
	if owner != 0 {
		msg = fmt.Sprintf("access denied: this session vnetd serves only its own user (uid %d)", owner)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := r.Context().Value(peerKey{}).(Caller)
		if !ok || c.UID != owner {
			writeJSON(w, http.StatusForbidden, &api.Error{Code: api.CodeForbidden, Message: msg})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readOnly lets only queries through: list, info, XML, leases, events.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writeJSON(w, http.StatusForbidden, &api.Error{Code: api.CodeForbidden,
				Message: "operation forbidden: read only access prevents changing networks"})
			return
		}
		h.ServeHTTP(w, r)
	})
}
