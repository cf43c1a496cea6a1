package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	netxml "vnet/xml"
)

// The fake host's side of ports: TAP devices as a map of dev → bridge.

func (h *fakeHost) CheckPort(n *netxml.Network, p *netxml.Port) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.TAP.User == "nosuchuser" {
		return netxml.Errorf(netxml.KindInvalidArg, "Failed to parse user 'nosuchuser'")
	}
	if h.links[p.TAP.Dev] && !p.TAP.Adopt {
		return netxml.Errorf(netxml.KindOperationFailed, "Network interface '%s' already exists", p.TAP.Dev)
	}
	return nil
}

func (h *fakeHost) EnsurePort(n *netxml.Network, p *netxml.Port) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.taps == nil {
		h.taps = map[string]string{}
	}
	br := ""
	if n != nil {
		br = n.BridgeName()
	}
	if p.Bandwidth != nil {
		if h.tc.shaped == nil {
			h.tc.shaped = map[string]bool{}
		}
		h.tc.shaped[p.TAP.Dev] = true
	}
	if cur, ok := h.taps[p.TAP.Dev]; ok && cur == br {
		return nil, nil
	}
	h.taps[p.TAP.Dev] = br
	return []string{"tap " + p.TAP.Dev + " plugged"}, nil
}

func (h *fakeHost) VerifyPort(n *netxml.Network, p *netxml.Port) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.taps[p.TAP.Dev] != n.BridgeName() {
		return []string{"tap " + p.TAP.Dev + " unplugged"}, nil
	}
	return nil, nil
}

func (h *fakeHost) DeletePort(p *netxml.Port) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tc.failDelete != nil {
		return h.tc.failDelete
	}
	if !p.TAP.Adopt {
		delete(h.taps, p.TAP.Dev)
	}
	delete(h.tc.shaped, p.TAP.Dev)
	return nil
}

func (h *fakeHost) OpenPort(n *netxml.Network, p *netxml.Port, vnetHdr bool) (*os.File, error) {
	if _, err := h.EnsurePort(n, p); err != nil {
		return nil, err
	}
	return os.Open(os.DevNull)
}

func (h *fakeHost) FreeTAPName(taken func(string) bool) (string, error) {
	for i := 0; ; i++ {
		if name := fmt.Sprintf("vnet%d", i); !taken(name) && !h.LinkExists(name) {
			return name, nil
		}
	}
}

// unplug simulates a bridge deleted by someone else (the TAPs leave it).
func (h *fakeHost) unplugAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for dev := range h.taps {
		h.taps[dev] = ""
	}
}

