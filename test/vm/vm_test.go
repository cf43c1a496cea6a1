package vm

import (
	"regexp"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// TestBootReportsNIC: the guest boots under TCG, loads virtio_net from the
// Debian kernel package and reports its NIC's MAC on the serial console.
func TestBootReportsNIC(t *testing.T) {
	netnstest.RequireRoot(t)
	a := Prepare(t, NetModules)
	ns := netnstest.New(t, "vmboot")
	ns.MustRun("ip", "tuntap", "add", "dev", "vmtap0", "mode", "tap", "vnet_hdr")
	ns.MustRun("ip", "link", "set", "vmtap0", "up")
	v := Start(t, a, Config{NetNS: ns.Name(), TAP: "vmtap0", MAC: "52:54:00:12:34:56", Hostname: "smoke"})
	m, l, _ := v.MustWait(0, regexp.MustCompile(`VNET-MAC (\S+)`), 3*time.Minute)
	if m[1] != "52:54:00:12:34:56" {
		t.Fatalf("guest MAC %s", m[1])
	}
	t.Logf("vm: boot to NIC up: %v", l.At.Sub(v.Started).Round(time.Millisecond))
}
