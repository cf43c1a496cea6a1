package network

import (
	"fmt"
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

// step is the Step that writes value to the sysctl.
func (s sysctl) step(problem, value string) Step {
	return Step{Problem: problem, Cmd: fmt.Sprintf("sysctl -w %s=%s", s, value), Do: func() error {
		if err := os.WriteFile(s.path(), []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", s, value, err)
		}
		return nil
	}}
}

var (
	sysctlIPv4Forward = sysctl{"net", "ipv4", "ip_forward"}
	sysctlIPv6Forward = sysctl{"net", "ipv6", "conf", "all", "forwarding"}
)

// ConvergeForwarding sets, through ex, the global forwarding sysctls libvirt
// sets for the forward mode of n: net.ipv4.ip_forward=1 for nat, route and
// open, plus net.ipv6.conf.all.forwarding=1 when n also has an IPv6 address.
// Isolated networks (and modes using a host bridge) change nothing. It never
// resets a value; a value someone reset is set again (drift repair).
func ConvergeForwarding(n *netxml.Network, ex Executor) error {
	switch n.ForwardMode() {
	case "nat", "route", "open":
	default:
		return nil
	}
	want := []sysctl{sysctlIPv4Forward}
	if hasIPv6(n.IPs) {
		want = append(want, sysctlIPv6Forward)
	}
	snap := snapshotOf(ex)
	for _, s := range want {
		if snap != nil && snap.sysctlIs(s, "1") {
			continue
		}
		cur, err := s.read()
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", s, err)
		}
		if cur == "1" {
			continue
		}
		if s.String() == sysctlIPv6Forward.String() {
			if err := checkAcceptRA(); err != nil {
				return err
			}
		}
		st := s.step(fmt.Sprintf("sysctl %s is %s, want 1", s, cur), "1")
		st.Global = true
		if err := ex.Run(st); err != nil {
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
