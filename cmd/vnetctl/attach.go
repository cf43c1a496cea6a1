package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	netxml "vnet/xml"
)

// net-port-attach: QEMU's socketpair/fd form of -netdev stream
// (addr.type=fd) for a port of a user-mode network. vnetctl connects to
// the port's socket itself, as QEMU's addr.type=unix would, and runs the
// command with that connection as an inherited descriptor: the keeper
// serves it like any guest connection, so nothing changes in the daemon,
// and the command needs no access to the socket path. (Like passt's own
// qrap, but vnetctl stays as the command's parent: Go cannot place a
// descriptor on a fixed number in its own process before exec.)

// attachSignals are relayed to the command: vnetctl stands for it.
var attachSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

func (a *app) netPortAttachCmd() *cobra.Command {
	var fd int
	cmd := &cobra.Command{
		Use:   "net-port-attach NETWORK PORT [--fd N] -- COMMAND [ARG]...",
		Short: "run COMMAND (QEMU with -netdev stream,addr.type=fd,addr.str=3) connected to a user-mode port",
		Long: "net-port-attach connects to the passt socket of a port of a user-mode network and runs COMMAND\n" +
			"with the connection as file descriptor N (default 3), for QEMU's\n" +
			"-netdev stream,id=n0,addr.type=fd,addr.str=N. It waits for COMMAND, relays SIGINT, SIGTERM,\n" +
			"SIGHUP and SIGQUIT to it and exits with its status (128+signal when a signal ended it).",
		Args:                  cobra.ArbitraryArgs,
		DisableFlagsInUseLine: true,
	}
	cmd.Flags().String("network", "", "network name or uuid")
	cmd.Flags().String("port", "", "port uuid")
	cmd.Flags().IntVar(&fd, "fd", 3, "descriptor number of the connection in COMMAND")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		data, command := args, []string(nil)
		if dash := cmd.ArgsLenAtDash(); dash >= 0 {
			data, command = args[:dash], args[dash:]
		} else if len(args) > 2 {
			data, command = args[:2], args[2:]
		}
		vals, _, err := optArgs(cmd, data, []string{"network", "port"}, 2)
		if err != nil {
			return err
		}
		if len(command) == 0 {
			return usagef("command 'net-port-attach' requires a COMMAND after --")
		}
		if fd < 3 {
			return usagef("--fd %d: the connection needs a descriptor of 3 or more (0-2 are the command's standard streams)", fd)
		}
		for i, v := range vals {
			if v == "" {
				return emptyOption([]string{"network", "port"}[i])
			}
		}
		return a.attach(cmd.Context(), vals[0], vals[1], fd, command)
	}
	return cmd
}

// attach connects to the port's passt socket and runs command with the
// connection as descriptor fd.
func (a *app) attach(ctx context.Context, network, port string, fd int, command []string) error {
	doc, err := a.client().PortXML(ctx, network, port)
	if err != nil {
		return failPort(network, port, "", err)
	}
	p, err := netxml.ParsePort([]byte(doc))
	if err != nil {
		return &failure{lines: []string{fmt.Sprintf("network port '%s': %s", port, err)}}
	}
	if p.Passt == nil || p.Passt.Socket == "" {
		return &failure{lines: []string{fmt.Sprintf("network port '%s' of network '%s' has no passt socket: net-port-attach needs a port of a network of forward mode 'user' (a session vnetd's)", port, network)}}
	}
	conn, err := connectUnix(p.Passt.Socket)
	if err != nil {
		return &failure{lines: []string{fmt.Sprintf("network port '%s': connect to passt socket %s: %s", port, p.Passt.Socket, errText(err))}}
	}
	path, err := exec.LookPath(command[0])
	if err != nil {
		conn.Close()
		return &failure{lines: []string{fmt.Sprintf("cannot run '%s': %s", command[0], errText(err))}}
	}
	c := exec.Command(path, command[1:]...)
	c.Args[0] = command[0]
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	c.ExtraFiles = inherited(fd)
	c.ExtraFiles[fd-3] = conn
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, attachSignals...)
	defer signal.Stop(sig)
	err = c.Start()
	// The command holds the connection now; the keeper sees the guest
	// leave when the command's copy closes.
	conn.Close()
	if err != nil {
		return &failure{lines: []string{fmt.Sprintf("cannot run '%s': %s", command[0], errText(err))}}
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	for {
		select {
		case s := <-sig:
			_ = c.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				return &failure{lines: []string{fmt.Sprintf("'%s': %s", command[0], errText(err))}}
			}
			ws := c.ProcessState.Sys().(syscall.WaitStatus)
			switch {
			case ws.Signaled():
				return &exitStatus{code: 128 + int(ws.Signal())}
			case ws.ExitStatus() != 0:
				return &exitStatus{code: ws.ExitStatus()}
			}
			return nil
		}
	}
}

// connectUnix connects a blocking stream socket to path, outside Go's
// poller: it is handed on, not used here.
func connectUnix(path string) (*os.File, error) {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(s, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(s)
		return nil, err
	}
	return os.NewFile(uintptr(s), path), nil
}

// inherited returns ExtraFiles for descriptors 3 to fd: those vnetctl
// itself inherited (open, not close-on-exec) pass on at the same numbers,
// so attaches nest (`net-port-attach A P1 --fd 4 -- net-port-attach B P2
// -- qemu …`); os/exec closes the others.
func inherited(fd int) []*os.File {
	files := make([]*os.File, fd-2)
	for i := 3; i < fd; i++ {
		if flags, err := unix.FcntlInt(uintptr(i), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			files[i-3] = os.NewFile(uintptr(i), "fd"+strconv.Itoa(i))
		}
	}
	return files
}
