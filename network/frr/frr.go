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

// Desired returns the configuration vnet owns, as the lines of FRR's
// running configuration under `router bgp ASN` (top) and its
// `address-family l2vpn evpn` (af).
func (s *Settings) Desired() (top, af []string) {
	if s.VTEP.Is4() {
		top = append(top, "bgp router-id "+s.VTEP.String())
	}
	top = append(top, "no bgp ebgp-requires-policy", "no bgp default ipv4-unicast",
		"neighbor "+PeerGroup+" peer-group", "neighbor "+PeerGroup+" remote-as "+s.RemoteAS)
	if s.Keepalive > 0 {
		top = append(top, fmt.Sprintf("neighbor %s timers %d %d", PeerGroup, s.Keepalive, s.Hold))
	}
	for _, p := range s.Peers {
		top = append(top, fmt.Sprintf("neighbor %s peer-group %s", p, PeerGroup))
	}
	af = []string{"neighbor " + PeerGroup + " activate", "advertise-all-vni"}
	return top, af
}

// running is the part of FRR's running configuration vnet looks at.
type running struct {
	profile string          // `frr defaults PROFILE` (traditional, datacenter)
	asns    []string        // AS numbers of `router bgp N` in the default VRF
	top, af map[string]bool // lines of our instance and its l2vpn evpn family
	members []string        // neighbors in the vnet peer group
}

// has reports whether a line of the BGP instance is in effect: written in
// the running configuration, or the profile's default, which FRR does not
// write (the datacenter profile does not require eBGP policies).
func (r running) has(line string) bool {
	if r.top[line] {
		return true
	}
	return line == "no bgp ebgp-requires-policy" && r.profile == "datacenter" && !r.top["bgp ebgp-requires-policy"]
}

// parseRunning reads `show running-config` for the default VRF BGP
// instance of asn.
func parseRunning(text string, asn uint32) running {
	r := running{top: map[string]bool{}, af: map[string]bool{}}
	want := "router bgp " + strconv.FormatUint(uint64(asn), 10)
	in, inAF := false, false
	for _, raw := range strings.Split(text, "\n") {
		l := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(raw, "frr defaults "):
			r.profile = strings.TrimPrefix(l, "frr defaults ")
			continue
		case strings.HasPrefix(raw, "router bgp "):
			f := strings.Fields(l)
			if len(f) == 3 { // not `router bgp N vrf X`
				r.asns = append(r.asns, f[2])
				in = l == want
			}
			continue
		case !strings.HasPrefix(raw, " ") && l != "" && l != "!":
			in, inAF = false, false
			continue
		}
		if !in {
			continue
		}
		switch {
		case l == "address-family l2vpn evpn":
			inAF = true
		case strings.HasPrefix(l, "address-family "):
			inAF = false
		case l == "exit-address-family":
			inAF = false
		case inAF:
			r.af[l] = true
		default:
			r.top[l] = true
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
// one vtysh call. Nothing outside the vnet peer group and the l2vpn evpn
// family is changed. A BGP instance of another AS in the default VRF is
// refused: FRR has one per VRF.
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
	top, af := v.s.Desired()
	var cmds, missing []string
	for _, l := range top {
		if !r.has(l) {
			cmds = append(cmds, l)
			missing = append(missing, l)
		}
	}
	for _, m := range r.members {
		a, err := netip.ParseAddr(m)
		if err != nil || !slices.Contains(v.s.Peers, a) {
			cmds = append(cmds, "no neighbor "+m)
			missing = append(missing, "stale neighbor "+m)
		}
	}
	var afCmds []string
	for _, l := range af {
		if !r.af[l] {
			afCmds = append(afCmds, l)
			missing = append(missing, "l2vpn evpn: "+l)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	all := append([]string{"configure terminal", "router bgp " + asn}, cmds...)
	if len(afCmds) > 0 {
		all = append(append(append(all, "address-family l2vpn evpn"), afCmds...), "exit-address-family")
	}
	var shown strings.Builder
	shown.WriteString(strings.Join(v.argv(), " "))
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
