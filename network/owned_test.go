package network

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

// TestPruneBridges: only bridges vnet marked as its own, and not kept, are
// deleted; a foreign bridge and a kept one survive.
func TestPruneBridges(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "prune")
	mk := func(name string) *netxml.Network {
		return &netxml.Network{Network: libvirtxml.Network{Name: name, Bridge: &libvirtxml.NetworkBridge{Name: name}}}
	}
	for _, br := range []string{"vbr-gone", "vbr-kept"} {
		do(t, ns, func() error { _, err := ensureBridge(mk(br)); return err })
	}
	mustRun(t, ns, "ip", "link", "add", "br-foreign", "type", "bridge")
	var pruned []string
	do(t, ns, func() (err error) {
		pruned, err = PruneBridges(map[string]bool{"vbr-kept": true})
		return err
	})
	if !slices.Equal(pruned, []string{"vbr-gone"}) {
		t.Fatalf("pruned %v, want [vbr-gone]", pruned)
	}
	for _, br := range []string{"vbr-kept", "br-foreign"} {
		mustRun(t, ns, "ip", "link", "show", br)
	}
}

// TestForeignBridgeUntouched: a bridge vnet did not create (no mark) is
// neither adopted, changed nor deleted: the start is refused with libvirt's
// message and the bridge keeps its address and state.
func TestForeignBridgeUntouched(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "foreign")
	mustRun(t, ns, "ip", "link", "add", "vb-x", "type", "bridge")
	mustRun(t, ns, "ip", "addr", "add", "198.51.100.1/24", "dev", "vb-x")
	before := mustRun(t, ns, "ip", "-d", "addr", "show", "dev", "vb-x")
	n := natNetwork("vb-x")
	for _, ex := range []Executor{&Record{}, &Apply{}} {
		err := ns.Do(func() error { _, err := ConvergeBridge(n, ex); return err })
		if err == nil || netxml.Message(err) != "error creating bridge interface vb-x: File exists" {
			t.Fatalf("converge (live %v) on a foreign bridge: %v", ex.Live(), err)
		}
	}
	// Marked for another network: not ours either.
	mustRun(t, ns, "ip", "link", "set", "vb-x", "alias", "vnet:other")
	if err := ns.Do(func() error { _, err := ConvergeBridge(n, &Apply{}); return err }); err == nil {
		t.Fatal("adopted a bridge marked for another network")
	}
	mustRun(t, ns, "ip", "link", "set", "vb-x", "alias", "")
	err := ns.Do(func() error { _, err := RetireBridge("vb-x", n.Name); return err })
	if !errors.Is(err, ErrNotOurs) {
		t.Fatalf("RetireBridge of a foreign bridge: %v", err)
	}
	if after := mustRun(t, ns, "ip", "-d", "addr", "show", "dev", "vb-x"); after != before {
		t.Fatalf("foreign bridge changed:\n%s\n---\n%s", before, after)
	}
}

// TestDryRunMatchesApply: the steps a dry run records for a new bridge and
// its forwarding sysctls are exactly the steps a real converge then runs.
func TestDryRunMatchesApply(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "dry")
	mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
	for _, n := range []*netxml.Network{natNetwork("vbr-dry"), func() *netxml.Network {
		n := natNetwork("vbr-dry4")
		n.IPs, n.Routes, n.MAC, n.MTU = n.IPs[:1], n.Routes[:1], nil, nil
		n.Bridge.STP, n.Bridge.Delay = "off", "3"
		return n
	}()} {
		cmds := func(ex Executor) []string {
			var out []string
			do(t, ns, func() error {
				if _, err := ConvergeBridge(n, ex); err != nil {
					return err
				}
				return ConvergeForwarding(n, ex)
			})
			var steps []Step
			switch e := ex.(type) {
			case *Record:
				steps = e.Steps
			case *Apply:
				steps = e.Ran
			}
			for _, s := range steps {
				out = append(out, s.Cmd)
			}
			return out
		}
		dry := cmds(&Record{})
		real := cmds(&Apply{})
		if !slices.Equal(dry, real) {
			t.Errorf("%s: dry run\n  %s\nreal\n  %s", n.Name, strings.Join(dry, "\n  "), strings.Join(real, "\n  "))
		}
		if again := cmds(&Record{}); len(again) != 0 {
			t.Errorf("%s: steps left after converge: %q", n.Name, again)
		}
		t.Logf("%s:\n%s", n.Name, strings.Join(real, "\n"))
		mustRun(t, ns, "ip", "link", "del", n.BridgeName())
	}
}

// TestInterruptedCreate: a daemon killed while creating a bridge leaves it
// under its staging name (unmarked, or marked but not renamed), never as an
// unmarked bridge under the network's bridge name. The next converge removes
// the leftover and creates the bridge; PruneBridges removes staging
// leftovers too.
func TestInterruptedCreate(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "staging")
	n := natNetwork("vbr-int")
	tmp := stagingName("vbr-int")
	if len(tmp) > maxNameLen {
		t.Fatalf("staging name %q too long", tmp)
	}
	mustRun(t, ns, "ip", "link", "add", tmp, "type", "bridge")
	var rec Record
	do(t, ns, func() error { _, err := ConvergeBridge(n, &rec); return err })
	if got := rec.Steps[0].Cmd; got != "ip link del "+tmp {
		t.Errorf("first step %q, want the leftover's removal", got)
	}
	do(t, ns, func() error { _, err := ensureBridge(n); return err })
	do(t, ns, func() error { return VerifyBridge(n) })
	if _, err := ns.Run("ip", "link", "show", "dev", tmp); err == nil {
		t.Error("staging leftover still there")
	}
	if !strings.Contains(mustRun(t, ns, "ip", "-d", "link", "show", "dev", "vbr-int"), "alias vnet:nat-vbr-int") {
		t.Error("bridge not marked")
	}

	other := stagingName("vbr-other")
	mustRun(t, ns, "ip", "link", "add", other, "type", "bridge")
	var pruned []string
	do(t, ns, func() (err error) { pruned, err = PruneBridges(map[string]bool{"vbr-int": true}); return err })
	if !slices.Equal(pruned, []string{other}) {
		t.Errorf("pruned %v, want [%s]", pruned, other)
	}
}
