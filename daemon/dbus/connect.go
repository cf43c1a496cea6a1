package dbusapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"

	"vnet/daemon/api"
	netxml "vnet/xml"
)

// virConnectListAllNetworksFlags.
const (
	listInactive    = 1
	listActive      = 2
	listPersistent  = 4
	listTransient   = 8
	listAutostart   = 16
	listNoAutostart = 32
	listAll         = 63
)

// checkFlags refuses flags outside supported with libvirt's virCheckFlags
// message, naming the driver function libvirt would (the test driver's
// functions have their own names).
func (s *Server) checkFlags(flags, supported uint32, realFn, testFn string) error {
	if bad := flags &^ supported; bad != 0 {
		fn := realFn
		if s.test {
			fn = testFn
		}
		return netxml.Errorf(netxml.KindInvalidArg, "unsupported flags (0x%x) in function %s", bad, fn)
	}
	return nil
}

// listFilter reports whether n passes ListNetworks' flags: within each pair
// (inactive/active, persistent/transient, autostart/no-autostart) a network
// must match one of the flags given; a pair with no flag set passes all.
func listFilter(n api.Network, flags uint32) bool {
	pair := func(a, b uint32, isA bool) bool {
		if flags&(a|b) == 0 {
			return true
		}
		return (flags&a != 0 && isA) || (flags&b != 0 && !isA)
	}
	return pair(listInactive, listActive, !n.Active) &&
		pair(listPersistent, listTransient, n.Persistent) &&
		pair(listAutostart, listNoAutostart, n.Autostart)
}

func noObjects(*call) ([]any, error) { return []any{[]dbus.ObjectPath{}}, nil }

// connectIface is org.libvirt.Connect.
func (s *Server) connectIface() *iface {
	return &iface{
		name:  ifaceConnect,
		emits: "false",
		props: []property{
			{name: "Encrypted", typ: "b", emits: "const"},
			{name: "Hostname", typ: "s"},
			{name: "LibVersion", typ: "t"},
			{name: "Secure", typ: "b", emits: "const"},
			{name: "Version", typ: "t"},
		},
		values: func(*call) (map[string]any, error) {
			host, err := os.Hostname()
			if err != nil {
				return nil, fmt.Errorf("get hostname: %w", err)
			}
			version := s.libVer
			if s.test {
				// The test driver's hypervisor version.
				version = 2
			}
			// A local connection: not encrypted, but secure (libvirt's
			// answer for its unix socket).
			return map[string]any{"Encrypted": false, "Hostname": host, "LibVersion": s.libVer, "Secure": true, "Version": version}, nil
		},
		methods: []*method{
			{name: "ListNetworks", in: args("u flags"), out: args("ao networks"), fn: s.listNetworks},
			{name: "NetworkCreateXML", in: args("s xml"), out: args("o network"), write: true, fn: func(c *call) ([]any, error) {
				n, err := s.m.Create(c.body[0].(string))
				if err != nil {
					return nil, err
				}
				return []any{s.networkPath(n.UUID)}, nil
			}},
			{name: "NetworkDefineXML", in: args("s xml"), out: args("o network"), write: true, fn: func(c *call) ([]any, error) {
				n, err := s.m.Define(c.body[0].(string))
				if err != nil {
					return nil, err
				}
				return []any{s.networkPath(n.UUID)}, nil
			}},
			{name: "NetworkLookupByName", in: args("s name"), out: args("o network"), fn: func(c *call) ([]any, error) {
				n, err := s.m.Get(c.body[0].(string), "name")
				if err != nil {
					return nil, err
				}
				return []any{s.networkPath(n.UUID)}, nil
			}},
			{name: "NetworkLookupByUUID", in: args("s uuid"), out: args("o network"), fn: func(c *call) ([]any, error) {
				raw := c.body[0].(string)
				u, err := netxml.NormalizeUUID(raw)
				if err != nil {
					return nil, netxml.Errorf(netxml.KindInvalidArg, "uuidstr in virNetworkLookupByUUIDString must be a valid UUID")
				}
				n, err := s.m.Get(u, "uuid")
				if err != nil {
					return nil, err
				}
				return []any{s.networkPath(n.UUID)}, nil
			}},
			// Non-network members cockpit-machines calls at start-up: a
			// network-only daemon has no domains, pools, interfaces or node
			// devices.
			{name: "GetCapabilities", out: args("s capabilities"), fn: func(*call) ([]any, error) { return []any{capabilitiesXML()}, nil }},
			{name: "ListDomains", in: args("u flags"), out: args("ao domains"), fn: noObjects},
			{name: "ListInterfaces", in: args("u flags"), out: args("ao interfaces"), fn: noObjects},
			{name: "ListNodeDevices", in: args("u flags"), out: args("ao devs"), fn: noObjects},
			{name: "ListStoragePools", in: args("u flags"), out: args("ao storagePools"), fn: noObjects},
			{name: "NodeGetMemoryStats", in: args("i cellNum", "u flags"), out: args("a{st} stats"), fn: func(c *call) ([]any, error) {
				if err := s.checkFlags(c.body[1].(uint32), 0, "virHostMemGetStats", "virHostMemGetStats"); err != nil {
					return nil, err
				}
				st, err := memoryStats(c.body[0].(int32))
				if err != nil {
					return nil, err
				}
				return []any{st}, nil
			}},
		},
		signals: []signal{{name: "NetworkEvent", args: args("o network", "i event")}},
	}
}

