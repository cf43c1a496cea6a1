package doctor

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// ReadLegacy reads the legacy (x_tables) iptables rules of the calling
// process's network namespace with iptables-legacy-save and
// ip6tables-legacy-save, when those are installed and the kernel has legacy
// tables in use (/proc/net/ip_tables_names): such rules filter packets next
// to nftables' and are invisible to nft.
func ReadLegacy() ([]*Table, error) {
	var out []*Table
	for _, f := range []struct{ names, cmd, family string }{
		{"/proc/net/ip_tables_names", "iptables-legacy-save", "ip"},
		{"/proc/net/ip6_tables_names", "ip6tables-legacy-save", "ip6"},
	} {
		names, err := os.ReadFile(f.names)
		if err != nil || strings.TrimSpace(string(names)) == "" {
			continue
		}
		path, err := exec.LookPath(f.cmd)
		if err != nil {
			continue
		}
		text, err := exec.Command(path).Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.cmd, err)
		}
		ts, err := ParseIptablesSave(string(text), f.family)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.cmd, err)
		}
		out = append(out, ts...)
	}
	return out, nil
}

// builtinHooks maps an iptables table's built-in chains to the hooks we check.
var builtinHooks = map[string]map[string]Hook{
	"filter": {"INPUT": HookInput, "FORWARD": HookForward},
	"mangle": {"INPUT": HookInput, "FORWARD": HookForward, "POSTROUTING": HookPostrouting},
	"nat":    {"INPUT": HookInput, "POSTROUTING": HookPostrouting},
}

// chainPriorities are iptables' table priorities (NF_IP_PRI_*).
var chainPriorities = map[string]int{"raw": -300, "mangle": -150, "nat": 100, "filter": 0, "security": 50}

// ParseIptablesSave reads iptables-save's output into legacy tables.
func ParseIptablesSave(text, family string) ([]*Table, error) {
	var out []*Table
	var t *Table
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			t = &Table{Source: SourceLegacy, Family: family, Name: line[1:], Chains: map[string]*Chain{}}
			out = append(out, t)
		case line == "COMMIT":
			t = nil
		case t == nil:
			return nil, fmt.Errorf("line %d: %q outside a table", i+1, line)
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("line %d: bad chain %q", i+1, line)
			}
			c := &Chain{Name: f[0], Policy: VerdictAccept, Type: "filter", Priority: chainPriorities[t.Name]}
			if t.Name == "nat" {
				c.Type = "nat"
			}
			if h, ok := builtinHooks[t.Name][f[0]]; ok {
				c.Base, c.Hook = true, h
			}
			if f[1] == "DROP" {
				c.Policy = VerdictDrop
			}
			t.Chains[c.Name] = c
		case strings.HasPrefix(line, "-A "):
			args := splitArgs(line)
			c := t.Chains[args[1]]
			if c == nil {
				return nil, fmt.Errorf("line %d: rule for unknown chain %q", i+1, args[1])
			}
			c.Rules = append(c.Rules, parseLegacyRule(line, args[2:]))
		}
	}
	return out, nil
}

