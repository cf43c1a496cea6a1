package dbusapi

import (
	"encoding/json"

	"vnet/daemon/api"
)

// virNetworkXMLFlags and virNetworkUpdateFlags.
const (
	xmlInactive   = 1
	affectLive    = 1
	affectConfig  = 2
	dhcpLeaseIPv6 = 1
)

// lease is one GetDHCPLeases entry, (sxisssuss) on the wire.
type lease struct {
	Iface      string
	ExpiryTime int64
	Type       int32
	MAC        string
	IAID       string
	IPAddr     string
	Prefix     uint32
	Hostname   string
	ClientID   string
}

// network resolves the network of the called object by its uuid.
func (c *call) network() (api.Network, error) {
	return c.s.m.Get(c.obj.uuid, "uuid")
}

// onNetwork resolves the network, then runs op on its uuid.
func onNetwork(op func(uuid string) (api.Network, error)) func(c *call) ([]any, error) {
	return func(c *call) ([]any, error) {
		n, err := c.network()
		if err != nil {
			return nil, err
		}
		_, err = op(n.UUID)
		return nil, err
	}
}

// networkIface is org.libvirt.Network.
func (s *Server) networkIface() *iface {
	return &iface{
		name:  ifaceNetwork,
		emits: "false",
		props: []property{
			{name: "Active", typ: "b"},
			{name: "Autostart", typ: "b", writable: true},
			{name: "Name", typ: "s", emits: "const"},
			{name: "Persistent", typ: "b"},
			{name: "UUID", typ: "s", emits: "const"},
		},
		values: func(c *call) (map[string]any, error) {
			n, err := c.network()
			if err != nil {
				return nil, toDBusError(err)
			}
			return map[string]any{"Active": n.Active, "Autostart": n.Autostart, "Name": n.Name, "Persistent": n.Persistent, "UUID": n.UUID}, nil
		},
		set: func(c *call, name string, v any) error {
			n, err := c.network()
			if err == nil {
				_, err = s.m.SetAutostart(n.UUID, v.(bool))
			}
			if err != nil {
				return toDBusError(err)
			}
			return nil
		},
		methods: []*method{
			{name: "Create", write: true, fn: onNetwork(s.m.Start)},
			{name: "Destroy", write: true, fn: onNetwork(s.m.Destroy)},
			{name: "GetDHCPLeases", in: args("s mac", "u flags"), out: args("a(sxisssuss) leases"), fn: s.getDHCPLeases},
			{name: "GetXMLDesc", in: args("u flags"), out: args("s xml"), fn: func(c *call) ([]any, error) {
				flags := c.body[0].(uint32)
				// The test driver supports no flag at all.
				supported := uint32(xmlInactive)
				if s.test {
					supported = 0
				}
				if err := s.checkFlags(flags, supported, "networkGetXMLDesc", "testNetworkGetXMLDesc"); err != nil {
					return nil, err
				}
				n, err := c.network()
				if err != nil {
					return nil, err
				}
				x, err := s.m.XML(n.UUID, flags&xmlInactive != 0)
				if err != nil {
					return nil, err
				}
				return []any{x}, nil
			}},
			{name: "Undefine", write: true, fn: onNetwork(s.m.Undefine)},
			{name: "Update", in: args("u command", "u section", "i parentIndex", "s xml", "u flags"), write: true, fn: func(c *call) ([]any, error) {
				command, section, parent := c.body[0].(uint32), c.body[1].(uint32), c.body[2].(int32)
				xml, flags := c.body[3].(string), c.body[4].(uint32)
				if err := s.checkFlags(flags, affectLive|affectConfig, "networkUpdate", "testNetworkUpdate"); err != nil {
					return nil, err
				}
				n, err := c.network()
				if err != nil {
					return nil, err
				}
				_, err = s.m.Update(n.UUID, int(command), int(section), int(parent), xml, flags&affectLive != 0, flags&affectConfig != 0)
				return nil, err
			}},
		},
	}
}

func (s *Server) getDHCPLeases(c *call) ([]any, error) {
	mac, flags := c.body[0].(string), c.body[1].(uint32)
	n, err := c.network()
	if err != nil {
		return nil, err
	}
	// The test driver has no leases function at all: the manager says so
	// before any flag check.
	if !s.test {
		if err := s.checkFlags(flags, 0, "networkGetDHCPLeases", "networkGetDHCPLeases"); err != nil {
			return nil, err
		}
	}
	leases, err := s.m.Leases(n.UUID, mac)
	if err != nil {
		return nil, err
	}
	out := make([]lease, 0, len(leases))
	for _, l := range leases {
		t := int32(0)
		if l.Protocol == "ipv6" {
			t = dhcpLeaseIPv6
		}
		out = append(out, lease{Iface: n.Bridge, ExpiryTime: l.ExpiryTime, Type: t, MAC: l.MAC, IAID: l.IAID,
			IPAddr: l.IPAddr, Prefix: uint32(l.Prefix), Hostname: l.Hostname, ClientID: l.ClientID})
	}
	return []any{out}, nil
}

// vnetNetworkIface is org.vnet.Network1: vnet's additions on network paths.
func (s *Server) vnetNetworkIface() *iface {
	return &iface{
		name: ifaceVnetNetwork,
		methods: []*method{
			{name: "GetDHCPLeasesJSON", in: args("s mac"), out: args("s leases"), fn: func(c *call) ([]any, error) {
				n, err := c.network()
				if err != nil {
					return nil, err
				}
				leases, err := s.m.Leases(n.UUID, c.body[0].(string))
				if err != nil {
					return nil, err
				}
				if leases == nil {
					leases = []api.Lease{}
				}
				b, err := json.Marshal(leases)
				if err != nil {
					return nil, err
				}
				return []any{string(b)}, nil
			}},
			{name: "DryRunStart", out: args("s plan"), fn: func(c *call) ([]any, error) {
				n, err := c.network()
				if err != nil {
					return nil, err
				}
				p, err := s.m.DryRunStart(n.UUID)
				if err != nil {
					return nil, err
				}
				return []any{p.Text}, nil
			}},
			{name: "GetInfoJSON", out: args("s info"), fn: func(c *call) ([]any, error) {
				n, err := c.network()
				if err != nil {
					return nil, err
				}
				b, err := json.Marshal(n)
				if err != nil {
					return nil, err
				}
				return []any{string(b)}, nil
			}},
		},
	}
}
