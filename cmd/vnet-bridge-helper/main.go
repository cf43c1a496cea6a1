// Command vnet-bridge-helper is a drop-in for QEMU's qemu-bridge-helper that
// needs no setuid bit: QEMU runs it as
//
//	vnet-bridge-helper [--use-vnet] --br=BRIDGE --fd=N
//
// (-netdev bridge,br=BRIDGE,helper=/path/vnet-bridge-helper). It asks vnetd,
// over vnetd's helper socket, for a TAP plugged into BRIDGE; vnetd checks
// the caller against its access list, creates the TAP as a port of the
// bridge's network owned by the caller and sends its fd back; the helper
// passes it on to QEMU on fd N, as qemu-bridge-helper does (one byte and
// SCM_RIGHTS). The port ends when QEMU closes the TAP.
//
// When QEMU's helper= string has a space it is run through sh, so options
// can be added there: --mac=MAC records the guest's MAC in the port,
// --socket=PATH names vnetd's helper socket (default
// /run/vnet/vnetd-helper.sock, or $VNET_HELPER_SOCKET).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"vnet/daemon/api"
)

const usage = "usage: vnet-bridge-helper [--use-vnet] --br=bridge --fd=unixfd [--mac=MAC] [--socket=PATH]"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "vnet-bridge-helper: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("vnet-bridge-helper", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	useVnet := fs.Bool("use-vnet", false, "give the TAP IFF_VNET_HDR")
	br := fs.String("br", "", "bridge to plug the TAP into")
	fd := fs.Int("fd", -1, "QEMU's end of the socketpair")
	mac := fs.String("mac", "", "the guest's MAC address")
	sock := fs.String("socket", "", "vnetd's helper socket")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *br == "" || *fd < 0 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(1)
	}
	// The fd is checked before vnetd is asked, so a forged one creates
	// nothing.
	if err := checkQEMUSocket(*fd); err != nil {
		return err
	}
	if *sock == "" {
		*sock = os.Getenv("VNET_HELPER_SOCKET")
	}
	if *sock == "" {
		*sock = "/run/vnet/" + api.HelperSocketName
	}
	tap, err := askVnetd(*sock, api.HelperRequest{Bridge: *br, VnetHdr: *useVnet, MAC: *mac})
	if err != nil {
		return err
	}
	// Our copy closes when we exit: QEMU's is then the TAP's only one.
	defer tap.Close()
	// As qemu-bridge-helper: one data byte carrying SCM_RIGHTS.
	if err := unix.Sendmsg(*fd, []byte{0}, unix.UnixRights(int(tap.Fd())), nil, 0); err != nil {
		return fmt.Errorf("--fd=%d: send the TAP to QEMU: %w", *fd, err)
	}
	return nil
}

// checkQEMUSocket fails unless fd is a connected unix stream socket, what
// QEMU passes (its end of a socketpair).
func checkQEMUSocket(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("--fd=%d: not an open file descriptor (%v)", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("--fd=%d: not a socket; QEMU passes its end of a unix socketpair", fd)
	}
	dom, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	typ, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err1 != nil || err2 != nil || dom != unix.AF_UNIX || typ != unix.SOCK_STREAM {
		return fmt.Errorf("--fd=%d: not a unix stream socket; QEMU passes its end of a unix socketpair", fd)
	}
	if _, err := unix.Getpeername(fd); err != nil {
		return fmt.Errorf("--fd=%d: socket is not connected (%v)", fd, err)
	}
	return nil
}

// askVnetd sends the request and returns the TAP vnetd sent back.
func askVnetd(path string, req api.HelperRequest) (*os.File, error) {
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("cannot reach vnetd at %s: %w", path, err)
	}
	defer conn.Close()
	data, _ := json.Marshal(req)
	if _, err := conn.Write(data); err != nil {
		return nil, fmt.Errorf("vnetd at %s: %w", path, err)
	}
	buf := make([]byte, 16<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("vnetd at %s: %w", path, err)
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if f, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, f...)
			}
		}
	}
	var rep api.HelperReply
	if err := json.Unmarshal(buf[:n], &rep); err != nil {
		closeAll(fds)
		return nil, fmt.Errorf("vnetd at %s: bad reply: %w", path, err)
	}
	if rep.Error != "" {
		closeAll(fds)
		return nil, fmt.Errorf("%s", rep.Error)
	}
	if len(fds) != 1 {
		closeAll(fds)
		return nil, fmt.Errorf("vnetd at %s: reply carried %d fds, want 1", path, len(fds))
	}
	return os.NewFile(uintptr(fds[0]), "tap"), nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
