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
