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
// (without the binary, --fd and --pid, which the keeper adds): foreground,
// IPv4 only, the guest's address, prefix and gateway from the network's
// <ip>, DNS servers from its <dns><forwarder>, and its port forwards.
func Args(n *netxml.Network) ([]string, error) {
	gw, guest, err := netxml.UserAddresses(n)
	if err != nil {
		return nil, err
	}
	args := []string{"--foreground", "--stderr", "--ipv4-only",
		"--address", guest.String(), "--netmask", strconv.Itoa(gw.Bits()), "--gateway", gw.Addr().String()}
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
