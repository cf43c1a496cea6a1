package netxml

import (
	"fmt"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// PortNS is the namespace URI of vnet's port extension, the <vnet:tap>
// element of a <networkport>.
const PortNS = "urn:vnet:port:1"

// portDocName is what libvirt calls a port document in syntax errors.
const portDocName = "(networkport_definition)"

// MaxTAPQueues is the kernel's limit of queues on one TAP (MAX_TAP_QUEUES).
const MaxTAPQueues = 256

// Port is one libvirt network port (<networkport>, the object behind
// net-port-create). It embeds libvirtxml.NetworkPort and adds vnet's TAP
// extension, which libvirt does not have.
type Port struct {
	libvirtxml.NetworkPort

	// TAP is <vnet:tap>: the TAP device vnet creates (or adopts) for the
	// port. nil means the port is bookkeeping only, as in libvirt, and the
	// hypervisor plugs its own device.
	TAP *TAP

	// Passt is <vnet:passt>: on a network of forward mode 'user', the UNIX
	// socket of the port's passt, for QEMU's -netdev stream. Filled in by
	// the session vnetd.
	Passt *Passt
}

// Passt is vnet's <vnet:passt xmlns:vnet='urn:vnet:port:1' socket='…'/>.
type Passt struct {
	// Socket is the path QEMU connects to (-netdev
	// stream,server=off,addr.type=unix,addr.path=SOCKET).
	Socket string
}

// TAP is vnet's <vnet:tap xmlns:vnet='urn:vnet:port:1' .../> element.
type TAP struct {
	// Dev is the device name; empty asks vnetd to pick the first free vnetN.
	Dev string
	// User and Group own the TAP (names or numeric ids), so that an
	// unprivileged hypervisor may open it. Empty means root.
	User, Group string
	// Queues > 1 makes a multi-queue TAP; 0 means not given (one queue).
	Queues uint
	// Adopt plugs an existing device named Dev instead of creating one; vnet
	// leaves it in place when the port is deleted.
	Adopt bool
	// Transient (persist='no') ties the port to its device's life: vnet
	// never (re-)creates the device, and the port ends when the device is
	// gone (the guest closed its TAP). vnet-bridge-helper's ports (a
	// non-persistent TAP whose only fd the hypervisor holds) and
	// vnet-qemu-ifup's (adopting the TAP QEMU made) are transient.
	Transient bool
}

// ParsePort parses a <networkport> document with libvirt's checks and
// messages (virNetworkPortDefParseXML): uuid, owner name and uuid and mac are
// required, MAC and UUIDs are normalised to lower case. Unknown elements are
// ignored as libvirt does, except vnet's <vnet:tap>, which is checked.
func ParsePort(data []byte) (*Port, error) {
	root, err := parseDoc(data)
	if err != nil {
		if e, ok := err.(*Error); ok && strings.HasPrefix(e.Msg, docName) {
			return nil, &Error{Kind: e.Kind, Msg: portDocName + strings.TrimPrefix(e.Msg, docName)}
		}
		return nil, err
	}
	if root.local != "networkport" || root.prefix != "" || root.uri != "" {
		return nil, Errorf(KindXML, "expecting root element of 'networkport', not '%s'", root.qname())
	}
	p := &Port{}
	u := childText(root, "uuid")
	if u == "" {
		return nil, Errorf(KindInternal, "network port has no uuid")
	}
	if p.UUID, err = NormalizeUUID(u); err != nil {
		return nil, Errorf(KindInternal, "Unable to parse UUID '%s'", u)
	}
	owner := root.first("owner")
	var ownerName, ownerUUID string
	if owner != nil {
		ownerName, ownerUUID = childText(owner, "name"), childText(owner, "uuid")
	}
	if ownerName == "" {
		return nil, Errorf(KindInternal, "network port has no owner name")
	}
	if ownerUUID == "" {
		return nil, Errorf(KindInternal, "network port has no owner UUID")
	}
	p.Owner = &libvirtxml.NetworkPortOwner{Name: ownerName}
	if p.Owner.UUID, err = NormalizeUUID(ownerUUID); err != nil {
		return nil, Errorf(KindInternal, "Unable to parse UUID '%s'", ownerUUID)
	}
	p.Group = childText(root, "group")
	if v := root.first("virtualport"); v != nil {
		if p.VirtualPort, err = parseVirtualPort(v, false); err != nil {
			return nil, err
		}
	}
	var mac string
	if m := root.first("mac"); m != nil {
		mac = attrOr(m, "address")
	}
	if mac == "" {
		return nil, Errorf(KindInternal, "network port has no mac")
	}
	canon, _, ok := parseMAC(mac)
	if !ok {
		return nil, Errorf(KindInternal, "Unable to parse MAC '%s'", mac)
	}
	p.MAC = &libvirtxml.NetworkPortMAC{Address: canon}
	if b := root.first("bandwidth"); b != nil {
		if p.Bandwidth, err = parsePortBandwidth(b); err != nil {
			return nil, err
		}
	}
	if v := root.first("vlan"); v != nil {
		vl, err := parseVLAN(v)
		if err != nil {
			return nil, err
		}
		p.VLAN = &libvirtxml.NetworkPortVLAN{Trunk: vl.Trunk}
		for _, t := range vl.Tags {
			p.VLAN.Tags = append(p.VLAN.Tags, libvirtxml.NetworkPortVLANTag{ID: t.ID, NativeMode: t.NativeMode})
		}
	}
	if po := root.first("port"); po != nil {
		iso, err := tristate(po, "isolated")
		if err != nil {
			return nil, err
		}
		if iso != "" {
			p.PortOptions = &libvirtxml.NetworkPortPortOptions{Isolated: iso}
		}
	}
	if rx := root.first("rxfilters"); rx != nil {
		trust, err := tristate(rx, "trustGuest")
		if err != nil {
			return nil, err
		}
		if trust != "" {
			p.RXFilters = &libvirtxml.NetworkPortRXFilters{TrustGuest: trust}
		}
	}
	if pl := root.first("plug"); pl != nil {
		if p.Plug, err = parsePlug(pl); err != nil {
			return nil, err
		}
	}
	if p.TAP, p.Passt, err = parseTAP(root); err != nil {
		return nil, err
	}
	return p, nil
}

// childText is XPath string(./local): the text of the first child named
// local, "" when there is none.
func childText(e *elem, local string) string {
	if c := e.first(local); c != nil {
		return c.text()
	}
	return ""
}

// parsePortBandwidth is a port's <bandwidth>: a network's, plus the classID
// of the tc class libvirt assigned, and floor allowed.
func parsePortBandwidth(b *elem) (*libvirtxml.NetworkBandwidth, error) {
	classID, _, err := uintAttr(b, "classID", 1<<32-1)
	if err != nil {
		return nil, err
	}
	bw, err := parseBandwidth(b)
	if err != nil || bw == nil {
		return nil, err
	}
	bw.ClassID = classID
	return bw, nil
}

func parsePlug(pl *elem) (*libvirtxml.NetworkPortPlug, error) {
	typ, err := enumAttr(pl, "type", "none", "network", "bridge", "direct", "hostdev-pci")
	if err != nil {
		return nil, err
	}
	switch typ {
	case "", "none":
		return nil, nil
	case "network", "bridge":
		br, ok := pl.attr("bridge")
		if !ok {
			return nil, xmlErr("Missing network port bridge name")
		}
		mgr, has := pl.attr("macTableManager")
		if has && mgr != "kernel" && mgr != "libvirt" {
			return nil, xmlErr("Invalid macTableManager setting '%s' in network port", mgr)
		}
		if typ == "network" {
			return &libvirtxml.NetworkPortPlug{Network: &libvirtxml.NetworkPortPlugNetwork{Bridge: br, MacTableManager: mgr}}, nil
		}
		return &libvirtxml.NetworkPortPlug{Bridge: &libvirtxml.NetworkPortPlugBridge{Bridge: br, MacTableManager: mgr}}, nil
	case "direct":
		dev, ok := pl.attr("dev")
		if !ok {
			return nil, xmlErr("Missing network port link device name")
		}
		mode := "vepa"
		if m, ok := pl.attr("mode"); ok {
			switch m {
			case "vepa", "private", "bridge", "passthrough":
				mode = m
			default:
				return nil, xmlErr("Invalid mode setting '%s' in network port", m)
			}
		}
		return &libvirtxml.NetworkPortPlug{Direct: &libvirtxml.NetworkPortPlugDirect{Dev: dev, Mode: mode}}, nil
	default: // hostdev-pci
		h := &libvirtxml.NetworkPortPlugHostDevPCI{}
		if h.Managed, err = tristate(pl, "managed"); err != nil {
			return nil, err
		}
		if d := pl.first("driver"); d != nil {
			if name, ok := d.attr("name"); ok {
				switch name {
				case "kvm", "vfio", "xen":
					h.Driver = &libvirtxml.NetworkPortPlugHostDevPCIDriver{Name: name}
				default:
					return nil, xmlErr("Missing network port driver name")
				}
			}
		}
		a := pl.first("address")
		if a == nil {
			return nil, xmlErr("Missing network port PCI address")
		}
		if h.Address, err = parsePortPCI(a); err != nil {
			return nil, err
		}
		return &libvirtxml.NetworkPortPlug{HostDevPCI: h}, nil
	}
}

// parsePortPCI reads a plug's PCI <address> as libvirt's
// virPCIDeviceAddressParseXML does: base-0 numbers, absent means 0, and an
// address that is not all zero must be a valid one.
func parsePortPCI(a *elem) (*libvirtxml.NetworkPortPlugHostDevPCIAddress, error) {
	addr := &libvirtxml.NetworkPortPlugHostDevPCIAddress{}
	for _, f := range []struct {
		name string
		dst  **uint
	}{{"domain", &addr.Domain}, {"bus", &addr.Bus}, {"slot", &addr.Slot}, {"function", &addr.Function}} {
		v, err := uintAttrBase0(a, f.name, 1<<32-1)
		if err != nil {
			return nil, err
		}
		if v == nil {
			var z uint
			v = &z
		}
		*f.dst = v
	}
	d, b, s, fn := *addr.Domain, *addr.Bus, *addr.Slot, *addr.Function
	switch {
	case d == 0 && b == 0 && s == 0 && fn == 0:
	case b > 0xff:
		return nil, xmlErr("Invalid PCI address bus='0x%x', must be <= 0xFF", b)
	case s > 0x1f:
		return nil, xmlErr("Invalid PCI address slot='0x%x', must be <= 0x1F", s)
	case fn > 7:
		return nil, xmlErr("Invalid PCI address function=0x%x, must be <= 7", fn)
	case d == 0 && b == 0 && s == 0:
		return nil, xmlErr("Invalid PCI address 0000:00:00, at least one of domain, bus, or slot must be > 0")
	}
	return addr, nil
}

// parseTAP reads vnet's <vnet:tap> and <vnet:passt> (any prefix bound to
// PortNS).
func parseTAP(root *elem) (*TAP, *Passt, error) {
	var found, passt *elem
	for _, it := range root.items {
		if it.el == nil || it.el.uri != PortNS {
			continue
		}
		switch it.el.local {
		case "tap":
			if found != nil {
				return nil, nil, xmlErr("only one <vnet:tap> element is allowed in a network port")
			}
			found = it.el
		case "passt":
			if passt != nil {
				return nil, nil, xmlErr("only one <vnet:passt> element is allowed in a network port")
			}
			passt = it.el
		default:
			return nil, nil, xmlErr("unknown element <%s> in vnet's port namespace %s", it.el.qname(), PortNS)
		}
	}
	var ps *Passt
	if passt != nil {
		if found != nil {
			return nil, nil, xmlErr("a network port has either <vnet:tap> or <vnet:passt>, not both")
		}
		sock, _ := passt.attr("socket")
		ps = &Passt{Socket: sock}
	}
	if found == nil {
		return nil, ps, nil
	}
	t, err := parseTAPAttrs(found)
	return t, nil, err
}

// parseTAPAttrs reads the attributes of <vnet:tap>.
func parseTAPAttrs(found *elem) (*TAP, error) {
	t := &TAP{}
	for _, a := range found.attrs {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		if a.Name.Space != "" {
			return nil, xmlErr("unknown attribute '%s:%s' in <vnet:tap>", a.Name.Space, a.Name.Local)
		}
		switch a.Name.Local {
		case "dev":
			if err := CheckIfName(a.Value); err != nil {
				return nil, err
			}
			t.Dev = a.Value
		case "user", "group":
			if a.Value == "" || strings.ContainsAny(a.Value, ":\x00\n") {
				return nil, xmlErr("invalid %s '%s' in <vnet:tap>", a.Name.Local, a.Value)
			}
			if a.Name.Local == "user" {
				t.User = a.Value
			} else {
				t.Group = a.Value
			}
		case "queues":
			q, err := strconv.ParseUint(a.Value, 10, 32)
			if err != nil || q < 1 || q > MaxTAPQueues {
				return nil, xmlErr("invalid queues '%s' in <vnet:tap>: must be 1 to %d", a.Value, MaxTAPQueues)
			}
			t.Queues = uint(q)
		case "persist":
			switch a.Value {
			case "no":
				t.Transient = true
			case "yes":
			default:
				return nil, badAttr(found, "persist", a.Value)
			}
		case "adopt":
			switch a.Value {
			case "yes":
				t.Adopt = true
			case "no":
			default:
				return nil, badAttr(found, "adopt", a.Value)
			}
		default:
			return nil, xmlErr("unknown attribute '%s' in <vnet:tap>", a.Name.Local)
		}
	}
	if t.Adopt {
		if t.Dev == "" {
			return nil, xmlErr("<vnet:tap adopt='yes'> needs the dev of the device to adopt")
		}
		if t.User != "" || t.Group != "" || t.Queues != 0 {
			return nil, xmlErr("<vnet:tap adopt='yes'> plugs an existing device: user, group and queues cannot be set")
		}
	}
	return t, nil
}

// CheckIfName validates a network interface name as the kernel does
// (dev_valid_name): 1 to 15 bytes, no '/', ':' or whitespace, not '.' or
// '..'. '%' is refused too: the kernel would treat it as a name template.
func CheckIfName(name string) error {
	switch {
	case name == "":
		return xmlErr("Network interface name is empty")
	case len(name) > 15:
		return xmlErr("Network interface name '%s' is too long: %d bytes, the kernel allows at most 15", name, len(name))
	case name == "." || name == ".." || strings.ContainsAny(name, "/:% \t\n\v\f\r\x00"):
		return xmlErr("Network interface name '%s' is invalid (no '/', ':', '%%', whitespace, '.' or '..')", name)
	}
	return nil
}

// FormatPort writes the port in libvirt's exact byte format
// (virNetworkPortDefFormat), followed by vnet's <vnet:tap> when set.
func FormatPort(p *Port) (string, error) {
	if p == nil || p.Owner == nil || p.MAC == nil {
		return "", Errorf(KindInternal, "incomplete network port definition")
	}
	w := &writer{}
	w.start("networkport").open()
	w.line("<uuid>%s</uuid>", p.UUID)
	w.start("owner").open()
	w.line("<name>%s</name>", escape(p.Owner.Name))
	w.line("<uuid>%s</uuid>", p.Owner.UUID)
	w.end("owner")
	if p.Group != "" {
		w.line("<group>%s</group>", escape(p.Group))
	}
	w.start("mac").rattr("address", p.MAC.Address).empty()
	formatVirtualPort(w, p.VirtualPort)
	formatBandwidth(w, p.Bandwidth)
	if p.VLAN != nil {
		vl := &libvirtxml.NetworkVLAN{Trunk: p.VLAN.Trunk}
		for _, t := range p.VLAN.Tags {
			vl.Tags = append(vl.Tags, libvirtxml.NetworkVLANTag{ID: t.ID, NativeMode: t.NativeMode})
		}
		formatVLAN(w, vl)
	}
	if p.PortOptions != nil && p.PortOptions.Isolated != "" {
		w.start("port").attr("isolated", p.PortOptions.Isolated).empty()
	}
	if p.RXFilters != nil && p.RXFilters.TrustGuest != "" {
		w.start("rxfilters").attr("trustGuest", p.RXFilters.TrustGuest).empty()
	}
	formatPlug(w, p.Plug)
	if t := p.TAP; t != nil {
		tag := w.start("vnet:tap").rattr("xmlns:vnet", PortNS).attr("dev", t.Dev).attr("user", t.User).attr("group", t.Group)
		if t.Queues > 0 {
			tag.uattr("queues", t.Queues)
		}
		if t.Adopt {
			tag.attr("adopt", "yes")
		}
		if t.Transient {
			tag.attr("persist", "no")
		}
		tag.empty()
	}
	if p.Passt != nil {
		w.start("vnet:passt").rattr("xmlns:vnet", PortNS).attr("socket", p.Passt.Socket).empty()
	}
	w.end("networkport")
	return w.b.String(), nil
}

func formatPlug(w *writer, pl *libvirtxml.NetworkPortPlug) {
	switch {
	case pl == nil:
	case pl.Network != nil:
		w.start("plug").attr("type", "network").rattr("bridge", pl.Network.Bridge).attr("macTableManager", pl.Network.MacTableManager).empty()
	case pl.Bridge != nil:
		w.start("plug").attr("type", "bridge").rattr("bridge", pl.Bridge.Bridge).attr("macTableManager", pl.Bridge.MacTableManager).empty()
	case pl.Direct != nil:
		mode := pl.Direct.Mode
		if mode == "" {
			mode = "vepa"
		}
		w.start("plug").attr("type", "direct").rattr("dev", pl.Direct.Dev).attr("mode", mode).empty()
	case pl.HostDevPCI != nil:
		h := pl.HostDevPCI
		w.start("plug").attr("type", "hostdev-pci").attr("managed", h.Managed).open()
		if h.Driver != nil && h.Driver.Name != "" {
			w.start("driver").attr("name", h.Driver.Name).empty()
		}
		var d, b, s, f uint
		if a := h.Address; a != nil {
			d, b, s, f = deref(a.Domain), deref(a.Bus), deref(a.Slot), deref(a.Function)
		}
		w.line("<address domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%d'/>", d, b, s, f)
		w.end("plug")
	}
}

// HostMAC is the MAC address of the host side of a guest's TAP: the guest's
// MAC with the first byte 0xFE, as libvirt and qemu-bridge-helper do, so the
// TAP never becomes the bridge's (lowest) address and never equals the guest's.
func HostMAC(guest string) (string, error) {
	_, b, ok := parseMAC(guest)
	if !ok {
		return "", Errorf(KindInternal, "Unable to parse MAC '%s'", guest)
	}
	b[0] = 0xfe
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]), nil
}