func (s *Server) listNetworks(c *call) ([]any, error) {
	flags := c.body[0].(uint32)
	if err := s.checkFlags(flags, listAll, "networkConnectListAllNetworks", "testConnectListAllNetworks"); err != nil {
		return nil, err
	}
	out := []dbus.ObjectPath{}
	for _, n := range s.m.List() {
		if listFilter(n, flags) {
			out = append(out, s.networkPath(n.UUID))
		}
	}
	return []any{out}, nil
}

// vnetConnectIface is org.vnet.Connect1: vnet's additions on the Connect
// path, kept off libvirt's interfaces.
func (s *Server) vnetConnectIface() *iface {
	return &iface{
		name: ifaceVnetConnect,
		methods: []*method{
			{name: "DryRunCreate", in: args("s xml"), out: args("s plan"), fn: func(c *call) ([]any, error) {
				p, err := s.m.DryRunCreate(c.body[0].(string))
				if err != nil {
					return nil, err
				}
				return []any{p.Text}, nil
			}},
			{name: "ListNetworksJSON", out: args("s networks"), fn: func(*call) ([]any, error) {
				b, err := json.Marshal(s.m.List())
				if err != nil {
					return nil, err
				}
				return []any{string(b)}, nil
			}},
		},
	}
}

// capabilitiesXML is a minimal capabilities document: the host's architecture
// and no guests (vnet runs none).
func capabilitiesXML() string {
	arch := map[string]string{"amd64": "x86_64", "386": "i686", "arm64": "aarch64", "arm": "armv7l",
		"ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	var uuid string
	if b, err := os.ReadFile("/etc/machine-id"); err == nil {
		if u, err := netxml.NormalizeUUID(strings.TrimSpace(string(b))); err == nil {
			uuid = "    <uuid>" + u + "</uuid>\n"
		}
	}
	return "<capabilities>\n\n  <host>\n" + uuid + "    <cpu>\n      <arch>" + arch + "</arch>\n    </cpu>\n  </host>\n\n</capabilities>\n"
}

// memoryStats reads virNodeGetMemoryStats' fields (KiB) from /proc/meminfo
// for cell -1 (all cells), else from the NUMA node's meminfo.
func memoryStats(cell int32) (map[string]uint64, error) {
	file := "/proc/meminfo"
	if cell < -1 {
		return nil, netxml.Errorf(netxml.KindInvalidArg, "cellNum in virNodeGetMemoryStats must be greater than or equal to -1")
	}
	if cell >= 0 {
		file = fmt.Sprintf("/sys/devices/system/node/node%d/meminfo", cell)
		if _, err := os.Stat(file); err != nil {
			return nil, netxml.Errorf(netxml.KindInvalidArg, "cellNum in virNodeGetMemoryStats: no NUMA cell %d", cell)
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read memory statistics: %w", err)
	}
	defer f.Close()
	keys := map[string]string{"MemTotal": "total", "MemFree": "free", "Buffers": "buffers", "Cached": "cached"}
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// /proc/meminfo: "MemTotal: 16318412 kB"; node meminfo: "Node 0 MemTotal: 8159206 kB".
		if len(fields) >= 4 && fields[0] == "Node" {
			fields = fields[2:]
		}
		if len(fields) < 2 {
			continue
		}
		if k, ok := keys[strings.TrimSuffix(fields[0], ":")]; ok {
			if v, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
				out[k] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	for _, k := range []string{"total", "free", "buffers", "cached"} {
		if _, ok := out[k]; !ok {
			out[k] = 0
		}
	}
	return out, nil
}
