package firewall

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"vnet/internal/netnstest"
	"vnet/internal/testdata"
	netxml "vnet/xml"
)

// TestLibvirtGoldenKernel checks libvirt's firewall test cases against what
// the real backends install: each case's plan is applied in a throwaway
// namespace, read back from the kernel and mapped to libvirt's layout (see
// nftToLibvirt and iptToLibvirt, the one mapping per backend), then compared
// with libvirt's expected commands.
//
// The kernel keeps no record of the order in which rules of different chains
// were added, only each chain's order, and every libvirt command inserts at
// the top of its chain. So both sides are compared chain by chain: libvirt's
// commands of a chain in file order against the rules read back from that
// chain, reversed.
func TestLibvirtGoldenKernel(t *testing.T) {
	dir, cases := testdata.Cases(t, "firewall-cases.tsv")
	var skips testdata.Skips
	checks := 0
	for _, c := range cases {
		t.Run(c["name"]+"/"+c["backend"], func(t *testing.T) {
			n, err := netxml.Parse(testdata.Read(t, dir, c["input"]))
			if err != nil {
				t.Fatalf("parse %s: %v", c["input"], err)
			}
			p, err := PlanFor(n)
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			expected := string(testdata.Read(t, dir, c["expected"]))
			switch c["backend"] {
			case "nftables":
				checks += 2
				kernelNftCase(t, &skips, p, expected, string(testdata.Read(t, dir, c["base"])))
			case "iptables":
				checks++
				kernelIptCase(t, &skips, p, expected, string(testdata.Read(t, dir, c["base"])))
			default:
				checks++
				skips.Skip(t, "unknown backend "+c["backend"])
			}
		})
	}
	skips.Report(t, checks)
}

