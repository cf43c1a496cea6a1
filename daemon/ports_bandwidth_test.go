package daemon

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"vnet/network"
	netxml "vnet/xml"
)

// fakeTC is the fake host's tc: the floor classes on each bridge and the
// TAPs shaped with their port's <bandwidth>.
type fakeTC struct {
	floors  map[string]map[uint32]string // bridge → class id → guest MAC
	shaped  map[string]bool              // TAP dev → shaped
	missing []string                     // kernel parts the fake kernel lacks
	failOn  error                        // PlugFloor fails with it
	// failDelete makes DeletePort fail with it.
	failDelete error
}

// checkPlugged fails when the floors the manager says are plugged are not
// the ones on the bridge. h.mu is held.
func (h *fakeHost) checkPlugged(br string, plugged []network.FloorPort) error {
	var want, got []string
	for id, mac := range h.tc.floors[br] {
		want = append(want, fmt.Sprintf("%d=%s", id, mac))
	}
	for _, f := range plugged {
		got = append(got, fmt.Sprintf("%d=%s", f.ClassID, f.MAC))
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(want, got) {
		return fmt.Errorf("fake: plugged floors %v, bridge %s has %v", got, br, want)
	}
	return nil
}

func (h *fakeHost) CheckBandwidth(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.tc.missing) > 0 {
		link := n.BridgeName()
		if p.TAP != nil {
			link = p.TAP.Dev
		}
		return &network.UnsupportedKernelError{Link: link, Missing: h.tc.missing}
	}
	return h.checkPlugged(n.BridgeName(), plugged)
}

func (h *fakeHost) PlugFloor(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	br := n.BridgeName()
	if err := h.checkPlugged(br, plugged); err != nil {
		return nil, err
	}
	if h.tc.failOn != nil {
		return nil, h.tc.failOn
	}
	f, _ := portFloor(p)
	if h.tc.floors == nil {
		h.tc.floors = map[string]map[uint32]string{}
	}
	if h.tc.floors[br] == nil {
		h.tc.floors[br] = map[uint32]string{}
	}
	h.tc.floors[br][f.ClassID] = f.MAC.String()
	return []string{"plug " + p.UUID}, nil
}

func (h *fakeHost) UnplugFloor(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	br := n.BridgeName()
	f, _ := portFloor(p)
	if h.tc.floors[br][f.ClassID] == "" {
		// A rollback after a failed plug: nothing of the port there.
		plugged = slices.DeleteFunc(slices.Clone(plugged), func(g network.FloorPort) bool { return g.ClassID == f.ClassID })
	}
	if err := h.checkPlugged(br, plugged); err != nil {
		return nil, err
	}
	delete(h.tc.floors[br], f.ClassID)
	return []string{"unplug " + p.UUID}, nil
}

