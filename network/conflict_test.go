package network

import (
	"context"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

func TestCheckHostConflicts(t *testing.T) {
	ns := netnstest.New(t, "cfl")
	plainLink(t, ns, "up0")
	mustRun(t, ns, "ip", "addr", "add", "10.60.0.1/24", "dev", "up0")
	mustRun(t, ns, "ip", "addr", "add", "fd00:60::1/64", "dev", "up0")
	mustRun(t, ns, "ip", "link", "set", "up0", "up")
	mustRun(t, ns, "ip", "link", "set", "pup0", "up")
	mustRun(t, ns, "ip", "route", "add", "default", "via", "10.60.0.254")
	mustRun(t, ns, "ip", "-6", "route", "add", "default", "via", "fd00:60::fe")
	mustRun(t, ns, "ip", "route", "add", "10.70.0.0/24", "via", "10.60.0.254")
	mustRun(t, ns, "ip", "route", "add", "blackhole", "10.90.0.0/16")
	// The bridge of network "own" already carries its address (daemon restart).
	do(t, ns, func() error {
		_, err := ensureBridge(&netxml.Network{Network: libvirtxml.Network{Name: "own",
			Bridge: &libvirtxml.NetworkBridge{Name: "vbr-own"},
			IPs:    []libvirtxml.NetworkIP{{Address: "10.62.0.1", Prefix: 24}}}})
		return err
	})

	const inUse = "internal error: Network is already in use by interface up0"
	cases := []struct {
		name string
		ips  []libvirtxml.NetworkIP
		want string // "" for no conflict
	}{
		{"same subnet", []libvirtxml.NetworkIP{{Address: "10.60.0.1", Prefix: 24}}, inUse},
		{"same subnet by netmask", []libvirtxml.NetworkIP{{Address: "10.60.0.1", Netmask: "255.255.255.0"}}, inUse},
		{"containing subnet", []libvirtxml.NetworkIP{{Address: "10.60.0.1", Prefix: 16}}, inUse},
		{"contained subnet", []libvirtxml.NetworkIP{{Address: "10.60.0.129", Prefix: 25}}, inUse},
		{"route via another interface", []libvirtxml.NetworkIP{{Address: "10.70.0.1", Prefix: 24}}, inUse},
		{"ipv6 subnet", []libvirtxml.NetworkIP{{Family: "ipv6", Address: "fd00:60::10", Prefix: 64}}, inUse},
		{"free subnet with default routes", []libvirtxml.NetworkIP{{Address: "10.61.0.1", Prefix: 24}}, ""},
		{"free ipv6 subnet, link-local routes ignored", []libvirtxml.NetworkIP{{Family: "ipv6", Address: "fd00:61::1", Prefix: 64}}, ""},
		{"blackhole route ignored", []libvirtxml.NetworkIP{{Address: "10.90.1.1", Prefix: 24}}, ""},
		{"own bridge ignored", []libvirtxml.NetworkIP{{Address: "10.62.0.1", Prefix: 24}}, ""},
		{"no addresses", nil, ""},
	}
	// The same cases through the event-fed index: same answers.
	idx := runIndex(t, ns)
	for _, c := range cases {
		for _, via := range []string{"dumps", "index"} {
			t.Run(c.name+"/"+via, func(t *testing.T) {
				n := &netxml.Network{Network: libvirtxml.Network{Name: "c",
					Bridge: &libvirtxml.NetworkBridge{Name: "vbr-own"}, IPs: c.ips}}
				err := ns.Do(func() error {
					if via == "index" {
						return idx.CheckHostConflicts(n)
					}
					return CheckHostConflicts(n)
				})
				switch {
				case c.want == "" && err != nil:
					t.Errorf("unexpected conflict: %v", err)
				case c.want != "" && (err == nil || err.Error() != c.want):
					t.Errorf("got %v, want %q", err, c.want)
				case c.want != "" && netxml.KindOf(err) != netxml.KindInternal:
					t.Errorf("kind %v, want KindInternal", netxml.KindOf(err))
				}
			})
		}
	}

	// The index follows changes: an address added to up0 conflicts at
	// once, and no longer once it is removed.
	n := &netxml.Network{Network: libvirtxml.Network{Name: "c", Bridge: &libvirtxml.NetworkBridge{Name: "vbr-c"},
		IPs: []libvirtxml.NetworkIP{{Address: "10.64.0.1", Prefix: 24}}}}
	check := func() error { return ns.Do(func() error { return idx.CheckHostConflicts(n) }) }
	if err := check(); err != nil {
		t.Fatalf("before: %v", err)
	}
	mustRun(t, ns, "ip", "addr", "add", "10.64.0.7/24", "dev", "up0")
	if !waitUntil(func() bool { return check() != nil }) {
		t.Error("an address added to up0 is not seen as a conflict")
	}
	mustRun(t, ns, "ip", "addr", "del", "10.64.0.7/24", "dev", "up0")
	if !waitUntil(func() bool { return check() == nil }) {
		t.Errorf("a removed address still conflicts: %v", check())
	}
}

// runIndex runs a HostIndex in ns until the test ends and waits until it
// has loaded.
func runIndex(t *testing.T, ns *netnstest.NS) *HostIndex {
	t.Helper()
	idx := NewHostIndex()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ns.Do(func() error { return idx.Run(ctx, nil) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	if !waitUntil(func() bool { idx.mu.Lock(); defer idx.mu.Unlock(); return idx.ready }) {
		t.Fatal("index not loaded")
	}
	return idx
}

func waitUntil(cond func() bool) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