func kernelNftCase(t *testing.T, skips *testdata.Skips, p *Plan, expected, base string) {
	ns, b := nsBackend(t, "fwgold")
	if err := b.Apply(p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	var tables [][]byte
	listed := ns.MustRun("nft", "list", "tables")
	for _, f := range []Family{IPv4, IPv6} {
		if strings.Contains(listed, "table "+f.String()+" "+nftTable(p.Bridge)+"\n") {
			tables = append(tables, []byte(ns.MustRun("nft", "-j", "list", "table", f.String(), nftTable(p.Bridge))))
		}
	}
	got, err := nftToLibvirt(tables)
	if err != nil {
		t.Fatalf("map the read-back rules to libvirt's layout: %v", err)
	}

	want := map[string][]string{}
	groupLibvirt(t, want, expected, func(argv []string) (string, bool) {
		if argv[0] == "nft" && len(argv) > 7 && argv[1] == "-ae" && argv[2] == "insert" {
			return argv[4] + " " + argv[6], true
		}
		return "", false // the tc commands, compared below
	})
	// Base chains: libvirt's global setup declares them; compare those our
	// tables hold.
	groupLibvirt(t, want, base, func(argv []string) (string, bool) {
		if argv[0] == "nft" && len(argv) == 7 && argv[1] == "add" && argv[2] == "chain" &&
			len(got[argv[3]+" base "+argv[5]]) > 0 {
			return argv[3] + " base " + argv[5], true
		}
		return "", false
	})
	compareGroups(t, want, got)

	t.Run("tc", func(t *testing.T) {
		if b.(*nftBackend).noCsum {
			skips.Skip(t, "kernel has no tc csum action: the DHCP checksum fix (3 tc commands) is not installed")
		}
		var wantTc strings.Builder
		for _, argv := range libvirtCommands(t, expected) {
			if argv[0] == "tc" {
				wantTc.WriteString(formatCommand(argv, true))
			}
		}
		gotTc := tcToLibvirt(p.Bridge, ns.MustRun("tc", "-j", "qdisc", "show", "dev", p.Bridge), ns.MustRun("tc", "filter", "show", "dev", p.Bridge))
		if gotTc != wantTc.String() {
			t.Errorf("tc commands differ\n%s", lineDiff(wantTc.String(), gotTc))
		}
	})
}

func kernelIptCase(t *testing.T, skips *testdata.Skips, p *Plan, expected, base string) {
	for _, tool := range []string{"iptables", "ip6tables", "iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			skips.Skip(t, "needs "+tool)
		}
	}
	ours := netnstest.New(t, "fwgoldi")
	h, err := ours.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := New("iptables", Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(p); err != nil {
		t.Fatalf("apply: %v", err)
	}

	// libvirt's commands, run by the real tools: iptables-save prints a
	// rule's matches in its own order, whatever the command's order.
	theirs := netnstest.New(t, "fwgoldl")
	var script strings.Builder
	used := map[string]bool{}
	for _, argv := range libvirtCommands(t, expected) {
		used[argv[0]] = true
	}
	for _, argv := range libvirtCommands(t, base) {
		if used[argv[0]] && !strings.Contains(strings.Join(argv, " "), "--list-rules") {
			script.WriteString(formatCommand(argv, false))
		}
	}
	script.WriteString(expected) // " \" + newline continues a line in sh too
	if out, err := theirs.Run("sh", "-ec", script.String()); err != nil {
		if strings.Contains(out, "CHECKSUM") {
			skips.Skip(t, "kernel has no iptables CHECKSUM target: libvirt's mangle rule cannot be installed")
		}
		t.Fatalf("run libvirt's commands: %v", err)
	}

	for _, tool := range []string{"iptables", "ip6tables"} {
		got := iptToLibvirt(saved(ours, tool))
		if !used[tool] {
			// libvirt's global setup creates a family's chains on its
			// first start; vnet only where a network has rules.
			if got != "" {
				t.Errorf("%s holds vnet's chains, libvirt runs no %s command:\n%s", tool, tool, got)
			}
			continue
		}
		if want := iptToLibvirt(saved(theirs, tool)); got != want {
			t.Errorf("%s differs from libvirt's\n%s", tool, lineDiff(want, got))
		}
	}
}

// iptToLibvirt maps iptables-save output (comments and zeroed counters as
// saved() leaves it) to libvirt's layout: vnet's chains VNET_INP, VNET_OUT,
// VNET_FWO, VNET_FWI, VNET_FWX, VNET_PRT become libvirt's LIBVIRT_* of the
// same suffix, the "vnet:<network>" comment match of each rule is dropped
// (libvirt tells its rules apart by their matches), and only the tables
// filter, nat and mangle are kept, with the built-in chains and every rule.
// Text without any vnet or libvirt chain maps to "".
func iptToLibvirt(save string) string {
	if !strings.Contains(save, ":VNET_") && !strings.Contains(save, ":LIBVIRT_") {
		return ""
	}
	save = iptCommentMatch.ReplaceAllString(save, "")
	return iptVnetChain.ReplaceAllString(save, "${1}LIBVIRT_$2")
}

var (
	iptCommentMatch = regexp.MustCompile(` -m comment --comment "vnet:[^"]*"`)
	iptVnetChain    = regexp.MustCompile(`(^|[ :])VNET_(INP|OUT|FWO|FWI|FWX|PRT)\b`)
)

func iptFamily(tool string) string {
	if tool == "ip6tables" {
		return "ip6"
	}
	return "ip"
}

// nftJSON is the part of `nft -j list table` output the mapping reads.
type nftJSON struct {
	Nftables []struct {
		Chain *struct {
			Family, Name, Type, Hook, Policy string
			Prio                             int
		} `json:"chain"`
		Rule *struct {
			Family, Chain string
			Expr          []map[string]json.RawMessage
		} `json:"rule"`
	} `json:"nftables"`
}

// nftToLibvirt maps the `nft -j list table` output of the shared tables
// holding one network to libvirt's layout, as libvirt's commands grouped by
// "FAMILY CHAIN" in insertion order (the reverse of the live order). The
// mapping:
//
//   - table ip|ip6 vnet is libvirt's shared table libvirt_network of the
//     same family;
//   - chain fwd-<bridge> holds libvirt's guest_cross, guest_input and
//     guest_output rules: a rule matching both iif and oif is guest_cross's,
//     one matching oif only guest_input's (traffic into the network), iif
//     only guest_output's; its return is libvirt's accept (see the layout in
//     nftrule.go);
//   - chain nat-<bridge> is guest_nat;
//   - the dispatch rules of the base chains have no counterpart (libvirt
//     has one table with one network's chains each);
//   - base chains forward and postrouting map to libvirt's forward and
//     guest_nat with their type, hook, priority and policy ("FAMILY base
//     CHAIN");
//   - each expression is written as libvirt writes it: counter values
//     dropped, an address compared with a whole address written as a /32 or
//     /128 prefix, a ct state set in libvirt's order (related before
//     established), a reject with the family's default type (ICMP port
//     unreachable) as plain reject.
func nftToLibvirt(tables [][]byte) (map[string][]string, error) {
	live := map[string][]string{}
	for _, data := range tables {
		var doc nftJSON
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("parse nft JSON: %w", err)
		}
		for _, it := range doc.Nftables {
			if c := it.Chain; c != nil {
				name, ok := map[string]string{"forward": "forward", "postrouting": "guest_nat"}[c.Name]
				if !ok {
					continue
				}
				spec := fmt.Sprintf("{ type %s hook %s priority %d; policy %s; }", c.Type, c.Hook, c.Prio, c.Policy)
				live[c.Family+" base "+name] = []string{formatCommand([]string{"nft", "add", "chain", c.Family, "libvirt_network", name, spec}, true)}
				continue
			}
			r := it.Rule
			if r == nil {
				continue
			}
			if r.Chain == nftForward || r.Chain == nftPostrouting {
				continue // the dispatch rules
			}
			words, ifaces, err := nftWords(r.Expr)
			if err != nil {
				return nil, fmt.Errorf("%s chain %s: %w", r.Family, r.Chain, err)
			}
			var key string
			var argv []string
			kind := ""
			switch {
			case strings.HasPrefix(r.Chain, nftFwdPrefix):
				kind = "forward"
				if words[len(words)-1] == "return" {
					words[len(words)-1] = "accept"
				}
			case strings.HasPrefix(r.Chain, nftNatPrefix):
				kind = "postrouting"
			}
			switch {
			case kind != "":
				chain := "guest_nat"
				if kind == "forward" {
					switch {
					case ifaces["iif"] && ifaces["oif"]:
						chain = "guest_cross"
					case ifaces["oif"]:
						chain = "guest_input"
					case ifaces["iif"]:
						chain = "guest_output"
					default:
						return nil, fmt.Errorf("%s chain forward: rule matches neither iif nor oif: %s", r.Family, strings.Join(words, " "))
					}
				}
				key = r.Family + " " + chain
				argv = append([]string{"nft", "-ae", "insert", "rule", r.Family, "libvirt_network", chain}, words...)
			default:
				return nil, fmt.Errorf("%s: unexpected chain %s", r.Family, r.Chain)
			}
			live[key] = append(live[key], formatCommand(argv, true))
		}
	}
	out := map[string][]string{}
	for k, cmds := range live {
		for i := len(cmds) - 1; i >= 0; i-- {
			out[k] = append(out[k], cmds[i])
		}
	}
	return out, nil
}

