package dnsmasq

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseLeases(t *testing.T) {
	in := "1795353736 52:54:00:12:34:01 192.168.122.244 vm 01:52:54:00:12:34:01\n" +
		"0 52:54:00:12:34:02 192.168.122.245 * *\n" +
		"duid 00:01:00:01:2c:00:00:01:52:54:00:00:00:01\n" +
		"1795353736 T12345 fd00::10 vm6 00:03:00:01:52:54:00:00:00:02\n" +
		"1795353736 7 fd00::11 * 00:01:00:01:2c:00:00:01:52:54:00:00:00:03\n" +
		"1795353736 8 fd00::12 * 00:02:00:00:ab:11:01:02\n"
	got, err := ParseLeases(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Lease{
		{Expiry: time.Unix(1795353736, 0), MAC: "52:54:00:12:34:01", IP: netip.MustParseAddr("192.168.122.244"), Hostname: "vm", ClientID: "01:52:54:00:12:34:01"},
		{MAC: "52:54:00:12:34:02", IP: netip.MustParseAddr("192.168.122.245")},
		{Expiry: time.Unix(1795353736, 0), MAC: "52:54:00:00:00:02", IAID: "T12345", IP: netip.MustParseAddr("fd00::10"), Hostname: "vm6", ClientID: "00:03:00:01:52:54:00:00:00:02"},
		{Expiry: time.Unix(1795353736, 0), MAC: "52:54:00:00:00:03", IAID: "7", IP: netip.MustParseAddr("fd00::11"), ClientID: "00:01:00:01:2c:00:00:01:52:54:00:00:00:03"},
		{Expiry: time.Unix(1795353736, 0), IAID: "8", IP: netip.MustParseAddr("fd00::12"), ClientID: "00:02:00:00:ab:11:01:02"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d leases: %+v", len(got), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("lease %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := ParseLeases(strings.NewReader("x y\n")); err == nil {
		t.Error("bad line accepted")
	}
}
