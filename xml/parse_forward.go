package netxml

import (
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Parsing of <forward> (mode, devices, <nat>) and the forward-mode
// dependent checks.

var forwardModes = []string{"nat", "route", "open", "bridge", "private", "vepa", "passthrough", "hostdev"}

func (p *parser) forward(f *elem) (*libvirtxml.NetworkForward, error) {
	fw := &libvirtxml.NetworkForward{}
	mode, hasMode := xpathAttr(f, "mode")
	switch {
	case !hasMode:
		mode = "nat"
	case mode == "none":
		return nil, nil
	default:
		known := false
		for _, m := range forwardModes {
			if m == mode {
				known = true
			}
		}
		if !known {
			return nil, Errorf(KindUnsupported, "unknown forwarding type '%s'", mode)
		}
	}
	fw.Mode = mode
	if m, ok := f.attr("managed"); ok && strings.EqualFold(m, "yes") {
		fw.Managed = "yes"
	} else if mode == "hostdev" {
		fw.Managed = "no"
	}
	if d := f.first("driver"); d != nil {
		drv := &libvirtxml.NetworkForwardDriver{}
		if name, ok := d.attr("name"); ok {
			if name != "kvm" && name != "vfio" && name != "xen" {
				return nil, Errorf(KindUnsupported, "Unknown forward <driver name='%s'/> in network %s", name, p.name)
			}
			drv.Name = name
		}
		drv.Model, _ = d.attr("model")
		if drv.Name != "" || drv.Model != "" {
			fw.Driver = drv
		}
	}

	nats := f.kids("nat")
	if len(nats) > 1 {
		return nil, xmlErr("Only one <nat> element is allowed in <forward> of network %s", p.name)
	}
	if len(nats) == 1 {
		if mode != "nat" {
			return nil, xmlErr("The <nat> element can only be used when <forward> 'mode' is 'nat' in network %s", p.name)
		}
		nat, err := p.nat(nats[0])
		if err != nil {
			return nil, err
		}
		fw.NAT = nat
	}

	// The device pool is a <forward dev> and/or <interface> list, else a PCI
	// <address> list, else one <pf>; libvirt ignores the lower-ranked kinds.
	dev, hasDev := xpathAttr(f, "dev")
	ifaces := f.kids("interface")
	addrs := f.kids("address")
	pfs := f.kids("pf")
	if hasDev && (len(addrs) > 0 || len(pfs) > 0) {
		return nil, xmlErr("the <forward> 'dev' attribute cannot be used when <address> or <pf> sub-elements are present in network %s", p.name)
	}
	switch {
	case hasDev || len(ifaces) > 0:
		addrs, pfs = nil, nil
	case len(addrs) > 0:
		pfs = nil
	}
	if len(pfs) > 1 {
		return nil, xmlErr("Only one <pf> element is allowed in <forward> of network %s", p.name)
	}
	if len(pfs) == 1 {
		dev, ok := pfs[0].attr("dev")
		if !ok || dev == "" {
			return nil, xmlErr("Missing required dev attribute in <pf> element of network '%s'", p.name)
		}
		fw.PFs = []libvirtxml.NetworkForwardPF{{Dev: dev}}
	}
	for _, a := range addrs {
		typ, ok := a.attr("type")
		if !ok {
			return nil, xmlErr("missing address type in network %s", p.name)
		}
		switch typ {
		case "pci":
		case "none", "netdev":
			return nil, xmlErr("unsupported address type '%s' in network %s", typ, p.name)
		default:
			return nil, Errorf(KindUnsupported, "unknown address type '%s' in network %s", typ, p.name)
		}
		pci := &libvirtxml.NetworkForwardAddressPCI{}
		var err error
		for _, fld := range []struct {
			name string
			max  uint64
			dst  **uint
		}{{"domain", 0xffff, &pci.Domain}, {"bus", 0xff, &pci.Bus}, {"slot", 0x1f, &pci.Slot}, {"function", 7, &pci.Function}} {
			if *fld.dst, err = uintAttrBase0(a, fld.name, fld.max); err != nil {
				return nil, err
			}
			if *fld.dst == nil {
				var z uint
				*fld.dst = &z
			}
		}
		for _, o := range fw.Addresses {
			if *o.PCI.Domain == *pci.Domain && *o.PCI.Bus == *pci.Bus && *o.PCI.Slot == *pci.Slot && *o.PCI.Function == *pci.Function {
				return nil, xmlErr("PCI device '%04x:%02x:%02x.%x' can only be listed once in network %s", *pci.Domain, *pci.Bus, *pci.Slot, *pci.Function, p.name)
			}
		}
		fw.Addresses = append(fw.Addresses, libvirtxml.NetworkForwardAddress{PCI: pci})
	}
	if hasDev {
		fw.Interfaces = append(fw.Interfaces, libvirtxml.NetworkForwardInterface{Dev: dev})
	}
	for i, ie := range ifaces {
		d, ok := ie.attr("dev")
		if !ok || d == "" {
			return nil, xmlErr("Missing required dev attribute in <forward> <interface> element of network %s", p.name)
		}
		if i == 0 && hasDev {
			if d != dev {
				return nil, xmlErr("<forward dev='%s'> must match first <interface dev='%s'/> in network %s", dev, d, p.name)
			}
			continue
		}
		for _, o := range fw.Interfaces {
			if o.Dev == d {
				return nil, xmlErr("interface '%s' can only be listed once in network %s", d, p.name)
			}
		}
		fw.Interfaces = append(fw.Interfaces, libvirtxml.NetworkForwardInterface{Dev: d})
	}
	if len(fw.Interfaces) > 0 {
		fw.Dev = fw.Interfaces[0].Dev
	}
	return fw, nil
}

func (p *parser) nat(e *elem) (*libvirtxml.NetworkForwardNAT, error) {
	nat := &libvirtxml.NetworkForwardNAT{}
	var err error
	if nat.IPv6, err = tristate(e, "ipv6"); err != nil {
		return nil, err
	}
	addrs := e.kids("address")
	if len(addrs) > 1 {
		return nil, xmlErr("Only one <address> element is allowed in <nat> in <forward> in network %s", p.name)
	}
	if len(addrs) == 1 {
		start, hasStart := addrs[0].attr("start")
		end, hasEnd := addrs[0].attr("end")
		if !hasStart {
			return nil, xmlErr("missing 'start' attribute in <address> element in <nat> in <forward> in network %s", p.name)
		}
		if !hasEnd {
			return nil, xmlErr("missing 'end' attribute in <address> element in <nat> in <forward> in network %s", p.name)
		}
		s, err := ParseAddr(start)
		if err != nil || !s.Is4() {
			return nil, xmlErr("Bad ipv4 start address '%s' in <nat> in <forward> in network '%s'", start, p.name)
		}
		en, err := ParseAddr(end)
		if err != nil || !en.Is4() {
			return nil, xmlErr("Bad ipv4 end address '%s' in <nat> in <forward> in network '%s'", end, p.name)
		}
		if err := checkRange(s, en, nil); err != nil {
			return nil, err
		}
		nat.Addresses = []libvirtxml.NetworkForwardNATAddress{{Start: FormatAddr(s), End: FormatAddr(en)}}
	}
	ports := e.kids("port")
	if len(ports) > 1 {
		return nil, xmlErr("Only one <port> element is allowed in <nat> in <forward> in network %s", p.name)
	}
	if len(ports) == 1 {
		var port libvirtxml.NetworkForwardNATPort
		var ok bool
		if port.Start, ok, err = uintAttr(ports[0], "start", 65535); err != nil || !ok {
			return nil, detail("Missing or invalid 'start' attribute in <port> in <nat> in <forward> in network %s", p.name)
		}
		if port.End, ok, err = uintAttr(ports[0], "end", 65535); err != nil || !ok || port.End < port.Start {
			return nil, detail("Missing or invalid 'end' attribute in <port> in <nat> in <forward> in network %s", p.name)
		}
		if port.Start > 0 || port.End > 0 {
			nat.Ports = []libvirtxml.NetworkForwardNATPort{port}
		}
	}
	return nat, nil
}

// modeChecks are the forward-mode dependent checks of libvirt's parser.
func (p *parser) modeChecks(n *Network) error {
	mode := n.ForwardMode()
	switch mode {
	case "", "nat", "route", "open":
		if mode != "" && len(n.IPs) == 0 {
			return xmlErr("%s forwarding requested, but no IP address provided for network '%s'", mode, p.name)
		}
		if mode == "open" && n.Forward != nil && len(n.Forward.Interfaces) > 0 {
			return xmlErr("forward dev not allowed for network '%s' with forward mode='%s'", p.name, mode)
		}
	case "bridge", "private", "vepa", "passthrough", "hostdev":
		br := n.Bridge
		if br == nil {
			br = &libvirtxml.NetworkBridge{}
		}
		if mode != "bridge" {
			switch {
			case br.Name != "":
				return xmlErr("bridge name not allowed in %s mode (network '%s')", mode, p.name)
			case br.Zone != "":
				return xmlErr("bridge zone not allowed in %s mode (network '%s')", mode, p.name)
			case br.MACTableManager != "":
				return xmlErr("bridge macTableManager setting not allowed in %s mode (network '%s')", mode, p.name)
			}
		}
		if (br.Delay != "" && br.Delay != "0") || br.STP != "" || br.Zone != "" {
			return xmlErr("bridge delay/stp/zone options only allowed in route, nat, and isolated mode, not in %s (network '%s')", mode, p.name)
		}
		// A delay='0' is accepted and not kept (libvirt stores a number).
		br.Delay = ""
		if br.Name != "" && (len(n.Forward.Interfaces) > 0 || len(n.Forward.PFs) > 0) {
			return xmlErr("A network with forward mode='%s' can specify a bridge name or a forward dev, but not both (network '%s')", mode, p.name)
		}
		if n.MTU != nil && n.MTU.Size > 0 {
			return xmlErr("mtu size only allowed in open, route, nat, and isolated mode, not in %s (network '%s')", mode, p.name)
		}
	}
	return nil
}
