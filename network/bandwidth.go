package network

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

// <bandwidth> as libvirt implements it on Linux (virNetDevBandwidthSet,
// virNetDevBandwidthPlug/Unplug/UpdateRate): the direction that leaves the
// link is shaped with htb (root qdisc 1:, one leaf class with an sfq qdisc,
// and libvirt's fw filter), the direction that enters it is policed by a u32
// filter with a police action on the ingress qdisc. On a network's bridge the
// tree is hierarchical: class 1:1 caps the whole network, 1:2 (the default
// class) carries traffic without a guarantee, and every port with an inbound
// floor gets its own class 1:<id>, an sfq qdisc <id>: and a u32 filter on the
// guest's MAC. libvirt runs tc; we build the same objects with netlink.
//
// Units are tc's reading of libvirt's arguments: libvirt writes rates as
// "<N>kbps", which tc takes as N*1000 bytes/s, and bursts as "<N>kb", which tc
// takes as N*1024 bytes (checked with iproute2 6.1).
const (
	bytesPerKbps = 1000
	bytesPerKB   = 1024
	// policeMTU is libvirt's "mtu 64kb".
	policeMTU = 64 * 1024
	// sfqPerturb is libvirt's "sfq perturb 10".
	sfqPerturb = 10
	// firstFloorClass is the first class id a port's floor may use: 1:1 and
	// 1:2 belong to the network (libvirt's classIdMap starts as 0-2).
	firstFloorClass = 3
	// maxFloorClass keeps libvirt's filter handle "800::<800+id>" (which tc
	// reads as hex) within u32's 12-bit node: 800+199 = 999 = 0x999.
	maxFloorClass = 199
	floorPrio     = 2
	fwPrio        = 1
	u32HashTable  = 0x800
)

var (
	rootHandle    = netlink.MakeHandle(1, 0)
	ingressHandle = netlink.MakeHandle(0xffff, 0)
)

// BandwidthOptions says how <bandwidth> maps onto a link (libvirt's
// hierarchical_class and swapped arguments) and which floors it carries.
type BandwidthOptions struct {
	// Hierarchical builds class 1:1 (the cap) with 1:2 (default class) below
	// it, so ports can get floor classes: a network's bridge.
	Hierarchical bool
	// Swapped shapes <inbound> on the link's transmit side and polices
	// <outbound> on its receive side. libvirt swaps on a network's bridge
	// (traffic the host sends into the bridge goes to the guests) and on a
	// guest's TAP (what the host transmits on a TAP is what the guest
	// receives).
	Swapped bool
	// Floors are the ports plugged into the network with an inbound floor.
	// Only on a hierarchical link whose bandwidth has an inbound average.
	Floors []FloorPort
}

// NetworkBandwidthOptions are libvirt's options for a network's bridge
// (virNetDevBandwidthSet(bridge, bw, true, true)) with the given floors.
func NetworkBandwidthOptions(floors []FloorPort) BandwidthOptions {
	return BandwidthOptions{Hierarchical: true, Swapped: true, Floors: floors}
}

// PortBandwidthOptions are libvirt's options for a guest's TAP on a bridge
// (QEMU driver: not hierarchical, swapped because the guest's view of the TAP
// is the host's reversed).
func PortBandwidthOptions() BandwidthOptions {
	return BandwidthOptions{Swapped: true}
}

// FloorPort is a port with a guaranteed inbound rate on a network's bridge.
type FloorPort struct {
	// ClassID is the port's class 1:<ClassID> (> 2, see NextClassID).
	ClassID uint32
	// MAC is the guest's MAC: IPv4 frames to it go into the port's class.
	MAC net.HardwareAddr
	// Floor is the guaranteed rate in kbps (<inbound floor>).
	Floor uint64
	// Average is the port's <inbound average> (0 if unset); libvirt derives
	// the class quantum from it.
	Average uint64
}

// UnsupportedKernelError reports tc parts the running kernel lacks. It is
// returned before anything changes.
type UnsupportedKernelError struct {
	Link    string
	Missing []string
}

func (e *UnsupportedKernelError) Error() string { return e.libvirt().Error() }

// Unwrap exposes the libvirt-style error (kind unsupported configuration).
func (e *UnsupportedKernelError) Unwrap() error { return e.libvirt() }

func (e *UnsupportedKernelError) libvirt() error {
	return netxml.Errorf(netxml.KindUnsupported, "bandwidth on '%s': not supported by this kernel: %s", e.Link, strings.Join(e.Missing, ", "))
}

// tcStep is one tc change: its tc command line (what libvirt would run, for
// dry-run and logs), what it repairs (for Verify) and the netlink call.
type tcStep struct {
	// Cmd is the change as a tc command line.
	Cmd string
	// Drift describes the difference this step removes.
	Drift string
	do    func(h handle) error
}

// String returns the tc command line.
func (s tcStep) String() string { return s.Cmd }

// Run makes the change on its own netlink socket (in the calling thread's
// network namespace), for executors that run steps one by one. Steps of a
// plan for a link that did not exist cannot run.
func (s tcStep) Run() error {
	if s.do == nil {
		return fmt.Errorf("%s: step has no action", s.Cmd)
	}
	h, err := newHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := s.do(h); err != nil {
		return fmt.Errorf("%s: %w", s.Cmd, err)
	}
	return nil
}

// BandwidthPlan is the list of changes that bring a link to its desired
// bandwidth state, computed from the live qdiscs, classes and filters.
type BandwidthPlan struct {
	Link  string
	Steps []tcStep
	// fresh is set when nothing of ours was on the link: a failed apply
	// then removes what it added.
	fresh   bool
	missing bool
}

// Commands returns the plan's tc command lines, in order.
func (p *BandwidthPlan) Commands() []string {
	out := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		out[i] = s.Cmd
	}
	return out
}