func (h *fakeHost) tapState() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for dev, br := range h.taps {
		out = append(out, dev+"@"+br)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func portXML(uuid, mac, tap string) string {
	return fmt.Sprintf(`<networkport><uuid>%s</uuid><owner><name>vm</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner><mac address='%s'/>%s</networkport>`, uuid, mac, tap)
}

const (
	port1 = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"
	port2 = "0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10"
)

// TestPorts drives the port life cycle against the fake host: libvirt's
// errors, the plug libvirt fills, TAPs re-plugged at start and repair,
// ports kept by destroy and restart, refused undefine, events.
func TestPorts(t *testing.T) {
	m, h, cfg, run := newTestManager(t)
	events, cancel := m.Subscribe()
	defer cancel()
	if _, err := m.Define(netXML("net1", "", "10.1.0")); err != nil {
		t.Fatal(err)
	}
	tap := `<vnet:tap xmlns:vnet='urn:vnet:port:1'/>`
	if _, err := m.CreatePort("net1", portXML(port1, "52:54:00:00:00:01", tap)); netxml.Message(err) != "Requested operation is not valid: network 'net1' is not active" {
		t.Fatalf("port on inactive network: %v", err)
	}
	if _, err := m.CreatePort("nope", portXML(port1, "52:54:00:00:00:01", tap)); netxml.Message(err) != "Network not found: no network with matching name 'nope'" {
		t.Fatalf("port on unknown network: %v", err)
	}
	if _, err := m.Start("net1"); err != nil {
		t.Fatal(err)
	}
	p, err := m.CreatePort("net1", portXML(port1, "52:54:00:00:00:01", tap))
	if err != nil || p.TAP != "vnet0" || p.UUID != port1 {
		t.Fatalf("create: %+v %v", p, err)
	}
	if got := h.tapState(); got != "vnet0@virbr0" {
		t.Fatalf("host taps %q", got)
	}
	xml, err := m.PortXML("net1", strings.ToUpper(port1))
	if err != nil || !strings.Contains(xml, "<plug type='network' bridge='virbr0'/>\n  <vnet:tap xmlns:vnet='urn:vnet:port:1' dev='vnet0'/>\n") {
		t.Fatalf("dumpxml: %v\n%s", err, xml)
	}
	if data, err := os.ReadFile(filepath.Join(run, "ports", "net1", port1+".xml")); err != nil || string(data) != xml {
		t.Fatalf("status file: %v\n%s", err, data)
	}
	// Bad input: each refused with libvirt's message, nothing changed.
	for _, c := range []struct{ xml, want string }{
		{portXML(port1, "52:54:00:00:00:09", ""), "network port Network port with UUID " + port1 + " already exists exists already"},
		{portXML(port2, "52:54:00:00:00:01", ""), "network port with MAC 52:54:00:00:00:01 on network 'net1' (port " + port1 + ") exists already"},
		{portXML(port2, "fe:54:00:00:00:02", ""), "XML error: Unable to use MAC address starting with reserved value 0xFE - 'fe:54:00:00:00:02' - "},
		{portXML(port2, "52:54:00:00:00:02", `<plug type='network' bridge='virbr0'/>`), "internal error: Port reclaim not requested but plug type is not none"},
		{portXML(port2, "52:54:00:00:00:02", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='vnet0'/>`), "operation failed: device 'vnet0' is already used by network port " + port1 + " of network 'net1'"},
		{portXML(port2, "52:54:00:00:00:02", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='virbr0'/>`), "operation failed: Network interface 'virbr0' already exists"},
		{portXML(port2, "52:54:00:00:00:02", `<vnet:tap xmlns:vnet='urn:vnet:port:1' user='nosuchuser'/>`), "invalid argument: Failed to parse user 'nosuchuser'"},
	} {
		if _, err := m.CreatePort("net1", c.xml); netxml.Message(err) != c.want {
			t.Errorf("create %s:\n got %v\nwant %s", c.xml, err, c.want)
		}
	}
	if got := h.tapState(); got != "vnet0@virbr0" {
		t.Fatalf("host taps after bad input %q", got)
	}
	if ports, _ := m.ListPorts("net1"); len(ports) != 1 {
		t.Fatalf("ports after bad input: %+v", ports)
	}
	if _, err := m.CreatePort("net1", portXML(port2, "52:54:00:00:00:02", "")); err != nil {
		t.Fatal(err)
	}
	ports, err := m.ListPorts("net1")
	if err != nil || len(ports) != 2 || ports[0].UUID != port2 || ports[1].UUID != port1 {
		t.Fatalf("list: %+v %v", ports, err)
	}
	if n, _ := m.Get("net1", "any"); n.Ports != 2 {
		t.Fatalf("net-info ports %d", n.Ports)
	}

	// Drift: the TAP left the bridge; repair's port check finds and fixes it.
	h.unplugAll()
	if d := m.verifyPorts(mustLive(t, m, "net1")); len(d) != 1 {
		t.Fatalf("verifyPorts: %v", d)
	}
	r := newRepairer(m)
	r.repair("net1", nil)
	if got := h.tapState(); got != "vnet0@virbr0" {
		t.Fatalf("after repair %q", got)
	}

	// Destroy keeps the ports; start plugs them back; undefine is refused.
	if _, err := m.Destroy("net1"); err != nil {
		t.Fatal(err)
	}
	h.unplugAll()
	if ports, _ := m.ListPorts("net1"); len(ports) != 2 {
		t.Fatalf("ports after destroy: %+v", ports)
	}
	if _, err := m.Undefine("net1"); netxml.Message(err) != "Requested operation is not valid: network 'net1' still has 2 network port(s); delete them first (net-port-list, net-port-delete)" {
		t.Fatalf("undefine with ports: %v", err)
	}
	if _, err := m.Start("net1"); err != nil {
		t.Fatal(err)
	}
	if got := h.tapState(); got != "vnet0@virbr0" {
		t.Fatalf("after start %q", got)
	}

	// A new daemon over the same directories adopts the ports.
	m2, err := NewManager(cfg, run, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if ports, _ := m2.ListPorts("net1"); len(ports) != 2 {
		t.Fatalf("ports after restart: %+v", ports)
	}
	if _, err := m2.DeletePort("net1", "not-a-uuid"); netxml.Message(err) != "invalid argument: uuidstr in virNetworkPortLookupByUUIDString must be a valid UUID" {
		t.Fatalf("delete bad uuid: %v", err)
	}
	other := "11111111-2222-3333-4444-555555555555"
	if _, err := m2.DeletePort("net1", other); netxml.Message(err) != "network port not found: Network port with UUID "+other+" does not exist" {
		t.Fatalf("delete unknown: %v", err)
	}
	for _, u := range []string{port1, port2} {
		if _, err := m2.DeletePort("net1", u); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.tapState(); got != "" {
		t.Fatalf("taps after delete %q", got)
	}
	if _, err := os.Stat(filepath.Join(run, "ports", "net1")); !os.IsNotExist(err) {
		t.Fatalf("port directory left: %v", err)
	}
	if _, err := m2.Undefine("net1"); err != nil {
		t.Fatal(err)
	}

	var created int
	timeout := time.After(time.Second)
	for created < 2 {
		select {
		case e := <-events:
			if e.Type == EventPortCreated {
				created++
				if e.Name != "net1" || e.Port == "" {
					t.Fatalf("event %+v", e)
				}
			}
		case <-timeout:
			t.Fatalf("%d PortCreated events", created)
		}
	}
}

// TestPortsOfTransientNetwork: destroying a transient network deletes its
// ports and their TAPs.
func TestPortsOfTransientNetwork(t *testing.T) {
	m, h, _, run := newTestManager(t)
	if _, err := m.Create(netXML("tr", "", "10.4.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CreatePort("tr", portXML(port1, "52:54:00:00:00:01", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='tap-tr'/>`)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Destroy("tr"); err != nil {
		t.Fatal(err)
	}
	if got := h.tapState(); got != "" {
		t.Fatalf("taps %q", got)
	}
	if _, err := os.Stat(filepath.Join(run, "ports", "tr")); !os.IsNotExist(err) {
		t.Fatalf("ports of a gone network stored: %v", err)
	}
}

func mustLive(t *testing.T, m *Manager, name string) *netxml.Network {
	t.Helper()
	o, err := m.lookup(name, "name")
	if err != nil || o.live == nil {
		t.Fatalf("%s not active: %v", name, err)
	}
	return o.live
}
