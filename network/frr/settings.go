// Package frr is the control plane of vnet's overlay networks: this host's
// overlay settings (VTEP, BGP AS, peers), the BGP EVPN configuration vnet
// gives FRR (applied with FRR's own vtysh, changing only what vnet owns),
// and FRR's view of an overlay read back as JSON (peers, VNIs, remote VTEPs
// and MACs) for net-info and net-doctor. FRR is the engine: zebra learns the
// local MACs from the bridge and installs the remote ones, bgpd exchanges
// them as EVPN routes. vnet does not run FRR; the host's FRR service does.
package frr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Settings are this host's overlay settings, read from the overlay
// settings file (see ParseSettings for its format).
type Settings struct {
	// VTEP is this host's VXLAN tunnel endpoint address (on a link of
	// this host; the underlay carries it to the peers).
	VTEP netip.Addr
	// ASN is the BGP AS number of this host's BGP instance.
	ASN uint32
	// RouterID is the BGP router id vnet sets when the instance has none:
	// the VTEP when it is IPv4, else this setting (an IPv4 address).
	RouterID netip.Addr
	// Peers are the BGP peers (the other hosts, or route reflectors).
	Peers []netip.Addr
	// RemoteAS is the peers' AS: "external" (eBGP, the default),
	// "internal" (iBGP, e.g. to route reflectors) or a number.
	RemoteAS string
	// Keepalive and Hold are the BGP timers in seconds (0: FRR's
	// defaults, 60 and 180). A stopped host's MACs leave the other hosts
	// within Hold when its FRR dies without closing its sessions.
	Keepalive, Hold int
	// Slice and Slices place this host's DHCP addresses: it serves the
	// Slice-th of Slices equal parts of every DHCP range (0-based).
	// When the file does not say, they are this host's position among
	// the sorted addresses of VTEP and Peers (a full mesh lists every
	// host), so every host computes a disjoint slice by itself.
	Slice, Slices int
	// Vtysh is the vtysh binary ("vtysh" when not set).
	Vtysh string
	// VtyDir, when set, is where FRR's daemons keep their vty sockets
	// (vtysh --vty_socket and --config_dir); Pathspace is FRR's -N.
	VtyDir, Pathspace string
	// NamesPort is the TCP port on the VTEP address where vnetd serves
	// its overlay networks' DHCP names to the other hosts, and asks
	// theirs (DefaultNamesPort when not set; 0 turns it off).
	NamesPort int
}

// DefaultNamesPort is the TCP port of the overlay names service.
const DefaultNamesPort = 8179

// PeerGroup is the BGP peer group that holds every neighbor vnet
// configures: what vnet owns in FRR's configuration is this group, its
// members and their address-family lines, the route map RouteMap and
// advertise-all-vni.
const PeerGroup = "vnet"