// Apply runs the plan in the calling thread's network namespace. When a step
// fails on a link that had none of our tc objects, it removes what it added.
func (p *BandwidthPlan) Apply() error {
	if len(p.Steps) == 0 {
		return nil
	}
	if p.missing {
		return fmt.Errorf("bandwidth on %q: link not found", p.Link)
	}
	h, err := newHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	for _, s := range p.Steps {
		if err := s.do(h); err != nil {
			err = fmt.Errorf("bandwidth on %q: %s: %w", p.Link, s.Cmd, err)
			if p.fresh {
				if rp, rerr := PlanBandwidth(p.Link, nil, BandwidthOptions{}); rerr == nil {
					_ = rp.Apply()
				}
			}
			return err
		}
	}
	return nil
}

// CheckBandwidthSupport refuses, before anything changes, bandwidth values tc
// cannot express and a kernel that lacks a qdisc, classifier or action the
// link's bandwidth needs (*UnsupportedKernelError). It reads nothing of the
// link itself, so it serves before the link exists.
func CheckBandwidthSupport(link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions) error {
	_, err := checkBandwidthSupport(link, bw, opts)
	return err
}

func checkBandwidthSupport(link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions) (*tcSpec, error) {
	if err := CheckBandwidth(link, bw); err != nil {
		return nil, err
	}
	want, err := desiredTC(link, bw, opts)
	if err != nil {
		return nil, err
	}
	if need := want.features(); len(need) > 0 {
		missing, err := missingTCFeatures(need)
		if err != nil {
			return nil, fmt.Errorf("bandwidth on %q: probe kernel tc support: %w", link, err)
		}
		if len(missing) > 0 {
			return nil, &UnsupportedKernelError{Link: link, Missing: missing}
		}
	}
	return want, nil
}

// PlanBandwidth computes what EnsureBandwidth would change on the link (in the
// calling thread's network namespace). bw nil means no bandwidth: the plan
// removes our qdiscs, classes and filters. A link that does not exist gets
// the full list of commands a start would run (dry-run of a new network);
// such a plan cannot be applied.
func PlanBandwidth(link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions) (*BandwidthPlan, error) {
	want, err := checkBandwidthSupport(link, bw, opts)
	if err != nil {
		return nil, err
	}
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.linkByName(link)
	if err != nil {
		return nil, fmt.Errorf("bandwidth on %q: %w", link, err)
	}
	if l == nil {
		p := &BandwidthPlan{Link: link, missing: true}
		p.Steps = want.plan(&liveTC{}, 0)
		for i := range p.Steps {
			p.Steps[i].do = nil // described, not runnable
		}
		return p, nil
	}
	live, err := readLiveTC(h, l)
	if err != nil {
		return nil, fmt.Errorf("bandwidth on %q: %w", link, err)
	}
	return &BandwidthPlan{Link: link, Steps: want.plan(live, l.Attrs().Index), fresh: !live.any()}, nil
}

// EnsureBandwidth brings the link's tc state to what bw and opts describe,
// changing only what differs (nothing on a link that is already right). It
// returns the commands it ran. Values out of tc's range and a kernel without
// the needed qdiscs, classifiers or actions are refused before anything
// changes.
func EnsureBandwidth(link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions) ([]string, error) {
	p, err := PlanBandwidth(link, bw, opts)
	if err != nil {
		return nil, err
	}
	if err := p.Apply(); err != nil {
		return nil, err
	}
	return p.Commands(), nil
}

// ConvergeBandwidth issues, through ex, the tc changes that bring the link to
// what bw and opts describe: the same plan as EnsureBandwidth, so a dry run
// prints exactly the tc steps a start runs. A live executor that fails on a
// link that had none of our tc objects removes what it added.
func ConvergeBandwidth(link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions, ex Executor) error {
	p, err := PlanBandwidth(link, bw, opts)
	if err != nil {
		return err
	}
	for _, s := range p.Steps {
		if err := ex.Run(Step{Problem: s.Drift, Cmd: s.Cmd, Do: s.Run}); err != nil {
			if p.fresh && ex.Live() {
				if rerr := RemoveBandwidth(link); rerr != nil {
					return errors.Join(fmt.Errorf("bandwidth on %q: %w", link, err), rerr)
				}
			}
			return fmt.Errorf("bandwidth on %q: %w", link, err)
		}
	}
	return nil
}

// VerifyBandwidth describes how the link's tc state differs from what bw and
// opts describe (nothing = in order). It changes nothing.
func VerifyBandwidth(link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions) ([]string, error) {
	p, err := PlanBandwidth(link, bw, opts)
	if err != nil {
		return nil, err
	}
	if p.missing {
		return []string{fmt.Sprintf("link %s missing (tc bandwidth)", link)}, nil
	}
	var drift []string
	for _, s := range p.Steps {
		if s.Drift != "" && !slices.Contains(drift, s.Drift) {
			drift = append(drift, s.Drift)
		}
	}
	return drift, nil
}

// RemoveBandwidth removes our qdiscs, classes and filters from the link: the
// root htb qdisc (unless another part, such as the DHCP checksum fix, still
// has filters on it), the ingress qdisc. A missing link is no error.
func RemoveBandwidth(link string) error {
	p, err := PlanBandwidth(link, nil, BandwidthOptions{})
	if err != nil {
		return err
	}
	if p.missing {
		return nil
	}
	return p.Apply()
}

// NextClassID returns the lowest class id a new floor may use: libvirt's
// classIdMap, whose ids 0-2 are reserved for the network's own classes.
func NextClassID(used []uint32) (uint32, error) {
	for id := uint32(firstFloorClass); id <= maxFloorClass; id++ {
		if !slices.Contains(used, id) {
			return id, nil
		}
	}
	return 0, netxml.Errorf(netxml.KindInternal, "Could not generate next class ID")
}

