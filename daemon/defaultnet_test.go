package daemon

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	netxml "vnet/xml"
)

// busyHost is a fake host whose interfaces other than the networks' own
// bridges hold the subnets in used: Check refuses a network overlapping one
// of them as the real host's conflict check does. A non-nil readErr is a
// failure to read the host.
type busyHost struct {
	*fakeHost
	used    map[string]netip.Prefix // interface → subnet
	readErr error
	checked int
}

func (h *busyHost) Check(n *netxml.Network) error {
	h.checked++
	if h.readErr != nil {
		return h.readErr
	}
	for _, ip := range n.IPs {
		p, err := netxml.IPNet(ip)
		if err != nil {
			return err
		}
		for dev, q := range h.used {
			if dev != n.BridgeName() && p.Masked().Overlaps(q) {
				return netxml.Errorf(netxml.KindInternal, "Network is already in use by interface %s", dev)
			}
		}
	}
	return nil
}

// TestDefaultNetworkPlacement: at its first definition the default network
// takes the first bridge and 192.168.N.0/24 subnet that nothing on the host
// and no other definition uses, and says so.
func TestDefaultNetworkPlacement(t *testing.T) {
	for _, tc := range []struct {
		name       string
		links      []string
		used       map[string]string
		defs       []string // XML defined before the first start
		readErr    error
		wantBridge string
		wantSubnet string
		wantLog    bool
	}{
		{name: "free host", wantBridge: "virbr0", wantSubnet: "192.168.122"},
		{name: "libvirt's default network", links: []string{"virbr0"},
			used: map[string]string{"virbr0": "192.168.122.0/24"}, wantBridge: "virbr1", wantSubnet: "192.168.123", wantLog: true},
		{name: "subnets only", used: map[string]string{"eth1": "192.168.122.0/23"},
			wantBridge: "virbr0", wantSubnet: "192.168.124", wantLog: true},
		{name: "bridges only", links: []string{"virbr0", "virbr1"},
			wantBridge: "virbr2", wantSubnet: "192.168.122", wantLog: true},
		{name: "another definition", defs: []string{`<network><name>lab</name><bridge name='virbr0'/>` +
			`<ip address='192.168.122.1' prefix='24'/></network>`},
			wantBridge: "virbr1", wantSubnet: "192.168.123", wantLog: true},
		{name: "host unreadable", readErr: errors.New("netlink: permission denied"),
			wantBridge: "virbr0", wantSubnet: "192.168.122"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &busyHost{fakeHost: newFakeHost(), used: map[string]netip.Prefix{}, readErr: tc.readErr}
			for _, l := range tc.links {
				h.links[l] = true
			}
			for dev, p := range tc.used {
				h.used[dev] = netip.MustParsePrefix(p)
			}
			var logs bytes.Buffer
			m, err := NewManager(t.TempDir(), t.TempDir(), h, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range tc.defs {
				if _, err := m.Define(x); err != nil {
					t.Fatal(err)
				}
			}
			m.installDefault(t.TempDir())
			n, err := m.Get("default", "name")
			if err != nil {
				t.Fatalf("default network not defined: %v\n%s", err, logs.String())
			}
			if n.Bridge != tc.wantBridge || !n.Autostart {
				t.Errorf("bridge %q autostart %v, want %q and autostart", n.Bridge, n.Autostart, tc.wantBridge)
			}
			x, err := m.XML("default", true)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"<ip address='" + tc.wantSubnet + ".1' netmask='255.255.255.0'>",
				"<range start='" + tc.wantSubnet + ".2' end='" + tc.wantSubnet + ".254'/>",
				"<bridge name='" + tc.wantBridge + "' stp='off' delay='0'/>"} {
				if !strings.Contains(x, want) {
					t.Errorf("definition lacks %s:\n%s", want, x)
				}
			}
			said := strings.Contains(logs.String(), "the default network takes the next free bridge and subnet")
			if said != tc.wantLog {
				t.Errorf("logged the move: %v, want %v:\n%s", said, tc.wantLog, logs.String())
			}
			if tc.wantLog && !strings.Contains(logs.String(), "bridge="+tc.wantBridge+" subnet="+tc.wantSubnet+".0/24") {
				t.Errorf("log does not name the bridge and subnet:\n%s", logs.String())
			}
			if tc.readErr != nil && !strings.Contains(logs.String(), tc.readErr.Error()) {
				t.Errorf("log does not say why the host could not be read:\n%s", logs.String())
			}
		})
	}
}

// TestDefaultNetworkNotRewritten: an existing definition of 'default' is
// kept as it is, even where its bridge and subnet are now in use.
func TestDefaultNetworkNotRewritten(t *testing.T) {
	h := &busyHost{fakeHost: newFakeHost(), used: map[string]netip.Prefix{"virbr0": netip.MustParsePrefix("192.168.122.0/24")}}
	h.links["virbr0"] = true
	m, err := NewManager(t.TempDir(), t.TempDir(), h, nil)
	if err != nil {
		t.Fatal(err)
	}
	mine := `<network><name>default</name><bridge name='virbr0'/><ip address='192.168.122.1' prefix='24'/></network>`
	if _, err := m.Define(mine); err != nil {
		t.Fatal(err)
	}
	before, _ := m.XML("default", true)
	m.installDefault(t.TempDir())
	after, _ := m.XML("default", true)
	if before != after {
		t.Errorf("definition rewritten:\n%s\nwas\n%s", after, before)
	}
	if h.checked != 0 {
		t.Errorf("host checked %d times for an existing definition", h.checked)
	}
}
