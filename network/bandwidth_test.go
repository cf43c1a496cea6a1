package network

import (
	"errors"
	"net"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

func u(v uint) *uint { return &v }

func rate(avg, peak, burst, floor uint) *libvirtxml.NetworkBandwidthParams {
	r := &libvirtxml.NetworkBandwidthParams{}
	for _, f := range []struct {
		v   uint
		dst **uint
	}{{avg, &r.Average}, {peak, &r.Peak}, {burst, &r.Burst}, {floor, &r.Floor}} {
		if f.v > 0 {
			*f.dst = u(f.v)
		}
	}
	return r
}

// scratch returns the commands a start runs on a link without tc state.
func scratch(t *testing.T, link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions) []string {
	t.Helper()
	s, err := desiredTC(link, bw, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, st := range s.plan(&liveTC{}, 0) {
		out = append(out, st.Cmd)
	}
	return out
}

func sameLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands differ:\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The commands are libvirt's (virNetDevBandwidthSet with hierarchical and
// swapped set, as networkStartNetworkVirtual calls it), minus its leading
// "qdisc del root/ingress" on a link that has neither.
func TestBandwidthNetworkCommands(t *testing.T) {
	bw := &libvirtxml.NetworkBandwidth{Inbound: rate(1000, 2000, 256, 0), Outbound: rate(500, 0, 128, 0)}
	sameLines(t, scratch(t, "virbr9", bw, NetworkBandwidthOptions(nil)), []string{
		"tc qdisc add dev virbr9 root handle 1: htb default 2",
		"tc class add dev virbr9 parent 1: classid 1:1 htb rate 1000kbps ceil 2000kbps quantum 85",
		"tc class add dev virbr9 parent 1:1 classid 1:2 htb rate 1000kbps ceil 2000kbps burst 256kb quantum 85",
		"tc qdisc add dev virbr9 parent 1:2 handle 2: sfq perturb 10",
		"tc filter add dev virbr9 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
		"tc qdisc add dev virbr9 ingress",
		"tc filter add dev virbr9 parent ffff: protocol all u32 match u32 0 0 police rate 500kbps burst 128kb mtu 64kb drop flowid :1",
	})
	// Without peak the 1:1 ceil is the average and the leaf has no ceil;
	// without burst the police burst defaults to the average in kb.
	bw = &libvirtxml.NetworkBandwidth{Inbound: rate(100, 0, 0, 0), Outbound: rate(7, 0, 0, 0)}
	sameLines(t, scratch(t, "br", bw, NetworkBandwidthOptions(nil)), []string{
		"tc qdisc add dev br root handle 1: htb default 2",
		"tc class add dev br parent 1: classid 1:1 htb rate 100kbps ceil 100kbps quantum 8",
		"tc class add dev br parent 1:1 classid 1:2 htb rate 100kbps quantum 8",
		"tc qdisc add dev br parent 1:2 handle 2: sfq perturb 10",
		"tc filter add dev br parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
		"tc qdisc add dev br ingress",
		"tc filter add dev br parent ffff: protocol all u32 match u32 0 0 police rate 7kbps burst 7kb mtu 64kb drop flowid :1",
	})
}

// A guest's TAP: flat (class 1:1, default 1), swapped: the port's inbound
// shapes what the host sends into the TAP, its outbound is policed.
func TestBandwidthPortCommands(t *testing.T) {
	bw := &libvirtxml.NetworkBandwidth{Inbound: rate(2000, 4000, 512, 0), Outbound: rate(1000, 0, 0, 0)}
	sameLines(t, scratch(t, "vnet0", bw, PortBandwidthOptions()), []string{
		"tc qdisc add dev vnet0 root handle 1: htb default 1",
		"tc class add dev vnet0 parent 1: classid 1:1 htb rate 2000kbps ceil 4000kbps burst 512kb quantum 170",
		"tc qdisc add dev vnet0 parent 1:1 handle 2: sfq perturb 10",
		"tc filter add dev vnet0 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
		"tc qdisc add dev vnet0 ingress",
		"tc filter add dev vnet0 parent ffff: protocol all u32 match u32 0 0 police rate 1000kbps burst 1000kb mtu 64kb drop flowid :1",
	})
	// Only outbound: nothing on the egress side.
	sameLines(t, scratch(t, "vnet0", &libvirtxml.NetworkBandwidth{Outbound: rate(10, 0, 0, 0)}, PortBandwidthOptions()), []string{
		"tc qdisc add dev vnet0 ingress",
		"tc filter add dev vnet0 parent ffff: protocol all u32 match u32 0 0 police rate 10kbps burst 10kb mtu 64kb drop flowid :1",
	})
	// Not swapped (libvirt's direct/ethernet interfaces): inbound is policed.
	sameLines(t, scratch(t, "mv0", &libvirtxml.NetworkBandwidth{Inbound: rate(10, 0, 0, 0)}, BandwidthOptions{}), []string{
		"tc qdisc add dev mv0 ingress",
		"tc filter add dev mv0 parent ffff: protocol all u32 match u32 0 0 police rate 10kbps burst 10kb mtu 64kb drop flowid :1",
	})
}

// Floors: virNetDevBandwidthPlug's class, sfq and u32 filter, and 1:2 at
// (peak|average) - floor sum (networkPlugBandwidth's "class change").
func TestBandwidthFloorCommands(t *testing.T) {
	mac1, _ := net.ParseMAC("52:54:00:12:34:56")
	mac2, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	bw := &libvirtxml.NetworkBandwidth{Inbound: rate(1000, 2000, 0, 0)}
	floors := []FloorPort{{ClassID: 10, MAC: mac2, Floor: 200, Average: 3000}, {ClassID: 3, MAC: mac1, Floor: 300}}
	sameLines(t, scratch(t, "virbr9", bw, NetworkBandwidthOptions(floors)), []string{
		"tc qdisc add dev virbr9 root handle 1: htb default 2",
		"tc class add dev virbr9 parent 1: classid 1:1 htb rate 1000kbps ceil 2000kbps quantum 85",
		"tc class add dev virbr9 parent 1:1 classid 1:2 htb rate 1500kbps ceil 2000kbps quantum 85",
		"tc class add dev virbr9 parent 1:1 classid 1:3 htb rate 300kbps ceil 2000kbps quantum 1",
		"tc class add dev virbr9 parent 1:1 classid 1:a htb rate 200kbps ceil 2000kbps quantum 256",
		"tc qdisc add dev virbr9 parent 1:2 handle 2: sfq perturb 10",
		"tc qdisc add dev virbr9 parent 1:3 handle 3: sfq perturb 10",
		"tc qdisc add dev virbr9 parent 1:a handle a: sfq perturb 10",
		"tc filter add dev virbr9 parent 1:0 protocol all prio 1 handle 1 fw flowid 1",
		"tc filter add dev virbr9 protocol ip prio 2 handle 800::803 u32 match u16 0x0800 0xffff at -2 match u32 0x00123456 0xffffffff at -12 match u16 0x5254 0xffff at -14 flowid 1:3",
		"tc filter add dev virbr9 protocol ip prio 2 handle 800::810 u32 match u16 0x0800 0xffff at -2 match u32 0x00abcdef 0xffffffff at -12 match u16 0x5254 0xffff at -14 flowid 1:a",
	})
	// tc reads "800::810" as hex: node 0x810.
	if h := floorHandle(10); h != 0x80000810 {
		t.Errorf("floorHandle(10) = %#x", h)
	}
	// Floors without inbound QoS on the network.
	if _, err := desiredTC("virbr9", &libvirtxml.NetworkBandwidth{Outbound: rate(1, 0, 0, 0)}, NetworkBandwidthOptions(floors)); err == nil ||
		err.Error() != "unsupported configuration: Bridge 'virbr9' has no QoS set, therefore unable to set 'floor' on '52:54:00:ab:cd:ef'" {
		t.Errorf("floor without inbound QoS: %v", err)
	}
}

func TestNextClassID(t *testing.T) {
	for _, c := range []struct {
		used []uint32
		want uint32
	}{{nil, 3}, {[]uint32{3, 4}, 5}, {[]uint32{4}, 3}, {[]uint32{3, 5}, 4}} {
		if got, err := NextClassID(c.used); err != nil || got != c.want {
			t.Errorf("NextClassID(%v) = %d, %v; want %d", c.used, got, err, c.want)
		}
	}
	var all []uint32
	for id := uint32(3); id <= maxFloorClass; id++ {
		all = append(all, id)
	}
	if _, err := NextClassID(all); err == nil || err.Error() != "internal error: Could not generate next class ID" {
		t.Errorf("full map: %v", err)
	}
}

func TestCheckFloor(t *testing.T) {
	withPeak := &libvirtxml.NetworkBandwidth{Inbound: rate(1000, 2000, 0, 0)}
	noPeak := &libvirtxml.NetworkBandwidth{Inbound: rate(1000, 0, 0, 0)}
	mac := "52:54:00:12:34:56"
	for _, c := range []struct {
		mode       string
		bw         *libvirtxml.NetworkBandwidth
		floor, sum uint64
		want       string
	}{
		{"nat", noPeak, 400, 600, ""},
		{"nat", noPeak, 401, 600, "Requested operation is not valid: Cannot plug '52:54:00:12:34:56' interface into 'virbr9' because new combined inbound floor=1001 would overcommit average=1000 on network 'n'"},
		{"route", withPeak, 1500, 500, ""},
		{"", withPeak, 1501, 500, "Requested operation is not valid: Cannot plug '52:54:00:12:34:56' interface into 'virbr9' because new combined inbound floor=2001 would overcommit peak=2000 on network 'n'"},
		{"open", nil, 1, 0, "Operation not supported: Invalid use of 'floor' on interface with MAC address 52:54:00:12:34:56 - network 'n' has no inbound QoS set"},
		{"nat", &libvirtxml.NetworkBandwidth{Outbound: rate(5, 0, 0, 0)}, 1, 0, "Operation not supported: Invalid use of 'floor' on interface with MAC address 52:54:00:12:34:56 - network 'n' has no inbound QoS set"},
		{"bridge", noPeak, 1, 0, "Operation not supported: Invalid use of 'floor' on interface with MAC address 52:54:00:12:34:56 - 'floor' is only supported for interface type 'network' with forward type 'nat', 'route', 'open' or none"},
		{"bridge", nil, 0, 0, ""},
	} {
		err := CheckFloor("n", "virbr9", c.mode, c.bw, mac, c.floor, c.sum)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("CheckFloor(%s, floor %d, sum %d) = %q, want %q", c.mode, c.floor, c.sum, got, c.want)
		}
	}
}

func TestCheckBandwidth(t *testing.T) {
	for _, c := range []struct {
		bw   *libvirtxml.NetworkBandwidth
		want string
	}{
		{&libvirtxml.NetworkBandwidth{Inbound: rate(1000000, 2000000, 4194303, 0)}, ""},
		{&libvirtxml.NetworkBandwidth{Outbound: rate(4294967, 0, 0, 0)}, ""},
		{&libvirtxml.NetworkBandwidth{Outbound: rate(4294968, 0, 0, 0)}, "unsupported configuration: bandwidth outbound average='4294968' on 'virbr9' is out of range: the kernel's police rate is at most 4294967 kbps"},
		{&libvirtxml.NetworkBandwidth{Inbound: rate(1000, 0, 4194304, 0)}, "unsupported configuration: bandwidth inbound burst='4194304' on 'virbr9' is out of range: at most 4194303 kb (a 32-bit byte count)"},
		{&libvirtxml.NetworkBandwidth{Inbound: rate(1000, 500, 0, 0)}, ""}, // libvirt and tc accept a peak below the average
		{&libvirtxml.NetworkBandwidth{Inbound: rate(1, 0, 4194303, 0)}, "unsupported configuration: bandwidth inbound burst='4194303' on 'virbr9' is out of range: sending it at average='1' takes longer than the kernel can store"},
	} {
		err := CheckBandwidth("virbr9", c.bw)
		got := ""
		if err != nil {
			got = err.Error()
			if netxml.KindOf(err) != netxml.KindUnsupported {
				t.Errorf("%v: kind %v", err, netxml.KindOf(err))
			}
		}
		if got != c.want {
			t.Errorf("CheckBandwidth = %q, want %q", got, c.want)
		}
	}
}

func TestUnsupportedKernelError(t *testing.T) {
	var err error = &UnsupportedKernelError{Link: "virbr9", Missing: []string{featSFQ, featFW, featPolice}}
	if got, want := err.Error(), "unsupported configuration: bandwidth on 'virbr9': not supported by this kernel: sch_sfq, cls_fw, act_police"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var ue *UnsupportedKernelError
	if !errors.As(err, &ue) || netxml.KindOf(err) != netxml.KindUnsupported {
		t.Errorf("not typed: %v", err)
	}
}

func TestQuantum(t *testing.T) {
	for avg, want := range map[uint64]uint32{0: 1, 1: 1, 11: 1, 12: 1, 100: 8, 1000: 85, 2000: 170} {
		if got := quantum(avg); got != want {
			t.Errorf("quantum(%d) = %d, want %d", avg, got, want)
		}
	}
}
