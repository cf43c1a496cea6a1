package dbusapi

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"vnet/daemon"
	"vnet/daemon/api"
)

const (
	fixtureUUID = "dd8fe884-6c02-601e-7551-cca97df1c5df"
	fixturePath = dbus.ObjectPath("/org/libvirt/Test/network/_dd8fe884_6c02_601e_7551_cca97df1c5df")
	fixtureXML  = `<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
`
	connectI = "org.libvirt.Connect."
	networkI = "org.libvirt.Network."
	propsI   = "org.freedesktop.DBus.Properties."
)

// netXML is an isolated network on 192.168.<third>.0/24.
func netXML(name, uuid string, third int) string {
	u := ""
	if uuid != "" {
		u = "<uuid>" + uuid + "</uuid>"
	}
	return fmt.Sprintf(`<network><name>%s</name>%s<bridge name='vnt%d'/><ip address='192.168.%d.1' netmask='255.255.255.0'/></network>`, name, u, third, third)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestIntrospection(t *testing.T) {
	e := newTestEnv(t, Options{})
	for _, c := range []struct {
		path dbus.ObjectPath
		file string
	}{
		{"/org/libvirt/Test", "introspect-connect.xml"},
		{"/org/libvirt/Test/network", "introspect-network-root.xml"},
		{fixturePath, "introspect-network.xml"},
		// An unknown uuid still introspects: libvirt-dbus looks it up only on a call.
		{"/org/libvirt/Test/network/_00000000_0000_0000_0000_000000000000", "introspect-network.xml"},
		{"/", "introspect-root.xml"},
		{"/org/libvirt", "introspect-org-libvirt.xml"},
	} {
		t.Run(strings.TrimPrefix(string(c.path), "/"), func(t *testing.T) {
			body := e.must(c.path, "org.freedesktop.DBus.Introspectable.Introspect")
			golden(t, c.file, body[0].(string))
		})
	}
	// A new network appears as a child node of …/network.
	e.must(e.connectPath(), connectI+"NetworkDefineXML", netXML("extra", "11111111-2222-3333-4444-555555555555", 50))
	xml := e.must("/org/libvirt/Test/network", "org.freedesktop.DBus.Introspectable.Introspect")[0].(string)
	for _, n := range []string{`<node name="_11111111_2222_3333_4444_555555555555"/>`, `<node name="_dd8fe884_6c02_601e_7551_cca97df1c5df"/>`} {
		if !strings.Contains(xml, n) {
			t.Errorf("…/network introspection lacks %s:\n%s", n, xml)
		}
	}
	// Unrelated paths do not exist.
	_, err := e.call("/org/libvirt/Test/domain/_x", "org.freedesktop.DBus.Introspectable.Introspect")
	wantErrorPrefix(t, err, "org.freedesktop.DBus.Error.NoSuchObject", "")
}

// TestIntrospectionSignatures checks the golden Connect and Network data
// against dbus-api.md §4, member by member, so the golden files cannot drift.
func TestIntrospectionSignatures(t *testing.T) {
	want := map[string]map[string]string{
		"org.libvirt.Connect": {
			"prop Encrypted": "b read const", "prop Hostname": "s read", "prop LibVersion": "t read",
			"prop Secure": "b read const", "prop Version": "t read",
			"method ListNetworks":        "in u flags; out ao networks",
			"method NetworkCreateXML":    "in s xml; out o network",
			"method NetworkDefineXML":    "in s xml; out o network",
			"method NetworkLookupByName": "in s name; out o network",
			"method NetworkLookupByUUID": "in s uuid; out o network",
			"signal NetworkEvent":        "o network; i event",
			"method GetCapabilities":     "out s capabilities",
			"method ListDomains":         "in u flags; out ao domains",
			"method ListInterfaces":      "in u flags; out ao interfaces",
			"method ListNodeDevices":     "in u flags; out ao devs",
			"method ListStoragePools":    "in u flags; out ao storagePools",
			"method NodeGetMemoryStats":  "in i cellNum; in u flags; out a{st} stats",
		},
		"org.libvirt.Network": {
			"prop Active": "b read", "prop Autostart": "b readwrite", "prop Name": "s read const",
			"prop Persistent": "b read", "prop UUID": "s read const",
			"method Create":        "",
			"method Destroy":       "",
			"method GetDHCPLeases": "in s mac; in u flags; out a(sxisssuss) leases",
			"method GetXMLDesc":    "in u flags; out s xml",
			"method Undefine":      "",
			"method Update":        "in u command; in u section; in i parentIndex; in s xml; in u flags",
		},
	}
	s := New(daemon.NewTestDriver(nil), Options{})
	for _, i := range append(s.connectIfaces, s.networkIfaces...) {
		w, ok := want[i.name]
		if !ok {
			continue
		}
		if i.emits != "false" {
			t.Errorf("%s: EmitsChangedSignal = %q, want false", i.name, i.emits)
		}
		got := map[string]string{}
		for _, p := range i.props {
			acc := "read"
			if p.writable {
				acc = "readwrite"
			}
			got["prop "+p.name] = strings.TrimSpace(p.typ + " " + acc + " " + p.emits)
		}
		for _, m := range i.methods {
			var parts []string
			for _, a := range m.in {
				parts = append(parts, "in "+a.typ+" "+a.name)
			}
			for _, a := range m.out {
				parts = append(parts, "out "+a.typ+" "+a.name)
			}
			got["method "+m.name] = strings.Join(parts, "; ")
		}
		for _, sg := range i.signals {
			var parts []string
			for _, a := range sg.args {
				parts = append(parts, a.typ+" "+a.name)
			}
			got["signal "+sg.name] = strings.Join(parts, "; ")
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s members:\n got %v\nwant %v", i.name, got, w)
		}
	}
}

func TestConnectProperties(t *testing.T) {
	e := newTestEnv(t, Options{})
	c := e.connectPath()
	v := e.must(c, propsI+"Get", "org.libvirt.Connect", "LibVersion")[0].(dbus.Variant)
	if v.Signature().String() != "t" || v.Value() != uint64(9000000) {
		t.Errorf("Get LibVersion = %s %v, want single variant t 9000000", v.Signature(), v.Value())
	}
	all := e.must(c, propsI+"GetAll", "org.libvirt.Connect")[0].(map[string]dbus.Variant)
	host, _ := os.Hostname()
	want := map[string]any{"Encrypted": false, "Hostname": host, "LibVersion": uint64(9000000), "Secure": true, "Version": uint64(2)}
	checkDoubleWrapped(t, all, want)

	// Another LibVersion and the real driver's path.
	e2 := newRealEnv(t, Options{LibVersion: 10001000})
	if e2.connectPath() != "/org/libvirt/QEMU" {
		t.Fatalf("real driver path = %s", e2.connectPath())
	}
	v = e2.must(QEMUPath, propsI+"Get", "org.libvirt.Connect", "LibVersion")[0].(dbus.Variant)
	if v.Value() != uint64(10001000) {
		t.Errorf("LibVersion = %v", v.Value())
	}
}

// checkDoubleWrapped checks GetAll's a{sv}: each value a variant holding a
// variant holding the value (dbus-api.md §6.1).
func checkDoubleWrapped(t *testing.T, all map[string]dbus.Variant, want map[string]any) {
	t.Helper()
	if len(all) != len(want) {
		t.Errorf("GetAll returned %d properties %v, want %d", len(all), all, len(want))
	}
	for k, w := range want {
		outer, ok := all[k]
		if !ok {
			t.Errorf("GetAll lacks %s", k)
			continue
		}
		if outer.Signature().String() != "v" {
			t.Errorf("GetAll %s: inner signature %q, want v (double wrapping)", k, outer.Signature())
			continue
		}
		inner := outer.Value().(dbus.Variant)
		if !reflect.DeepEqual(inner.Value(), w) {
			t.Errorf("GetAll %s = %#v, want %#v", k, inner.Value(), w)
		}
	}
}

func TestTestDriverFixture(t *testing.T) {
	e := newTestEnv(t, Options{})
	c := e.connectPath()
	if got := paths(e.must(c, connectI+"ListNetworks", uint32(0))); !reflect.DeepEqual(got, []string{string(fixturePath)}) {
		t.Fatalf("ListNetworks(0) = %v", got)
	}
	if got := e.must(fixturePath, networkI+"GetXMLDesc", uint32(0))[0].(string); got != fixtureXML {
		t.Errorf("GetXMLDesc(0):\n%s\nwant\n%s", got, fixtureXML)
	}
	all := e.must(fixturePath, propsI+"GetAll", "org.libvirt.Network")[0].(map[string]dbus.Variant)
	checkDoubleWrapped(t, all, map[string]any{"Active": true, "Autostart": false, "Name": "default", "Persistent": true, "UUID": fixtureUUID})
	v := e.must(fixturePath, propsI+"Get", "org.libvirt.Network", "Name")[0].(dbus.Variant)
	if v.Signature().String() != "s" || v.Value() != "default" {
		t.Errorf("Get Name = %s %v", v.Signature(), v.Value())
	}

	_, err := e.call(fixturePath, networkI+"GetXMLDesc", uint32(1))
	wantError(t, err, errLibvirt, "invalid argument: unsupported flags (0x1) in function testNetworkGetXMLDesc")
	_, err = e.call(fixturePath, networkI+"GetDHCPLeases", "", uint32(0))
	wantError(t, err, errLibvirt, "this function is not supported by the connection driver: virNetworkGetDHCPLeases")
	_, err = e.call(fixturePath, networkI+"Undefine")
	wantError(t, err, errLibvirt, "Requested operation is not valid: Network 'default' is still running")

	ev := e.subscribe()
	e.must(fixturePath, networkI+"Destroy")
	ev.next(fixturePath, daemon.EventStopped)
	// The test driver destroys an inactive network without complaint.
	e.must(fixturePath, networkI+"Destroy")
	e.must(fixturePath, networkI+"Create")
	ev.next(fixturePath, daemon.EventStarted)

	// Lookups.
	for _, u := range []string{fixtureUUID, strings.ReplaceAll(fixtureUUID, "-", ""), strings.ToUpper(fixtureUUID)} {
		if p := e.must(c, connectI+"NetworkLookupByUUID", u)[0].(dbus.ObjectPath); p != fixturePath {
			t.Errorf("NetworkLookupByUUID(%s) = %s", u, p)
		}
	}
	if p := e.must(c, connectI+"NetworkLookupByName", "default")[0].(dbus.ObjectPath); p != fixturePath {
		t.Errorf("NetworkLookupByName = %s", p)
	}
	_, err = e.call(c, connectI+"NetworkLookupByName", "nope")
	wantError(t, err, errLibvirt, "Network not found: no network with matching name 'nope'")
	_, err = e.call(c, connectI+"NetworkLookupByUUID", "11111111-2222-3333-4444-555555555555")
	wantError(t, err, errLibvirt, "Network not found: no network with matching uuid '11111111-2222-3333-4444-555555555555'")
	_, err = e.call(c, connectI+"NetworkLookupByUUID", "garbage")
	wantError(t, err, errLibvirt, "invalid argument: uuidstr in virNetworkLookupByUUIDString must be a valid UUID")
}

// TestUpdate is dbus-api.md §6.3: the host line comes back in libvirt's style.
func TestUpdate(t *testing.T) {
	e := newTestEnv(t, Options{})
	host := "<host mac='00:16:3e:77:e2:ed' name='foo.example.com' ip='192.168.122.10'/>"
	e.must(fixturePath, networkI+"Update", uint32(4), uint32(4), int32(0), host, uint32(0))
	if x := e.must(fixturePath, networkI+"GetXMLDesc", uint32(0))[0].(string); !strings.Contains(x, "      "+host+"\n") {
		t.Errorf("GetXMLDesc after Update lacks %s:\n%s", host, x)
	}
	// cockpit-machines 288's hand-built form, with a space before />.
	e.must(fixturePath, networkI+"Update", uint32(2), uint32(4), int32(0), "<host mac='00:16:3e:77:e2:ed' ip='192.168.122.10' />", uint32(0))
	if x := e.must(fixturePath, networkI+"GetXMLDesc", uint32(0))[0].(string); strings.Contains(x, "<host") {
		t.Errorf("host still there after DELETE:\n%s", x)
	}
	// cockpit's add and remove on an active network: CONFIG|LIVE.
	e.must(fixturePath, networkI+"Update", uint32(3), uint32(4), int32(0), `<host mac="00:16:3e:77:e2:ee" ip="192.168.122.11"/>`, uint32(3))
	if x := e.must(fixturePath, networkI+"GetXMLDesc", uint32(0))[0].(string); !strings.Contains(x, "<host mac='00:16:3e:77:e2:ee' ip='192.168.122.11'/>") {
		t.Errorf("GetXMLDesc after ADD_LAST lacks the host:\n%s", x)
	}
	e.must(fixturePath, networkI+"Update", uint32(2), uint32(4), int32(0), "<host mac='00:16:3e:77:e2:ee' ip='192.168.122.11' />", uint32(3))
	if x := e.must(fixturePath, networkI+"GetXMLDesc", uint32(0))[0].(string); strings.Contains(x, "<host") {
		t.Errorf("host still there after DELETE:\n%s", x)
	}
	_, err := e.call(fixturePath, networkI+"Update", uint32(3), uint32(4), int32(0), host, uint32(4))
	wantError(t, err, errLibvirt, "invalid argument: unsupported flags (0x4) in function testNetworkUpdate")
	_, err = e.call(fixturePath, networkI+"Update", "4", "4", int32(0), host, uint32(0))
	wantError(t, err, "org.freedesktop.DBus.Error.InvalidArgs", "Type of message, “(ssisu)”, does not match expected type “(uuisu)”")
}

func TestErrors(t *testing.T) {
	e := newTestEnv(t, Options{})
	c := e.connectPath()
	unknown := dbus.ObjectPath("/org/libvirt/Test/network/_11111111_2222_3333_4444_555555555555")
	notFound := "Network not found: no network with matching uuid '11111111-2222-3333-4444-555555555555'"
	for _, m := range []struct {
		name string
		args []any
	}{
		{"GetXMLDesc", []any{uint32(0)}}, {"Create", nil}, {"Destroy", nil}, {"Undefine", nil},
		{"Update", []any{uint32(3), uint32(4), int32(-1), "<host/>", uint32(0)}},
	} {
		_, err := e.call(unknown, networkI+m.name, m.args...)
		wantError(t, err, errLibvirt, notFound)
	}
	_, err := e.call(unknown, propsI+"Get", "org.libvirt.Network", "Active")
	wantError(t, err, errLibvirt, notFound)
	// GetAll on a vanished network answers an empty dictionary.
	all := e.must(unknown, propsI+"GetAll", "org.libvirt.Network")[0].(map[string]dbus.Variant)
	if len(all) != 0 {
		t.Errorf("GetAll on unknown network = %v, want empty", all)
	}

	_, err = e.call(c, connectI+"NetworkDefineXML", "<network><name>x</name>")
	wantErrorPrefix(t, err, errLibvirt, "")
	_, err = e.call(c, connectI+"NetworkDefineXML", "<network><uuid>zz</uuid></network>")
	wantErrorPrefix(t, err, errLibvirt, "")
	_, err = e.call(c, connectI+"NetworkDefineXML", netXML("default", "", 60))
	wantError(t, err, errLibvirt, "operation failed: network 'default' already exists with uuid "+fixtureUUID)
	_, err = e.call(c, connectI+"ListNetworks", int32(0))
	wantError(t, err, "org.freedesktop.DBus.Error.InvalidArgs", "Type of message, “(i)”, does not match expected type “(u)”")
	_, err = e.call(c, connectI+"ListNetworks", uint32(64))
	wantError(t, err, errLibvirt, "invalid argument: unsupported flags (0x40) in function testConnectListAllNetworks")
	_, err = e.call(fixturePath, propsI+"Set", "org.libvirt.Network", "Name", dbus.MakeVariant("x"))
	wantError(t, err, "org.freedesktop.DBus.Error.InvalidArgs", "Property “Name” is not writable")
	_, err = e.call(fixturePath, propsI+"Set", "org.libvirt.Network", "Autostart", dbus.MakeVariant("yes"))
	wantError(t, err, "org.freedesktop.DBus.Error.InvalidArgs", "Error setting property “Autostart”: Expected type “b” but got “s”")
	_, err = e.call(fixturePath, propsI+"Get", "org.libvirt.Network", "BridgeName")
	wantError(t, err, "org.freedesktop.DBus.Error.UnknownProperty", "No such property “BridgeName”")
	_, err = e.call(fixturePath, propsI+"GetAll", "org.libvirt.Nope")
	wantError(t, err, "org.freedesktop.DBus.Error.InvalidArgs", "No such interface “org.libvirt.Nope”")
	_, err = e.call(fixturePath, networkI+"Frobnicate")
	wantErrorPrefix(t, err, "org.freedesktop.DBus.Error.UnknownMethod", "")
	// A call without an interface header finds the member anyway.
	call := e.client.Object(BusName, fixturePath).Call("GetXMLDesc", 0, uint32(0))
	if call.Err != nil || call.Body[0].(string) != fixtureXML {
		t.Errorf("GetXMLDesc without interface: %v", call.Err)
	}
	// Peer works on every object.
	e.must(fixturePath, "org.freedesktop.DBus.Peer.Ping")
}

func TestAutostartProperty(t *testing.T) {
	e := newTestEnv(t, Options{})
	e.must(fixturePath, propsI+"Set", "org.libvirt.Network", "Autostart", dbus.MakeVariant(true))
	v := e.must(fixturePath, propsI+"Get", "org.libvirt.Network", "Autostart")[0].(dbus.Variant)
	if v.Value() != true {
		t.Errorf("Autostart after Set(true) = %v", v.Value())
	}
	got := paths(e.must(e.connectPath(), connectI+"ListNetworks", uint32(listAutostart)))
	if len(got) != 1 {
		t.Errorf("ListNetworks(AUTOSTART) = %v", got)
	}
	// A transient network refuses it.
	p := e.must(e.connectPath(), connectI+"NetworkCreateXML", netXML("tr", "", 61))[0].(dbus.ObjectPath)
	_, err := e.call(p, propsI+"Set", "org.libvirt.Network", "Autostart", dbus.MakeVariant(true))
	wantErrorPrefix(t, err, errLibvirt, "Requested operation is not valid: ")
}

func TestLifecycleEvents(t *testing.T) {
	e := newRealEnv(t, Options{})
	c := e.connectPath()
	ev := e.subscribe()
	const u = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	p := e.must(c, connectI+"NetworkDefineXML", netXML("life", u, 70))[0].(dbus.ObjectPath)
	if p != e.netPath(u) {
		t.Fatalf("NetworkDefineXML = %s, want %s", p, e.netPath(u))
	}
	ev.next(p, daemon.EventDefined)
	e.must(p, networkI+"Create")
	ev.next(p, daemon.EventStarted)
	e.must(p, networkI+"Destroy")
	ev.next(p, daemon.EventStopped)
	_, err := e.call(p, networkI+"Destroy")
	wantError(t, err, errLibvirt, "Requested operation is not valid: network 'life' is not active")
	e.must(p, networkI+"Create")
	ev.next(p, daemon.EventStarted)
	// Undefine of an active network: it keeps running as a transient one.
	e.must(p, networkI+"Undefine")
	ev.next(p, daemon.EventUndefined)
	all := e.must(p, propsI+"GetAll", "org.libvirt.Network")[0].(map[string]dbus.Variant)
	checkDoubleWrapped(t, all, map[string]any{"Active": true, "Autostart": false, "Name": "life", "Persistent": false, "UUID": u})
	// Destroying a transient network: STOPPED only, and the path is gone.
	e.must(p, networkI+"Destroy")
	ev.next(p, daemon.EventStopped)
	ev.none()
	_, err = e.call(p, networkI+"GetXMLDesc", uint32(0))
	wantError(t, err, errLibvirt, "Network not found: no network with matching uuid '"+u+"'")

	// NetworkCreateXML: transient and started.
	p = e.must(c, connectI+"NetworkCreateXML", netXML("trans", "", 71))[0].(dbus.ObjectPath)
	ev.next(p, daemon.EventStarted)
	all = e.must(p, propsI+"GetAll", "org.libvirt.Network")[0].(map[string]dbus.Variant)
	if a := all["Active"].Value().(dbus.Variant).Value(); a != true {
		t.Errorf("created network Active = %v", a)
	}
	e.must(p, networkI+"Destroy")
	ev.next(p, daemon.EventStopped)
	ev.none()
	if got := paths(e.must(c, connectI+"ListNetworks", uint32(0))); len(got) != 0 {
		t.Errorf("ListNetworks after destroying the transient network = %v", got)
	}
}

// TestGeneratedDefaults defines cockpit's dialog XML (double quotes, no uuid,
// bridge or MAC) and expects libvirt's generated values (dbus-api.md §8.6).
func TestGeneratedDefaults(t *testing.T) {
	e := newRealEnv(t, Options{})
	xml := `<network><name>cockpit1</name><forward mode="nat"/><domain name="cockpit1" localOnly="yes"/>` +
		`<dns><host ip="192.168.150.1"><hostname>gateway</hostname></host></dns>` +
		`<ip address="192.168.150.1" netmask="255.255.255.0" localPtr="yes"><dhcp><range start="192.168.150.2" end="192.168.150.254"/></dhcp></ip></network>`
	p := e.must(e.connectPath(), connectI+"NetworkDefineXML", xml)[0].(dbus.ObjectPath)
	got := e.must(p, networkI+"GetXMLDesc", uint32(0))[0].(string)
	uuidRe := regexp.MustCompile(`<uuid>([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})</uuid>`)
	m := uuidRe.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no generated uuid:\n%s", got)
	}
	if e.netPath(m[1]) != p {
		t.Errorf("path %s does not match uuid %s", p, m[1])
	}
	// virbr0 exists on the fake host, so the first free name is virbr1.
	if !regexp.MustCompile(`<bridge name='virbr1' stp='on' delay='0'/>`).MatchString(got) {
		t.Errorf("no generated bridge virbr1:\n%s", got)
	}
	if !regexp.MustCompile(`<mac address='52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}'/>`).MatchString(got) {
		t.Errorf("no generated 52:54:00 MAC:\n%s", got)
	}
	// INACTIVE is supported by the real driver.
	if _, err := e.call(p, networkI+"GetXMLDesc", uint32(1)); err != nil {
		t.Errorf("GetXMLDesc(INACTIVE): %v", err)
	}
	_, err := e.call(p, networkI+"GetXMLDesc", uint32(2))
	wantError(t, err, errLibvirt, "invalid argument: unsupported flags (0x2) in function networkGetXMLDesc")
}