// nftWords writes a rule's expressions as libvirt's nft arguments and tells
// which of iif and oif it matches.
func nftWords(exprs []map[string]json.RawMessage) ([]string, map[string]bool, error) {
	var words []string
	ifaces := map[string]bool{}
	for _, e := range exprs {
		for kind, raw := range e {
			switch kind {
			case "match":
				var m struct {
					Op    string
					Left  map[string]map[string]string
					Right json.RawMessage
				}
				if err := json.Unmarshal(raw, &m); err != nil {
					return nil, nil, err
				}
				var left []string
				switch {
				case m.Left["meta"] != nil:
					key := m.Left["meta"]["key"]
					ifaces[key] = true
					if key == "l4proto" {
						left = []string{"meta", "l4proto"}
					} else {
						left = []string{key}
					}
				case m.Left["payload"] != nil:
					left = []string{m.Left["payload"]["protocol"], m.Left["payload"]["field"]}
				case m.Left["ct"] != nil:
					left = []string{"ct", m.Left["ct"]["key"]}
				default:
					return nil, nil, fmt.Errorf("unmapped match %s", raw)
				}
				right, err := nftRight(left, m.Right)
				if err != nil {
					return nil, nil, err
				}
				words = append(words, left...)
				if m.Op == "!=" {
					words = append(words, "!=")
				}
				words = append(words, right)
			case "counter":
				words = append(words, "counter")
			case "accept", "return":
				words = append(words, kind)
			case "reject":
				var r struct{ Type, Expr string }
				if string(raw) != "null" {
					if err := json.Unmarshal(raw, &r); err != nil {
						return nil, nil, err
					}
				}
				if r.Expr != "" && r.Expr != "port-unreachable" {
					return nil, nil, fmt.Errorf("unmapped reject %s", raw)
				}
				words = append(words, "reject")
			case "masquerade", "snat":
				w, err := nftNAT(kind, raw)
				if err != nil {
					return nil, nil, err
				}
				words = append(words, w...)
			default:
				return nil, nil, fmt.Errorf("unmapped expression %s: %s", kind, raw)
			}
		}
	}
	return words, ifaces, nil
}

