package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"libvirt.org/go/libvirtxml"

	"vnet/internal/netnstest"
)

// tcDump renders a link's qdiscs, classes and filters (1: and ffff:) in a
// canonical text, for comparing what we build with what tc builds.
func tcDump(t *testing.T, ns *netnstest.NS, link string) []string {
	t.Helper()
	var out []string
	err := ns.Do(func() error {
		h, err := newHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(link)
		if err != nil {
			return err
		}
		qs, err := h.QdiscList(l)
		if err != nil {
			return err
		}
		for _, q := range qs {
			a := q.Attrs()
			s := fmt.Sprintf("qdisc %s %s parent %s", q.Type(), handleText(a.Handle), handleText(a.Parent))
			switch q := q.(type) {
			case *netlink.Htb:
				s += fmt.Sprintf(" default %d r2q %d", q.Defcls, q.Rate2Quantum)
			case *netlink.Sfq:
				s += fmt.Sprintf(" perturb %d quantum %d limit %d divisor %d", q.Perturb, q.Quantum, q.Limit, q.Divisor)
			}
			if q.Type() == "noqueue" || q.Type() == "pfifo" {
				continue // the kernel's defaults
			}
			out = append(out, s)
		}
		cs, err := h.ClassList(l, rootHandle)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if hc, ok := c.(*netlink.HtbClass); ok {
				out = append(out, fmt.Sprintf("class htb %s parent %s rate %d ceil %d buffer %d cbuffer %d quantum %d prio %d",
					handleText(hc.Handle), handleText(hc.Parent), hc.Rate, hc.Ceil, hc.Buffer, hc.Cbuffer, hc.Quantum, hc.Prio))
			}
		}
		for _, parent := range []uint32{rootHandle, ingressHandle} {
			fs, err := h.FilterList(l, parent)
			if err != nil {
				return err
			}
			for _, f := range fs {
				a := f.Attrs()
				s := fmt.Sprintf("filter %s parent %s prio %d proto %#x handle %#x", f.Type(), handleText(a.Parent), a.Priority, a.Protocol, a.Handle)
				switch f := f.(type) {
				case *netlink.U32:
					s += fmt.Sprintf(" classid %#x", f.ClassId)
					if f.Sel != nil {
						s += fmt.Sprintf(" flags %d keys %v", f.Sel.Flags, f.Sel.Keys)
					}
					if p := f.Police; p != nil {
						s += fmt.Sprintf(" police rate %d burst %d mtu %d action %d", p.Rate, p.Burst, p.Mtu, p.ExceedAction)
					}
				case *netlink.FwFilter:
					s += fmt.Sprintf(" classid %#x mask %#x", f.ClassId, f.Mask)
				}
				out = append(out, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dump tc of %s: %v", link, err)
	}
	sort.Strings(out)
	return out
}

// needs reports the kernel feature a step's command needs beyond htb,
// ingress and u32 (which the tests require).
func stepNeeds(cmd string) string {
	switch {
	case strings.Contains(cmd, " sfq "):
		return featSFQ
	case strings.Contains(cmd, " fw "):
		return featFW
	case strings.Contains(cmd, " police ") || strings.Contains(cmd, " ingress"):
		// The ingress qdisc is there only for the police filter.
		return featPolice
	}
	return ""
}

// supportedSteps keeps the steps the kernel can do.
func supportedSteps(steps []tcStep, missing []string) []tcStep {
	var out []tcStep
	for _, s := range steps {
		if n := stepNeeds(s.Cmd); n == "" || !slices.Contains(missing, n) {
			out = append(out, s)
		}
	}
	return out
}

func kernelMissing(t *testing.T) []string {
	t.Helper()
	m, err := missingTCFeatures(allTCFeatures)
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{featHTB, featIngress, featU32} {
		if slices.Contains(m, base) {
			t.Skipf("kernel lacks %s", base)
		}
	}
	return m
}

func applySteps(t *testing.T, ns *netnstest.NS, steps []tcStep) {
	t.Helper()
	err := ns.Do(func() error {
		h, err := newHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		for _, s := range steps {
			if err := s.do(h); err != nil {
				return fmt.Errorf("%s: %w", s.Cmd, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runTC runs a step's command line with iproute2's tc on another link.
func runTC(t *testing.T, ns *netnstest.NS, cmd, from, to string) {
	t.Helper()
	args := strings.Fields(cmd)
	if args[0] != "tc" {
		t.Fatalf("not a tc command: %s", cmd)
	}
	for i, a := range args {
		if a == from {
			args[i] = to
		}
	}
	ns.MustRun(args...)
}

func plan(t *testing.T, ns *netnstest.NS, link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions) *BandwidthPlan {
	t.Helper()
	var p *BandwidthPlan
	err := ns.Do(func() (err error) {
		s, err := desiredTC(link, bw, opts)
		if err != nil {
			return err
		}
		h, err := newHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		l, err := h.LinkByName(link)
		if err != nil {
			return err
		}
		live, err := readLiveTC(h, l)
		if err != nil {
			return err
		}
		p = &BandwidthPlan{Link: link, Steps: s.plan(live, l.Attrs().Index)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testNetBW() (*libvirtxml.NetworkBandwidth, []FloorPort) {
	mac1, _ := net.ParseMAC("52:54:00:12:34:56")
	mac2, _ := net.ParseMAC("52:54:00:ab:cd:ef")
	bw := &libvirtxml.NetworkBandwidth{Inbound: rate(1000, 2000, 256, 0), Outbound: rate(500, 0, 128, 0)}
	return bw, []FloorPort{{ClassID: 3, MAC: mac1, Floor: 300}, {ClassID: 10, MAC: mac2, Floor: 200, Average: 3000}}
}

// What EnsureBandwidth builds equals what libvirt's tc commands build, object
// for object (qdiscs, htb classes with rates, buffers and quanta, u32 and fw
// filters, the police action). On a kernel without sfq, fw or police the
// comparison covers the rest; the full test needs them.
func TestBandwidthKernelMatchesTC(t *testing.T) {
	missing := kernelMissing(t)
	ns := netnstest.New(t, "bw")
	for _, br := range []string{"brvnet", "brtc"} {
		ns.MustRun("ip", "link", "add", br, "type", "bridge")
		ns.MustRun("ip", "link", "set", br, "up")
	}
	ns.MustRun("ip", "link", "add", "tapvnet", "type", "veth", "peer", "name", "taptc")
	bw, floors := testNetBW()
	portBW := &libvirtxml.NetworkBandwidth{Inbound: rate(2000, 4000, 512, 0), Outbound: rate(1000, 0, 0, 0)}
	for _, c := range []struct {
		ours, theirs string
		bw           *libvirtxml.NetworkBandwidth
		opts         BandwidthOptions
	}{
		{"brvnet", "brtc", bw, NetworkBandwidthOptions(floors)},
		{"tapvnet", "taptc", portBW, PortBandwidthOptions()},
	} {
		steps := supportedSteps(plan(t, ns, c.ours, c.bw, c.opts).Steps, missing)
		applySteps(t, ns, steps)
		for _, s := range steps {
			runTC(t, ns, s.Cmd, c.ours, c.theirs)
		}
		got, want := tcDump(t, ns, c.ours), tcDump(t, ns, c.theirs)
		if len(got) == 0 {
			t.Fatalf("%s: nothing built", c.ours)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s differs from tc's build:\nours:\n%s\ntc:\n%s", c.ours, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		t.Logf("%s (kernel lacks %v):\n%s", c.ours, missing, strings.Join(got, "\n"))
	}
}

// Reconciliation against the kernel: a second plan changes nothing, a
// deleted root qdisc or a changed class is found and repaired, unplugging a
// floor removes exactly its objects, removal leaves nothing. Steps the
// kernel cannot do are left out on a kernel without sfq, fw or police (and
// must then be all that a re-plan still asks for).
func TestBandwidthKernelReconcile(t *testing.T) {
	missing := kernelMissing(t)
	ns := netnstest.New(t, "bwr")
	ns.MustRun("ip", "link", "add", "virbr7", "type", "bridge")
	ns.MustRun("ip", "link", "set", "virbr7", "up")
	bw, floors := testNetBW()
	opts := NetworkBandwidthOptions(floors)
	ensure := func() {
		t.Helper()
		applySteps(t, ns, supportedSteps(plan(t, ns, "virbr7", bw, opts).Steps, missing))
	}
	// Only what the kernel cannot do is left.
	settled := func(what string) {
		t.Helper()
		for _, s := range plan(t, ns, "virbr7", bw, opts).Steps {
			if n := stepNeeds(s.Cmd); n == "" || !slices.Contains(missing, n) {
				t.Errorf("%s: plan still has %q (%s)", what, s.Cmd, s.Drift)
			}
		}
	}
	ensure()
	settled("after ensure")
	full := tcDump(t, ns, "virbr7")

	ns.MustRun("tc", "qdisc", "del", "dev", "virbr7", "root")
	p := plan(t, ns, "virbr7", bw, opts)
	if len(p.Steps) == 0 || p.Steps[0].Drift != "tc root qdisc htb 1: on virbr7 missing" {
		t.Fatalf("root deletion not seen: %v", p.Commands())
	}
	ensure()
	settled("after repair")
	if got := tcDump(t, ns, "virbr7"); strings.Join(got, "\n") != strings.Join(full, "\n") {
		t.Errorf("repair differs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(full, "\n"))
	}

	ns.MustRun("tc", "class", "change", "dev", "virbr7", "parent", "1:1", "classid", "1:2", "htb", "rate", "5kbps")
	p = &BandwidthPlan{Steps: supportedSteps(plan(t, ns, "virbr7", bw, opts).Steps, missing)}
	if cmds := p.Commands(); len(cmds) != 1 || cmds[0] != "tc class change dev virbr7 classid 1:2 htb rate 1500kbps ceil 2000kbps quantum 85" {
		t.Fatalf("class drift: %v", cmds)
	}
	ensure()
	settled("after class repair")

	// Unplug the floor of class 3: its filter and class go, 1:2 gets the rate back.
	opts = NetworkBandwidthOptions(floors[1:])
	cmds := supportedSteps(plan(t, ns, "virbr7", bw, opts).Steps, missing)
	var got []string
	for _, s := range cmds {
		got = append(got, s.Cmd)
	}
	want := []string{
		"tc filter del dev virbr7 prio 2 handle 800::803 u32",
		"tc class del dev virbr7 classid 1:3",
		"tc class change dev virbr7 classid 1:2 htb rate 1800kbps ceil 2000kbps quantum 85",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("unplug:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	applySteps(t, ns, cmds)
	settled("after unplug")

	// Removal leaves nothing (it needs no probe: run the real function).
	if err := ns.Do(func() error { return RemoveBandwidth("virbr7") }); err != nil {
		t.Fatal(err)
	}
	if d := tcDump(t, ns, "virbr7"); len(d) != 0 {
		t.Errorf("left after removal:\n%s", strings.Join(d, "\n"))
	}
	if err := ns.Do(func() error { return RemoveBandwidth("nosuchlink") }); err != nil {
		t.Errorf("remove on a missing link: %v", err)
	}
}

// Removal keeps the root qdisc when another part has a filter on it (the
// DHCP checksum fix shares htb 1: on a bridge).
func TestBandwidthKernelRemoveKeepsForeignFilter(t *testing.T) {
	kernelMissing(t)
	ns := netnstest.New(t, "bwf")
	ns.MustRun("ip", "link", "add", "virbr6", "type", "bridge")
	ns.MustRun("tc", "qdisc", "add", "dev", "virbr6", "root", "handle", "1:", "htb", "default", "2")
	ns.MustRun("tc", "class", "add", "dev", "virbr6", "parent", "1:", "classid", "1:1", "htb", "rate", "100kbps")
	ns.MustRun("tc", "class", "add", "dev", "virbr6", "parent", "1:1", "classid", "1:2", "htb", "rate", "100kbps")
	ns.MustRun("tc", "class", "add", "dev", "virbr6", "parent", "1:1", "classid", "1:3", "htb", "rate", "100kbps")
	ns.MustRun("tc", "filter", "add", "dev", "virbr6", "parent", "1:", "prio", "2", "protocol", "ip", "u32", "match", "ip", "dport", "68", "0xffff")
	ns.MustRun("tc", "filter", "add", "dev", "virbr6", "parent", "1:", "prio", "3", "protocol", "ip", "u32", "match", "ip", "dport", "67", "0xffff", "flowid", "1:3")
	if err := ns.Do(func() error { return RemoveBandwidth("virbr6") }); err != nil {
		t.Fatal(err)
	}
	d := strings.Join(tcDump(t, ns, "virbr6"), "\n")
	// 1:2 goes; 1:3 (a foreign filter's target) and its parent 1:1 stay.
	if !strings.Contains(d, "qdisc htb 1: parent ffff:ffff") || !strings.Contains(d, "filter u32") || strings.Contains(d, "class htb 1:2 ") ||
		!strings.Contains(d, "class htb 1:3 ") || !strings.Contains(d, "class htb 1:1 ") {
		t.Errorf("after removal:\n%s", d)
	}
}

// On a kernel without a needed part, Ensure fails before touching the link
// with the typed error naming exactly the missing parts (found with tc in
// another namespace, not with our probe).
func TestBandwidthKernelUnsupported(t *testing.T) {
	probe := netnstest.New(t, "bwp")
	probe.MustRun("ip", "link", "add", "p0", "type", "bridge")
	probe.MustRun("tc", "qdisc", "add", "dev", "p0", "root", "handle", "1:", "htb")
	probe.MustRun("tc", "class", "add", "dev", "p0", "parent", "1:", "classid", "1:1", "htb", "rate", "1kbps")
	probe.MustRun("tc", "qdisc", "add", "dev", "p0", "ingress")
	var lacks []string
	for _, c := range []struct {
		feat string
		argv []string
	}{
		{featSFQ, []string{"tc", "qdisc", "add", "dev", "p0", "parent", "1:1", "handle", "2:", "sfq", "perturb", "10"}},
		{featFW, []string{"tc", "filter", "add", "dev", "p0", "parent", "1:0", "protocol", "all", "prio", "1", "handle", "1", "fw", "flowid", "1"}},
		{featPolice, []string{"tc", "filter", "add", "dev", "p0", "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0", "police", "rate", "1kbps", "burst", "1kb", "mtu", "64kb", "drop", "flowid", ":1"}},
	} {
		if _, err := probe.Run(c.argv...); err != nil {
			lacks = append(lacks, c.feat)
		}
	}
	if len(lacks) == 0 {
		t.Skip("the kernel has every tc part <bandwidth> needs")
	}
	ns := netnstest.New(t, "bwu")
	ns.MustRun("ip", "link", "add", "virbr5", "type", "bridge")
	before := tcDump(t, ns, "virbr5")
	bw, floors := testNetBW()
	err := ns.Do(func() error {
		_, err := EnsureBandwidth("virbr5", bw, NetworkBandwidthOptions(floors))
		return err
	})
	var ue *UnsupportedKernelError
	if !errors.As(err, &ue) {
		t.Fatalf("want UnsupportedKernelError, got %v", err)
	}
	if strings.Join(ue.Missing, ",") != strings.Join(lacks, ",") {
		t.Errorf("missing %v, tc says %v", ue.Missing, lacks)
	}
	want := "unsupported configuration: bandwidth on 'virbr5': not supported by this kernel: " + strings.Join(lacks, ", ")
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if after := tcDump(t, ns, "virbr5"); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("link changed: %v -> %v", before, after)
	}
	// Verify reports the same error rather than a silent "in order".
	if err := ns.Do(func() error { _, err := VerifyBandwidth("virbr5", bw, NetworkBandwidthOptions(nil)); return err }); !errors.As(err, &ue) {
		t.Errorf("verify: %v", err)
	}
}

// The shaped rate holds: a TCP stream through a veth whose TAP-style
// bandwidth (inbound average 400 kbps = 400,000 bytes/s on the wire: tc reads kbps as 1000 bytes/s)
// is applied is within 20% of the cap.
func TestBandwidthKernelThroughput(t *testing.T) {
	missing := kernelMissing(t)
	a := netnstest.New(t, "bwa")
	b := netnstest.New(t, "bwb")
	netnstest.Veth(t, a, "vtap", b, "vguest")
	a.MustRun("ip", "addr", "add", "10.77.0.1/24", "dev", "vtap")
	b.MustRun("ip", "addr", "add", "10.77.0.2/24", "dev", "vguest")
	// An explicit burst of one second of traffic (what libvirt's police
	// filter gets by default): with tc's default (rate/HZ + MTU, about 5 ms)
	// a class whose vCPU is descheduled for longer, as in a TCG guest on a
	// busy host, loses the tokens of the pause and stays well under its rate.
	const avg, burst = 400, 400
	bw := &libvirtxml.NetworkBandwidth{Inbound: rate(avg, 0, burst, 0)}
	applySteps(t, a, supportedSteps(plan(t, a, "vtap", bw, PortBandwidthOptions()).Steps, missing))

	var ln net.Listener
	if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", "10.77.0.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		n   int64
		dur time.Duration
		err error
	}
	got := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- res{err: err}
			return
		}
		defer c.Close()
		// Skip the first half second (the bucket starts full), then count.
		warm := time.Now().Add(time.Second)
		buf := make([]byte, 64<<10)
		for time.Now().Before(warm) {
			if _, err := c.Read(buf); err != nil {
				got <- res{err: err}
				return
			}
		}
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		got <- res{n: n, dur: time.Since(start), err: err}
	}()
	var conn net.Conn
	if err := a.Do(func() (err error) { conn, err = net.Dial("tcp", ln.Addr().String()); return err }); err != nil {
		t.Fatal(err)
	}
	// The measurement lasts as long as the sender sends: 3 s.
	time.AfterFunc(5*time.Second, func() { conn.Close() })
	payload := make([]byte, 32<<10)
	for {
		if _, err := conn.Write(payload); err != nil {
			break
		}
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	bps := float64(r.n) / r.dur.Seconds()
	// Payload over the wire cap: TCP/IP/Ethernet headers take ~4% of each
	// full-size frame.
	capBps := float64(avg * bytesPerKbps)
	t.Logf("throughput %.0f bytes/s over %v, cap %.0f bytes/s (%.1f%%)", bps, r.dur.Round(time.Millisecond), capBps, 100*bps/capBps)
	if bps < 0.8*capBps || bps > 1.2*capBps {
		t.Errorf("throughput %.0f bytes/s not within 20%% of %.0f", bps, capBps)
	}
}

// Deleting the root qdisc or a class is reported by WatchTC with the link's
// name.
func TestWatchTC(t *testing.T) {
	kernelMissing(t)
	ns := netnstest.New(t, "bww")
	ns.MustRun("ip", "link", "add", "virbr4", "type", "bridge")
	ns.MustRun("tc", "qdisc", "add", "dev", "virbr4", "root", "handle", "1:", "htb")
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan string, 64)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			close(ready)
			return WatchTC(ctx, nil, func(link string) { events <- link })
		})
	}()
	<-ready
	// The subscription may lag "ready" by a moment: repeat the change until
	// an event arrives.
	deadline := time.After(5 * time.Second)
	for i := 0; ; i++ {
		ns.MustRun("tc", "class", "replace", "dev", "virbr4", "parent", "1:", "classid", "1:1", "htb", "rate", fmt.Sprintf("%dkbps", 100+i))
		select {
		case l := <-events:
			if l != "virbr4" {
				t.Fatalf("event for %q", l)
			}
		case <-time.After(100 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("no tc event")
		}
		break
	}
	ns.MustRun("tc", "qdisc", "del", "dev", "virbr4", "root")
	select {
	case l := <-events:
		if l != "virbr4" {
			t.Errorf("event for %q", l)
		}
	case <-deadline:
		t.Fatal("no event for the root qdisc deletion")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A link that does not exist yet (dry-run of a start) gets libvirt's full
// command list; the plan cannot be applied.
func TestPlanBandwidthMissingLink(t *testing.T) {
	missing := kernelMissing(t)
	ns := netnstest.New(t, "bwd")
	bw := &libvirtxml.NetworkBandwidth{Outbound: rate(10, 0, 0, 0)}
	var p *BandwidthPlan
	err := ns.Do(func() (err error) { p, err = PlanBandwidth("virbr3", bw, PortBandwidthOptions()); return err })
	if slices.Contains(missing, featPolice) {
		var ue *UnsupportedKernelError
		if !errors.As(err, &ue) {
			t.Fatalf("want UnsupportedKernelError, got %v", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, p.Commands(), []string{
		"tc qdisc add dev virbr3 ingress",
		"tc filter add dev virbr3 parent ffff: protocol all u32 match u32 0 0 police rate 10kbps burst 10kb mtu 64kb drop flowid :1",
	})
	if err := ns.Do(p.Apply); err == nil {
		t.Error("a plan for a missing link applied")
	}
	if err := ns.Do(p.Steps[0].Run); err == nil {
		t.Error("a step for a missing link ran")
	}
}

// A plan that fails midway on a link that had nothing of ours removes what it
// added.
func TestBandwidthKernelApplyUndo(t *testing.T) {
	missing := kernelMissing(t)
	ns := netnstest.New(t, "bwx")
	ns.MustRun("ip", "link", "add", "virbr8", "type", "bridge")
	bw, floors := testNetBW()
	p := plan(t, ns, "virbr8", bw, NetworkBandwidthOptions(floors))
	p.fresh = true
	if !slices.Contains(missing, featSFQ) {
		// Every step would succeed: make the late "qdisc add ingress" fail.
		ns.MustRun("tc", "qdisc", "add", "dev", "virbr8", "ingress")
	}
	err := ns.Do(p.Apply)
	if err == nil {
		t.Fatal("apply did not fail")
	}
	t.Logf("apply failed as planned: %v", err)
	if d := tcDump(t, ns, "virbr8"); len(d) != 0 {
		t.Errorf("left after a failed apply:\n%s", strings.Join(d, "\n"))
	}
}