// CheckFloor applies libvirt's admission rules (networkCheckBandwidth) to a
// port with the given inbound floor joining a network whose other ports
// already hold floorSum: floors need a forward mode with a vnet bridge and
// inbound QoS on the network, and their sum may not exceed the network's
// inbound peak (or average when it has no peak). mac names the port.
func CheckFloor(netName, bridge, forwardMode string, netBW *libvirtxml.NetworkBandwidth, mac string, floor, floorSum uint64) error {
	if floor == 0 {
		return nil
	}
	switch forwardMode {
	case "", "none", "nat", "route", "open":
	default:
		return netxml.Errorf(netxml.KindOperationUnsupported, "Invalid use of 'floor' on interface with MAC address %s - 'floor' is only supported for interface type 'network' with forward type 'nat', 'route', 'open' or none", mac)
	}
	if !HasInboundQoS(netBW) {
		return netxml.Errorf(netxml.KindOperationUnsupported, "Invalid use of 'floor' on interface with MAC address %s - network '%s' has no inbound QoS set", mac, netName)
	}
	sum := floorSum + floor
	in := netBW.Inbound
	if p := deref(in.Peak); p > 0 {
		if sum > uint64(p) {
			return netxml.Errorf(netxml.KindInvalidOperation, "Cannot plug '%s' interface into '%s' because new combined inbound floor=%d would overcommit peak=%d on network '%s'", mac, bridge, sum, p, netName)
		}
	} else if sum > uint64(deref(in.Average)) {
		return netxml.Errorf(netxml.KindInvalidOperation, "Cannot plug '%s' interface into '%s' because new combined inbound floor=%d would overcommit average=%d on network '%s'", mac, bridge, sum, deref(in.Average), netName)
	}
	return nil
}

// HasInboundQoS reports whether a network's <bandwidth> shapes its inbound
// traffic (an inbound average): only then can its ports have floors.
func HasInboundQoS(netBW *libvirtxml.NetworkBandwidth) bool {
	return netBW != nil && netBW.Inbound != nil && deref(netBW.Inbound.Average) > 0
}

// PlugFloor adds a port's floor class, sfq qdisc and MAC filter to the
// network's bridge and lowers class 1:2 by the floor (libvirt's
// networkPlugBandwidth). opts holds the floors already plugged. A port
// without a floor is no change. It returns the commands it ran.
func PlugFloor(bridge string, netBW *libvirtxml.NetworkBandwidth, opts BandwidthOptions, port FloorPort) ([]string, error) {
	if netBW == nil || netBW.Inbound == nil {
		return nil, netxml.Errorf(netxml.KindUnsupported, "Bridge '%s' has no QoS set, therefore unable to set 'floor' on '%s'", bridge, port.MAC)
	}
	if port.Floor == 0 {
		return nil, nil
	}
	if port.ClassID < firstFloorClass || port.ClassID > maxFloorClass {
		return nil, netxml.Errorf(netxml.KindInternal, "Invalid class ID %d", port.ClassID)
	}
	for _, f := range opts.Floors {
		if f.ClassID == port.ClassID {
			return nil, netxml.Errorf(netxml.KindInternal, "class ID %d on bridge '%s' is already in use", port.ClassID, bridge)
		}
	}
	opts.Floors = append(slices.Clone(opts.Floors), port)
	return EnsureBandwidth(bridge, netBW, opts)
}

// UnplugFloor removes the floor class classID from the network's bridge and
// gives its rate back to class 1:2 (libvirt's networkUnplugBandwidth). opts
// holds the floors plugged so far, classID among them.
func UnplugFloor(bridge string, netBW *libvirtxml.NetworkBandwidth, opts BandwidthOptions, classID uint32) ([]string, error) {
	if classID < firstFloorClass {
		return nil, netxml.Errorf(netxml.KindInternal, "Invalid class ID %d", classID)
	}
	opts.Floors = slices.DeleteFunc(slices.Clone(opts.Floors), func(f FloorPort) bool { return f.ClassID == classID })
	return EnsureBandwidth(bridge, netBW, opts)
}

// Ranges: what tc and the kernel can represent.
const (
	// maxBurstKB is tc's limit: a burst is a 32-bit byte count (libvirt
	// caps its default burst at UINT_MAX/1024 for the same reason).
	maxBurstKB = math.MaxUint32 / bytesPerKB
	// maxPoliceKbps: the police action's rate is 32-bit bytes/s.
	maxPoliceKbps = math.MaxUint32 / bytesPerKbps
	// maxShapeKbps keeps an htb rate in bits/s within 64 bits.
	maxShapeKbps = math.MaxUint64 / 8 / bytesPerKbps
	// maxBurstTicks: a burst is stored as the time it takes at the rate, in
	// 32-bit scheduler ticks.
	maxBurstTicks = math.MaxUint32
)

// CheckBandwidth rejects <bandwidth> values tc cannot express on a link,
// with a precise message, before anything changes. owner names the link's
// user in messages (a bridge or TAP name).
func CheckBandwidth(owner string, bw *libvirtxml.NetworkBandwidth) error {
	if bw == nil {
		return nil
	}
	for _, d := range []struct {
		name string
		r    *libvirtxml.NetworkBandwidthParams
	}{{"inbound", bw.Inbound}, {"outbound", bw.Outbound}} {
		if d.r == nil {
			continue
		}
		bad := func(attr string, v uint64, why string) error {
			return netxml.Errorf(netxml.KindUnsupported, "bandwidth %s %s='%d' on '%s' is out of range: %s", d.name, attr, v, owner, why)
		}
		avg, peak, burst, floor := uint64(deref(d.r.Average)), uint64(deref(d.r.Peak)), uint64(deref(d.r.Burst)), uint64(deref(d.r.Floor))
		// Either direction may end up policed (which one depends on the
		// link), so both keep to the police action's range.
		if avg > maxPoliceKbps {
			return bad("average", avg, fmt.Sprintf("the kernel's police rate is at most %d kbps", uint64(maxPoliceKbps)))
		}
		for _, v := range []struct {
			attr string
			v    uint64
		}{{"peak", peak}, {"floor", floor}} {
			if v.v > maxShapeKbps {
				return bad(v.attr, v.v, fmt.Sprintf("at most %d kbps", uint64(maxShapeKbps)))
			}
		}
		if burst > maxBurstKB {
			return bad("burst", burst, fmt.Sprintf("at most %d kb (a 32-bit byte count)", uint64(maxBurstKB)))
		}
		if burst > 0 && avg > 0 && burstTicks(avg*bytesPerKbps, burst*bytesPerKB) > maxBurstTicks {
			return bad("burst", burst, fmt.Sprintf("sending it at average='%d' takes longer than the kernel can store", avg))
		}
	}
	return nil
}

