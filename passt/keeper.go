package passt

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"vnet/internal/crashloop"
)

// KeeperFlag is the first argument that makes vnetd a port's keeper:
//
//	vnetd --passt-keeper SOCKET PASST-PID-FILE ARGS-FILE -- PASST
//
// ARGS-FILE holds passt's arguments as a JSON array of strings.
const KeeperFlag = "--passt-keeper"

// KeeperMain runs a keeper (args after KeeperFlag) and returns its exit
// code. It listens on SOCKET (mode 0600), and for each connection (one
// guest at a time, like passt's own socket) runs passt with the connection
// as --fd 3, starting it again whenever it dies while the guest is still
// connected: the keeper's copy of the connection keeps QEMU's end open, so
// the guest only sees a short pause. When the guest disconnects, passt
// exits and the keeper waits for the next connection. Each passt start
// reads ARGS-FILE; SIGHUP restarts a running passt whose arguments differ
// from the file's (the manager changed them). SIGTERM stops passt, removes
// the socket and ends the keeper.
func KeeperMain(args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(args) != 5 || args[3] != "--" {
		log.Error("usage: vnetd " + KeeperFlag + " SOCKET PASST-PID-FILE ARGS-FILE -- PASST")
		return 2
	}
	k := &keeper{socket: args[0], pidFile: args[1], argsFile: args[2], bin: args[4], log: log}
	if err := k.run(); err != nil {
		log.Error("passt keeper failed", "socket", k.socket, "err", err)
		return 1
	}
	return 0
}

type keeper struct {
	socket, pidFile, argsFile string
	bin                       string
	log                       *slog.Logger

	mu      sync.Mutex
	passt   *exec.Cmd
	args    []string // the running passt's arguments
	stopped bool
	// reloading: the running passt was ended to restart it with new
	// arguments; its exit is not a death.
	reloading bool
}

func (k *keeper) run() error {
	// Before the socket appears: the manager, which waits for it, may
	// signal the keeper at once, and an unhandled SIGHUP would end it.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// Bound and listening under a temporary name, then renamed: the path
	// appears only when connecting to it works (the manager waits for it).
	tmp := k.socket + ".tmp"
	_ = os.Remove(tmp)
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return err
	}
	// The socket file is ours to remove, not the listener's on Close.
	ln.SetUnlinkOnClose(false)
	if err := os.Rename(tmp, k.socket); err != nil {
		ln.Close()
		_ = os.Remove(tmp)
		return err
	}
	defer os.Remove(k.socket)
	go func() {
		for s := range sig {
			if s != syscall.SIGHUP {
				break
			}
			k.reload()
		}
		k.mu.Lock()
		k.stopped = true
		if k.passt != nil {
			// os.Process signals a child through its pidfd.
			_ = k.passt.Process.Signal(syscall.SIGTERM)
		}
		k.mu.Unlock()
		ln.Close()
	}()
	k.log.Info("passt keeper listening", "socket", k.socket, "passt", k.bin)
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if k.isStopped() {
				return nil
			}
			return err
		}
		k.serve(conn)
		conn.Close()
		_ = os.Remove(k.pidFile)
		if k.isStopped() {
			return nil
		}
	}
}

// reload ends the running passt when the args file asks for other
// arguments: serve starts it again with them on the same connection.
func (k *keeper) reload() {
	args, err := readArgs(k.argsFile)
	if err != nil {
		k.log.Error("reloading passt's arguments", "err", err)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.passt == nil || k.stopped || k.reloading || slices.Equal(args, k.args) {
		return
	}
	k.log.Info("passt's arguments changed; restarting it", "pid", k.passt.Process.Pid)
	k.reloading = true
	_ = k.passt.Process.Signal(syscall.SIGTERM)
}

// takeReloading reports, and clears, whether the last passt was ended by
// reload.
func (k *keeper) takeReloading() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := k.reloading
	k.reloading = false
	return r
}

func (k *keeper) isStopped() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.stopped
}

// serve runs passt on the guest's connection until the guest is gone. The
// keeper relays the frames between the guest and passt (which gets one
// end of a socketpair): the guest's connection stays the keeper's across
// passt restarts, only whole frames reach the guest even when passt dies
// in the middle of one, and the relay adds the handshake ACK Debian 12's
// passt omits on inbound connections (see ackFixer).
func (k *keeper) serve(guest *net.UnixConn) {
	r := newRelay(guest, k.log)
	go r.fromGuest()
	var policy crashloop.Policy
	for {
		cmd, ours, err := k.startPasst()
		if err == nil {
			k.log.Info("passt started", "pid", cmd.Process.Pid, "recent_deaths", policy.Recent())
			passtGone := make(chan struct{})
			go func() {
				r.toGuest(ours)
				close(passtGone)
			}()
			r.setPasst(ours)
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			select {
			case err = <-waited:
			case <-r.guestGone:
				// passt sees its end of the socketpair close and exits.
				r.setPasst(nil)
				ours.Close()
				select {
				case err = <-waited:
				case <-time.After(2 * time.Second):
					_ = cmd.Process.Kill()
					err = <-waited
				}
			}
			r.setPasst(nil)
			ours.Close()
			<-passtGone
			k.mu.Lock()
			k.passt = nil
			k.mu.Unlock()
		} else {
			k.log.Error("starting passt failed", "err", err)
		}
		reloaded := k.takeReloading()
		if k.isStopped() || r.isGuestGone() {
			k.log.Info("guest disconnected; waiting for the next one", "passt_exit", fmt.Sprint(err))
			return
		}
		if reloaded {
			continue
		}
		wait := policy.Died(time.Now())
		k.log.Warn("passt died while the guest is connected; restarting it on the same connection",
			"err", fmt.Sprint(err), "recent_deaths", policy.Recent(), "delay", wait)
		select {
		case <-r.guestGone:
		case <-time.After(wait):
		}
	}
}

// startPasst runs passt on a new socketpair and returns the keeper's end.
func (k *keeper) startPasst() (*exec.Cmd, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "passt")
	defer theirs.Close()
	oursFile := os.NewFile(uintptr(fds[0]), "keeper")
	ours, err := net.FileConn(oursFile)
	oursFile.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		ours.Close()
		return nil, nil, errors.New("keeper stopping")
	}
	// Read with k.mu held, like reload compares: new arguments written
	// before a SIGHUP either reach this start or restart this passt.
	args, err := readArgs(k.argsFile)
	if err != nil {
		ours.Close()
		return nil, nil, err
	}
	// The keeper writes passt's pid file itself: Debian's AppArmor
	// profile lets passt write only under /tmp and the user's home.
	cmd := exec.Command(k.bin, append(slices.Clip(args), "--fd", "3")...)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, nil, err
	}
	k.passt, k.args = cmd, args
	if werr := os.WriteFile(k.pidFile, []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o600); werr != nil {
		k.log.Warn("writing passt's pid file", "err", werr)
	}
	return cmd, ours, nil
}

// readPid reads a pid file.
func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(trimSpace(data)))
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
