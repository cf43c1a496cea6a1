package network

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

func TestIPAddr(t *testing.T) {
	cases := []struct {
		in   libvirtxml.NetworkIP
		want string // "" for an error
	}{
		{libvirtxml.NetworkIP{Address: "192.168.122.1", Netmask: "255.255.255.0"}, "192.168.122.1/24"},
		{libvirtxml.NetworkIP{Address: "192.168.122.1", Prefix: 24}, "192.168.122.1/24"},
		{libvirtxml.NetworkIP{Address: "10.1.2.3"}, "10.1.2.3/8"},
		{libvirtxml.NetworkIP{Address: "172.16.0.1"}, "172.16.0.1/16"},
		{libvirtxml.NetworkIP{Address: "192.168.1.1"}, "192.168.1.1/24"},
		{libvirtxml.NetworkIP{Address: "224.0.0.1"}, ""},
		{libvirtxml.NetworkIP{Family: "ipv6", Address: "2001:db8:ca2:2::1"}, "2001:db8:ca2:2::1/64"},
		{libvirtxml.NetworkIP{Family: "ipv6", Address: "2001:db8::1", Prefix: 48}, "2001:db8::1/48"},
		{libvirtxml.NetworkIP{Address: "10.0.0.1", Netmask: "255.0.255.0"}, ""},
		{libvirtxml.NetworkIP{Address: "10.0.0.1", Prefix: 33}, ""},
		{libvirtxml.NetworkIP{Family: "ipv6", Address: "10.0.0.1"}, ""},
		{libvirtxml.NetworkIP{Address: "10.209.0.300"}, ""},
	}
	for _, c := range cases {
		got, err := ipAddr(c.in)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%+v: got %s, want an error", c.in, got)
		case c.want != "" && (err != nil || got.String() != c.want):
			t.Errorf("%+v: got %v %v, want %s", c.in, got, err, c.want)
		}
	}
}

func TestParseRoute(t *testing.T) {
	r, err := parseRoute(libvirtxml.NetworkRoute{Address: "192.168.222.7", Netmask: "255.255.255.0", Gateway: "192.168.122.2"})
	if err != nil || r.String() != "192.168.222.0/24 via 192.168.122.2 metric 1" {
		t.Errorf("got %v %v", r, err)
	}
	r, err = parseRoute(libvirtxml.NetworkRoute{Family: "ipv6", Address: "2001:db8:ac10:fd01::", Prefix: 64, Gateway: "2001:db8:ac10:fc00::2", Metric: "3"})
	if err != nil || r.String() != "2001:db8:ac10:fd01::/64 via 2001:db8:ac10:fc00::2 metric 3" {
		t.Errorf("got %v %v", r, err)
	}
	if _, err := parseRoute(libvirtxml.NetworkRoute{Address: "10.0.0.0", Prefix: 8, Gateway: "fd00::1"}); err == nil {
		t.Error("mixed families accepted")
	}
}

func TestWantSTP(t *testing.T) {
	cases := []struct {
		stp, delay string
		want       stpState
		err        bool
	}{
		{"", "", stpState{On: true, Delay: stpMinDelay}, false},
		{"on", "0", stpState{On: true, Delay: 200}, false},
		{"on", "5", stpState{On: true, Delay: 500}, false},
		{"on", "60", stpState{On: true, Delay: stpMaxDelay}, false},
		{"off", "0", stpState{}, false},
		{"off", "45", stpState{Delay: 4500}, false},
		{"maybe", "", stpState{}, true},
		{"off", "-1", stpState{}, true},
	}
	for _, c := range cases {
		got, err := wantSTP(c.stp, c.delay)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("wantSTP(%q, %q) = %+v, %v; want %+v", c.stp, c.delay, got, err, c.want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	p := netip.MustParsePrefix
	if !overlaps(p("10.60.0.1/24"), p("10.60.0.0/16")) || overlaps(p("10.60.0.1/24"), p("10.61.0.1/24")) {
		t.Error("overlaps is wrong")
	}
}

// TestNoRawDumps keeps dump calls behind retryDump: vishvananda/netlink returns
// ErrDumpInterrupted with partial results, and only the wrappers in
// nlsafe.go retry.
func TestNoRawDumps(t *testing.T) {
	banned := map[string]bool{"LinkList": true, "LinkByName": true, "AddrList": true, "RouteList": true, "RouteListFiltered": true,
		"QdiscList": true, "ClassList": true, "FilterList": true}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if f == "nlsafe.go" || strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && banned[sel.Sel.Name] {
				t.Errorf("%s: direct %s call; use the retrying wrapper in nlsafe.go", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}
