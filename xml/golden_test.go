package netxml

import (
	"strconv"
	"testing"

	"vnet/internal/testdata"
)

// TestXML2XML replays libvirt's networkxml2xmltest: parse each input, then
// either expect the parse to fail or format and compare byte for byte.
func TestXML2XML(t *testing.T) {
	dir, cases := testdata.Cases(t, "xml2xml-cases.tsv")
	var skips testdata.Skips
	for _, c := range cases {
		t.Run(c["name"], func(t *testing.T) {
			input := testdata.Read(t, dir, c["input"])
			n, err := Parse(input)
			if c["expect"] == "parse-fail" {
				if err == nil {
					t.Fatalf("Parse succeeded, want failure")
				}
				t.Logf("error (as expected): %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var flags Flags
			if c["flags"] != "-" {
				f, err := strconv.ParseUint(c["flags"], 10, 32)
				if err != nil {
					t.Fatalf("bad flags %q", c["flags"])
				}
				flags = Flags(f) & Inactive
			}
			got, err := Format(n, flags)
			if err != nil {
				t.Fatalf("Format: %v", err)
			}
			want := string(testdata.Read(t, dir, c["expected"]))
			if got != want {
				t.Errorf("Format mismatch\n--- got\n%s--- want\n%s", got, want)
			}
			// The output must be a fixed point: parse + format again.
			n2, err := Parse([]byte(got))
			if err != nil {
				t.Fatalf("re-Parse of output: %v", err)
			}
			got2, err := Format(n2, flags)
			if err != nil || got2 != got {
				t.Errorf("output is not a fixed point (err %v)\n%s", err, got2)
			}
		})
	}
	skips.Report(t, len(cases))
}
