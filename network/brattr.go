package network

import (
	"encoding/binary"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// vishvananda/netlink's Bridge type does not carry STP state or forward delay,
// and /sys/class/net belongs to the namespace that mounted sysfs (not to the
// calling thread), so both are read and written here with raw
// IFLA_LINKINFO/IFLA_INFO_DATA messages on a socket of the current namespace.

// userHZ is the kernel's clock_t rate: IFLA_BR_FORWARD_DELAY is in 1/100 s.
const userHZ = 100

// With STP on, the kernel rejects (ERANGE) forward delays outside 2..30 s and
// clamps the current one into that range when STP is switched on.
const (
	stpMinDelay = 2 * userHZ
	stpMaxDelay = 30 * userHZ
)

// stpState is what we manage of a bridge's spanning tree settings.
type stpState struct {
	On    bool
	Delay uint32 // forward delay in 1/100 s
}

// bridgeSTP reads the STP state and forward delay of the bridge with ifindex idx.
func bridgeSTP(idx int) (stpState, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return stpState{}, err
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return stpState{}, fmt.Errorf("unexpected RTM_GETLINK reply")
	}
	var st stpState
	found := false
	err = walkNested(msgs[0][unix.SizeofIfInfomsg:], []uint16{unix.IFLA_LINKINFO, unix.IFLA_INFO_DATA}, func(typ uint16, v []byte) {
		if len(v) < 4 {
			return
		}
		switch typ {
		case unix.IFLA_BR_STP_STATE:
			st.On = binary.NativeEndian.Uint32(v) != 0
			found = true
		case unix.IFLA_BR_FORWARD_DELAY:
			st.Delay = binary.NativeEndian.Uint32(v)
		}
	})
	if err != nil {
		return stpState{}, err
	}
	if !found {
		return stpState{}, fmt.Errorf("no bridge attributes in RTM_GETLINK reply")
	}
	return st, nil
}

// walkNested descends into the nested attributes named by path and calls f
// for every attribute at the end of it.
func walkNested(b []byte, path []uint16, f func(typ uint16, v []byte)) error {
	if len(path) == 0 {
		eachAttr(b, f)
		return nil
	}
	var inner []byte
	eachAttr(b, func(typ uint16, v []byte) {
		if inner == nil && typ == path[0] {
			inner = v
		}
	})
	if inner == nil {
		return nil
	}
	return walkNested(inner, path[1:], f)
}

// eachAttr calls f for every netlink attribute in b (its type without the
// nested and byte-order flags, and its value), in order, without
// allocating; it stops at the first malformed attribute.
func eachAttr(b []byte, f func(typ uint16, v []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		f(binary.NativeEndian.Uint16(b[2:])&nl.NLA_TYPE_MASK, b[unix.SizeofRtAttr:l])
		l = (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if l >= len(b) {
			return
		}
		b = b[l:]
	}
}

// setBridgeSTP writes the STP state and/or the forward delay of a bridge.
// The kernel applies IFLA_BR_FORWARD_DELAY before IFLA_BR_STP_STATE within
// one message, so callers send the two in separate messages when order matters.
func setBridgeSTP(idx int, on *bool, delay *uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(idx)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	if delay != nil {
		data.AddRtAttr(unix.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(*delay))
	}
	if on != nil {
		v := uint32(0)
		if *on {
			v = 1
		}
		data.AddRtAttr(unix.IFLA_BR_STP_STATE, nl.Uint32Attr(v))
	}
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// wantSTP returns the STP state to apply for the <bridge> stp/delay
// attributes: STP defaults to on (libvirt), delay to 0; with STP on the delay
// is clamped the way the kernel does, so that the result is comparable with
// what the kernel reports.
func wantSTP(stp, delay string) (stpState, error) {
	st := stpState{On: stp != "off"}
	switch stp {
	case "", "on", "off":
	default:
		return stpState{}, fmt.Errorf("invalid stp %q", stp)
	}
	if delay != "" {
		var secs uint64
		if _, err := fmt.Sscanf(delay, "%d", &secs); err != nil || fmt.Sprint(secs) != delay {
			return stpState{}, fmt.Errorf("invalid delay %q", delay)
		}
		if secs > 1<<31/userHZ {
			return stpState{}, fmt.Errorf("delay %q is too large", delay)
		}
		st.Delay = uint32(secs) * userHZ
	}
	if st.On {
		st.Delay = min(max(st.Delay, stpMinDelay), stpMaxDelay)
	}
	return st, nil
}
