package firewall

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The DHCP checksum fix, libvirt's nftables flavour. Replies from the host's
// dnsmasq to guests using vhost-net can leave with a partial UDP checksum that
// some guests (e.g. FreeBSD) drop. nftables has no CHECKSUM target, so a tc
// u32 filter on the bridge's egress recomputes the IP and UDP checksums of
// packets to port 68. The kernel deletes qdisc and filter with the bridge.

// checksumQdisc is the handle of the root qdisc the filter hangs on ("1:").
var checksumQdisc = netlink.MakeHandle(1, 0)

const (
	checksumPrio  = 2
	checksumFlags = netlink.TCA_CSUM_UPDATE_FLAG_IPV4HDR | netlink.TCA_CSUM_UPDATE_FLAG_UDP
)

// tcSteps are the parts of the checksum fix a bridge lacks: the htb root
// qdisc 1: (default class 2) and the u32 filter "match ip dport 68 ffff
// action csum ip and udp". An existing root qdisc 1: is kept whatever its
// kind, as libvirt does (it may carry <bandwidth> classes).
type tcSteps struct {
	addQdisc, addFilter bool
}

// checksumFixSteps reads the bridge's qdiscs and filters and returns what
// the checksum fix lacks there. A nil link is a bridge that does not exist
// yet (a dry run before the start creates it): it lacks everything.
func checksumFixSteps(h *netlink.Handle, link netlink.Link) (tcSteps, error) {
	if link == nil {
		return tcSteps{addQdisc: true, addFilter: true}, nil
	}
	// The filter first: asking for the filters under 1: of one device is
	// answered for that device alone, while the kernel has no per-device
	// qdisc listing (every device's qdiscs are dumped and filtered here), so
	// the healthy case must not need it.
	ok, err := hasChecksumFilter(h, link)
	if err != nil {
		return tcSteps{}, err
	}
	if ok {
		return tcSteps{}, nil // it hangs under qdisc 1:, which is there
	}
	q, err := rootQdisc1(h, link)
	if err != nil {
		return tcSteps{}, err
	}
	return tcSteps{addQdisc: q == nil, addFilter: true}, nil
}

// run carries the steps out and returns those done. A kernel without the
// csum action refuses the filter: then it returns errNoCsumAction with the
// qdisc step (if any) done.
func (s tcSteps) run(h *netlink.Handle, link netlink.Link) (tcSteps, error) {
	var done tcSteps
	if s.addQdisc {
		htb := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: checksumQdisc, Parent: netlink.HANDLE_ROOT})
		htb.Defcls = 2
		if err := h.QdiscAdd(htb); err != nil {
			return done, fmt.Errorf("add root qdisc 1: (htb): %w", err)
		}
		done.addQdisc = true
	}
	if s.addFilter {
		if err := h.FilterAdd(checksumFilter(link)); err != nil {
			// The kernel answers ENOENT when it has no csum action (built
			// without CONFIG_NET_ACT_CSUM and no module to load).
			if errors.Is(err, unix.ENOENT) {
				return done, errNoCsumAction
			}
			return done, fmt.Errorf("add u32 checksum filter: %w", err)
		}
		done.addFilter = true
	}
	return done, nil
}

// commands renders the steps as the tc commands doing the same.
func (s tcSteps) commands(bridge string) []string {
	var out []string
	if s.addQdisc {
		out = append(out, "tc qdisc add dev "+bridge+" root handle 1: htb default 2")
	}
	if s.addFilter {
		out = append(out, "tc filter add dev "+bridge+" prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp")
	}
	return out
}

// errNoCsumAction reports a kernel without the tc csum action.
var errNoCsumAction = errors.New("kernel has no tc csum action (CONFIG_NET_ACT_CSUM)")

// missing describes the steps as Verify findings.
func (s tcSteps) missing(bridge string) []string {
	var out []string
	if s.addQdisc {
		out = append(out, "tc root qdisc 1: on "+bridge)
	}
	if s.addFilter {
		out = append(out, "tc u32 checksum filter on "+bridge)
	}
	return out
}

func rootQdisc1(h *netlink.Handle, link netlink.Link) (netlink.Qdisc, error) {
	qs, err := h.QdiscList(link)
	if err != nil {
		return nil, fmt.Errorf("list qdiscs: %w", err)
	}
	for _, q := range qs {
		if a := q.Attrs(); a.Parent == netlink.HANDLE_ROOT && a.Handle == checksumQdisc {
			return q, nil
		}
	}
	return nil, nil
}

func hasChecksumFilter(h *netlink.Handle, link netlink.Link) (bool, error) {
	fs, err := h.FilterList(link, checksumQdisc)
	if err != nil {
		return false, fmt.Errorf("list filters: %w", err)
	}
	for _, f := range fs {
		u, ok := f.(*netlink.U32)
		if !ok || u.Priority != checksumPrio || u.Protocol != unix.ETH_P_IP || u.Sel == nil || len(u.Sel.Keys) != 1 {
			continue
		}
		k := u.Sel.Keys[0]
		if k.Off != 20 || k.Mask != 0xffff || k.Val != 68 {
			continue
		}
		for _, a := range u.Actions {
			if c, ok := a.(*netlink.CsumAction); ok && c.UpdateFlags == checksumFlags {
				return true, nil
			}
		}
	}
	return false, nil
}

// checksumFilter is what `tc filter add dev BR prio 2 protocol ip parent 1:
// u32 match ip dport 68 ffff action csum ip and udp` installs: one 32-bit key
// at IP header offset 20 whose low half (bytes 22-23, the UDP destination
// port with a 20-byte IP header) must be 68.
func checksumFilter(link netlink.Link) *netlink.U32 {
	csum := netlink.NewCsumAction()
	csum.Action = netlink.TC_ACT_OK
	csum.UpdateFlags = checksumFlags
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: link.Attrs().Index,
			Parent:    checksumQdisc,
			Priority:  checksumPrio,
			Protocol:  unix.ETH_P_IP,
		},
		Sel: &netlink.TcU32Sel{
			Flags: netlink.TC_U32_TERMINAL,
			Keys:  []netlink.TcU32Key{{Mask: 0x0000ffff, Val: 68, Off: 20}},
		},
		Actions: []netlink.Action{csum},
	}
}
