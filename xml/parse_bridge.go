package netxml

import (
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Parsing of <bridge>.

func (p *parser) bridge(b *elem) (*libvirtxml.NetworkBridge, error) {
	br := &libvirtxml.NetworkBridge{}
	br.Name, _ = b.attr("name")
	br.Zone, _ = b.attr("zone")
	if stp, ok := xpathAttr(b, "stp"); ok {
		// libvirt: anything but "off" turns STP on.
		br.STP = "on"
		if stp == "off" {
			br.STP = "off"
		}
	}
	if v, ok := xpathAttr(b, "delay"); ok {
		d, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, xmlErr("Invalid delay value in network '%s'", p.name)
		}
		br.Delay = strconv.FormatUint(d, 10)
	}
	if v, ok := xpathAttr(b, "macTableManager"); ok {
		if v != "kernel" && v != "libvirt" {
			return nil, xmlErr("Invalid macTableManager setting '%s' in network '%s'", v, p.name)
		}
		br.MACTableManager = v
	}
	return br, nil
}
