package frr

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"vnet/network"
)

// vtyTimeout bounds one vtysh call: a hung FRR must not hang a converge.
const vtyTimeout = 10 * time.Second

// VTY runs FRR's vtysh for the settings' FRR instance.
type VTY struct{ s *Settings }

// NewVTY returns the vtysh runner of the settings' FRR instance.
func NewVTY(s *Settings) VTY { return VTY{s: s} }

// argv is vtysh's command line before the commands.
func (v VTY) argv() []string {
	bin := v.s.Vtysh
	if bin == "" {
		bin = "vtysh"
	}
	out := []string{bin}
	if v.s.Pathspace != "" {
		out = append(out, "-N", v.s.Pathspace)
	}
	if v.s.VtyDir != "" {
		out = append(out, "--vty_socket", v.s.VtyDir, "--config_dir", v.s.VtyDir)
	}
	return out
}

// Command is vtysh's command line for this FRR instance, as a user would
// type it (for the fixes net-doctor prints).
func (v VTY) Command() string { return strings.Join(v.argv(), " ") }

// Run runs vtysh with each of cmds as a -c argument and returns its output.
func (v VTY) Run(cmds ...string) ([]byte, error) {
	argv := v.argv()
	for _, c := range cmds {
		argv = append(argv, "-c", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), vtyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String() + "\n" + out.String())
		return nil, fmt.Errorf("vtysh %s: %w: %s", strings.Join(cmds, "; "), err, msg)
	}
	// vtysh reports a command FRR refused on stdout and may still exit 0.
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "% ") {
			return nil, fmt.Errorf("vtysh %s: %s", strings.Join(cmds, "; "), strings.TrimSpace(out.String()))
		}
	}
	return out.Bytes(), nil
}

// JSON runs one show command ending in "json" and decodes its output.
func (v VTY) JSON(cmd string, out any) error {
	data, err := v.Run(cmd)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		// FRR 8.4 prints nothing at all for an unknown VNI.
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("vtysh %s: decode: %w", cmd, err)
	}
	return nil
}

// RouteMap is the route map vnet attaches to its peer group's EVPN routes,
// in and out. It permits everything; it exists so that FRR's `bgp
// ebgp-requires-policy` (on by default) lets vnet's peers exchange routes
// without vnet turning that check off for the whole instance.
const RouteMap = "vnet-evpn"

// Sections of the BGP instance, as `address-family` names ("" is the
// instance itself).
const (
	secIPv4 = "ipv4 unicast"
	secEVPN = "l2vpn evpn"
)

// cfgLine is one line of the BGP instance in a section.
type cfgLine struct{ section, text string }

// desired returns the lines vnet owns in the BGP instance, given what runs:
// its peer group with the peers, the group's EVPN family with the route
// map and advertise-all-vni, the group kept out of IPv4 unicast (when FRR
// activates new neighbors there), and the settings' router id when the
// instance has none (FRR could not pick one on a host without IPv4).
func (s *Settings) desired(r running) []cfgLine {
	var out []cfgLine
	add := func(sec, format string, args ...any) { out = append(out, cfgLine{sec, fmt.Sprintf(format, args...)}) }
	if s.RouterID.IsValid() && !r.routerID {
		add("", "bgp router-id %s", s.RouterID)
	}
	add("", "neighbor %s peer-group", PeerGroup)
	add("", "neighbor %s remote-as %s", PeerGroup, s.RemoteAS)
	if s.Keepalive > 0 {
		add("", "neighbor %s timers %d %d", PeerGroup, s.Keepalive, s.Hold)
	}
	for _, p := range s.Peers {
		add("", "neighbor %s peer-group %s", p, PeerGroup)
	}
	if !r.lines[""]["no bgp default ipv4-unicast"] {
		add(secIPv4, "no neighbor %s activate", PeerGroup)
	}
	add(secEVPN, "neighbor %s activate", PeerGroup)
	add(secEVPN, "neighbor %s route-map %s in", PeerGroup, RouteMap)
	add(secEVPN, "neighbor %s route-map %s out", PeerGroup, RouteMap)
	add(secEVPN, "advertise-all-vni")
	return out
}

// running is the part of FRR's running configuration vnet looks at.
type running struct {
	asns     []string                   // AS numbers of `router bgp N` in the default VRF
	lines    map[string]map[string]bool // lines of our instance by section
	members  []string                   // neighbors in the vnet peer group
	routerID bool                       // the instance has `bgp router-id`
	routeMap bool                       // `route-map vnet-evpn permit 10` exists
}

