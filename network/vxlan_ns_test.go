package network

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"vnet/internal/netnstest"
)

// TestVXLANConverge: a new device is created and set up in one converge,
// which then finds nothing to do; a changed VNI is re-created, a foreign
// device is refused; prune removes only ours, with its DHCP guard.
func TestVXLANConverge(t *testing.T) {
	ns := netnstest.New(t, "vx")
	ns.MustRun("ip", "link", "add", "br9", "type", "bridge")
	ns.MustRun("ip", "addr", "add", "192.0.2.1/24", "dev", "lo")
	s := VXLANSpec{Name: VXLANName(42), Network: "n", Bridge: "br9", VNI: 42, Local: netip.MustParseAddr("192.0.2.1"), MTU: 1450}
	converge := func(ex Executor) error { return ns.Do(func() error { return ConvergeVXLAN(s, ex) }) }

	var plan Record
	if err := converge(&plan); err != nil {
		t.Fatal(err)
	}
	var ex Apply
	if err := converge(&ex); err != nil {
		t.Fatal(err)
	}
	cmds := func(steps []Step) (out []string) {
		for _, s := range steps {
			out = append(out, s.Cmd)
		}
		return out
	}
	if Problems(plan.Steps) != nil || len(ex.Ran) != 5 || !slices.Equal(cmds(plan.Steps), cmds(ex.Ran)) {
		t.Fatalf("plan:\n%s\nran:\n%s", Commands(plan.Steps), Commands(ex.Ran))
	}
	out := ns.MustRun("ip", "-d", "link", "show", "vxlan42")
	for _, want := range []string{"mtu 1450", "master br9", "vxlan id 42 local 192.0.2.1", "dstport 4789 nolearning", "learning off", "neigh_suppress on", "alias vnet-vxlan:n"} {
		if !strings.Contains(out, want) {
			t.Errorf("vxlan42 lacks %q:\n%s", want, out)
		}
	}
	// The kernel's table is what the dry run prints.
	if g := ns.MustRun("nft", "list", "table", "bridge", "vnet-overlay-vxlan42"); g != dhcpGuardText("vxlan42") {
		t.Errorf("guard:\n%s\nwant:\n%s", g, dhcpGuardText("vxlan42"))
	}
	var again Record
	if err := converge(&again); err != nil || len(again.Steps) != 0 {
		t.Fatalf("second converge: %v\n%s", err, Commands(again.Steps))
	}

	// Drift: port flags and MTU changed, the guard flushed.
	ns.MustRun("bridge", "link", "set", "dev", "vxlan42", "learning", "on")
	ns.MustRun("ip", "link", "set", "vxlan42", "mtu", "1400")
	ns.MustRun("nft", "flush", "table", "bridge", "vnet-overlay-vxlan42")
	var fix Apply
	if err := converge(&fix); err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(Problems(fix.Ran), "\n"); !strings.Contains(p, "mtu is 1400, want 1450") || !strings.Contains(p, "learning on") || !strings.Contains(p, "dhcp guard") {
		t.Errorf("problems:\n%s", p)
	}

	// Another VNI: re-created.
	s.VNI = 43
	var re Apply
	if err := converge(&re); err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(Problems(re.Ran), "\n"); !strings.Contains(p, "vni is 42, want 43") {
		t.Errorf("problems: %s", p)
	}
	if out := ns.MustRun("ip", "-d", "link", "show", "vxlan42"); !strings.Contains(out, "vxlan id 43") || !strings.Contains(out, "master br9") {
		t.Errorf("not re-created:\n%s", out)
	}

	// Not ours: refused, untouched.
	ns.MustRun("ip", "link", "add", "vxlan7", "type", "vxlan", "id", "7", "dstport", "4789")
	err := converge2(ns, VXLANSpec{Name: "vxlan7", Network: "n", Bridge: "br9", VNI: 7, Local: s.Local, MTU: 1450})
	if !errors.Is(err, ErrNotOurs) {
		t.Errorf("foreign vxlan7: %v", err)
	}

	// Prune keeps what it is told to and foreign devices.
	var pruned []string
	if err := ns.Do(func() error {
		var err error
		pruned, err = PruneVXLANs(map[string]bool{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(pruned, ",") != "vxlan42" {
		t.Errorf("pruned %q", pruned)
	}
	if _, err := ns.Run("ip", "link", "show", "vxlan7"); err != nil {
		t.Errorf("foreign vxlan7 pruned: %v", err)
	}
	if out, err := ns.Run("nft", "list", "table", "bridge", "vnet-overlay-vxlan42"); err == nil {
		t.Errorf("guard left:\n%s", out)
	}
}

func converge2(ns *netnstest.NS, s VXLANSpec) error {
	return ns.Do(func() error { return ConvergeVXLAN(s, &Record{}) })
}