func TestListNetworksFlags(t *testing.T) {
	e := newRealEnv(t, Options{})
	c := e.connectPath()
	// a: persistent inactive; b: persistent active autostart; t: transient active.
	pa := e.must(c, connectI+"NetworkDefineXML", netXML("a", "", 80))[0].(dbus.ObjectPath)
	pb := e.must(c, connectI+"NetworkDefineXML", netXML("b", "", 81))[0].(dbus.ObjectPath)
	e.must(pb, networkI+"Create")
	e.must(pb, propsI+"Set", "org.libvirt.Network", "Autostart", dbus.MakeVariant(true))
	pt := e.must(c, connectI+"NetworkCreateXML", netXML("t", "", 82))[0].(dbus.ObjectPath)
	sorted := func(ps ...dbus.ObjectPath) []string {
		return paths([]any{ps})
	}
	for _, tc := range []struct {
		flags uint32
		want  []string
	}{
		{0, sorted(pa, pb, pt)},
		{listAll, sorted(pa, pb, pt)},
		{listInactive, sorted(pa)},
		{listActive, sorted(pb, pt)},
		{listInactive | listActive, sorted(pa, pb, pt)},
		{listPersistent, sorted(pa, pb)},
		{listTransient, sorted(pt)},
		{listActive | listPersistent, sorted(pb)},
		{listAutostart, sorted(pb)},
		{listNoAutostart, sorted(pa, pt)},
		{listInactive | listTransient, nil},
	} {
		if got := paths(e.must(c, connectI+"ListNetworks", tc.flags)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListNetworks(%d) = %v, want %v", tc.flags, got, tc.want)
		}
	}
}

