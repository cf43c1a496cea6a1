package doctor

import (
	"context"
	"net/netip"
	"time"
)

// Host is what the checks read from the machine. Live is the real one (the
// network namespace of the calling process); unit tests use a fake.
type Host interface {
	// Firewall returns every foreign firewall table (nftables, iptables-nft
	// and legacy iptables), without vnet's own.
	Firewall() ([]*Table, error)
	// Sockets returns the UDP sockets and listening TCP sockets bound to one
	// of the ports, with their owners, leaving out those of the skip pids.
	Sockets(ports []uint16, skip []int) ([]Socket, error)
	// Routes returns the routes of every table.
	Routes() ([]Route, error)
	// Addrs returns the addresses of every interface.
	Addrs() ([]Addr, error)
	// RouteDev returns the device the kernel routes dst through ("" when
	// unreachable).
	RouteDev(dst netip.Addr) string
	// Link describes a network interface (Exists false when there is none).
	Link(name string) Link
	// Sysctl reads a sysctl by its /proc/sys path ("net/ipv4/ip_forward").
	Sysctl(path string) (string, error)
	// Inotify returns the inotify instances root holds (with those of the
	// own pids) and root's limit.
	Inotify(own []int) (used, limit int, err error)
	// FDs returns the open file handles of the system and its limit.
	FDs() (used, limit int, err error)
	// OwnFDs returns the calling process's open fds and its RLIMIT_NOFILE.
	OwnFDs() (used, limit int, err error)
	// Alive reports whether the process runs.
	Alive(pid int) bool
	// Probe acts as a guest on the network's bridge: a DHCP discover and
	// request (the lease is released again) and a DNS query.
	Probe(ctx context.Context, n Network, timeout time.Duration) ProbeResult
	// QueryDNS asks server for the root's NS records and returns how long
	// the answer took.
	QueryDNS(ctx context.Context, server netip.AddrPort, timeout time.Duration) (time.Duration, error)
}

// Socket is a bound socket and its owner.
type Socket struct {
	Proto string // "udp" or "tcp"
	Local netip.AddrPort
	Inode uint64
	// Pid and Comm name the owning process (0, "" when not found).
	Pid  int
	Comm string
}

// Route is one route.
type Route struct {
	Dst   netip.Prefix
	Dev   string // "" for blackhole/unreachable routes
	Table int
	// Type is "unicast", "blackhole", "unreachable", "prohibit", "local" …
	Type string
	// Proto is the kernel's route protocol number (9 = router advertisement).
	Proto int
}

// Addr is an address of an interface.
type Addr struct {
	Prefix netip.Prefix
	Dev    string
}

// Link is a network interface.
type Link struct {
	Exists bool
	Index  int
	Up     bool
	Master string
	MTU    int
}

// ProbeResult is what the DHCP/DNS probe saw.
type ProbeResult struct {
	// Lease is the address offered and acknowledged (invalid: none).
	Lease    netip.Addr
	DHCPTook time.Duration
	DHCPErr  error
	// DNSRan tells whether the DNS query was sent.
	DNSRan  bool
	DNSTook time.Duration
	DNSErr  error
	// Err is a failure to set the probe up at all.
	Err error
}
