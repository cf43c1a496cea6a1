package network

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of a netlink dump.
const dumpAttempts = 5

// retryDump runs a netlink dump until it is not interrupted.
//
// Why: since vishvananda/netlink v1.2, a dump that races with a change in the
// kernel (NLM_F_DUMP_INTR) returns ErrDumpInterrupted together with partial
// results. On a busy host (many guests starting) that is routine, and acting
// on a partial link or address list would make us re-create or miss objects.
func retryDump[T any](f func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpAttempts {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("%w (%d attempts)", err, dumpAttempts)
}

// handle is a netlink route socket bound to the network namespace of the
// calling thread at creation, with dump calls that retry.
type handle struct{ *netlink.Handle }

func newHandle() (handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return handle{}, fmt.Errorf("open netlink socket: %w", err)
	}
	return handle{h}, nil
}

// linkByName returns the link, or (nil, nil) when no link has that name.
func (h handle) linkByName(name string) (netlink.Link, error) {
	l, err := retryDump(func() (netlink.Link, error) { return h.LinkByName(name) })
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, nil
		}
		return nil, err
	}
	return l, nil
}

func (h handle) linkList() ([]netlink.Link, error) {
	return retryDump(h.LinkList)
}

// addrs returns the addresses of link (all links when nil) with their prefix.
func (h handle) addrs(link netlink.Link) ([]netlink.Addr, error) {
	if link != nil {
		return retryDump(func() ([]netlink.Addr, error) { return linkAddrs(link.Attrs().Index) })
	}
	return retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
}

// routes returns the routes of the main table (of link, when not nil).
func (h handle) routes(link netlink.Link, family int) ([]netlink.Route, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN}
	mask := netlink.RT_FILTER_TABLE
	if link != nil {
		filter.LinkIndex = link.Attrs().Index
		mask |= netlink.RT_FILTER_OIF
	}
	return retryDump(func() ([]netlink.Route, error) { return h.RouteListFiltered(family, filter, mask) })
}

// raRoutes returns the IPv6 routes learned from router advertisements.
func (h handle) raRoutes() ([]netlink.Route, error) {
	filter := &netlink.Route{Protocol: unix.RTPROT_RA}
	return retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(unix.AF_INET6, filter, netlink.RT_FILTER_PROTOCOL)
	})
}

// addrPrefix returns a netlink address as a netip.Prefix (host bits kept).
func addrPrefix(a netlink.Addr) (netip.Prefix, bool) {
	return fromIPNet(a.IPNet)
}

func (h handle) qdiscList(link netlink.Link) ([]netlink.Qdisc, error) {
	return retryDump(func() ([]netlink.Qdisc, error) { return h.QdiscList(link) })
}

func (h handle) classList(link netlink.Link, parent uint32) ([]netlink.Class, error) {
	return retryDump(func() ([]netlink.Class, error) { return h.ClassList(link, parent) })
}

func (h handle) filterList(link netlink.Link, parent uint32) ([]netlink.Filter, error) {
	return retryDump(func() ([]netlink.Filter, error) { return h.FilterList(link, parent) })
}
