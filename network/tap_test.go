package network

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// tapState reads master, up, MAC, MTU, owner and TUN flags of a device in ns.
func tapState(t *testing.T, ns *netnstest.NS, name string) (master string, up bool, mac string, mtu float64, info map[string]any) {
	t.Helper()
	l := linkJSON(t, ns, name)
	master, _ = l["master"].(string)
	flags, _ := l["flags"].([]any)
	for _, f := range flags {
		if f == "UP" {
			up = true
		}
	}
	mac, _ = l["address"].(string)
	mtu, _ = l["mtu"].(float64)
	li, _ := l["linkinfo"].(map[string]any)
	info, _ = li["info_data"].(map[string]any)
	return
}

// TestTAPLifecycle: a TAP vnet creates is persistent, TAP mode, vnet_hdr,
// owned as asked, has the host-side MAC and the network's MTU, is plugged
// and up; unplugging and re-creating the bridge are drift that EnsureTAP
// repairs; a device of someone else is never touched or deleted.
func TestTAPLifecycle(t *testing.T) {
	ns := netnstest.New(t, "tap")
	ns.MustRun("ip", "link", "add", "vbr-tap", "type", "bridge")
	ns.MustRun("ip", "link", "set", "vbr-tap", "mtu", "1400", "up")
	owner, group := uint32(65534), uint32(65534)
	mac, _ := net.ParseMAC("fe:54:00:aa:bb:01")
	spec := TAPSpec{Name: "vnet7", Port: "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d", Bridge: "vbr-tap", MAC: mac, MTU: 1400, Owner: &owner, Group: &group, MultiQueue: true}
	do := func(f func() error) {
		t.Helper()
		if err := ns.Do(f); err != nil {
			t.Fatal(err)
		}
	}
	do(func() error { return CheckTAP(spec) })
	var fixed []string
	do(func() (err error) { fixed, err = EnsureTAP(spec); return })
	if len(fixed) != 1 || !strings.Contains(fixed[0], "created") {
		t.Fatalf("first EnsureTAP: %v", fixed)
	}
	master, up, gotMAC, mtu, info := tapState(t, ns, "vnet7")
	if master != "vbr-tap" || !up || gotMAC != "fe:54:00:aa:bb:01" || mtu != 1400 {
		t.Fatalf("tap: master %q up %v mac %s mtu %v", master, up, gotMAC, mtu)
	}
	if info["type"] != "tap" || info["pi"] != false || info["vnet_hdr"] != true || info["multi_queue"] != true || info["persist"] != true ||
		info["user"] != "nobody" || info["group"] != "nogroup" {
		t.Fatalf("tun info: %v", info)
	}
	do(func() (err error) { fixed, err = EnsureTAP(spec); return })
	if len(fixed) != 0 {
		t.Fatalf("EnsureTAP of a healthy TAP changed %v", fixed)
	}

	ns.MustRun("ip", "link", "set", "vnet7", "nomaster")
	var verr error
	do(func() error { verr = VerifyTAP(spec); return nil })
	var drift *DriftError
	if !errors.As(verr, &drift) || !strings.Contains(verr.Error(), `not plugged into bridge "vbr-tap"`) {
		t.Fatalf("VerifyTAP after nomaster: %v", verr)
	}
	do(func() (err error) { fixed, err = EnsureTAP(spec); return })
	if master, up, _, _, _ := tapState(t, ns, "vnet7"); master != "vbr-tap" || !up || len(fixed) != 1 {
		t.Fatalf("after repair: master %q up %v fixed %v", master, up, fixed)
	}

	// The bridge deleted and re-created: the TAP is re-plugged.
	ns.MustRun("ip", "link", "del", "vbr-tap")
	ns.MustRun("ip", "link", "add", "vbr-tap", "type", "bridge")
	ns.MustRun("ip", "link", "set", "vbr-tap", "up")
	t0 := time.Now()
	do(func() (err error) { _, err = EnsureTAP(spec); return })
	t.Logf("re-plug took %v", time.Since(t0))
	if master, _, _, _, _ := tapState(t, ns, "vnet7"); master != "vbr-tap" {
		t.Fatalf("not re-plugged: master %q", master)
	}

	// A device of someone else with the name: refused, untouched, not deleted.
	ns.MustRun("ip", "tuntap", "add", "dev", "foreign0", "mode", "tap")
	before := ns.MustRun("ip", "-d", "link", "show", "foreign0")
	other := spec
	other.Name = "foreign0"
	do(func() error {
		if err := CheckTAP(other); !errors.Is(err, ErrNotOurs) {
			t.Errorf("CheckTAP of a foreign device: %v", err)
		}
		if _, err := EnsureTAP(other); !errors.Is(err, ErrNotOurs) {
			t.Errorf("EnsureTAP of a foreign device: %v", err)
		}
		if err := DeleteTAP("foreign0", spec.Port); !errors.Is(err, ErrNotOurs) {
			t.Errorf("DeleteTAP of a foreign device: %v", err)
		}
		return nil
	})
	if after := ns.MustRun("ip", "-d", "link", "show", "foreign0"); after != before {
		t.Fatalf("foreign device changed:\n%s\n%s", before, after)
	}

	// Adopting it plugs it without changing its MAC; deletion is the caller's
	// choice and DeleteTAP refuses it.
	adopt := TAPSpec{Name: "foreign0", Port: spec.Port, Bridge: "vbr-tap", Adopt: true}
	do(func() (err error) { _, err = EnsureTAP(adopt); return })
	if master, up, _, _, _ := tapState(t, ns, "foreign0"); master != "vbr-tap" || !up {
		t.Fatalf("adopted device: master %q up %v", master, up)
	}

	do(func() error { return DeleteTAP("vnet7", spec.Port) })
	if _, err := ns.Run("ip", "link", "show", "vnet7"); err == nil {
		t.Fatal("vnet7 still exists after DeleteTAP")
	}
	do(func() error { return DeleteTAP("vnet7", spec.Port) })
}