func TestLeases(t *testing.T) {
	e := newRealEnv(t, Options{})
	p := e.must(e.connectPath(), connectI+"NetworkCreateXML", netXML("dhcp", "", 90))[0].(dbus.ObjectPath)
	exp := time.Now().Add(time.Hour).Unix()
	e.host.mu.Lock()
	e.host.leases = []api.Lease{
		{ExpiryTime: exp, MAC: "52:54:00:00:00:01", Protocol: "ipv4", IPAddr: "192.168.90.10", Hostname: "vm1", ClientID: "01:52:54:00:00:00:01"},
		{ExpiryTime: exp, MAC: "52:54:00:00:00:02", Protocol: "ipv6", IPAddr: "fd00::10", IAID: "7"},
	}
	e.host.mu.Unlock()
	call := e.client.Object(BusName, p).Call(networkI+"GetDHCPLeases", 0, "", uint32(0))
	if call.Err != nil {
		t.Fatal(call.Err)
	}
	var got []lease
	if err := call.Store(&got); err != nil {
		t.Fatal(err)
	}
	want := []lease{
		{Iface: "vnt90", ExpiryTime: exp, Type: 0, MAC: "52:54:00:00:00:01", IPAddr: "192.168.90.10", Prefix: 24, Hostname: "vm1", ClientID: "01:52:54:00:00:00:01"},
		{Iface: "vnt90", ExpiryTime: exp, Type: 1, MAC: "52:54:00:00:00:02", IAID: "7", IPAddr: "fd00::10", Prefix: 64},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GetDHCPLeases =\n%+v\nwant\n%+v", got, want)
	}
	msg := e.client.Object(BusName, p).Call(networkI+"GetDHCPLeases", 0, "52:54:00:00:00:02", uint32(0))
	// godbus hands structs to clients as []any: check each field's type.
	if raw, ok := msg.Body[0].([][]any); !ok || len(raw) != 1 || dbus.SignatureOf(raw[0]...).String() != "sxisssuss" {
		t.Errorf("reply body %#v, want one (sxisssuss)", msg.Body)
	}
	if err := msg.Store(&got); err != nil || len(got) != 1 || got[0].IAID != "7" {
		t.Errorf("GetDHCPLeases(mac) = %+v, %v", got, err)
	}
	_, err := e.call(p, networkI+"GetDHCPLeases", "", uint32(1))
	wantError(t, err, errLibvirt, "invalid argument: unsupported flags (0x1) in function networkGetDHCPLeases")

	// org.vnet.Network1 extras.
	js := e.must(p, "org.vnet.Network1.GetDHCPLeasesJSON", "")[0].(string)
	var jl []api.Lease
	if err := json.Unmarshal([]byte(js), &jl); err != nil || len(jl) != 2 {
		t.Errorf("GetDHCPLeasesJSON = %s (%v)", js, err)
	}
	info := e.must(p, "org.vnet.Network1.GetInfoJSON")[0].(string)
	if !strings.Contains(info, `"bridge":"vnt90"`) {
		t.Errorf("GetInfoJSON = %s", info)
	}
	plan := e.must(e.connectPath(), "org.vnet.Connect1.DryRunCreate", netXML("dry", "", 91))[0].(string)
	if !strings.Contains(plan, "vnt91") {
		t.Errorf("DryRunCreate = %q", plan)
	}
	if got := paths(e.must(e.connectPath(), connectI+"ListNetworks", uint32(0))); len(got) != 1 {
		t.Errorf("DryRunCreate changed the network list: %v", got)
	}
}

