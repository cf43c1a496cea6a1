package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"vnet/dnsmasq"
	"vnet/firewall"
	"vnet/internal/netnstest"
	"vnet/network"
	netxml "vnet/xml"
)

// unusableFirewall is a backend whose kernel side is missing (no nf_tables,
// no iptables): every change fails as the kernel would refuse it.
type unusableFirewall struct{}

func (unusableFirewall) Name() string { return "nftables" }
func (unusableFirewall) Apply(p *firewall.Plan) error {
	// As the nftables backend words it: what it touched, then why.
	return fmt.Errorf("converge nftables table vnet for bridge %s: %w", p.Bridge, errors.New("netlink receive: operation not supported"))
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
	if want := "network 'nofw': firewall: converge nftables table vnet for bridge vbr-nofw: netlink receive: operation not supported"; startErr == nil || startErr.Error() != want {
		t.Fatalf("start error %v, want %s", startErr, want)
	}
	if after := ns.MustRun("ip", "-o", "link"); after != before {
		t.Fatalf("links changed:\n%s\n---\n%s", before, after)
	}
	if dns.Pid("nofw") != 0 {
		t.Fatal("dnsmasq started")
	}
}

// TestStartWithBandwidth: a network's <bandwidth> is shaped on its bridge
// by the start's own converge (and shown by the dry run), or, on a kernel
// without the qdiscs and actions it needs, refused with a precise error
// before anything changes.
func TestStartWithBandwidth(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "bw")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dns, err := dnsmasq.NewManager(dnsmasq.Config{Binary: "/bin/false", StateDir: t.TempDir(), RunDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h := &realHost{fw: okFirewall{}, dns: dns, log: log}
	n, err := netxml.Parse([]byte(`<network><name>bw</name><bridge name='vbr-bw'/><dns enable='no'/><bandwidth><inbound average='1000' peak='2000' burst='256'/><outbound average='500'/></bandwidth><ip address='10.152.0.1' prefix='24'/></network>`))
	if err != nil {
		t.Fatal(err)
	}
	before := ns.MustRun("ip", "-o", "link")
	var plan string
	var startErr, planErr error
	if err := ns.Do(func() error {
		plan, planErr = h.Plan(n)
		startErr = h.Start(n)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var unsupported *network.UnsupportedKernelError
	if errors.As(startErr, &unsupported) {
		if !errors.As(planErr, &unsupported) {
			t.Errorf("dry run on a kernel without tc support: %v, want the start's error", planErr)
		}
		if !strings.HasPrefix(startErr.Error(), "network 'bw': ") || !strings.Contains(startErr.Error(), "not supported by this kernel: ") {
			t.Errorf("start error %q", startErr)
		}
		if after := ns.MustRun("ip", "-o", "link"); after != before {
			t.Fatalf("links changed:\n%s\n---\n%s", before, after)
		}
		t.Skipf("kernel lacks tc parts; refused precisely: %v", startErr)
	}
	if startErr != nil || planErr != nil {
		t.Fatalf("start: %v, dry run: %v", startErr, planErr)
	}
	if !strings.Contains(plan, "tc qdisc add dev vbr-bw root handle 1: htb") {
		t.Errorf("dry run has no tc step:\n%s", plan)
	}
	if q := ns.MustRun("tc", "qdisc", "show", "dev", "vbr-bw"); !strings.Contains(q, "htb 1:") || !strings.Contains(q, "ingress") {
		t.Errorf("bridge qdiscs:\n%s", q)
	}
}

// okFirewall is a backend that accepts everything and installs nothing.
type okFirewall struct{}

func (okFirewall) Name() string                            { return "nftables" }
func (okFirewall) Apply(*firewall.Plan) error              { return nil }
func (okFirewall) Remove(*firewall.Plan) error             { return nil }
func (okFirewall) Verify(*firewall.Plan) error             { return nil }
func (okFirewall) Describe(*firewall.Plan) (string, error) { return "", nil }
