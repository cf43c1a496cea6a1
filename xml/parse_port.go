package netxml

import (
	"math"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Parsing of the port-level elements shared by the network and its
// portgroups: <vlan>, <bandwidth>, <virtualport>, <portgroup>.

func parseVLAN(v *elem) (*libvirtxml.NetworkVLAN, error) {
	vl := &libvirtxml.NetworkVLAN{}
	native := false
	for _, t := range v.kids("tag") {
		idStr, ok := t.attr("id")
		id, err := strconv.ParseUint(strings.TrimSpace(idStr), 10, 32)
		if !ok || err != nil {
			return nil, xmlErr("missing or invalid vlan tag id attribute")
		}
		if id > 4095 {
			return nil, xmlErr("vlan tag id %d too large (maximum 4095)", id)
		}
		tag := libvirtxml.NetworkVLANTag{ID: uint(id)}
		if nm, ok := t.attr("nativeMode"); ok {
			if nm != "tagged" && nm != "untagged" {
				return nil, xmlErr("Invalid \"nativeMode='%s'\" in vlan <tag> element", nm)
			}
			if native {
				return nil, xmlErr("duplicate native vlan setting")
			}
			native = true
			tag.NativeMode = nm
		}
		vl.Tags = append(vl.Tags, tag)
	}
	if len(vl.Tags) == 0 {
		return nil, xmlErr("missing tag id - each <vlan> must have at least one <tag id='N'/> subelement")
	}
	trunk, hasTrunk := v.attr("trunk")
	if hasTrunk && trunk != "yes" && trunk != "no" {
		return nil, xmlErr("invalid \"trunk='%s'\" in <vlan> - trunk can be set to 'yes' or 'no'", trunk)
	}
	switch {
	case len(vl.Tags) > 1:
		if trunk == "no" {
			return nil, xmlErr("invalid \"trunk='no'\" in <vlan> - trunk must be set to 'yes' with multiple tags")
		}
		vl.Trunk = "yes"
	case native:
		if trunk == "no" {
			return nil, xmlErr("invalid configuration in <vlan> - \"trunk='no'\" is not allowed with a native vlan id")
		}
		vl.Trunk = "yes"
	case trunk == "yes":
		vl.Trunk = "yes"
	}
	return vl, nil
}

// parseRate reads <inbound>/<outbound> in the order and with the messages of
// libvirt's virNetDevBandwidthParseRate: any unsigned 64-bit value, and an
// attribute given as 0 counts as given (it is then formatted as nothing).
func parseRate(e *elem, inbound bool) (*libvirtxml.NetworkBandwidthParams, error) {
	r := &libvirtxml.NetworkBandwidthParams{}
	has := func(name string) bool { _, ok := e.attr(name); return ok }
	get := func(name string, dst **uint) error {
		v, ok, err := uintAttr(e, name, math.MaxUint64)
		if err != nil {
			return Errorf(KindUnsupported, "could not convert bandwidth %s value '%s'", name, attrOr(e, name))
		}
		if ok && v > 0 {
			x := v
			*dst = &x
		}
		return nil
	}
	if has("average") {
		if err := get("average", &r.Average); err != nil {
			return nil, err
		}
	} else if !has("floor") {
		return nil, xmlErr("Missing mandatory average or floor attributes")
	}
	if (has("peak") || has("burst")) && !has("average") {
		return nil, Errorf(KindUnsupported, "'peak' and 'burst' require 'average' attribute")
	}
	for _, f := range []struct {
		name string
		dst  **uint
	}{{"peak", &r.Peak}, {"burst", &r.Burst}, {"floor", &r.Floor}} {
		if err := get(f.name, f.dst); err != nil {
			return nil, err
		}
	}
	if r.Floor != nil && !inbound {
		return nil, Errorf(KindUnsupported, "'floor' attribute allowed only in <inbound> element")
	}
	return r, nil
}

func parseBandwidth(b *elem) (*libvirtxml.NetworkBandwidth, error) {
	bw := &libvirtxml.NetworkBandwidth{}
	if len(b.kids("inbound")) > 1 {
		return nil, xmlErr("Only one child <inbound> element allowed")
	}
	if len(b.kids("outbound")) > 1 {
		return nil, xmlErr("Only one child <outbound> element allowed")
	}
	var err error
	if in := b.first("inbound"); in != nil {
		if bw.Inbound, err = parseRate(in, true); err != nil {
			return nil, err
		}
	}
	if out := b.first("outbound"); out != nil {
		if bw.Outbound, err = parseRate(out, false); err != nil {
			return nil, err
		}
	}
	if bw.Inbound == nil && bw.Outbound == nil {
		return nil, nil
	}
	return bw, nil
}

// parseVirtualPort reads a <virtualport>; requireType is set for the
// network-level element (portgroups may leave the type to be merged).
func parseVirtualPort(v *elem, requireType bool) (*libvirtxml.NetworkVirtualPort, error) {
	typ, hasType := v.attr("type")
	if !hasType && requireType {
		return nil, xmlErr("missing required virtualport type")
	}
	allowed := map[string][]string{
		"":            {"managerid", "typeid", "typeidversion", "instanceid", "interfaceid", "profileid"},
		"802.1Qbg":    {"managerid", "typeid", "typeidversion", "instanceid"},
		"802.1Qbh":    {"profileid"},
		"openvswitch": {"interfaceid", "profileid"},
		"midonet":     {"interfaceid"},
	}
	names, ok := allowed[typ]
	if !ok || (hasType && typ == "") {
		return nil, xmlErr("unknown virtualport type %s", typ)
	}
	vals := map[string]string{}
	if params := v.first("parameters"); params != nil {
		for _, a := range params.attrs {
			if a.Name.Space != "" {
				continue
			}
			found := false
			for _, n := range names {
				if n == a.Name.Local {
					found = true
				}
			}
			if !found {
				if typ == "" {
					continue
				}
				return nil, xmlErr("attribute %s not allowed for <virtualport type='%s'>", a.Name.Local, typ)
			}
			vals[a.Name.Local] = a.Value
		}
	}
	num := func(name string, max uint64) (*uint, error) {
		s, ok := vals[name]
		if !ok {
			return nil, nil
		}
		u, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, xmlErr("cannot parse value of %s parameter", name)
		}
		if u > max {
			return nil, xmlErr("value of %s out of range", name)
		}
		x := uint(u)
		return &x, nil
	}
	uuidVal := func(name string) (string, error) {
		s, ok := vals[name]
		if !ok {
			return "", nil
		}
		u, err := NormalizeUUID(s)
		if err != nil {
			return "", xmlErr("cannot parse %s parameter as a uuid", name)
		}
		return u, nil
	}
	profile := vals["profileid"]
	if len(profile) > 39 {
		return nil, xmlErr("profileid parameter too long")
	}
	mgr, err := num("managerid", 255)
	if err != nil {
		return nil, err
	}
	tid, err := num("typeid", 0xffffff)
	if err != nil {
		return nil, err
	}
	tidv, err := num("typeidversion", 255)
	if err != nil {
		return nil, err
	}
	inst, err := uuidVal("instanceid")
	if err != nil {
		return nil, err
	}
	ifid, err := uuidVal("interfaceid")
	if err != nil {
		return nil, err
	}
	vp := &libvirtxml.NetworkVirtualPort{Params: &libvirtxml.NetworkVirtualPortParams{}}
	switch typ {
	case "":
		vp.Params.Any = &libvirtxml.NetworkVirtualPortParamsAny{ManagerID: mgr, TypeID: tid, TypeIDVersion: tidv, InstanceID: inst, ProfileID: profile, InterfaceID: ifid}
	case "802.1Qbg":
		vp.Params.VEPA8021QBG = &libvirtxml.NetworkVirtualPortParamsVEPA8021QBG{ManagerID: mgr, TypeID: tid, TypeIDVersion: tidv, InstanceID: inst}
	case "802.1Qbh":
		vp.Params.VNTag8011QBH = &libvirtxml.NetworkVirtualPortParamsVNTag8021QBH{ProfileID: profile}
	case "openvswitch":
		vp.Params.OpenVSwitch = &libvirtxml.NetworkVirtualPortParamsOpenVSwitch{InterfaceID: ifid, ProfileID: profile}
	case "midonet":
		vp.Params.MidoNet = &libvirtxml.NetworkVirtualPortParamsMidoNet{InterfaceID: ifid}
	}
	return vp, nil
}

func (p *parser) portgroup(pg *elem) (libvirtxml.NetworkPortGroup, error) {
	g := libvirtxml.NetworkPortGroup{}
	var ok bool
	if g.Name, ok = xpathAttr(pg, "name"); !ok {
		return g, xmlErr("Missing required name attribute in portgroup")
	}
	if d, ok := pg.attr("default"); ok && strings.EqualFold(d, "yes") {
		g.Default = "yes"
	}
	var err error
	if g.TrustGuestRxFilters, err = tristate(pg, "trustGuestRxFilters"); err != nil {
		return g, err
	}
	if v := pg.first("vlan"); v != nil {
		if g.VLAN, err = parseVLAN(v); err != nil {
			return g, err
		}
	}
	if v := pg.first("virtualport"); v != nil {
		if g.VirtualPort, err = parseVirtualPort(v, false); err != nil {
			return g, err
		}
	}
	if pg.first("bandwidth") != nil {
		return g, Errorf(KindUnsupported, "<bandwidth> in <portgroup> '%s' of network '%s' is not supported by vnet", g.Name, p.name)
	}
	return g, nil
}
