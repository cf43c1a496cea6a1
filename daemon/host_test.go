package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
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
func (unusableFirewall) Apply(p *firewall.Plan) error {
	// As the nftables backend words it: what it touched, then why.
	return fmt.Errorf("apply nftables table %s: %w", p.TableName(), errors.New("netlink receive: operation not supported"))
}
func (unusableFirewall) Remove(*firewall.Plan) error             { return nil }
func (unusableFirewall) Verify(*firewall.Plan) error             { return nil }
func (unusableFirewall) Describe(*firewall.Plan) (string, error) { return "", nil }

// TestStartWithoutFirewallCapability: when the kernel refuses our firewall,
// a start fails with an error naming the network and the firewall, and the
// bridge it had created is gone again: the host is as it was.
func TestStartWithoutFirewallCapability(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "nofw")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The firewall fails before dnsmasq would start: any binary will do.
	dns, err := dnsmasq.NewManager(dnsmasq.Config{Binary: "/bin/false", StateDir: t.TempDir(), RunDir: t.TempDir(), Logger: log})
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
	if err := ns.Do(func() error { startErr = h.Start(n); return nil }); err != nil {
		t.Fatal(err)
	}
	// The network is named once (not "network 'nofw': apply firewall
	// rules: network 'nofw': …").
	if want := "network 'nofw': firewall: apply nftables table vnet-vbr-nofw: netlink receive: operation not supported"; startErr == nil || startErr.Error() != want {
		t.Fatalf("start error %v, want %s", startErr, want)
	}
	if after := ns.MustRun("ip", "-o", "link"); after != before {
		t.Fatalf("links changed:\n%s\n---\n%s", before, after)
	}
	if dns.Pid("nofw") != 0 {
		t.Fatal("dnsmasq started")
	}
}
