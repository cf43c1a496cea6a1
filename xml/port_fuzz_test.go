package netxml

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vnet/internal/testdata"
)

// FuzzPortParseFormat checks that ParsePort never panics and that whatever it
// accepts formats to a fixed point (parse → format → parse → format gives the
// same text), so no value can inject markup into the formatted document.
// Seeded with libvirt's port test data and vnet's TAP extension.
func FuzzPortParseFormat(f *testing.F) {
	dir := testdata.Dir(f)
	files, _ := filepath.Glob(filepath.Join(dir, "virnetworkportxml2xmldata", "*.xml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='vnet0' user='a&apos;b' group='&lt;g&gt;' queues='2'/><group>x&amp;y</group>`, 1)))
	f.Add([]byte(strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='tap0' adopt='yes'/>`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePort(data)
		if err != nil {
			return
		}
		out, err := FormatPort(p)
		if err != nil {
			t.Fatalf("FormatPort: %v", err)
		}
		p2, err := ParsePort([]byte(out))
		if err != nil {
			t.Fatalf("formatted output does not parse: %v\ninput:\n%q\noutput:\n%s", err, data, out)
		}
		out2, err := FormatPort(p2)
		if err != nil || out2 != out {
			t.Fatalf("format is not a fixed point (err %v)\ninput:\n%q\nfirst:\n%s\nsecond:\n%s", err, data, out, out2)
		}
		if (p.TAP == nil) != (p2.TAP == nil) || (p.TAP != nil && *p.TAP != *p2.TAP) {
			t.Fatalf("TAP changed over a round trip: %+v vs %+v", p.TAP, p2.TAP)
		}
	})
}
