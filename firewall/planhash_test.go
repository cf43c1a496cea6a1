package firewall

import (
	"net/netip"
	"strings"
	"testing"
)

// TestPlanHash: equal rules hash equal (also when their strings are
// separate copies), and a change of any field changes the hash.
func TestPlanHash(t *testing.T) {
	rule := func(br string) Rule {
		return Rule{Type: Masquerade, Family: IPv4, Bridge: br, Subnet: netip.MustParsePrefix("10.1.2.0/24"), Proto: "tcp",
			NAT: NAT{AddrStart: netip.MustParseAddr("192.0.2.1")}}
	}
	a := &Plan{Rules: []Rule{rule("virbr1")}}
	b := &Plan{Rules: []Rule{rule(strings.Clone("virbr1"))}}
	if planHash(a) != planHash(b) {
		t.Fatal("equal plans hash differently")
	}
	for _, change := range []func(r *Rule){
		func(r *Rule) { r.Bridge = "virbr2" },
		func(r *Rule) { r.Subnet = netip.MustParsePrefix("10.1.3.0/24") },
		func(r *Rule) { r.Proto = "udp" },
		func(r *Rule) { r.Port = 53 },
		func(r *Rule) { r.NAT.AddrStart = netip.MustParseAddr("192.0.2.2") },
	} {
		r := rule("virbr1")
		change(&r)
		if planHash(&Plan{Rules: []Rule{r}}) == planHash(a) {
			t.Errorf("changed rule %+v hashes as the original", r)
		}
	}
	if planHash(&Plan{Rules: append(a.Rules, a.Rules...)}) == planHash(a) {
		t.Error("a repeated rule hashes as one")
	}
}