// nftRight writes the right-hand side of a match.
func nftRight(left []string, raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if left[len(left)-1] == "saddr" || left[len(left)-1] == "daddr" {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return "", err
			}
			return netip.PrefixFrom(a, a.BitLen()).String(), nil
		}
		return s, nil
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return strconv.Itoa(n), nil
	}
	var pfx struct {
		Prefix *struct {
			Addr string
			Len  int
		}
	}
	if json.Unmarshal(raw, &pfx) == nil && pfx.Prefix != nil {
		return pfx.Prefix.Addr + "/" + strconv.Itoa(pfx.Prefix.Len), nil
	}
	var set []string
	if json.Unmarshal(raw, &set) == nil {
		order := map[string]int{"invalid": 0, "new": 1, "related": 2, "established": 3, "untracked": 4}
		sort.Slice(set, func(i, j int) bool { return order[set[i]] < order[set[j]] })
		return strings.Join(set, ","), nil
	}
	return "", fmt.Errorf("unmapped value %s", raw)
}

// nftNAT writes masquerade [to :P-Q] or snat to A[-B][:P-Q].
func nftNAT(kind string, raw json.RawMessage) ([]string, error) {
	var n struct {
		Addr, Port json.RawMessage
	}
	if string(raw) != "null" {
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, err
		}
	}
	rng := func(raw json.RawMessage) (string, error) {
		var r struct{ Range []json.RawMessage }
		if json.Unmarshal(raw, &r) == nil && len(r.Range) == 2 {
			var parts []string
			for _, p := range r.Range {
				var s string
				if json.Unmarshal(p, &s) != nil {
					s = string(p)
				}
				parts = append(parts, s)
			}
			return parts[0] + "-" + parts[1], nil
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s, nil
		}
		var i int
		if json.Unmarshal(raw, &i) == nil {
			return strconv.Itoa(i), nil
		}
		return "", fmt.Errorf("unmapped %s value %s", kind, raw)
	}
	out := []string{kind}
	to := ""
	if n.Addr != nil {
		a, err := rng(n.Addr)
		if err != nil {
			return nil, err
		}
		to = a
	}
	if n.Port != nil {
		p, err := rng(n.Port)
		if err != nil {
			return nil, err
		}
		to += ":" + p
	}
	if to != "" {
		out = append(out, "to", to)
	}
	return out, nil
}

// tcToLibvirt maps the bridge's checksum fix, read back with `tc -j qdisc
// show` and `tc filter show`, to libvirt's three tc commands: its probe
// (`tc qdisc show dev BR handle 1:`, always), the htb root qdisc 1: with
// default class 2 when present, the u32 filter (prio 2, protocol ip, parent
// 1:, key 00000044/0000ffff at 20, action csum of IP and UDP) when present.
func tcToLibvirt(bridge, qdiscJSON, filters string) string {
	out := formatCommand([]string{"tc", "qdisc", "show", "dev", bridge, "handle", "1:"}, true)
	var qs []struct {
		Kind, Handle string
		Root         bool
		Options      struct{ Default string }
	}
	if json.Unmarshal([]byte(qdiscJSON), &qs) != nil {
		return out
	}
	for _, q := range qs {
		if q.Kind == "htb" && q.Root && q.Handle == "1:" && q.Options.Default == "0x2" {
			out += formatCommand([]string{"tc", "qdisc", "add", "dev", bridge, "root", "handle", "1:", "htb", "default", "2"}, true)
		}
	}
	if regexp.MustCompile(`(?s)parent 1: protocol ip pref 2 u32 .*match 00000044/0000ffff at 20.*csum \(iph, udp\)`).MatchString(filters) {
		out += formatCommand([]string{"tc", "filter", "add", "dev", bridge, "prio", "2", "protocol", "ip", "parent", "1:",
			"u32", "match", "ip", "dport", "68", "ffff", "action", "csum", "ip", "and", "udp"}, true)
	}
	return out
}

