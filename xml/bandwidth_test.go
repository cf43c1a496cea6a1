package netxml

import (
	"strings"
	"testing"
)

// <bandwidth> rates are parsed as libvirt's virNetDevBandwidthParseRate does:
// its order of checks, its messages and kinds, any unsigned 64-bit value, and
// an attribute of 0 counting as present (average='0' is accepted and then
// formatted as nothing).
func TestBandwidthParse(t *testing.T) {
	for _, c := range []struct {
		name, body, want string
		kind             Kind
	}{
		{"not a number", `<outbound average='x'/>`, "unsupported configuration: could not convert bandwidth average value 'x'", KindUnsupported},
		{"negative", `<outbound average='-1'/>`, "unsupported configuration: could not convert bandwidth average value '-1'", KindUnsupported},
		{"over 64 bits", `<outbound average='18446744073709551616'/>`, "unsupported configuration: could not convert bandwidth average value '18446744073709551616'", KindUnsupported},
		{"bad peak", `<inbound average='5' peak='p'/>`, "unsupported configuration: could not convert bandwidth peak value 'p'", KindUnsupported},
		{"bad burst", `<inbound average='5' burst='b'/>`, "unsupported configuration: could not convert bandwidth burst value 'b'", KindUnsupported},
		{"missing", `<outbound peak='x'/>`, "XML error: Missing mandatory average or floor attributes", KindXML},
		{"peak without average", `<inbound floor='5' peak='7'/>`, "unsupported configuration: 'peak' and 'burst' require 'average' attribute", KindUnsupported},
		{"floor outbound", `<outbound average='5' floor='3'/>`, "unsupported configuration: 'floor' attribute allowed only in <inbound> element", KindUnsupported},
		{"floor 0 outbound", `<outbound floor='0'/>`, "", 0},
		{"average 0", `<inbound average='0'/><outbound average='10' peak='0'/>`, "", 0},
		{"64 bits", `<outbound average='18446744073709551615'/>`, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(doc(`<bridge name='virbr50'/><bandwidth>` + c.body + `</bandwidth>`)))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			if err != nil && KindOf(err) != c.kind {
				t.Errorf("kind %v, want %v", KindOf(err), c.kind)
			}
		})
	}
	n := mustParse(t, doc(`<bridge name='virbr50'/><bandwidth><inbound average='0'/><outbound average='10' peak='0'/></bandwidth>`))
	if n.Bandwidth == nil || n.Bandwidth.Inbound == nil || n.Bandwidth.Inbound.Average != nil || n.Bandwidth.Outbound == nil || *n.Bandwidth.Outbound.Average != 10 || n.Bandwidth.Outbound.Peak != nil {
		t.Fatalf("parsed %+v", n.Bandwidth)
	}
	out, err := Format(n, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "  <bandwidth>\n    <outbound average='10'/>\n  </bandwidth>\n") {
		t.Errorf("formatted:\n%s", out)
	}
}