// parseRunning reads `show running-config` for the default VRF BGP
// instance of asn.
func parseRunning(text string, asn uint32) running {
	r := running{lines: map[string]map[string]bool{"": {}, secIPv4: {}, secEVPN: {}}}
	want := "router bgp " + strconv.FormatUint(uint64(asn), 10)
	in, sec := false, ""
	for _, raw := range strings.Split(text, "\n") {
		l := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(raw, "router bgp "):
			f := strings.Fields(l)
			if len(f) == 3 { // not `router bgp N vrf X`
				r.asns = append(r.asns, f[2])
				in, sec = l == want, ""
			}
			continue
		case raw == "route-map "+RouteMap+" permit 10":
			r.routeMap, in = true, false
			continue
		case !strings.HasPrefix(raw, " ") && l != "" && l != "!":
			in, sec = false, ""
			continue
		}
		if !in {
			continue
		}
		switch {
		case strings.HasPrefix(l, "address-family "):
			sec = strings.TrimPrefix(l, "address-family ")
		case l == "exit-address-family":
			sec = ""
		case r.lines[sec] != nil:
			r.lines[sec][l] = true
			if sec != "" {
				break
			}
			if strings.HasPrefix(l, "bgp router-id ") {
				r.routerID = true
			}
			if f := strings.Fields(l); len(f) == 4 && f[0] == "neighbor" && f[2] == "peer-group" && f[3] == PeerGroup {
				r.members = append(r.members, f[1])
			}
		}
	}
	return r
}

// Converge brings FRR's BGP EVPN configuration to the settings, issuing
// the change through ex: it reads the running configuration and, when a
// line vnet owns is missing or a member of the vnet peer group is no longer
// a peer, applies the missing lines (and removes the stale members) with
// one vtysh call. What vnet owns is the peer group `vnet` with its members
// and its address-family lines, the route map `vnet-evpn`, and
// `advertise-all-vni`; nothing else of the instance is changed. A BGP
// instance of another AS in the default VRF is refused: FRR has one per VRF.
func (v VTY) Converge(ex network.Executor) error {
	out, err := v.Run("show running-config")
	if err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	r := parseRunning(string(out), v.s.ASN)
	asn := strconv.FormatUint(uint64(v.s.ASN), 10)
	for _, a := range r.asns {
		if a != asn {
			return fmt.Errorf("frr: BGP runs as AS %s here; the overlay settings say AS %s", a, asn)
		}
	}
	var missing []string
	var cmds []string
	if !r.routeMap {
		cmds = append(cmds, "route-map "+RouteMap+" permit 10", "exit")
		missing = append(missing, "route-map "+RouteMap)
	}
	cmds = append(cmds, "router bgp "+asn)
	bySection := map[string][]string{}
	for _, l := range v.s.desired(r) {
		if r.lines[l.section][l.text] {
			continue
		}
		bySection[l.section] = append(bySection[l.section], l.text)
		if l.section != "" {
			missing = append(missing, l.section+": "+l.text)
		} else {
			missing = append(missing, l.text)
		}
	}
	cmds = append(cmds, bySection[""]...)
	for _, m := range r.members {
		a, err := netip.ParseAddr(m)
		if err != nil || !slices.Contains(v.s.Peers, a) {
			cmds = append(cmds, "no neighbor "+m)
			missing = append(missing, "stale neighbor "+m)
		}
	}
	for _, sec := range []string{secIPv4, secEVPN} {
		if len(bySection[sec]) > 0 {
			cmds = append(append(append(cmds, "address-family "+sec), bySection[sec]...), "exit-address-family")
		}
	}
	if len(missing) == 0 {
		return nil
	}
	all := append([]string{"configure terminal"}, cmds...)
	var shown strings.Builder
	shown.WriteString(v.Command())
	for _, c := range all {
		fmt.Fprintf(&shown, " -c '%s'", c)
	}
	return ex.Run(network.Step{
		Problem: "frr: BGP EVPN configuration: " + strings.Join(missing, ", "),
		Cmd:     shown.String(),
		Do: func() error {
			if _, err := v.Run(all...); err != nil {
				return fmt.Errorf("frr: %w", err)
			}
			return nil
		},
	})
}