// burstTicks is the time (in scheduler ticks) a burst of size bytes takes
// at rate bytes/s, as tc computes it (tc_calc_xmittime).
func burstTicks(rate, size uint64) float64 {
	return float64(size) / float64(rate) * 1e6 * netlink.TickInUsec()
}

func deref(p *uint) uint {
	if p == nil {
		return 0
	}
	return *p
}

// quantum is libvirt's class quantum: average*1024/8/1500, at least 1
// (virNetDevBandwidthCmdAddOptimalQuantum).
func quantum(avg uint64) uint32 {
	q := avg * 1024 / 8 / 1500
	if q == 0 {
		q = 1
	}
	if q > math.MaxUint32 {
		q = math.MaxUint32
	}
	return uint32(q)
}

// tcClass is one desired htb class.
type tcClass struct {
	minor, parent uint32 // parent is a handle (1:0 or 1:1)
	rate, ceil    uint64 // kbps; ceil 0 = tc's default (the rate)
	burst         uint64 // kb; 0 = tc's default
	quantum       uint32
	showCeil      bool // libvirt writes "ceil" on this class
}

func (c tcClass) handle() uint32 { return netlink.MakeHandle(1, uint16(c.minor)) }

func (c tcClass) netlink(index int) *netlink.HtbClass {
	return netlink.NewHtbClass(
		netlink.ClassAttrs{LinkIndex: index, Handle: c.handle(), Parent: c.parent},
		netlink.HtbClassAttrs{Rate: c.rate * bytesPerKbps * 8, Ceil: c.ceil * bytesPerKbps * 8, Buffer: uint32(c.burst * bytesPerKB), Quantum: c.quantum},
	)
}

func (c tcClass) args() string {
	s := fmt.Sprintf("htb rate %dkbps", c.rate)
	if c.showCeil {
		s += fmt.Sprintf(" ceil %dkbps", c.ceil)
	}
	if c.burst > 0 {
		s += fmt.Sprintf(" burst %dkb", c.burst)
	}
	return s + fmt.Sprintf(" quantum %d", c.quantum)
}

// tcSpec is the desired tc state of one link.
type tcSpec struct {
	link    string
	egress  bool
	defcls  uint32
	classes []tcClass // parents first
	leaves  []uint32  // class minors with an sfq leaf (handle minor:)
	floors  []FloorPort
	police  *tcPolice
}

type tcPolice struct{ rate, burst uint64 } // kbps, kb

func desiredTC(link string, bw *libvirtxml.NetworkBandwidth, opts BandwidthOptions) (*tcSpec, error) {
	s := &tcSpec{link: link}
	if bw == nil {
		return s, nil
	}
	rx, tx := bw.Inbound, bw.Outbound
	if opts.Swapped {
		rx, tx = tx, rx
	}
	if tx != nil && deref(tx.Average) > 0 {
		avg, peak, burst := uint64(deref(tx.Average)), uint64(deref(tx.Peak)), uint64(deref(tx.Burst))
		q := quantum(avg)
		s.egress = true
		if opts.Hierarchical {
			top := avg
			if peak > 0 {
				top = peak
			}
			s.defcls = 2
			s.classes = append(s.classes, tcClass{minor: 1, parent: rootHandle, rate: avg, ceil: top, quantum: q, showCeil: true})
			var sum uint64
			for _, f := range opts.Floors {
				sum += f.Floor
			}
			leaf := tcClass{minor: 2, parent: netlink.MakeHandle(1, 1), rate: avg, ceil: peak, burst: burst, quantum: q, showCeil: peak > 0}
			if sum > 0 {
				// networkPlugBandwidth: "class change ... 1:2 htb rate
				// (peak|average) - floor sum ceil peak|average quantum".
				// A rate of 0 is refused by htb; keep 1 kbps. Without
				// floors 1:2 is the class of the start (libvirt leaves it
				// at peak after the last floor leaves; a restart would
				// not, so repair and restart agree with the start).
				r := uint64(1)
				if top > sum {
					r = top - sum
				}
				leaf = tcClass{minor: 2, parent: netlink.MakeHandle(1, 1), rate: r, ceil: top, quantum: q, showCeil: true}
			}
			s.classes = append(s.classes, leaf)
			s.leaves = append(s.leaves, 2)
			floors := slices.Clone(opts.Floors)
			sort.Slice(floors, func(i, j int) bool { return floors[i].ClassID < floors[j].ClassID })
			for _, f := range floors {
				if f.ClassID < firstFloorClass || f.ClassID > maxFloorClass {
					return nil, netxml.Errorf(netxml.KindInternal, "Invalid class ID %d", f.ClassID)
				}
				if len(f.MAC) != 6 {
					return nil, fmt.Errorf("bandwidth on %q: floor class %d: invalid MAC %q", link, f.ClassID, f.MAC)
				}
				s.classes = append(s.classes, tcClass{minor: f.ClassID, parent: netlink.MakeHandle(1, 1), rate: f.Floor, ceil: top, quantum: quantum(f.Average), showCeil: true})
				s.leaves = append(s.leaves, f.ClassID)
				s.floors = append(s.floors, f)
			}
		} else {
			s.defcls = 1
			s.classes = append(s.classes, tcClass{minor: 1, parent: rootHandle, rate: avg, ceil: peak, burst: burst, quantum: q, showCeil: peak > 0})
			s.leaves = append(s.leaves, 1)
		}
	} else if len(opts.Floors) > 0 {
		return nil, netxml.Errorf(netxml.KindUnsupported, "Bridge '%s' has no QoS set, therefore unable to set 'floor' on '%s'", link, opts.Floors[0].MAC)
	}
	if rx != nil && deref(rx.Average) > 0 {
		avg := uint64(deref(rx.Average))
		burst := uint64(deref(rx.Burst))
		if burst == 0 {
			burst = min(avg, uint64(maxBurstKB))
		}
		s.police = &tcPolice{rate: avg, burst: burst}
	}
	return s, nil
}

