// Package ifindex looks up the index of a network link by name, the one
// implementation shared by network and dnsmasq (which do not import each
// other).
package ifindex

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ByName returns the index of the link named name in the calling thread's
// network namespace. A missing link is an error wrapping unix.ENODEV.
//
// Why an ioctl (SIOCGIFINDEX): it is one system call on a datagram socket.
// net.InterfaceByName lists every link of the host to find one, and a
// netlink request needs a socket of its own and the link's full attributes.
func ByName(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("link %q: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("link %q: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("link %q: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// Name returns the name of the link with index idx in the calling thread's
// network namespace (one SIOCGIFNAME ioctl). A missing link is an error
// wrapping unix.ENODEV.
func Name(idx int) (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("link %d: %w", idx, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return "", fmt.Errorf("link %d: %w", idx, err)
	}
	ifr.SetUint32(uint32(idx))
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr); err != nil {
		return "", fmt.Errorf("link %d: %w", idx, err)
	}
	return ifr.Name(), nil
}
