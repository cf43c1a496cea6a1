package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"vnet/daemon/api"
	netxml "vnet/xml"
)

// fakeHost records the host state as text lines ("bridge virbr0 up" …) so
// tests can compare it with the daemon's view.
type fakeHost struct {
	mu      sync.Mutex
	up      map[string]string // network name → bridge
	links   map[string]bool
	failOn  string // network name whose converge fails
	ensures int
	taps    map[string]string // port TAP dev → bridge it is plugged into ("" unplugged); see ports_test.go
	tc      fakeTC            // ports' bandwidth; see ports_bandwidth_test.go
}

func newFakeHost() *fakeHost { return &fakeHost{up: map[string]string{}, links: map[string]bool{}} }

func (h *fakeHost) Check(n *netxml.Network) error { return nil }

// Start implements Host: the fake's converge has nothing to roll back.
func (h *fakeHost) Start(n *netxml.Network) error { _, err := h.Converge(n); return err }

// Converge implements Host.
func (h *fakeHost) Converge(n *netxml.Network) ([]string, error) { return nil, h.ensure(n) }

func (h *fakeHost) ensure(n *netxml.Network) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ensures++
	if n.Name == h.failOn {
		return errors.New("injected failure")
	}
	h.up[n.Name] = n.BridgeName()
	h.links[n.BridgeName()] = true
	return nil
}
func (h *fakeHost) Remove(n *netxml.Network) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.up, n.Name)
	delete(h.links, n.BridgeName())
	return nil
}
func (h *fakeHost) Forget(string) error { return nil }
func (h *fakeHost) LinkExists(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.links[name]
}
func (h *fakeHost) Detach()                                     {}
func (h *fakeHost) Leases(*netxml.Network) ([]api.Lease, error) { return nil, nil }
func (h *fakeHost) Plan(n *netxml.Network) (string, error)      { return "plan " + n.Name + "\n", nil }

