// Package passt runs the user-mode ports of vnet's session daemon: per port
// one keeper process that owns the port's UNIX socket, accepts the guest's
// (QEMU's -netdev stream) connection and runs passt on it, restarting a
// passt that dies on the same connection, so the guest never notices (QEMU
// 7.2 cannot reconnect a stream netdev). The keepers run in their own
// sessions and outlive the daemon, which adopts them at its next start.
package passt

import (
	"fmt"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

// Args returns passt's options for a port of the user-mode network n
// (without the binary, --fd and --pid, which the keeper adds): foreground;
// --ipv4-only or --ipv6-only unless the network has both families; per
// family the guest's address and the gateway from the network's <ip> (and
// the IPv4 prefix; passt's IPv6 prefix is always /64); DNS servers from its
// <dns><forwarder>; and its port forwards.
func Args(n *netxml.Network) ([]string, error) {
	v4, v6, err := netxml.UserIPs(n)
	if err != nil {
		return nil, err
	}
	args := []string{"--foreground", "--stderr"}
	switch {
	case !v6.Gateway.IsValid():
		args = append(args, "--ipv4-only")
	case !v4.Gateway.IsValid():
		args = append(args, "--ipv6-only")
	}
	if v4.Gateway.IsValid() {
		args = append(args, "--address", v4.Guest.String(), "--netmask", strconv.Itoa(v4.Gateway.Bits()), "--gateway", v4.Gateway.Addr().String())
	}
	if v6.Gateway.IsValid() {
		args = append(args, "--address", v6.Guest.String(), "--gateway", v6.Gateway.Addr().String())
	}
	if n.DNS != nil {
		if n.DNS.Enable == "no" {
			args = append(args, "--no-dhcp-dns")
		}
		for _, f := range n.DNS.Forwarders {
			if f.Addr != "" {
				args = append(args, "--dns", f.Addr)
			}
		}
	}
	if n.User != nil {
		for _, pf := range n.User.PortForwards {
			flag := "--tcp-ports"
			if pf.Proto == "udp" {
				flag = "--udp-ports"
			}
			args = append(args, flag, PortSpec(pf))
		}
	}
	return args, nil
}

// PortSpec is libvirt's translation of a <portForward> into passt's port
// SPEC (src/qemu/qemu_passt.c): [address[%dev]/], then "all" without
// ranges, else the ranges joined by commas, "~" for excluded ones,
// start[-end] and :to[-(to+end-start)].
func PortSpec(pf libvirtxml.DomainInterfaceSourcePortForward) string {
	var b strings.Builder
	if pf.Address != "" {
		b.WriteString(pf.Address)
		if pf.Dev != "" {
			b.WriteString("%" + pf.Dev)
		}
		b.WriteString("/")
	} else if pf.Dev != "" {
		b.WriteString("%" + pf.Dev + "/")
	}
	if len(pf.Ranges) == 0 {
		b.WriteString("all")
		return b.String()
	}
	for i, r := range pf.Ranges {
		if i > 0 {
			b.WriteString(",")
		}
		if r.Exclude == "yes" {
			b.WriteString("~")
		}
		fmt.Fprintf(&b, "%d", r.Start)
		if r.End != 0 {
			fmt.Fprintf(&b, "-%d", r.End)
		}
		if r.To != 0 {
			fmt.Fprintf(&b, ":%d", r.To)
			if r.End != 0 {
				fmt.Fprintf(&b, "-%d", r.To+r.End-r.Start)
			}
		}
	}
	return b.String()
}