// groupLibvirt adds the commands of a libvirt command log that key selects
// to groups, in file order.
func groupLibvirt(t *testing.T, groups map[string][]string, log string, key func(argv []string) (string, bool)) {
	t.Helper()
	for _, argv := range libvirtCommands(t, log) {
		if k, ok := key(argv); ok {
			groups[k] = append(groups[k], formatCommand(argv, true))
		}
	}
}

// compareGroups compares two sets of command groups as one text each, the
// groups in name order.
func compareGroups(t *testing.T, want, got map[string][]string) {
	t.Helper()
	text := func(g map[string][]string) string {
		var keys []string
		for k := range g {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString("# " + k + "\n" + strings.Join(g[k], ""))
		}
		return b.String()
	}
	if w, g := text(want), text(got); w != g {
		t.Errorf("read back from the kernel, mapped to libvirt's layout, differs\n%s", lineDiff(w, g))
	}
}

// libvirtCommands splits a libvirt command log (the format of libvirt's
// firewall test data: arguments shell-quoted, continued lines ending in
// " \") into argument lists, and checks that formatCommand writes them back
// byte for byte, so that comparing formatted commands compares the files.
func libvirtCommands(t *testing.T, log string) [][]string {
	t.Helper()
	var out [][]string
	var back strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(strings.ReplaceAll(log, " \\\n", " "), "\n"), "\n") {
		if line == "" {
			continue
		}
		argv, err := shellSplit(line)
		if err != nil {
			t.Fatalf("libvirt command %q: %v", line, err)
		}
		out = append(out, argv)
		back.WriteString(formatCommand(argv, true))
	}
	if back.String() != log {
		t.Fatalf("libvirt's command log does not round-trip through formatCommand\n%s", lineDiff(log, back.String()))
	}
	return out
}

// shellSplit splits a command line quoted by shellQuote.
func shellSplit(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case in && c == '\'':
			in = false
		case in:
			cur.WriteByte(c)
		case c == '\'':
			in, quoted = true, true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == ' ':
			if cur.Len() > 0 || quoted {
				out = append(out, cur.String())
			}
			cur.Reset()
			quoted = false
		default:
			cur.WriteByte(c)
		}
	}
	if in {
		return nil, io.ErrUnexpectedEOF
	}
	if cur.Len() > 0 || quoted {
		out = append(out, cur.String())
	}
	return out, nil
}

// formatCommand writes argv (program first) the way libvirt's test harness
// logs a command: arguments shell-quoted when needed and, with breaks, each
// on its own line behind " \" except an option's value, which stays on the
// option's line. Without breaks the command is one line. The result ends in
// a newline.
func formatCommand(argv []string, breaks bool) string {
	var b strings.Builder
	b.WriteString(argv[0])
	args := argv[1:]
	seenOpt := false
	for i, a := range args {
		b.WriteByte(' ')
		if breaks {
			join := false
			if !isOpt(a) && seenOpt {
				if i > 0 && isOpt(args[i-1]) {
					join = true
				}
				for _, later := range args[i+1:] {
					if isOpt(later) {
						join = true
						break
					}
				}
			}
			if !join {
				b.WriteString("\\\n")
			}
		}
		if isOpt(a) {
			seenOpt = true
		}
		b.WriteString(shellQuote(a))
	}
	b.WriteByte('\n')
	return b.String()
}

func isOpt(s string) bool { return strings.HasPrefix(s, "-") }

// shellQuote returns s, single-quoted when it is empty or holds a character a
// shell would interpret.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, "\r\t\n !\"#$&'()*;<>?[\\]^`{|}~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lineDiff shows the first differing line of two texts with some context.
func lineDiff(want, got string) string {
	w := strings.Split(want, "\n")
	g := strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl +
				"\n--- got (full) ---\n" + got
		}
	}
	return "(no line differs)"
}