// splitArgs splits an iptables-save line, honouring double quotes.
func splitArgs(line string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == '\\' && inQ && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case ch == '"':
			inQ, have = !inQ, true
		case ch == ' ' && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// cond is one condition of a legacy rule.
type cond func(p *Packet) bool

// parseLegacyRule models a rule's matches; an option it does not know makes
// the rule unknown (it never matches).
func parseLegacyRule(line string, args []string) Rule {
	r := Rule{Text: line}
	var conds []cond
	unknown := false
	proto := -1
	for i := 0; i < len(args); i++ {
		neg := false
		if args[i] == "!" {
			neg = true
			i++
			if i >= len(args) {
				break
			}
		}
		opt := args[i]
		val := ""
		if i+1 < len(args) {
			val = args[i+1]
		}
		var c cond
		switch opt {
		case "-i", "--in-interface", "-o", "--out-interface":
			out := opt == "-o" || opt == "--out-interface"
			name := val
			c = func(p *Packet) bool {
				dev := p.IIf
				if out {
					dev = p.OIf
				}
				if n, ok := strings.CutSuffix(name, "+"); ok {
					return strings.HasPrefix(dev, n)
				}
				return dev == name
			}
			i++
		case "-s", "--source", "-d", "--destination":
			dst := opt == "-d" || opt == "--destination"
			pfx, err := parsePrefix(val)
			if err != nil {
				unknown = true
			}
			c = func(p *Packet) bool {
				a := p.Src
				if dst {
					a = p.Dst
				}
				return pfx.Contains(a)
			}
			i++
		case "-p", "--protocol":
			n, ok := protoNumber(val)
			if !ok {
				unknown = true
			}
			proto = n
			c = func(p *Packet) bool { return n == 0 || int(p.Proto) == n }
			i++
		case "-m", "--match":
			switch val {
			case "udp", "tcp", "conntrack", "state", "comment", "multiport":
			default:
				unknown = true
			}
			i++
			continue
		case "--dport", "--destination-port", "--sport", "--source-port", "--dports", "--sports":
			dst := strings.HasPrefix(opt, "--d")
			lists, ok := parsePorts(val)
			if !ok || proto < 0 {
				unknown = true
			}
			c = func(p *Packet) bool {
				v := p.SPort
				if dst {
					v = p.DPort
				}
				for _, r := range lists {
					if v >= r[0] && v <= r[1] {
						return true
					}
				}
				return false
			}
			i++
		case "--ctstate", "--state":
			var mask uint32
			for _, s := range strings.Split(val, ",") {
				switch s {
				case "NEW":
					mask |= CtNew
				case "ESTABLISHED":
					mask |= CtEstablished
				case "RELATED":
					mask |= CtRelated
				case "INVALID":
					mask |= CtInvalid
				case "UNTRACKED":
					mask |= CtUntracked
				default:
					unknown = true
				}
			}
			c = func(p *Packet) bool { return p.CtState&mask != 0 }
			i++
		case "--comment":
			i++
			continue
		case "-j", "--jump", "-g", "--goto":
			switch val {
			case "ACCEPT", "MASQUERADE", "SNAT", "DNAT":
				r.Verdict = VerdictAccept
			case "DROP", "REJECT":
				r.Verdict = VerdictDrop
			case "RETURN":
				r.Verdict = VerdictReturn
			case "LOG", "MARK", "CONNMARK", "TCPMSS", "CHECKSUM", "NFLOG":
			default:
				// A user chain; an extension target of no chain is skipped
				// at evaluation (evalChain finds no chain of that name).
				r.Verdict, r.Target = VerdictJump, val
				if opt == "-g" || opt == "--goto" {
					r.Verdict = VerdictGoto
				}
			}
			// The target's own options follow; they change no match.
			i = len(args)
			continue
		default:
			unknown = true
			i++
			continue
		}
		if neg {
			inner := c
			c = func(p *Packet) bool { return !inner(p) }
		}
		conds = append(conds, c)
	}
	r.Match = func(p *Packet) (bool, bool) {
		if unknown {
			return false, false
		}
		for _, c := range conds {
			if !c(p) {
				return false, true
			}
		}
		return true, true
	}
	return r
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func protoNumber(s string) (int, bool) {
	switch s {
	case "all":
		return 0, true
	case "tcp":
		return protoTCP, true
	case "udp":
		return protoUDP, true
	case "icmp":
		return protoICMP, true
	case "ipv6-icmp", "icmpv6":
		return protoICMPv6, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// parsePorts reads "53", "1000:2000" or "53,67,1000:2000".
func parsePorts(s string) ([][2]uint16, bool) {
	var out [][2]uint16
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, false
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, false
			}
		}
		out = append(out, [2]uint16{uint16(a), uint16(b)})
	}
	return out, true
}