// TestCockpitStartup replays cockpit-machines 288's start-up calls
// (dbus-api.md §8.2) with its explicit argument types.
func TestCockpitStartup(t *testing.T) {
	e := newRealEnv(t, Options{})
	q := QEMUPath
	e.must(q, connectI+"NetworkDefineXML", netXML("n1", "", 100))
	if v := e.must(q, propsI+"Get", "org.libvirt.Connect", "LibVersion")[0].(dbus.Variant); v.Value() != uint64(DefaultLibVersion) {
		t.Errorf("LibVersion = %v", v)
	}
	for _, m := range []struct {
		name  string
		flags uint32
	}{{"ListDomains", 0}, {"ListStoragePools", 0}, {"ListInterfaces", 3}, {"ListNodeDevices", 0}} {
		if got := e.must(q, connectI+m.name, m.flags)[0].([]dbus.ObjectPath); len(got) != 0 {
			t.Errorf("%s = %v, want empty", m.name, got)
		}
	}
	nets := e.must(q, connectI+"ListNetworks", uint32(0))[0].([]dbus.ObjectPath)
	if len(nets) != 1 {
		t.Fatalf("ListNetworks = %v", nets)
	}
	stats := e.must(q, connectI+"NodeGetMemoryStats", int32(-1), uint32(0))[0].(map[string]uint64)
	if stats["total"] == 0 || len(stats) != 4 {
		t.Errorf("NodeGetMemoryStats = %v", stats)
	}
	caps := e.must(q, connectI+"GetCapabilities")[0].(string)
	if !strings.HasPrefix(caps, "<capabilities>") || !strings.Contains(caps, "<arch>") {
		t.Errorf("GetCapabilities = %s", caps)
	}
	all := e.must(nets[0], propsI+"GetAll", "org.libvirt.Network")[0].(map[string]dbus.Variant)
	if all["Name"].Value().(dbus.Variant).Value() != "n1" {
		t.Errorf("GetAll Name = %v", all["Name"])
	}
	e.must(nets[0], networkI+"GetXMLDesc", uint32(0))
	// The Autostart switch.
	p := e.must(q, connectI+"NetworkLookupByName", "n1")[0].(dbus.ObjectPath)
	e.must(p, propsI+"Set", "org.libvirt.Network", "Autostart", dbus.MakeVariant(true))
}

