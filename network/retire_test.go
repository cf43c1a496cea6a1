package network

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

// TestRetireBatch: retired bridges are out of service at once (down, no
// address, in RetiredGroup) and are deleted together, in the namespace
// they were retired in; a bridge of anyone else in the same namespace is
// left alone, and FlushRetired ends the wait for the batch.
func TestRetireBatch(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "retire")
	mustRun(t, ns, "ip", "link", "add", "vb-keep", "type", "bridge")
	var nets []*netxml.Network
	for i := range 6 {
		n := &netxml.Network{Network: libvirtxml.Network{
			Name:    fmt.Sprintf("r%d", i),
			Forward: &libvirtxml.NetworkForward{Mode: "nat"},
			Bridge:  &libvirtxml.NetworkBridge{Name: fmt.Sprintf("vb-r%d", i)},
			IPs:     []libvirtxml.NetworkIP{{Address: fmt.Sprintf("192.168.%d.1", 160+i), Netmask: "255.255.255.0"}},
		}}
		do(t, ns, func() error { _, err := ConvergeBridge(n, &Apply{}); return err })
		nets = append(nets, n)
	}
	var dones []<-chan error
	for _, n := range nets {
		do(t, ns, func() error {
			done, err := RetireBridge(n.BridgeName(), n.Name)
			dones = append(dones, done)
			return err
		})
	}
	// Out of service at once, whether or not the batch has run yet.
	for _, n := range nets {
		out, err := ns.Run("ip", "-d", "addr", "show", "dev", n.BridgeName())
		if err != nil {
			continue // already deleted
		}
		if strings.Contains(out, "inet ") || strings.Contains(out, "state UP") || !strings.Contains(out, fmt.Sprintf("group %d", RetiredGroup)) {
			t.Errorf("retired bridge %s still in service:\n%s", n.BridgeName(), out)
		}
	}
	start := time.Now()
	FlushRetired()
	for i, done := range dones {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("bridge %s: %v", nets[i].BridgeName(), err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("bridge %s: not deleted after 10 s", nets[i].BridgeName())
		}
	}
	t.Logf("6 retired bridges deleted %v after the flush", time.Since(start).Round(time.Millisecond))
	links := mustRun(t, ns, "ip", "-br", "link")
	if strings.Contains(links, "vb-r") || !strings.Contains(links, "vb-keep") {
		t.Fatalf("links after the batch:\n%s", links)
	}
}