// TestTAPGroupOnly: a TAP with only a group has no owner, so members of the
// group can open it (a root owner would lock them out).
func TestTAPGroupOnly(t *testing.T) {
	ns := netnstest.New(t, "tapg")
	group := uint32(65534)
	spec := TAPSpec{Name: "vnet0", Port: "p", Group: &group}
	if err := ns.Do(func() error { _, err := EnsureTAP(spec); return err }); err != nil {
		t.Fatal(err)
	}
	_, _, _, _, info := tapState(t, ns, "vnet0")
	if _, hasUser := info["user"]; hasUser || info["group"] != "nogroup" {
		t.Fatalf("tun info: %v", info)
	}
}

func TestResolveOwner(t *testing.T) {
	uid, gid, err := ResolveOwner("root", "0")
	if err != nil || *uid != 0 || *gid != 0 {
		t.Fatalf("ResolveOwner(root, 0) = %v %v %v", uid, gid, err)
	}
	if _, _, err := ResolveOwner("no-such-user-vnet", ""); err == nil || err.Error() != "Failed to parse user 'no-such-user-vnet'" {
		t.Fatalf("unknown user: %v", err)
	}
	if _, _, err := ResolveOwner("", "no-such-group-vnet"); err == nil || err.Error() != "Failed to parse group 'no-such-group-vnet'" {
		t.Fatalf("unknown group: %v", err)
	}
}

// TestOpenTAP: the bridge helper's TAP is not persistent, owned, plugged
// and up, and lives exactly as long as its fd; a transient port's missing
// device is ErrTAPGone for EnsureTAP (never re-created) and drift for
// VerifyTAP.
func TestOpenTAP(t *testing.T) {
	ns := netnstest.New(t, "opentap")
	ns.MustRun("ip", "link", "add", "vbr-open", "type", "bridge")
	ns.MustRun("ip", "link", "set", "vbr-open", "up")
	owner := uint32(65534)
	mac, _ := net.ParseMAC("fe:54:00:aa:bb:02")
	spec := TAPSpec{Name: "vnet8", Port: "0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10", Bridge: "vbr-open", MAC: mac, Owner: &owner, Transient: true}
	var f interface{ Close() error }
	if err := ns.Do(func() (err error) { f, err = OpenTAP(spec, true); return }); err != nil {
		t.Fatal(err)
	}
	master, up, gotMAC, _, info := tapState(t, ns, "vnet8")
	if master != "vbr-open" || !up || gotMAC != "fe:54:00:aa:bb:02" || info["persist"] != false || info["vnet_hdr"] != true || info["user"] != "nobody" {
		t.Fatalf("tap: master %q up %v mac %s info %v", master, up, gotMAC, info)
	}
	// A second open of the same name is refused, changing nothing.
	if err := ns.Do(func() error { _, err := OpenTAP(spec, true); return err }); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("second OpenTAP: %v", err)
	}
	f.Close()
	if _, err := ns.Run("ip", "link", "show", "vnet8"); err == nil {
		t.Fatal("TAP outlived its fd")
	}
	if err := ns.Do(func() error { _, err := EnsureTAP(spec); return err }); !errors.Is(err, ErrTAPGone) {
		t.Fatalf("EnsureTAP of a gone transient TAP: %v", err)
	}
	if _, err := ns.Run("ip", "link", "show", "vnet8"); err == nil {
		t.Fatal("EnsureTAP re-created a transient TAP")
	}
	var drift *DriftError
	if err := ns.Do(func() error { return VerifyTAP(spec) }); !errors.As(err, &drift) {
		t.Fatalf("VerifyTAP of a gone transient TAP: %v", err)
	}
}