// TestAuthorization: a caller that is neither root nor the daemon's user
// may read but not change anything.
func TestAuthorization(t *testing.T) {
	var (
		mu    sync.Mutex
		asked int
	)
	e := newTestEnv(t, Options{CallerUID: func(conn *dbus.Conn, sender string) (uint32, error) {
		mu.Lock()
		asked++
		mu.Unlock()
		return 4242, nil
	}})
	if os.Geteuid() == 4242 {
		t.Skip("running as uid 4242")
	}
	c := e.connectPath()
	for _, m := range []struct {
		path dbus.ObjectPath
		name string
		args []any
	}{
		{c, connectI + "NetworkDefineXML", []any{netXML("x", "", 110)}},
		{c, connectI + "NetworkCreateXML", []any{netXML("y", "", 111)}},
		{fixturePath, networkI + "Create", nil},
		{fixturePath, networkI + "Destroy", nil},
		{fixturePath, networkI + "Undefine", nil},
		{fixturePath, networkI + "Update", []any{uint32(3), uint32(4), int32(0), "<host mac='00:16:3e:77:e2:ed' ip='192.168.122.10'/>", uint32(0)}},
		{fixturePath, propsI + "Set", []any{"org.libvirt.Network", "Autostart", dbus.MakeVariant(true)}},
	} {
		_, err := e.call(m.path, m.name, m.args...)
		wantErrorPrefix(t, err, errLibvirt, "access denied: ")
		if !strings.Contains(err.Error(), "uid 4242") {
			t.Errorf("%s: message %q does not name the uid", m.name, err)
		}
	}
	// Nothing changed, and reads work.
	all := e.must(fixturePath, propsI+"GetAll", "org.libvirt.Network")[0].(map[string]dbus.Variant)
	checkDoubleWrapped(t, all, map[string]any{"Active": true, "Autostart": false, "Name": "default", "Persistent": true, "UUID": fixtureUUID})
	if got := paths(e.must(c, connectI+"ListNetworks", uint32(0))); len(got) != 1 {
		t.Errorf("ListNetworks = %v", got)
	}
	e.must(fixturePath, networkI+"GetXMLDesc", uint32(0))
	mu.Lock()
	defer mu.Unlock()
	if asked != 7 {
		t.Errorf("uid asked %d times, want 7 (only for changes)", asked)
	}
}

