package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"vnet/daemon/api"
)

// filterNetworks applies net-list's filters and sorts the result by name,
// case-insensitively, as virsh does. Within each pair of filter options
// (active/inactive, persistent/transient, autostart/no-autostart) giving
// neither or both means "no filter", like libvirt's list flags.
func filterNetworks(nets []api.Network, o listOpts) []api.Network {
	wantActive, wantInactive := true, false
	if o.inactive {
		wantActive, wantInactive = false, true
	}
	if o.all {
		wantActive, wantInactive = true, true
	}
	var out []api.Network
	for _, n := range nets {
		if !pass(n.Active, wantActive, wantInactive) ||
			!pass(n.Persistent, o.persistent, o.transient) ||
			!pass(n.Autostart, o.autostart, o.noAutostart) {
			continue
		}
		out = append(out, n)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := asciiLower(out[i].Name), asciiLower(out[j].Name)
		if a != b {
			return a < b
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// pass reports whether a network with property v passes a filter pair:
// yes selects v true, no selects v false, neither or both select everything.
func pass(v, yes, no bool) bool {
	if yes == no {
		return true
	}
	return v == yes
}

// asciiLower folds ASCII letters only, like C's strcasecmp in the C locale.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeNetTable prints net-list's table.
func writeNetTable(w io.Writer, nets []api.Network, quiet bool) {
	rows := make([][]string, 0, len(nets))
	for _, n := range nets {
		state := "inactive"
		if n.Active {
			state = "active"
		}
		rows = append(rows, []string{n.Name, state, yesNo(n.Autostart), yesNo(n.Persistent)})
	}
	writeTable(w, []string{"Name", "State", "Autostart", "Persistent"}, rows, quiet)
}

// writeTable prints a table the way virsh's vshTable does: every cell is a
// space and its text; every column but the last is padded to its width plus
// two spaces; a dash line of sum(width+3) follows the header. With quiet the
// header and dash line are left out and widths come from the rows alone.
func writeTable(w io.Writer, header []string, rows [][]string, quiet bool) {
	all := make([][]cell, 0, len(rows)+1)
	if !quiet {
		all = append(all, cells(header))
	}
	for _, r := range rows {
		all = append(all, cells(r))
	}
	widths := make([]int, len(header))
	for _, r := range all {
		for i, c := range r {
			widths[i] = max(widths[i], c.width)
		}
	}
	line := 1
	for _, wd := range widths {
		line += wd + 3
	}
	var b strings.Builder
	b.Grow(line * (len(all) + 1))
	for ri, r := range all {
		for i, c := range r {
			b.WriteByte(' ')
			b.WriteString(c.text)
			if i < len(r)-1 {
				for range widths[i] - c.width + 2 {
					b.WriteByte(' ')
				}
			}
		}
		b.WriteByte('\n')
		if ri == 0 && !quiet {
			total := 0
			for _, wd := range widths {
				total += wd + 3
			}
			b.WriteString(strings.Repeat("-", total))
			b.WriteByte('\n')
		}
	}
	io.WriteString(w, b.String())
}

// cell is a table cell after escaping, with its display width.
type cell struct {
	text  string
	width int
}

func cells(texts []string) []cell {
	out := make([]cell, len(texts))
	for i, t := range texts {
		out[i] = escapeCell(t)
	}
	return out
}

// escapeCell escapes non-printable characters and invalid UTF-8 bytes as
// \xHH, as virsh does before it measures a cell.
func escapeCell(s string) cell {
	if printableASCII(s) {
		return cell{text: s, width: len(s)}
	}
	var b strings.Builder
	width := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size <= 1) || !unicode.IsPrint(r) {
			for _, c := range []byte(s[i : i+size]) {
				fmt.Fprintf(&b, "\\x%02x", c)
				width += 4
			}
		} else {
			b.WriteString(s[i : i+size])
			width++
		}
		i += size
	}
	return cell{text: b.String(), width: width}
}

// printableASCII reports whether s is printable ASCII only (nothing to
// escape, one column per byte): names almost always are.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// writeInfo prints net-info's block: "%-15s %s" per line, Bridge only when
// the network has one.
func writeInfo(w io.Writer, n api.Network) {
	line := func(label, value string) { fmt.Fprintf(w, "%-15s %s\n", label, value) }
	line("Name:", n.Name)
	line("UUID:", n.UUID)
	line("Active:", yesNo(n.Active))
	line("Persistent:", yesNo(n.Persistent))
	line("Autostart:", yesNo(n.Autostart))
	if n.Bridge != "" {
		line("Bridge:", n.Bridge)
	}
	if n.Ports > 0 {
		// vnet's own line, only for a network with ports (virsh has none).
		line("Ports:", fmt.Sprint(n.Ports))
	}
	if o := n.Overlay; o != nil {
		// vnet's own lines, only for an active overlay network.
		writeOverlay(line, o)
	}
}

// writeOverlay prints an overlay's control plane for net-info: the VXLAN
// device, each BGP peer's state, the remote VTEPs and the MAC counts.
func writeOverlay(line func(label, value string), o *api.Overlay) {
	line("Overlay:", fmt.Sprintf("vni %d, device %s, vtep %s", o.VNI, o.Device, o.VTEP))
	if o.Error != "" {
		line("Overlay error:", o.Error)
		return
	}
	up := 0
	var peers []string
	for _, p := range o.Peers {
		if p.Up {
			up++
		}
		peers = append(peers, p.Address+" "+p.State)
	}
	line("BGP peers:", fmt.Sprintf("%d of %d up: %s", up, len(o.Peers), strings.Join(peers, ", ")))
	if !o.VNIKnown {
		line("VNI:", "not known to FRR (zebra)")
	}
	line("Remote VTEPs:", strings.Join(o.RemoteVTEPs, " "))
	line("MACs:", fmt.Sprintf("%d local, %d remote", o.LocalMACs, len(o.RemoteMACs)))
}