// ParseSettings reads the overlay settings file: one setting a line,
// `KEY VALUE…`, '#' starts a comment.
//
//	vtep 192.0.2.1          this host's VTEP address (required)
//	asn 65001               BGP AS number (required)
//	peer 192.0.2.2          a BGP peer; repeat for each
//	remote-as external      external (default), internal, or a number
//	timers 3 9              BGP keepalive and hold time in seconds
//	router-id 192.0.2.1     BGP router id (default: the vtep, when IPv4)
//	dhcp-slice 0/3          this host's slice of DHCP ranges (default: derived)
//	vtysh /usr/bin/vtysh    the vtysh binary
//	frr-vty-dir /run/frr    FRR's vty socket directory (vtysh --vty_socket)
//	frr-pathspace NAME      FRR's pathspace (vtysh -N)
//	names-port 8179         TCP port of the DHCP names service (0: off)
//
// Every value is checked; an error names the file and line.
func ParseSettings(path string, data []byte) (*Settings, error) {
	s := &Settings{RemoteAS: "external", NamesPort: DefaultNamesPort}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s: %s", path, line, f[0], fmt.Sprintf(format, args...))
		}
		key, args := f[0], f[1:]
		if key != "peer" && seen[key] {
			return nil, bad("given twice")
		}
		seen[key] = true
		want := 1
		if key == "timers" {
			want = 2
		}
		if len(args) != want {
			return nil, bad("needs %d value(s), has %d", want, len(args))
		}
		switch key {
		case "vtep", "peer":
			a, err := netip.ParseAddr(args[0])
			if err != nil || a.Zone() != "" || !a.IsGlobalUnicast() && !a.IsPrivate() {
				return nil, bad("%q is not a unicast IP address", args[0])
			}
			if key == "vtep" {
				s.VTEP = a
			} else {
				if slices.Contains(s.Peers, a) {
					return nil, bad("%s is listed twice", a)
				}
				s.Peers = append(s.Peers, a)
			}
		case "router-id":
			a, err := netip.ParseAddr(args[0])
			if err != nil || !a.Is4() || a.IsUnspecified() {
				return nil, bad("%q is not an IPv4 address", args[0])
			}
			s.RouterID = a
		case "asn":
			n, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil || n == 0 {
				return nil, bad("%q is not an AS number (1 to 4294967295)", args[0])
			}
			s.ASN = uint32(n)
		case "remote-as":
			if args[0] != "external" && args[0] != "internal" {
				if n, err := strconv.ParseUint(args[0], 10, 32); err != nil || n == 0 {
					return nil, bad("%q is not external, internal or an AS number", args[0])
				}
			}
			s.RemoteAS = args[0]
		case "timers":
			k, err1 := strconv.Atoi(args[0])
			h, err2 := strconv.Atoi(args[1])
			if err1 != nil || err2 != nil || k < 1 || k > 65535 || h < 3 || h > 65535 || h < k {
				return nil, bad("want KEEPALIVE HOLD in seconds, 1 ≤ keepalive ≤ hold, hold ≥ 3")
			}
			s.Keepalive, s.Hold = k, h
		case "dhcp-slice":
			i, n, ok := strings.Cut(args[0], "/")
			si, err1 := strconv.Atoi(i)
			sn, err2 := strconv.Atoi(n)
			if !ok || err1 != nil || err2 != nil || sn < 1 || sn > 256 || si < 0 || si >= sn {
				return nil, bad("%q: want INDEX/COUNT with 0 ≤ INDEX < COUNT ≤ 256", args[0])
			}
			s.Slice, s.Slices = si, sn
		case "vtysh", "frr-vty-dir":
			if !strings.HasPrefix(args[0], "/") {
				return nil, bad("%q is not an absolute path", args[0])
			}
			if key == "vtysh" {
				s.Vtysh = args[0]
			} else {
				s.VtyDir = args[0]
			}
		case "names-port":
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 0 || n > 65535 {
				return nil, bad("%q is not a TCP port (0 turns the names service off)", args[0])
			}
			s.NamesPort = n
		case "frr-pathspace":
			if strings.ContainsAny(args[0], "/.") {
				return nil, bad("%q: a pathspace is a plain name", args[0])
			}
			s.Pathspace = args[0]
		default:
			return nil, bad("unknown setting")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case !s.VTEP.IsValid():
		return nil, fmt.Errorf("%s: vtep: missing (this host's VTEP address)", path)
	case s.ASN == 0:
		return nil, fmt.Errorf("%s: asn: missing (this host's BGP AS number)", path)
	case slices.Contains(s.Peers, s.VTEP):
		return nil, fmt.Errorf("%s: peer: %s is this host's own vtep", path, s.VTEP)
	}
	for _, p := range s.Peers {
		if p.Is4() != s.VTEP.Is4() {
			return nil, fmt.Errorf("%s: peer: %s is not of the vtep's address family", path, p)
		}
	}
	if !s.RouterID.IsValid() && s.VTEP.Is4() {
		s.RouterID = s.VTEP
	}
	if s.Slices == 0 {
		all := append([]netip.Addr{s.VTEP}, s.Peers...)
		slices.SortFunc(all, func(a, b netip.Addr) int { return a.Compare(b) })
		s.Slice, s.Slices = slices.Index(all, s.VTEP), len(all)
	}
	return s, nil
}

// LoadSettings reads the settings file at path; (nil, nil) when it does
// not exist (the host has no overlays).
func LoadSettings(path string) (*Settings, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("overlay settings: %w", err)
	}
	return ParseSettings(path, data)
}