// TestBusCallerUID checks the default uid lookup against the bus: the test
// runs as root (or as the daemon's own user), so changes are allowed.
func TestBusCallerUID(t *testing.T) {
	e := newTestEnv(t, Options{})
	uid, err := busCallerUID(e.client, e.client.Names()[0])
	if err != nil || uid != uint32(os.Getuid()) {
		t.Fatalf("busCallerUID = %d, %v; want %d", uid, err, os.Getuid())
	}
	e.must(fixturePath, propsI+"Set", "org.libvirt.Network", "Autostart", dbus.MakeVariant(true))
}

func TestNameAlreadyOwned(t *testing.T) {
	e := newTestEnv(t, Options{})
	s2 := New(daemon.NewTestDriver(nil), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s2.Run(ctx, e.addr)
	if err == nil || !strings.Contains(err.Error(), "owned by another connection") {
		t.Fatalf("second server: %v, want name-owned error", err)
	}
	// A connection without the server's handler is refused.
	conn := newClient(t, e.addr)
	if err := New(daemon.NewTestDriver(nil), Options{}).Serve(ctx, conn); err == nil || !strings.Contains(err.Error(), "does not dispatch") {
		t.Fatalf("Serve on a plain connection: %v", err)
	}
}

// TestNameKept: the server requests org.libvirt without ALLOW_REPLACEMENT,
// so a rival asking to replace it is refused and the server keeps serving.
func TestNameKept(t *testing.T) {
	addr := startBus(t)
	srv := New(daemon.NewTestDriver(nil), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, addr) }()
	rival := newClient(t, addr)
	waitOwner(t, rival, done)
	reply, err := rival.RequestName(BusName, dbus.NameFlagReplaceExisting|dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyExists {
		t.Fatalf("rival RequestName = %v, %v; want exists", reply, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

// pythonWithDBus finds a python3 that can import dbus-python.
func pythonWithDBus() string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import dbus").Run() == nil {
			return path
		}
	}
	return ""
}

// TestPythonClient drives the server from dbus-python, which types every
// call from the introspection data as libvirt-dbus frontends do.
func TestPythonClient(t *testing.T) {
	py := pythonWithDBus()
	if py == "" {
		t.Skip("python3-dbus is not installed (Debian package python3-dbus)")
	}
	for _, c := range []struct {
		name string
		env  func(*testing.T, Options) *env
	}{{"test-driver", newTestEnv}, {"real", newRealEnv}} {
		t.Run(c.name, func(t *testing.T) {
			e := c.env(t, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, py, "testdata/client.py", e.addr, string(e.connectPath())).CombinedOutput()
			t.Logf("client.py:\n%s", out)
			if err != nil {
				t.Fatalf("client.py: %v", err)
			}
			if !strings.HasSuffix(strings.TrimSpace(string(out)), "PASS") {
				t.Fatal("client.py did not pass")
			}
		})
	}
}

// TestRunWithRetry: while another connection owns org.libvirt the server
// keeps trying, and takes the name once it is free.
func TestRunWithRetry(t *testing.T) {
	addr := startBus(t)
	rival := newClient(t, addr)
	if reply, err := rival.RequestName(BusName, 0); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("rival RequestName = %v, %v", reply, err)
	}
	srv := New(daemon.NewTestDriver(nil), Options{Logger: testLogger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		srv.RunWithRetry(ctx, addr, 20*time.Millisecond)
		close(done)
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := rival.ReleaseName(BusName); err != nil {
		t.Fatal(err)
	}
	client := newClient(t, addr)
	deadline := time.Now().Add(3 * time.Second)
	for {
		var owner string
		err := client.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner)
		if err == nil && owner != rival.Names()[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not take org.libvirt after the rival released it")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if body := client.Object(BusName, TestPath).Call(connectI+"ListNetworks", 0, uint32(0)); body.Err != nil {
		t.Fatal(body.Err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWithRetry did not return after cancel")
	}
}

// TestSystemPolicy runs a bus with the system bus's deny-by-default policy plus systemd/org.libvirt.conf: root may own org.libvirt and call it.
func TestSystemPolicy(t *testing.T) {
	policy, err := filepath.Abs("../../systemd/org.libvirt.conf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(policy); err != nil {
		t.Skipf("policy file: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("the policy lets root own org.libvirt; not running as root")
	}
	addr := startBusWith(t, `
  <policy context="default">
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"/>
  </policy>
  <include>`+policy+`</include>`)
	e := serveOn(t, addr, daemon.NewTestDriver(testLogger(t)), nil, Options{})
	e.must(TestPath, connectI+"ListNetworks", uint32(0))
	e.must(fixturePath, propsI+"GetAll", "org.libvirt.Network")
}

// TestUnprivilegedCaller calls from a process running as nobody: the uid
// comes from the bus (GetConnectionUnixUser), reads work, changes do not.
func TestUnprivilegedCaller(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	py := pythonWithDBus()
	if py == "" {
		t.Skip("python3-dbus is not installed (Debian package python3-dbus)")
	}
	e := newTestEnv(t, Options{})
	script := `
import sys, dbus
bus = dbus.bus.BusConnection(sys.argv[1])
c = dbus.Interface(bus.get_object("org.libvirt", "/org/libvirt/Test"), "org.libvirt.Connect")
print("list", len(c.ListNetworks(0)))
try:
    c.NetworkDefineXML("<network><name>evil</name></network>")
    print("define succeeded")
except dbus.exceptions.DBusException as err:
    print("define refused:", err.get_dbus_name(), err.get_dbus_message())
`
	cmd := exec.Command(py, "-c", script, e.addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = "/"
	cmd.Env = []string{"HOME=/", "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as nobody: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "list 1\n") || !strings.Contains(got, "define refused: org.libvirt.Error access denied: org.libvirt.Connect.NetworkDefineXML changes networks and needs root;") || !strings.Contains(got, "has uid 65534") {
		t.Errorf("client as nobody:\n%s", got)
	}
	if _, err := e.m.Get("evil", "name"); err == nil {
		t.Error("network 'evil' was defined")
	}
}

// TestTestDriverNoHostChecks is libvirt-dbus's own test_connect_network_create_xml:
// the test driver, like libvirt's, checks only names and uuids, so a network
// overlapping the fixture's subnet and bridge is created (the network driver
// would refuse: Network is already in use by interface virbr0).
func TestTestDriverNoHostChecks(t *testing.T) {
	e := newTestEnv(t, Options{})
	c := e.connectPath()
	const overlapping = `<network>
  <name>bar</name>
  <uuid>004b96e1-2d78-c30f-5aa5-f03c87d21e69</uuid>
  <bridge name='virbr0'/>
  <forward dev='eth0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>`
	p := e.must(c, connectI+"NetworkCreateXML", overlapping)[0].(dbus.ObjectPath)
	all := e.must(p, propsI+"GetAll", "org.libvirt.Network")[0].(map[string]dbus.Variant)
	checkDoubleWrapped(t, all, map[string]any{"Active": true, "Autostart": false, "Persistent": false, "Name": "bar", "UUID": "004b96e1-2d78-c30f-5aa5-f03c87d21e69"})
	// Defined and started beside the two: no conflict check either.
	def := strings.NewReplacer("<name>bar", "<name>baz", "004b96e1", "104b96e1").Replace(overlapping)
	p = e.must(c, connectI+"NetworkDefineXML", def)[0].(dbus.ObjectPath)
	e.must(p, networkI+"Create")
	// What libvirt's test driver does check: the name and the uuid.
	_, err := e.call(c, connectI+"NetworkCreateXML", overlapping)
	if err == nil {
		t.Fatal("NetworkCreateXML of an active network's name succeeded")
	}
	_, err = e.call(c, connectI+"NetworkDefineXML", strings.Replace(overlapping, "<name>bar", "<name>other", 1))
	wantError(t, err, errLibvirt, "operation failed: network '004b96e1-2d78-c30f-5aa5-f03c87d21e69' is already active as 'bar'")
}
