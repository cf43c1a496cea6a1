package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"

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

type peerKey struct{}

// withPeerCred records the connecting process's credentials (SO_PEERCRED).
func withPeerCred(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *syscall.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// ownerOnly refuses callers whose uid is not owner (root for the system
// daemon, the user for a session daemon), whatever the socket's mode.
func ownerOnly(owner uint32, h http.Handler) http.Handler {
	msg := "access denied: the read-write socket is for root only; use the read-only socket for queries"
	if owner != 0 {
		msg = fmt.Sprintf("access denied: this session vnetd serves only its own user (uid %d)", owner)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := r.Context().Value(peerKey{}).(*syscall.Ucred)
		if cred == nil || cred.Uid != owner {
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
