package netxml

import (
	"os"
	"path/filepath"
	"testing"

	"vnet/internal/testdata"
)

// FuzzParseFormat checks that Parse never panics and that whatever it
// accepts formats to a fixed point: parse → validate → format → parse →
// format gives the same text. Seeded with every network XML of libvirt's
// test data.
func FuzzParseFormat(f *testing.F) {
	dir := testdata.Dir(f)
	for _, sub := range []string{"networkxml2xmlin", "networkxml2xmlout", "networkxml2confdata", "networkxml2firewalldata", "networkxml2xmlupdateout"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*.xml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(DefaultNetworkXML))
	f.Add([]byte(""))
	f.Add([]byte("<network><name>x</name><metadata><a:b xmlns:a='urn:a' c='&quot;'>t<a:c/></a:b></metadata></network>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse(data)
		if err != nil {
			return
		}
		_ = Validate(n)
		for _, flags := range []Flags{0, Inactive} {
			out, err := Format(n, flags)
			if err != nil {
				return
			}
			n2, err := Parse([]byte(out))
			if err != nil {
				t.Fatalf("formatted output does not parse: %v\ninput:\n%q\noutput:\n%s", err, data, out)
			}
			out2, err := Format(n2, flags)
			if err != nil {
				t.Fatalf("second Format: %v", err)
			}
			if out2 != out {
				t.Fatalf("format is not a fixed point\ninput:\n%q\nfirst:\n%s\nsecond:\n%s", data, out, out2)
			}
			if c := n.Clone(); func() string { s, _ := Format(c, flags); return s }() != out {
				t.Fatalf("clone formats differently")
			}
		}
	})
}
