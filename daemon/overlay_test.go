package daemon

import "testing"

func TestDHCPSlice(t *testing.T) {
	for _, tc := range []struct {
		start, end   string
		index, count int
		want         string
	}{
		{"10.0.0.10", "10.0.0.249", 0, 3, "10.0.0.10-10.0.0.89"},
		{"10.0.0.10", "10.0.0.249", 1, 3, "10.0.0.90-10.0.0.169"},
		{"10.0.0.10", "10.0.0.249", 2, 3, "10.0.0.170-10.0.0.249"},
		{"10.0.0.2", "10.0.0.254", 1, 2, "10.0.0.128-10.0.0.254"}, // the last takes the remainder
		{"10.0.0.2", "10.0.0.254", 0, 1, "10.0.0.2-10.0.0.254"},
		{"10.0.0.255", "10.0.1.4", 1, 2, "10.0.1.2-10.0.1.4"},
		{"fd00::10", "fd00::ff", 1, 2, "fd00::88-fd00::ff"},
	} {
		a, b, err := dhcpSlice(tc.start, tc.end, tc.index, tc.count)
		if err != nil || a+"-"+b != tc.want {
			t.Errorf("%s-%s %d/%d = %s-%s, %v; want %s", tc.start, tc.end, tc.index, tc.count, a, b, err, tc.want)
		}
	}
	if _, _, err := dhcpSlice("10.0.0.2", "10.0.0.3", 0, 3); err == nil || err.Error() != "2 addresses cannot be split between 3 hosts" {
		t.Errorf("too small a range: %v", err)
	}
}