// features lists the kernel parts the spec needs.
func (s *tcSpec) features() []string {
	var f []string
	if s.egress {
		f = append(f, featHTB, featSFQ, featFW)
		if len(s.floors) > 0 {
			f = append(f, featU32)
		}
	}
	if s.police != nil {
		f = append(f, featIngress, featU32, featPolice)
	}
	return f
}

func hex16(v uint32) string { return fmt.Sprintf("%x", v) }

// Object builders: each returns the netlink object and libvirt's command.

func (s *tcSpec) rootQdisc(index int) (*netlink.Htb, string) {
	q := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: index, Handle: rootHandle, Parent: netlink.HANDLE_ROOT})
	q.Defcls = s.defcls
	return q, fmt.Sprintf("tc qdisc add dev %s root handle 1: htb default %d", s.link, s.defcls)
}

func (s *tcSpec) leafQdisc(index int, minor uint32) (*netlink.Sfq, string) {
	q := &netlink.Sfq{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: netlink.MakeHandle(uint16(leafMajor(minor)), 0), Parent: netlink.MakeHandle(1, uint16(minor))},
		Perturb:    sfqPerturb,
	}
	return q, fmt.Sprintf("tc qdisc add dev %s parent 1:%s handle %s: sfq perturb %d", s.link, hex16(minor), hex16(leafMajor(minor)), sfqPerturb)
}

// leafMajor is the handle major of the sfq under class 1:minor: 2: for
// the network's (or TAP's) own class, <id>: for a floor class.
func leafMajor(minor uint32) uint32 {
	if minor <= 2 {
		return 2
	}
	return minor
}

func (s *tcSpec) fwFilter(index int) (*netlink.FwFilter, string) {
	f := &netlink.FwFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: index, Parent: rootHandle, Priority: fwPrio, Protocol: unix.ETH_P_ALL, Handle: 1},
		ClassId:     1,
	}
	return f, fmt.Sprintf("tc filter add dev %s parent 1:0 protocol all prio 1 handle 1 fw flowid 1", s.link)
}

// floorHandle is the u32 handle of a floor filter: libvirt writes
// "800::<800+id>" with 800+id in decimal, and tc parses it as hex.
func floorHandle(id uint32) uint32 {
	var node uint32
	if _, err := fmt.Sscanf(fmt.Sprint(800+id), "%x", &node); err != nil {
		panic(err) // decimal digits are hex digits
	}
	return u32HashTable<<20 | node
}

func (s *tcSpec) floorFilter(index int, f FloorPort) (*netlink.U32, string) {
	m := f.MAC
	lo := uint32(m[2])<<24 | uint32(m[3])<<16 | uint32(m[4])<<8 | uint32(m[5])
	hi := uint32(m[0])<<8 | uint32(m[1])
	u := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: index, Parent: rootHandle, Priority: floorPrio, Protocol: unix.ETH_P_IP, Handle: floorHandle(f.ClassID)},
		ClassId:     netlink.MakeHandle(1, uint16(f.ClassID)),
		// tc packs "match u16 V M at -2" into the 32-bit word at -4 (low
		// half), "at -14" into the word at -16.
		Sel: &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{
			{Off: -4, Val: 0x0800, Mask: 0xffff},
			{Off: -12, Val: lo, Mask: 0xffffffff},
			{Off: -16, Val: hi, Mask: 0xffff},
		}},
	}
	return u, fmt.Sprintf("tc filter add dev %s protocol ip prio 2 handle 800::%d u32 match u16 0x0800 0xffff at -2 match u32 0x%08x 0xffffffff at -12 match u16 0x%04x 0xffff at -14 flowid 1:%s",
		s.link, 800+f.ClassID, lo, hi, hex16(f.ClassID))
}

func (s *tcSpec) ingressQdisc(index int) (*netlink.Ingress, string) {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}},
		fmt.Sprintf("tc qdisc add dev %s ingress", s.link)
}

func (s *tcSpec) policeFilter(index int) (*netlink.U32, string) {
	p := netlink.NewPoliceAction()
	p.Rate = uint32(s.police.rate * bytesPerKbps)
	p.Burst = uint32(s.police.burst * bytesPerKB)
	p.Mtu = policeMTU
	p.ExceedAction = netlink.TC_POLICE_SHOT
	u := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: index, Parent: ingressHandle, Protocol: unix.ETH_P_ALL},
		ClassId:     netlink.MakeHandle(0, 1),
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{{}}},
		Police:      p,
	}
	return u, fmt.Sprintf("tc filter add dev %s parent ffff: protocol all u32 match u32 0 0 police rate %dkbps burst %dkb mtu 64kb drop flowid :1", s.link, s.police.rate, s.police.burst)
}

// liveTC is what the kernel has on a link.
type liveTC struct {
	root           netlink.Qdisc
	ingress        netlink.Qdisc
	leaves         map[uint32]netlink.Qdisc // by parent handle (under 1:)
	classes        map[uint32]*netlink.HtbClass
	otherClasses   []netlink.Class
	rootFilters    []netlink.Filter
	ingressFilters []netlink.Filter
}

// any reports whether any tc object we would manage is present.
func (l *liveTC) any() bool {
	return l.root != nil || l.ingress != nil
}

