package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	netxml "vnet/xml"
)

// procSys is where sysctls are read and written. Net sysctls under it belong
// to the network namespace of the calling thread.
const procSys = "/proc/sys/"

// sysctl names one sysctl by its path components, so that interface names
// containing dots stay unambiguous.
type sysctl []string

// String returns the dotted name sysctl(8) shows.
func (s sysctl) String() string { return strings.Join(s, ".") }

func (s sysctl) path() string { return procSys + strings.Join(s, "/") }

// read returns the value of the sysctl without the trailing newline.
func (s sysctl) read() (string, error) {
	b, err := os.ReadFile(s.path())
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// ensure writes value unless the sysctl already has it, and reports whether it
// wrote, so that callers can log exactly the host settings vnet changed.
func (s sysctl) ensure(value string) (bool, error) {
	cur, err := s.read()
	if err != nil {
		return false, fmt.Errorf("sysctl %s: %w", s, err)
	}
	if cur == value {
		return false, nil
	}
	if err := os.WriteFile(s.path(), []byte(value), 0o644); err != nil {
		return false, fmt.Errorf("sysctl %s=%s: %w", s, value, err)
	}
	return true, nil
}

var (
	sysctlIPv4Forward = sysctl{"net", "ipv4", "ip_forward"}
	sysctlIPv6Forward = sysctl{"net", "ipv6", "conf", "all", "forwarding"}
)

// EnsureForwarding sets the global forwarding sysctls libvirt sets for the
// forward mode of n: net.ipv4.ip_forward=1 for nat, route and open, plus
// net.ipv6.conf.all.forwarding=1 when n also has an IPv6 address. Isolated
// networks (and modes using a host bridge) change nothing. It never resets a
// value, and returns the sysctls it changed as "name=value".
func EnsureForwarding(n *netxml.Network) (changed []string, err error) {
	switch n.ForwardMode() {
	case "nat", "route", "open":
	default:
		return nil, nil
	}
	want := []sysctl{sysctlIPv4Forward}
	if hasIPv6(n.IPs) {
		want = append(want, sysctlIPv6Forward)
		if cur, err := sysctlIPv6Forward.read(); err == nil && cur != "1" {
			if err := checkAcceptRA(); err != nil {
				return nil, err
			}
		}
	}
	for _, s := range want {
		did, err := s.ensure("1")
		if err != nil {
			return changed, fmt.Errorf("network %q: enable forwarding: %w", n.Name, err)
		}
		if did {
			changed = append(changed, s.String()+"=1")
		}
	}
	return changed, nil
}

// ensureBridgeSysctls sets the per-bridge IPv6 sysctls as libvirt does:
// disable_ipv6 (1 without IPv6 address, else 0), accept_ra=0 so guests cannot
// hijack the host's routing with router advertisements, and autoconf=0 as for
// any gateway interface.
func ensureBridgeSysctls(br string, v6 bool) error {
	conf := func(key string) sysctl { return sysctl{"net", "ipv6", "conf", br, key} }
	disable := "1"
	if v6 {
		disable = "0"
	}
	if _, err := conf("disable_ipv6").ensure(disable); err != nil {
		// Why: with IPv6 disabled on the kernel command line
		// (ipv6.disable=1) there is no net/ipv6 tree; that is only an
		// error when the network wants IPv6.
		if errors.Is(err, fs.ErrNotExist) && !v6 {
			return nil
		}
		return err
	}
	for _, key := range []string{"accept_ra", "autoconf"} {
		if _, err := conf(key).ensure("0"); err != nil {
			return err
		}
	}
	return nil
}

// checkAcceptRA refuses to turn IPv6 forwarding on while the host depends on
// router advertisements on an interface whose accept_ra is 1: the kernel stops
// accepting RAs on a forwarding host unless accept_ra is 2, so the host would
// lose its RA-learned routes some minutes later (libvirt refuses the same
// way, with the same advice).
func checkAcceptRA() error {
	h, err := newHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	routes, err := h.raRoutes()
	if err != nil {
		return fmt.Errorf("list IPv6 routes learned from router advertisements: %w", err)
	}
	var bad []string
	seen := map[int]bool{}
	for _, r := range routes {
		if seen[r.LinkIndex] {
			continue
		}
		seen[r.LinkIndex] = true
		link, err := h.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		name := link.Attrs().Name
		if v, err := (sysctl{"net", "ipv6", "conf", name, "accept_ra"}).read(); err == nil && v != "2" {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		return netxml.Errorf(netxml.KindOperationFailed, "Check the host setup: enabling IPv6 forwarding with RA routes without accept_ra set to 2 is likely to cause routes loss. Interfaces to look at: %s", strings.Join(bad, " "))
	}
	return nil
}
