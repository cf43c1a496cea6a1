package ifindex

import (
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestByName: the loopback's index is the kernel's (only read, nothing is
// changed), a missing link is ENODEV and a name too long for the kernel is
// refused.
func TestByName(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	if idx, err := ByName("lo"); err != nil || idx != lo.Index {
		t.Errorf("ByName(lo) = %d, %v; want %d", idx, err, lo.Index)
	}
	if _, err := ByName("vnt-nosuchlink"); !errors.Is(err, unix.ENODEV) {
		t.Errorf("missing link: err = %v; want ENODEV", err)
	}
	if _, err := ByName("a-name-longer-than-15"); err == nil {
		t.Error("a name longer than IFNAMSIZ was accepted")
	}
}

// TestName: the loopback's name is found by its index, a missing index is
// ENODEV.
func TestName(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	if name, err := Name(lo.Index); err != nil || name != "lo" {
		t.Errorf("Name(%d) = %q, %v; want lo", lo.Index, name, err)
	}
	if _, err := Name(1 << 30); !errors.Is(err, unix.ENODEV) {
		t.Errorf("missing index: err = %v; want ENODEV", err)
	}
}
