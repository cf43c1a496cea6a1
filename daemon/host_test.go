package daemon

import (
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"vnet/dnsmasq"
	"vnet/firewall"
	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

// unusableFirewall is a backend whose kernel side is missing (no nf_tables,
// no iptables): every change fails as the kernel would refuse it.
type unusableFirewall struct{}

func (unusableFirewall) Name() string { return "nftables" }
func (unusableFirewall) Apply(*firewall.Plan) error {
	return errors.New("nftables: netlink receive: operation not supported")
}
func (unusableFirewall) Remove(*firewall.Plan) error { return nil }
func (unusableFirewall) Verify(*firewall.Plan) error { return nil }

// TestStartWithoutFirewallCapability: when the kernel refuses our firewall,
// a start fails with an error naming the network and the firewall, and the
// bridge it had created is gone again: the host is as it was.
func TestStartWithoutFirewallCapability(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "nofw")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dns, err := dnsmasq.NewManager(dnsmasq.Config{StateDir: t.TempDir(), RunDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h := &realHost{fw: unusableFirewall{}, dns: dns, log: log}
	n, err := netxml.Parse([]byte(`<network><name>nofw</name><forward mode='nat'/><bridge name='vbr-nofw'/><ip address='10.151.0.1' prefix='24'><dhcp><range start='10.151.0.2' end='10.151.0.9'/></dhcp></ip></network>`))
	if err != nil {
		t.Fatal(err)
	}
	before := ns.MustRun("ip", "-o", "link")
	var startErr error
	if err := ns.Do(func() error { startErr = h.Ensure(n, true); return nil }); err != nil {
		t.Fatal(err)
	}
	if startErr == nil || !strings.Contains(startErr.Error(), "network 'nofw': apply firewall rules") || !strings.Contains(startErr.Error(), "operation not supported") {
		t.Fatalf("start error %v", startErr)
	}
	if after := ns.MustRun("ip", "-o", "link"); after != before {
		t.Fatalf("links changed:\n%s\n---\n%s", before, after)
	}
	if dns.Pid("nofw") != 0 {
		t.Fatal("dnsmasq started")
	}
}
