package netxml

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"
)

// DefaultNetworkXML is vnet's built-in 'default' network, the counterpart of
// libvirt's libvirt-daemon-config-network: NAT on virbr0, 192.168.122.1/24,
// DHCP .2–.254. It has no uuid and no mac (FillDefaults adds them at define
// time). Unlike libvirt it sets stp='off': with STP on, a new guest port only
// forwards after the bridge's listening/learning phase (~4 s here even with
// delay 0), while a single-bridge NAT network has no loop for STP to break.
const DefaultNetworkXML = `<network>
  <name>default</name>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='off' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
`

// DefaultNetworkAt returns DefaultNetworkXML moved to 192.168.third.0/24
// (address .1, DHCP .2–.254) and with the bridge name template virbr%d, so
// that FillDefaults names the bridge after the lowest virbrN that is free.
// It is what vnetd defines at its first start when libvirt's own default
// network (or anything else) already holds virbr0 or 192.168.122.0/24; with
// third 122 on a host where virbr0 is free it defines DefaultNetworkXML.
// third must be 0–255.
func DefaultNetworkAt(third int) string {
	s := strings.ReplaceAll(DefaultNetworkXML, "192.168.122.", "192.168."+strconv.Itoa(third)+".")
	return strings.Replace(s, "name='virbr0'", "name='virbr%d'", 1)
}

// Clone returns a deep copy of n (live fields included).
func (n *Network) Clone() *Network {
	if n == nil {
		return nil
	}
	// A JSON round trip copies every exported field and keeps the
	// distinction between nil and empty pointers/slices that Format relies on.
	data, err := json.Marshal(n)
	if err != nil {
		panic(fmt.Sprintf("netxml: clone network %q: %v", n.Name, err))
	}
	c := &Network{}
	if err := json.Unmarshal(data, c); err != nil {
		panic(fmt.Sprintf("netxml: clone network %q: %v", n.Name, err))
	}
	return c
}

// NormalizeUUID accepts a UUID with or without dashes (any placement, as
// libvirt does; surrounding whitespace ignored) and returns the dashed
// lower-case form.
func NormalizeUUID(s string) (string, error) {
	t := strings.TrimSpace(s)
	hex := make([]byte, 0, 32)
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '-':
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			hex = append(hex, c)
		case c >= 'A' && c <= 'F':
			hex = append(hex, c+('a'-'A'))
		default:
			return "", Errorf(KindInvalidArg, "malformed uuid '%s'", s)
		}
	}
	if len(hex) != 32 {
		return "", Errorf(KindInvalidArg, "malformed uuid '%s'", s)
	}
	h := string(hex)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// maxBridgeID is the highest N FillDefaults tries for virbrN (libvirt's limit).
const maxBridgeID = 256

// FillDefaults completes a definition as libvirt's driver does at define
// time: a random uuid when missing; for networks that own their bridge
// (OwnsBridge) a bridge name "virbrN" with the lowest N for which
// bridgeTaken is false when none is given (a name containing "%d" is a
// template for N instead), stp='on' and delay='0' when unset, and a random
// 52:54:00:xx:xx:xx MAC when none is given. bridgeTaken may be nil.
func FillDefaults(n *Network, bridgeTaken func(name string) bool) error {
	if n.UUID == "" {
		n.UUID = uuid.NewString()
	}
	if !n.OwnsBridge() {
		return nil
	}
	if n.Bridge == nil {
		n.Bridge = &libvirtxml.NetworkBridge{}
	}
	if n.Bridge.Name == "" || strings.Contains(n.Bridge.Name, "%d") {
		tmpl := n.Bridge.Name
		if tmpl == "" {
			tmpl = "virbr%d"
		}
		found := false
		for id := 0; id <= maxBridgeID; id++ {
			name := strings.Replace(tmpl, "%d", strconv.Itoa(id), 1)
			if bridgeTaken == nil || !bridgeTaken(name) {
				n.Bridge.Name = name
				found = true
				break
			}
		}
		if !found {
			return Errorf(KindInternal, "Bridge generation exceeded max id %d", maxBridgeID)
		}
	}
	if n.Bridge.STP == "" {
		n.Bridge.STP = "on"
	}
	if n.Bridge.Delay == "" {
		n.Bridge.Delay = "0"
	}
	if (n.MAC == nil || n.MAC.Address == "") && n.Overlay != nil {
		// The anycast gateway: the same MAC on every host of the overlay.
		n.MAC = &libvirtxml.NetworkMAC{Address: OverlayGatewayMAC(n.Overlay.VNI)}
	}
	if n.MAC == nil || n.MAC.Address == "" {
		mac, err := RandomMAC()
		if err != nil {
			return fmt.Errorf("network %q: generate bridge MAC: %w", n.Name, err)
		}
		n.MAC = &libvirtxml.NetworkMAC{Address: mac}
	}
	return nil
}

// RandomMAC returns a random MAC address with libvirt's QEMU prefix 52:54:00.
func RandomMAC() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]), nil
}

// Default NAT source-port range libvirt shows in the live XML.
const (
	NATPortStart = 1024
	NATPortEnd   = 65535
)

// Live returns the live view of a running network: a clone with what libvirt
// adds at start. For NAT networks without a port range that is
// <nat><port start='1024' end='65535'/></nat>.
func Live(n *Network) *Network {
	c := n.Clone()
	if c.ForwardMode() == "nat" {
		if c.Forward.NAT == nil {
			c.Forward.NAT = &libvirtxml.NetworkForwardNAT{}
		}
		if len(c.Forward.NAT.Ports) == 0 {
			c.Forward.NAT.Ports = []libvirtxml.NetworkForwardNATPort{{Start: NATPortStart, End: NATPortEnd}}
		}
	}
	return c
}