func (l *liveTC) ourRoot() bool {
	q, ok := l.root.(*netlink.Htb)
	return ok && q.Handle == rootHandle
}

func readLiveTC(h handle, link netlink.Link) (*liveTC, error) {
	qs, err := h.qdiscList(link)
	if err != nil {
		return nil, fmt.Errorf("list qdiscs: %w", err)
	}
	l := &liveTC{leaves: map[uint32]netlink.Qdisc{}, classes: map[uint32]*netlink.HtbClass{}}
	for _, q := range qs {
		a := q.Attrs()
		switch {
		case a.Parent == netlink.HANDLE_ROOT && a.Handle != 0:
			// Handle 0 is the kernel's default (noqueue, pfifo_fast,
			// mq…), which cannot be deleted and is no one's.
			l.root = q
		case a.Parent == netlink.HANDLE_INGRESS && q.Type() == "ingress":
			l.ingress = q
		case a.Parent>>16 == 1 && a.Parent&0xffff != 0:
			l.leaves[a.Parent] = q
		}
	}
	if l.ourRoot() {
		cs, err := h.classList(link, rootHandle)
		if err != nil {
			return nil, fmt.Errorf("list classes: %w", err)
		}
		for _, c := range cs {
			if hc, ok := c.(*netlink.HtbClass); ok {
				l.classes[hc.Handle] = hc
			} else {
				l.otherClasses = append(l.otherClasses, c)
			}
		}
		if l.rootFilters, err = listFilters(h, link, rootHandle); err != nil {
			return nil, err
		}
	}
	if l.ingress != nil {
		if l.ingressFilters, err = listFilters(h, link, ingressHandle); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// listFilters lists the filters on a qdisc, without u32's hash-table
// entries (a u32 handle whose node part is 0).
func listFilters(h handle, link netlink.Link, parent uint32) ([]netlink.Filter, error) {
	fs, err := h.filterList(link, parent)
	if err != nil {
		return nil, fmt.Errorf("list filters: %w", err)
	}
	out := fs[:0]
	for _, f := range fs {
		if _, ok := f.(*netlink.U32); ok && f.Attrs().Handle&0xfff == 0 {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

func isOurFw(f netlink.Filter) bool {
	fw, ok := f.(*netlink.FwFilter)
	return ok && fw.Priority == fwPrio
}

// isOurFloor: a u32 filter at prio 2 with a node in our range and no
// actions (the DHCP checksum fix shares prio 2 but carries a csum action and
// gets the kernel's first node, 800).
func isOurFloor(f netlink.Filter) bool {
	u, ok := f.(*netlink.U32)
	if !ok || u.Priority != floorPrio || len(u.Actions) > 0 || u.Handle>>20 != u32HashTable {
		return false
	}
	return u.Handle&0xfff >= floorHandle(firstFloorClass)&0xfff
}

func sameKeys(a, b *netlink.TcU32Sel) bool {
	if a == nil || b == nil || len(a.Keys) != len(b.Keys) || a.Flags&netlink.TC_U32_TERMINAL != b.Flags&netlink.TC_U32_TERMINAL {
		return false
	}
	for i := range a.Keys {
		x, y := a.Keys[i], b.Keys[i]
		if x.Off != y.Off || x.Mask != y.Mask || x.Val&x.Mask != y.Val&y.Mask || x.OffMask != y.OffMask {
			return false
		}
	}
	return true
}

// classParent normalises a class's parent: the kernel reports a class
// directly under the qdisc with parent TC_H_ROOT, tc and we create it with
// parent 1:.
func classParent(p uint32) uint32 {
	if p == rootHandle {
		return netlink.HANDLE_ROOT
	}
	return p
}

func sameClass(live, want *netlink.HtbClass) bool {
	return classParent(live.Parent) == classParent(want.Parent) && live.Rate == want.Rate && live.Ceil == want.Ceil &&
		live.Buffer == want.Buffer && live.Cbuffer == want.Cbuffer && live.Quantum == want.Quantum && live.Prio == want.Prio
}

func samePolice(live, want *netlink.PoliceAction) bool {
	if live == nil || live.Rate != want.Rate || live.Mtu != want.Mtu || live.ExceedAction != want.ExceedAction || live.PeakRate != 0 {
		return false
	}
	// netlink hands the burst back converted from scheduler ticks, which
	// loses up to about a microsecond's worth of bytes.
	tol := float64(want.Rate)/1e6*2 + 2
	return math.Abs(float64(live.Burst)-float64(want.Burst)) <= tol
}

// plan computes the steps from live to the spec. index 0 means the link does
// not exist yet (everything is added).
func (s *tcSpec) plan(live *liveTC, index int) []tcStep {
	var steps []tcStep
	add := func(cmd, drift string, do func(h handle) error) {
		steps = append(steps, tcStep{Cmd: cmd, Drift: drift, do: do})
	}
	dev := s.link
	egressFromScratch := func() {
		q, cmd := s.rootQdisc(index)
		add(cmd, fmt.Sprintf("tc root qdisc htb 1: on %s missing", dev), func(h handle) error { return h.QdiscAdd(q) })
		for _, c := range s.classes {
			nc := c.netlink(index)
			add(fmt.Sprintf("tc class add dev %s parent %s classid 1:%s %s", dev, handleText(c.parent), hex16(c.minor), c.args()),
				fmt.Sprintf("tc class 1:%s on %s missing", hex16(c.minor), dev), func(h handle) error { return h.ClassAdd(nc) })
		}
		for _, m := range s.leaves {
			q, cmd := s.leafQdisc(index, m)
			add(cmd, fmt.Sprintf("tc sfq qdisc under class 1:%s on %s missing", hex16(m), dev), func(h handle) error { return h.QdiscAdd(q) })
		}
		f, cmd := s.fwFilter(index)
		add(cmd, fmt.Sprintf("tc fw filter on %s missing", dev), func(h handle) error { return h.FilterAdd(f) })
		for _, fl := range s.floors {
			u, cmd := s.floorFilter(index, fl)
			add(cmd, fmt.Sprintf("tc floor filter for %s on %s missing", fl.MAC, dev), func(h handle) error { return h.FilterAdd(u) })
		}
	}

	// Egress: the root htb tree.
	switch {
	case s.egress && live.root == nil:
		egressFromScratch()
	case s.egress && !s.rootMatches(live):
		old := live.root
		add(fmt.Sprintf("tc qdisc del dev %s root", dev), fmt.Sprintf("tc root qdisc on %s is %s %s, want htb 1: default %d", dev, old.Type(), handleText(old.Attrs().Handle), s.defcls),
			func(h handle) error { return h.QdiscDel(old) })
		egressFromScratch()
	case s.egress:
		steps = append(steps, s.planEgress(live, index)...)
	case live.ourRoot():
		steps = append(steps, s.planEgressRemoval(live)...)
	}

	// Ingress: the police filter.
	switch {
	case s.police != nil && live.ingress != nil && s.policeMatches(live):
	case s.police != nil:
		if old := live.ingress; old != nil {
			add(fmt.Sprintf("tc qdisc del dev %s ingress", dev), fmt.Sprintf("tc ingress police filter on %s differs", dev), func(h handle) error { return h.QdiscDel(old) })
		}
		q, cmd := s.ingressQdisc(index)
		drift := fmt.Sprintf("tc ingress qdisc on %s missing", dev)
		if live.ingress != nil {
			drift = fmt.Sprintf("tc ingress police filter on %s differs", dev)
		}
		add(cmd, drift, func(h handle) error { return h.QdiscAdd(q) })
		f, fcmd := s.policeFilter(index)
		add(fcmd, drift, func(h handle) error { return h.FilterAdd(f) })
	case live.ingress != nil:
		old := live.ingress
		add(fmt.Sprintf("tc qdisc del dev %s ingress", dev), fmt.Sprintf("unexpected tc ingress qdisc on %s", dev), func(h handle) error { return h.QdiscDel(old) })
	}
	return steps
}

func handleText(h uint32) string {
	maj, min := netlink.MajorMinor(h)
	if min == 0 {
		return fmt.Sprintf("%x:", maj)
	}
	return fmt.Sprintf("%x:%x", maj, min)
}

func (s *tcSpec) rootMatches(live *liveTC) bool {
	q, ok := live.root.(*netlink.Htb)
	return ok && q.Handle == rootHandle && q.Defcls == s.defcls
}

func (s *tcSpec) policeMatches(live *liveTC) bool {
	want, _ := s.policeFilter(0)
	if len(live.ingressFilters) != 1 {
		return false
	}
	u, ok := live.ingressFilters[0].(*netlink.U32)
	if !ok || u.Protocol != unix.ETH_P_ALL || u.ClassId != want.ClassId || !sameKeys(u.Sel, want.Sel) {
		return false
	}
	p := u.Police
	if p == nil {
		// Created as an action (TCA_U32_ACT) rather than the old police
		// attribute: same kernel object.
		for _, a := range u.Actions {
			if pa, ok := a.(*netlink.PoliceAction); ok {
				p = pa
			}
		}
	}
	return samePolice(p, want.Police)
}

// planEgress diffs an existing htb 1: tree against the spec.
func (s *tcSpec) planEgress(live *liveTC, index int) []tcStep {
	var steps []tcStep
	add := func(cmd, drift string, do func(h handle) error) {
		steps = append(steps, tcStep{Cmd: cmd, Drift: drift, do: do})
	}
	dev := s.link
	wantFloor := map[uint32]FloorPort{}
	for _, f := range s.floors {
		wantFloor[floorHandle(f.ClassID)] = f
	}
	fwOK := false
	floorOK := map[uint32]bool{}
	// Filters first: a class cannot go while a filter points at it.
	for _, f := range live.rootFilters {
		switch {
		case isOurFw(f):
			want, _ := s.fwFilter(index)
			fw := f.(*netlink.FwFilter)
			if !fwOK && fw.Protocol == want.Protocol && fw.Handle == want.Handle && fw.ClassId == want.ClassId && (fw.Mask == 0 || fw.Mask == math.MaxUint32) {
				fwOK = true
				continue
			}
			old := f
			add(fmt.Sprintf("tc filter del dev %s parent 1: prio 1 handle %d fw", dev, fw.Handle), fmt.Sprintf("tc fw filter on %s differs", dev), func(h handle) error { return h.FilterDel(old) })
		case isOurFloor(f):
			u := f.(*netlink.U32)
			if fl, ok := wantFloor[u.Handle]; ok && !floorOK[u.Handle] {
				want, _ := s.floorFilter(index, fl)
				if u.Protocol == want.Protocol && u.ClassId == want.ClassId && sameKeys(u.Sel, want.Sel) {
					floorOK[u.Handle] = true
					continue
				}
			}
			old := f
			add(fmt.Sprintf("tc filter del dev %s prio 2 handle 800::%x u32", dev, u.Handle&0xfff), fmt.Sprintf("tc floor filter 800::%x on %s unexpected or differs", u.Handle&0xfff, dev),
				func(h handle) error { return h.FilterDel(old) })
		}
	}
	// Classes that should not be there, leaves first.
	want := map[uint32]tcClass{}
	for _, c := range s.classes {
		want[c.handle()] = c
	}
	for _, c := range classesBut(live.classes, func(hd uint32) bool { _, ok := want[hd]; return ok }) {
		old := c
		add(fmt.Sprintf("tc class del dev %s classid %s", dev, handleText(c.Handle)), fmt.Sprintf("unexpected tc class %s on %s", handleText(c.Handle), dev), func(h handle) error { return h.ClassDel(old) })
	}
	// Desired classes: add, change, or (parent differs) rebuild.
	for _, c := range s.classes {
		nc := c.netlink(index)
		lc, ok := live.classes[c.handle()]
		switch {
		case !ok:
			add(fmt.Sprintf("tc class add dev %s parent %s classid 1:%s %s", dev, handleText(c.parent), hex16(c.minor), c.args()),
				fmt.Sprintf("tc class 1:%s on %s missing", hex16(c.minor), dev), func(h handle) error { return h.ClassAdd(nc) })
		case classParent(lc.Parent) != classParent(nc.Parent):
			// A class cannot move: rebuild the tree.
			root := live.root
			out := []tcStep{{Cmd: fmt.Sprintf("tc qdisc del dev %s root", dev), Drift: fmt.Sprintf("tc class 1:%s on %s has parent %s", hex16(c.minor), dev, handleText(lc.Parent)), do: func(h handle) error { return h.QdiscDel(root) }}}
			return append(out, s.planFromScratch(index)...)
		case !sameClass(lc, nc):
			add(fmt.Sprintf("tc class change dev %s classid 1:%s %s", dev, hex16(c.minor), c.args()),
				fmt.Sprintf("tc class 1:%s on %s differs (rate %d ceil %d B/s, want %d/%d)", hex16(c.minor), dev, lc.Rate, lc.Ceil, nc.Rate, nc.Ceil), func(h handle) error { return h.ClassChange(nc) })
		}
	}
	for _, m := range s.leaves {
		q, cmd := s.leafQdisc(index, m)
		lq := live.leaves[q.Parent]
		if sq, ok := lq.(*netlink.Sfq); ok && sq.Handle == q.Handle && sq.Perturb == sfqPerturb {
			continue
		}
		drift := fmt.Sprintf("tc sfq qdisc under class 1:%s on %s missing", hex16(m), dev)
		if lq != nil {
			old := lq
			drift = fmt.Sprintf("tc qdisc under class 1:%s on %s is %s, want sfq", hex16(m), dev, lq.Type())
			add(fmt.Sprintf("tc qdisc del dev %s parent 1:%s", dev, hex16(m)), drift, func(h handle) error { return h.QdiscDel(old) })
		}
		add(cmd, drift, func(h handle) error { return h.QdiscAdd(q) })
	}
	if !fwOK {
		f, cmd := s.fwFilter(index)
		add(cmd, fmt.Sprintf("tc fw filter on %s missing", dev), func(h handle) error { return h.FilterAdd(f) })
	}
	for _, fl := range s.floors {
		if floorOK[floorHandle(fl.ClassID)] {
			continue
		}
		u, cmd := s.floorFilter(index, fl)
		add(cmd, fmt.Sprintf("tc floor filter for %s on %s missing", fl.MAC, dev), func(h handle) error { return h.FilterAdd(u) })
	}
	return steps
}

// planFromScratch is the whole egress tree as a list of additions.
func (s *tcSpec) planFromScratch(index int) []tcStep {
	onlyEgress := *s
	onlyEgress.police = nil
	return onlyEgress.plan(&liveTC{}, index)
}

// planEgressRemoval removes our classes and filters from htb 1: and the
// qdisc itself unless filters of others remain on it.
func (s *tcSpec) planEgressRemoval(live *liveTC) []tcStep {
	var steps []tcStep
	dev := s.link
	foreign := 0
	keep := map[uint32]bool{} // classes a foreign filter points at
	for _, f := range live.rootFilters {
		old := f
		switch {
		case isOurFw(f):
			steps = append(steps, tcStep{Cmd: fmt.Sprintf("tc filter del dev %s parent 1: prio 1 handle %d fw", dev, f.Attrs().Handle), Drift: fmt.Sprintf("unexpected tc fw filter on %s", dev), do: func(h handle) error { return h.FilterDel(old) }})
		case isOurFloor(f):
			steps = append(steps, tcStep{Cmd: fmt.Sprintf("tc filter del dev %s prio 2 handle 800::%x u32", dev, f.Attrs().Handle&0xfff), Drift: fmt.Sprintf("unexpected tc floor filter on %s", dev), do: func(h handle) error { return h.FilterDel(old) }})
		default:
			foreign++
			if u, ok := f.(*netlink.U32); ok && u.ClassId != 0 {
				keep[u.ClassId] = true
			}
		}
	}
	// A kept class keeps its parents.
	for changed := true; changed; {
		changed = false
		for hd := range keep {
			if c, ok := live.classes[hd]; ok && classParent(c.Parent) != netlink.HANDLE_ROOT && !keep[c.Parent] {
				keep[c.Parent], changed = true, true
			}
		}
	}
	if foreign == 0 {
		root := live.root
		return append(steps, tcStep{Cmd: fmt.Sprintf("tc qdisc del dev %s root", dev), Drift: fmt.Sprintf("unexpected tc root qdisc htb 1: on %s", dev), do: func(h handle) error { return h.QdiscDel(root) }})
	}
	for _, c := range classesBut(live.classes, func(hd uint32) bool { return keep[hd] }) {
		old := c
		steps = append(steps, tcStep{Cmd: fmt.Sprintf("tc class del dev %s classid %s", dev, handleText(c.Handle)), Drift: fmt.Sprintf("unexpected tc class %s on %s", handleText(c.Handle), dev), do: func(h handle) error { return h.ClassDel(old) }})
	}
	return steps
}

// isUnknownKind reports the kernel's answer to a qdisc, classifier or action
// kind it does not have: ENOENT ("Specified qdisc kind is unknown", "TC
// classifier not found", "Failed to load TC action module").
func isUnknownKind(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP)
}

// classesBut returns the live classes keep does not claim, leaves first (a
// class can only be deleted once it has no children).
func classesBut(live map[uint32]*netlink.HtbClass, keep func(handle uint32) bool) []*netlink.HtbClass {
	var cs []*netlink.HtbClass
	for hd, c := range live {
		if !keep(hd) {
			cs = append(cs, c)
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Level != cs[j].Level {
			return cs[i].Level < cs[j].Level
		}
		return cs[i].Handle > cs[j].Handle
	})
	return cs
}
