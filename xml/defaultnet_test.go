package netxml

import (
	"strings"
	"testing"
)

// TestDefaultNetworkAt: the moved default network differs from the embedded
// one only in its subnet and its bridge name template.
func TestDefaultNetworkAt(t *testing.T) {
	if got := strings.Replace(DefaultNetworkAt(122), "virbr%d", "virbr0", 1); got != DefaultNetworkXML {
		t.Errorf("DefaultNetworkAt(122) with virbr0 =\n%s\nwant\n%s", got, DefaultNetworkXML)
	}
	n, err := Parse([]byte(DefaultNetworkAt(123)))
	if err != nil {
		t.Fatal(err)
	}
	taken := func(name string) bool { return name == "virbr0" }
	if err := FillDefaults(n, taken); err != nil {
		t.Fatal(err)
	}
	if err := Validate(n); err != nil {
		t.Fatal(err)
	}
	out, err := Format(n, Inactive)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<bridge name='virbr1' stp='off' delay='0'/>",
		"<ip address='192.168.123.1' netmask='255.255.255.0'>",
		"<range start='192.168.123.2' end='192.168.123.254'/>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "192.168.122.") {
		t.Errorf("still mentions 122:\n%s", out)
	}
}
