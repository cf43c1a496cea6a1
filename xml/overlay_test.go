package netxml

import (
	"strings"
	"testing"
)

// overlayDoc is an overlay network as a user writes it.
const overlayDoc = `<network>
  <name>ov</name>
  <uuid>6f1c0e52-6f0e-4a35-9a0a-2f1b8c3d4e5f</uuid>
  <forward mode='nat'/>
  <bridge name='vbr0'/>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.0.10' end='10.77.0.249'/>
    </dhcp>
  </ip>
  <vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='10100' gateway='anycast'/>
</network>
`

func TestOverlayRoundTrip(t *testing.T) {
	n, err := Parse([]byte(overlayDoc))
	if err != nil {
		t.Fatal(err)
	}
	if n.Overlay == nil || n.Overlay.VNI != 10100 || n.Overlay.Gateway != "anycast" {
		t.Fatalf("overlay = %+v", n.Overlay)
	}
	if err := FillDefaults(n, nil); err != nil {
		t.Fatal(err)
	}
	if err := Validate(n); err != nil {
		t.Fatal(err)
	}
	// The anycast gateway MAC follows from the VNI: the same on every host.
	if n.MAC == nil || n.MAC.Address != "02:76:6e:00:27:74" {
		t.Fatalf("mac = %+v, want the VNI's 02:76:6e:00:27:74", n.MAC)
	}
	out, err := Format(n, Inactive)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out, "  <vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='10100' gateway='anycast'/>\n</network>\n") {
		t.Fatalf("formatted:\n%s", out)
	}
	again, err := Parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	out2, _ := Format(again, Inactive)
	if out2 != out {
		t.Fatalf("second round trip differs:\n%s\nvs\n%s", out, out2)
	}
	// Any prefix bound to the namespace; gateway may be left out.
	n, err = Parse([]byte(strings.Replace(overlayDoc, "<vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='10100' gateway='anycast'/>", "<x:overlay xmlns:x='urn:vnet:network:1' vni='7'/>", 1)))
	if err != nil || n.Overlay == nil || n.Overlay.VNI != 7 || n.Overlay.Gateway != "" {
		t.Fatalf("overlay = %+v, err %v", n.Overlay, err)
	}
}

func TestOverlayErrors(t *testing.T) {
	with := func(el string) string {
		return strings.Replace(overlayDoc, "<vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='10100' gateway='anycast'/>", el, 1)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"no vni", with("<vnet:overlay xmlns:vnet='urn:vnet:network:1'/>"), "XML error: <vnet:overlay> needs a vni"},
		{"vni 0", with("<vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='0'/>"), "XML error: invalid vni '0' in <vnet:overlay>: must be 1 to 16777215"},
		{"vni too big", with("<vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='16777216'/>"), "XML error: invalid vni '16777216' in <vnet:overlay>: must be 1 to 16777215"},
		{"gateway", with("<vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='5' gateway='local'/>"), "XML error: invalid gateway 'local' in <vnet:overlay>: the only kind is 'anycast'"},
		{"attribute", with("<vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='5' mtu='9000'/>"), "XML error: unknown attribute 'mtu' in <vnet:overlay>"},
		{"element", with("<vnet:underlay xmlns:vnet='urn:vnet:network:1'/>"), "XML error: unknown element <vnet:underlay> in vnet's network namespace urn:vnet:network:1"},
		{"twice", with("<vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='5'/><vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='6'/>"), "XML error: only one <vnet:overlay> element is allowed in a network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
		})
	}
	n, err := Parse([]byte(strings.Replace(overlayDoc, "<forward mode='nat'/>", "<forward mode='bridge'/>", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(n); err == nil || !strings.Contains(err.Error(), "<vnet:overlay> needs forward mode nat, route or none (isolated), not 'bridge'") {
		t.Fatalf("validate bridge mode: %v", err)
	}
}

func TestOverlayConflict(t *testing.T) {
	a, _ := Parse([]byte(overlayDoc))
	b, _ := Parse([]byte(strings.Replace(overlayDoc, "<name>ov</name>", "<name>ov2</name>", 1)))
	err := CheckOverlayConflict(b, []*Network{a})
	if err == nil || err.Error() != "operation failed: vni 10100 of network 'ov2' is already used by network 'ov'" {
		t.Fatalf("err = %v", err)
	}
	if err := CheckOverlayConflict(a, []*Network{a}); err != nil {
		t.Fatalf("the network itself: %v", err)
	}
}

func TestOverlayNotOnUserMode(t *testing.T) {
	n, err := Parse([]byte(overlayDoc))
	if err != nil {
		t.Fatal(err)
	}
	n.Forward, n.User = nil, &UserForward{}
	if err := validateOverlay(n); err == nil || !strings.Contains(err.Error(), "not 'user'") {
		t.Fatalf("overlay on a user-mode network: %v", err)
	}
}