// floorState renders the floor classes of a bridge: "3=MAC 4=MAC".
func (h *fakeHost) floorState(br string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, mac := range h.tc.floors[br] {
		out = append(out, fmt.Sprintf("%d=%s", id, mac))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func (h *fakeHost) shapedState() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for dev, ok := range h.tc.shaped {
		if ok {
			out = append(out, dev)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

const qosNet = `<network><name>qos</name><forward mode='nat'/><bandwidth><inbound average='1000' peak='2000'/></bandwidth><ip address='10.7.0.1' prefix='24'/></network>`

func bwXML(in string) string { return "<bandwidth>" + in + "</bandwidth>" }

// TestPortBandwidthAdmission: libvirt's floor admission with its messages,
// class ids from the network's ports (lowest free, stored, shown by
// net-port-dumpxml), floors plugged at create and unplugged at delete, the
// port's own rates on its TAP, bad values and a kernel without the tc parts
// refused before anything changes, a failed plug undone.
func TestPortBandwidthAdmission(t *testing.T) {
	m, h, cfg, run := newTestManager(t)
	if _, err := m.Create(netXML("plain", "", "10.6.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Define(qosNet); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start("qos"); err != nil {
		t.Fatal(err)
	}
	br := mustLive(t, m, "qos").BridgeName()
	tap := `<vnet:tap xmlns:vnet='urn:vnet:port:1'/>`
	floor := func(f int) string { return bwXML(fmt.Sprintf("<inbound average='100' floor='%d'/>", f)) }
	const (
		mac1  = "52:54:00:00:00:01"
		mac2  = "52:54:00:00:00:02"
		port3 = "3c2f0e65-35b4-4a5c-9a0f-1f6a1f1b6e01"
	)
	storedPorts := func(network string) int {
		names, _ := filepath.Glob(filepath.Join(run, "ports", network, "*.xml"))
		return len(names)
	}

	// Refused, nothing changed.
	for _, c := range []struct{ network, xml, want string }{
		{"plain", portXML(port1, mac1, floor(10)), "Operation not supported: Invalid use of 'floor' on interface with MAC address 52:54:00:00:00:01 - network 'plain' has no inbound QoS set"},
		{"qos", portXML(port1, mac1, floor(2001)), "Requested operation is not valid: Cannot plug '52:54:00:00:00:01' interface into '" + br + "' because new combined inbound floor=2001 would overcommit peak=2000 on network 'qos'"},
		{"qos", portXML(port1, mac1, bwXML("<outbound average='4294968'/>")+tap), "unsupported configuration: bandwidth outbound average='4294968' on 'vnet0' is out of range: the kernel's police rate is at most 4294967 kbps"},
		{"qos", portXML(port1, mac1, bwXML("<inbound average='100' burst='4194304'/>")), "unsupported configuration: bandwidth inbound burst='4194304' on '52:54:00:00:00:01' is out of range: at most 4194303 kb (a 32-bit byte count)"},
	} {
		if _, err := m.CreatePort(c.network, c.xml); netxml.Message(err) != c.want {
			t.Errorf("create on %s %s:\n got %v\nwant %s", c.network, c.xml, err, c.want)
		}
		if storedPorts(c.network) != 0 || h.tapState() != "" || h.floorState(br) != "" {
			t.Fatalf("changed by a refused port: %d stored, taps %q, floors %q", storedPorts(c.network), h.tapState(), h.floorState(br))
		}
	}

	// Admitted: the lowest free class id, stored and shown; the floor
	// plugged into the bridge, the port's rates on its TAP.
	if _, err := m.CreatePort("qos", portXML(port1, mac1, floor(500)+tap)); err != nil {
		t.Fatal(err)
	}
	// A classID in the request means nothing: the network assigns it.
	if _, err := m.CreatePort("qos", portXML(port2, mac2, strings.Replace(floor(1500), "<bandwidth>", "<bandwidth classID='77'>", 1))); err != nil {
		t.Fatal(err)
	}
	if got, want := h.floorState(br), "3="+mac1+" 4="+mac2; got != want {
		t.Fatalf("floors %q, want %q", got, want)
	}
	if got := h.shapedState(); got != "vnet0" {
		t.Fatalf("shaped taps %q", got)
	}
	xml, err := m.PortXML("qos", port2)
	if err != nil || !strings.Contains(xml, "<bandwidth classID='4'>\n    <inbound average='100' floor='1500'/>\n  </bandwidth>") {
		t.Fatalf("dumpxml: %v\n%s", err, xml)
	}
	// The sum is checked against the network's peak.
	if _, err := m.CreatePort("qos", portXML(port3, "52:54:00:00:00:03", floor(1))); netxml.Message(err) != "Requested operation is not valid: Cannot plug '52:54:00:00:00:03' interface into '"+br+"' because new combined inbound floor=2001 would overcommit peak=2000 on network 'qos'" {
		t.Fatalf("overcommit: %v", err)
	}
	// No floor, no class id (even when the request has one).
	if _, err := m.CreatePort("qos", portXML(port3, "52:54:00:00:00:03", "<bandwidth classID='9'><inbound average='100'/></bandwidth>")); err != nil {
		t.Fatal(err)
	}
	if xml, _ := m.PortXML("qos", port3); strings.Contains(xml, "classID") {
		t.Fatalf("class id without a floor:\n%s", xml)
	}
	if _, err := m.DeletePort("qos", port3); err != nil {
		t.Fatal(err)
	}

	// The bridge's floors as the host's converge sees them.
	if got := fmt.Sprint(m.portFloors(mustLive(t, m, "qos"))); !strings.Contains(got, "3 "+mac1+" 500 100") || !strings.Contains(got, "4 "+mac2+" 1500 100") {
		t.Fatalf("portFloors: %s", got)
	}

	// Delete gives the class back; the next floor takes the lowest id.
	if _, err := m.DeletePort("qos", port1); err != nil {
		t.Fatal(err)
	}
	if got := h.floorState(br); got != "4="+mac2 {
		t.Fatalf("floors after delete %q", got)
	}
	if got := h.shapedState(); got != "" {
		t.Fatalf("shaped taps after delete %q", got)
	}

	// A kernel without the tc parts: precise error, nothing changed.
	h.mu.Lock()
	h.tc.missing = []string{"sch_sfq", "cls_fw", "act_police"}
	h.mu.Unlock()
	if _, err := m.CreatePort("qos", portXML(port1, mac1, bwXML("<inbound average='100'/>")+tap)); netxml.Message(err) != "unsupported configuration: bandwidth on 'vnet0': not supported by this kernel: sch_sfq, cls_fw, act_police" {
		t.Fatalf("unsupported kernel: %v", err)
	}
	if storedPorts("qos") != 1 || h.tapState() != "" {
		t.Fatalf("changed: %d stored, taps %q", storedPorts("qos"), h.tapState())
	}
	h.mu.Lock()
	h.tc.missing = nil
	h.tc.failOn = errors.New("injected plug failure")
	h.mu.Unlock()

	// A failed plug undoes the port: no TAP, no file, the other floors.
	if _, err := m.CreatePort("qos", portXML(port1, mac1, floor(100)+tap)); err == nil || err.Error() != "injected plug failure" {
		t.Fatalf("failed plug: %v", err)
	}
	if storedPorts("qos") != 1 || h.tapState() != "" || h.floorState(br) != "4="+mac2 || h.shapedState() != "" {
		t.Fatalf("not undone: %d stored, taps %q, floors %q, shaped %q", storedPorts("qos"), h.tapState(), h.floorState(br), h.shapedState())
	}
	h.mu.Lock()
	h.tc.failOn = nil
	h.mu.Unlock()
	if _, err := m.CreatePort("qos", portXML(port1, mac1, floor(100))); err != nil {
		t.Fatal(err)
	}
	if got := h.floorState(br); got != "3="+mac1+" 4="+mac2 {
		t.Fatalf("floors %q", got)
	}

	// A delete whose TAP cannot go keeps the port and plugs its floor back.
	if _, err := m.CreatePort("qos", portXML(port3, "52:54:00:00:00:03", floor(100)+tap)); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.tc.failDelete = errors.New("injected delete failure")
	h.mu.Unlock()
	if _, err := m.DeletePort("qos", port3); err == nil || err.Error() != "injected delete failure" {
		t.Fatalf("failed delete: %v", err)
	}
	if got := h.floorState(br); got != "3="+mac1+" 4="+mac2+" 5=52:54:00:00:00:03" {
		t.Fatalf("floors after a failed delete %q", got)
	}
	h.mu.Lock()
	h.tc.failDelete = nil
	h.mu.Unlock()
	if _, err := m.DeletePort("qos", port3); err != nil {
		t.Fatal(err)
	}

	// Class ids survive a daemon restart (stored in the port).
	m2, err := NewManager(cfg, run, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(m2.portFloors(mustLive(t, m2, "qos"))), fmt.Sprint(m.portFloors(mustLive(t, m, "qos"))); got != want {
		t.Fatalf("floors after restart %s, want %s", got, want)
	}

	// Destroy: the bridge and its classes are gone, the ports stay; a
	// delete then has no class to unplug.
	if _, err := m2.Destroy("qos"); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	delete(h.tc.floors, br)
	h.mu.Unlock()
	if _, err := m2.DeletePort("qos", port1); err != nil {
		t.Fatal(err)
	}
}

// TestBandwidthOptionsFromPorts: the real host's network converge builds
// the bridge's floor classes from the manager's ports (so a start or a
// re-created bridge gets them back), and none on a network without inbound
// QoS.
func TestBandwidthOptionsFromPorts(t *testing.T) {
	h := &realHost{}
	m := NewManagerWith(newMemStore(), h, nil)
	n, err := netxml.Parse([]byte(qosNet))
	if err != nil {
		t.Fatal(err)
	}
	for i, xml := range []string{
		portXML(port1, "52:54:00:00:00:01", "<bandwidth classID='3'><inbound average='100' floor='300'/></bandwidth>"),
		portXML(port2, "52:54:00:00:00:02", "<bandwidth><inbound average='100'/></bandwidth>"),
	} {
		p, err := netxml.ParsePort([]byte(xml))
		if err != nil {
			t.Fatal(i, err)
		}
		m.ports.put("qos", p)
	}
	opts := h.bandwidthOptions(n)
	if !opts.Hierarchical || !opts.Swapped || len(opts.Floors) != 1 || opts.Floors[0].ClassID != 3 || opts.Floors[0].Floor != 300 || opts.Floors[0].MAC.String() != "52:54:00:00:00:01" {
		t.Fatalf("options %+v", opts)
	}
	n.Bandwidth.Inbound = nil
	if opts := h.bandwidthOptions(n); len(opts.Floors) != 0 {
		t.Fatalf("floors without inbound QoS: %+v", opts.Floors)
	}
}