func (h *fakeHost) state() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var lines []string
	for n, br := range h.up {
		lines = append(lines, n+" "+br)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func newTestManager(t *testing.T) (*Manager, *fakeHost, string, string) {
	t.Helper()
	cfg, run := t.TempDir(), t.TempDir()
	h := newFakeHost()
	m, err := NewManager(cfg, run, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, h, cfg, run
}

func netXML(name, uuid, subnet string) string {
	u := ""
	if uuid != "" {
		u = "<uuid>" + uuid + "</uuid>"
	}
	return fmt.Sprintf(`<network><name>%s</name>%s<forward mode='nat'/><ip address='%s.1' prefix='24'><dhcp><range start='%s.2' end='%s.254'/></dhcp></ip></network>`, name, u, subnet, subnet, subnet)
}

func TestLifecycle(t *testing.T) {
	m, h, cfg, run := newTestManager(t)
	n, err := m.Define(netXML("net1", "", "10.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "virbr0" || n.Active || !n.Persistent || len(n.UUID) != 36 {
		t.Fatalf("define: %+v", n)
	}
	if _, err := os.Stat(filepath.Join(cfg, "networks", "net1.xml")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start("net1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start("net1"); netxml.Message(err) != "Requested operation is not valid: network is already active" {
		t.Fatalf("second start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(run, "networks", "net1.xml")); err != nil {
		t.Fatal(err)
	}
	// Second network gets the next bridge.
	n2, err := m.Define(netXML("net2", "", "10.2.0"))
	if err != nil || n2.Bridge != "virbr1" {
		t.Fatalf("define net2: %+v %v", n2, err)
	}
	// Overlapping subnet with an active network cannot start.
	if _, err := m.Define(netXML("net3", "", "10.1.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start("net3"); err == nil || !strings.Contains(err.Error(), "Network is already in use by interface virbr0") {
		t.Fatalf("start net3: %v", err)
	}
	// Undefine an active network: it becomes transient, then vanishes on destroy.
	if _, err := m.Undefine("net1"); err != nil {
		t.Fatal(err)
	}
	got, err := m.Get("net1", "any")
	if err != nil || got.Persistent || !got.Active {
		t.Fatalf("after undefine: %+v %v", got, err)
	}
	if _, err := m.Destroy("net1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get("net1", "any"); netxml.KindOf(err) != netxml.KindNoNetwork {
		t.Fatalf("after destroy: %v", err)
	}
	if h.state() != "" {
		t.Fatalf("host not clean: %q", h.state())
	}
	if _, err := m.Destroy("net2"); netxml.Message(err) != "Requested operation is not valid: network 'net2' is not active" {
		t.Fatalf("destroy inactive: %v", err)
	}
}

func TestDefineErrors(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	first, err := m.Define(netXML("a", "", "10.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Define(netXML("a", "11111111-2222-3333-4444-555555555555", "10.1.0"))
	want := "operation failed: network 'a' already exists with uuid " + first.UUID
	if netxml.Message(err) != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	// Redefinition without uuid fails as in libvirt; with it, it keeps the bridge.
	if _, err := m.Define(netXML("a", "", "10.9.0")); netxml.Message(err) != want {
		t.Fatalf("redefine without uuid: %v", err)
	}
	again, err := m.Define(netXML("a", first.UUID, "10.9.0"))
	if err != nil || again.UUID != first.UUID || again.Bridge != first.Bridge {
		t.Fatalf("redefine: %+v %v", again, err)
	}
	if _, err := m.Define("<network><name>b/c</name></network>"); err == nil {
		t.Fatal("name with slash accepted")
	}
	if len(m.List()) != 1 {
		t.Fatalf("failed defines changed the registry: %+v", m.List())
	}
}

func TestRedefineActiveKeepsLive(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	if _, err := m.Define(netXML("a", "", "10.1.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start("a"); err != nil {
		t.Fatal(err)
	}
	info, _ := m.Get("a", "name")
	if _, err := m.Define(netXML("a", info.UUID, "10.7.0")); err != nil {
		t.Fatal(err)
	}
	live, _ := m.XML("a", false)
	inactive, _ := m.XML("a", true)
	if !strings.Contains(live, "10.1.0.1") || !strings.Contains(inactive, "10.7.0.1") {
		t.Fatalf("live:\n%s\ninactive:\n%s", live, inactive)
	}
}

func TestFailedStartLeavesNothing(t *testing.T) {
	m, h, _, run := newTestManager(t)
	if _, err := m.Define(netXML("bad", "", "10.1.0")); err != nil {
		t.Fatal(err)
	}
	h.failOn = "bad"
	if _, err := m.Start("bad"); err == nil {
		t.Fatal("start succeeded")
	}
	if names, _ := listXML(filepath.Join(run, "networks")); len(names) != 0 {
		t.Fatalf("status left: %v", names)
	}
	if got, _ := m.Get("bad", "any"); got.Active {
		t.Fatal("network marked active")
	}
}

func TestCreateTransient(t *testing.T) {
	m, h, cfg, _ := newTestManager(t)
	n, err := m.Create(netXML("t", "", "10.1.0"))
	if err != nil || !n.Active || n.Persistent {
		t.Fatalf("create: %+v %v", n, err)
	}
	if names, _ := listXML(filepath.Join(cfg, "networks")); len(names) != 0 {
		t.Fatalf("transient network stored: %v", names)
	}
	if _, err := m.SetAutostart("t", true); err == nil {
		t.Fatal("autostart of transient accepted")
	}
	if _, err := m.Destroy(n.UUID); err != nil {
		t.Fatal(err)
	}
	if len(m.List()) != 0 || h.state() != "" {
		t.Fatal("transient network left behind")
	}
}

func TestLoadAdoptsAndAutostarts(t *testing.T) {
	m, h, cfg, run := newTestManager(t)
	for i, name := range []string{"a", "b", "c"} {
		if _, err := m.Define(netXML(name, "", fmt.Sprintf("10.%d.0", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Start("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(netXML("t", "", "10.9.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetAutostart("b", true); err != nil {
		t.Fatal(err)
	}
	m2, err := NewManager(cfg, run, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	m2.Autostart()
	var got []string
	for _, n := range m2.List() {
		got = append(got, fmt.Sprintf("%s active=%v persistent=%v autostart=%v", n.Name, n.Active, n.Persistent, n.Autostart))
	}
	want := []string{
		"a active=true persistent=true autostart=false",
		"b active=true persistent=true autostart=true",
		"c active=false persistent=true autostart=false",
		"t active=true persistent=false autostart=false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestConcurrentOperations(t *testing.T) {
	m, h, _, _ := newTestManager(t)
	const nets = 8
	for i := 0; i < nets; i++ {
		if _, err := m.Define(netXML(fmt.Sprintf("n%d", i), "", fmt.Sprintf("10.%d.0", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				name := fmt.Sprintf("n%d", (w+i)%nets)
				switch (w * i) % 4 {
				case 0:
					m.Start(name)
				case 1:
					m.Destroy(name)
				case 2:
					m.XML(name, false)
				case 3:
					m.List()
				}
			}
		}(w)
	}
	wg.Wait()
	var want []string
	for _, n := range m.List() {
		if n.Active {
			want = append(want, n.Name+" "+n.Bridge)
		}
	}
	sort.Strings(want)
	if h.state() != strings.Join(want, "\n") {
		t.Fatalf("host %q, daemon %q", h.state(), want)
	}
}
func (h *fakeHost) Verify(*netxml.Network) ([]string, error) { return nil, nil }

func TestUnsupportedPartsRefused(t *testing.T) {
	for _, x := range []string{
		`<network><name>reg</name><domain name='x.test' register='yes'/><ip address='10.3.0.1' prefix='24'/></network>`,
		`<network><name>mtm</name><bridge macTableManager='libvirt'/><ip address='10.3.0.1' prefix='24'/></network>`,
	} {
		n, err := netxml.Parse([]byte(x))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkUnsupported(n); netxml.KindOf(err) != netxml.KindUnsupported || !strings.Contains(err.Error(), "not supported") {
			t.Errorf("%s: %v", n.Name, err)
		}
	}
}
