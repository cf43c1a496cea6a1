package netxml

import (
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Parsing of <dns>: forwarders, host, SRV and TXT records.

func (p *parser) dns(d *elem) (*libvirtxml.NetworkDNS, error) {
	dns := &libvirtxml.NetworkDNS{}
	var err error
	if v, ok := d.attr("enable"); ok {
		if v != "yes" && v != "no" {
			return nil, xmlErr("Invalid dns enable setting '%s' in network '%s'", v, p.name)
		}
		dns.Enable = v
	}
	if v, ok := d.attr("forwardPlainNames"); ok {
		if v != "yes" && v != "no" {
			return nil, xmlErr("Invalid dns forwardPlainNames setting '%s' in network '%s'", v, p.name)
		}
		dns.ForwardPlainNames = v
	}
	for _, f := range d.kids("forwarder") {
		fw := libvirtxml.NetworkDNSForwarder{}
		addr, hasAddr := f.attr("addr")
		if hasAddr {
			c, ok := canonAddr(addr)
			if !ok {
				return nil, xmlErr("Invalid forwarder IP address '%s' in network '%s'", addr, p.name)
			}
			fw.Addr = c
		}
		fw.Domain, _ = f.attr("domain")
		if !hasAddr && fw.Domain == "" {
			return nil, xmlErr("Invalid forwarder element, must contain at least one of addr or domain")
		}
		if fw.Port, _, err = uintAttr(f, "port", 65535); err != nil {
			return nil, err
		}
		dns.Forwarders = append(dns.Forwarders, fw)
	}
	for _, h := range d.kids("host") {
		host, err := p.dnsHost(h)
		if err != nil {
			return nil, err
		}
		dns.Host = append(dns.Host, host)
	}
	for _, s := range d.kids("srv") {
		srv, err := p.dnsSRV(s)
		if err != nil {
			return nil, err
		}
		dns.SRVs = append(dns.SRVs, srv)
	}
	for _, t := range d.kids("txt") {
		txt, err := p.dnsTXT(t)
		if err != nil {
			return nil, err
		}
		dns.TXTs = append(dns.TXTs, txt)
	}
	if dns.Enable == "no" && (len(dns.Forwarders) > 0 || len(dns.Host) > 0 || len(dns.SRVs) > 0 || len(dns.TXTs) > 0) {
		return nil, xmlErr("Extra data in disabled network '%s'", p.name)
	}
	return dns, nil
}

func (p *parser) dnsHost(h *elem) (libvirtxml.NetworkDNSHost, error) {
	host := libvirtxml.NetworkDNSHost{}
	for _, hn := range h.kids("hostname") {
		name := hn.text()
		if name == "" {
			return host, Errorf(KindPlain, "Missing hostname in network '%s' DNS HOST record", p.name)
		}
		host.Hostnames = append(host.Hostnames, libvirtxml.NetworkDNSHostHostname{Hostname: name})
	}
	if len(host.Hostnames) == 0 {
		return host, Errorf(KindPlain, "Missing hostname in network '%s' DNS HOST record", p.name)
	}
	ip, ok := h.attr("ip")
	if !ok {
		return host, Errorf(KindPlain, "Missing IP address in network '%s' DNS HOST record", p.name)
	}
	c, ok := canonAddr(ip)
	if !ok {
		return host, Errorf(KindPlain, "Invalid IP address in network '%s' DNS HOST record", p.name)
	}
	host.IP = c
	return host, nil
}

// Characters libvirt allows in SRV service and protocol names.
const (
	srvServiceChars  = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+/*"
	srvProtocolChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+/"
)

func onlyChars(s, set string) bool {
	for _, r := range s {
		if !strings.ContainsRune(set, r) {
			return false
		}
	}
	return true
}

func (p *parser) dnsSRV(s *elem) (libvirtxml.NetworkDNSSRV, error) {
	srv := libvirtxml.NetworkDNSSRV{}
	var ok bool
	if srv.Service, ok = xpathAttr(s, "service"); !ok {
		return srv, detail("missing required service attribute in DNS SRV record of network '%s'", p.name)
	}
	if len(srv.Service) > 15 {
		return srv, detail("service attribute '%s' in network '%s' is too long, limit is 15 bytes", srv.Service, p.name)
	}
	if !onlyChars(srv.Service, srvServiceChars) {
		return srv, detail("invalid character in service attribute '%s' in DNS SRV record of network '%s'", srv.Service, p.name)
	}
	if srv.Protocol, ok = xpathAttr(s, "protocol"); !ok {
		return srv, detail("missing required protocol attribute in DNS SRV record '%s' of network '%s'", srv.Service, p.name)
	}
	if !onlyChars(srv.Protocol, srvProtocolChars) {
		return srv, detail("invalid character in protocol attribute '%s' in DNS SRV record of network '%s'", srv.Protocol, p.name)
	}
	srv.Domain, _ = s.attr("domain")
	var hasTarget bool
	srv.Target, hasTarget = xpathAttr(s, "target")
	for _, f := range []struct {
		name, what string
		min        uint
		dst        *uint
	}{{"port", "invalid DNS SRV port", 1, &srv.Port}, {"priority", "Invalid DNS SRV priority", 0, &srv.Priority}, {"weight", "invalid DNS SRV weight", 0, &srv.Weight}} {
		v, present, err := uintAttr(s, f.name, 65535)
		if present && !hasTarget {
			return srv, detail("DNS SRV %s attribute not permitted without target for service '%s' in network '%s'", f.name, srv.Service, p.name)
		}
		if err != nil || (present && v < f.min) {
			return srv, detail("%s attribute for service '%s' in network '%s'", f.what, srv.Service, p.name)
		}
		*f.dst = v
	}
	return srv, nil
}

func (p *parser) dnsTXT(t *elem) (libvirtxml.NetworkDNSTXT, error) {
	txt := libvirtxml.NetworkDNSTXT{}
	var ok bool
	if txt.Name, ok = t.attr("name"); !ok || txt.Name == "" {
		return txt, detail("missing required name attribute in DNS TXT record of network %s", p.name)
	}
	if strings.ContainsAny(txt.Name, " ,") {
		return txt, detail("prohibited character in DNS TXT record name '%s' of network %s", txt.Name, p.name)
	}
	if txt.Value, ok = t.attr("value"); !ok {
		return txt, detail("missing required value attribute in DNS TXT record named '%s' of network %s", txt.Name, p.name)
	}
	return txt, nil
}
