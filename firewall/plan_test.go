package firewall

import (
	"strconv"
	"strings"
	"testing"

	"vnet/internal/testdata"
	netxml "vnet/xml"
)

// TestLibvirtGolden renders every network of libvirt's firewall test table in
// libvirt's command layout and compares it byte for byte with libvirt's
// expected command log.
func TestLibvirtGolden(t *testing.T) {
	dir, cases := testdata.Cases(t, "firewall-cases.tsv")
	var skips testdata.Skips
	// Each name has one line per backend: one subtest per name, one nested
	// subtest per backend.
	var names []string
	byName := map[string][]testdata.Case{}
	for _, c := range cases {
		if byName[c["name"]] == nil {
			names = append(names, c["name"])
		}
		byName[c["name"]] = append(byName[c["name"]], c)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			for _, c := range byName[name] {
				t.Run(c["backend"], func(t *testing.T) {
					var render func(*Plan) string
					switch c["backend"] {
					case "nftables":
						render = renderLibvirtNft
					case "iptables":
						render = renderLibvirtIptables
					default:
						skips.Skip(t, "unknown backend "+c["backend"])
					}
					n, err := netxml.Parse(testdata.Read(t, dir, c["input"]))
					if err != nil {
						t.Fatalf("parse %s: %v", c["input"], err)
					}
					p, err := PlanFor(n)
					if err != nil {
						t.Fatalf("plan: %v", err)
					}
					got := render(p)
					want := string(testdata.Read(t, dir, c["expected"]))
					if got != want {
						t.Errorf("%s: rendered commands differ\n%s", c["expected"], lineDiff(want, got))
					}
				})
			}
		})
	}
	skips.Report(t, len(cases))
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
