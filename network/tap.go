package network

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tapAliasPrefix marks, in a TAP's interface alias, that vnet created it for
// the port whose uuid follows; a device without it is never deleted by vnet.
const tapAliasPrefix = "vnet-port:"

// TAPSpec is the desired state of a guest port's TAP device.
type TAPSpec struct {
	// Name is the device name.
	Name string
	// Port is the port's uuid, recorded on the TAPs vnet creates.
	Port string
	// Bridge is the bridge to plug it into; "" leaves it unplugged (the
	// network is not running).
	Bridge string
	// MAC is the host side's address (ignored for adopted devices).
	MAC net.HardwareAddr
	// MTU is the network's MTU; 0 keeps the kernel's.
	MTU int
	// Owner and Group own a created TAP; nil sets none (then only
	// CAP_NET_ADMIN may attach, unless the other one allows it).
	Owner, Group *uint32
	// MultiQueue creates the TAP with IFF_MULTI_QUEUE (queues > 1).
	MultiQueue bool
	// Adopt plugs an existing device instead of creating one; it is never
	// re-created or deleted by vnet.
	Adopt bool
	// Transient devices live as long as their guest holds them: EnsureTAP
	// never creates one and reports a missing one as ErrTAPGone.
	Transient bool
}

// ErrTAPGone: a transient port's device no longer exists (its guest closed
// it), so the port has ended.
var ErrTAPGone = errors.New("device is gone: the guest closed it")

func (s TAPSpec) object() string { return fmt.Sprintf("tap %q", s.Name) }

// ResolveOwner turns a <vnet:tap> user and group (names or numeric ids) into
// ids, with libvirt's messages for names the host does not know. Empty means
// not set (nil).
func ResolveOwner(userName, groupName string) (uid, gid *uint32, err error) {
	for _, o := range []struct {
		kind, name string
		dst        **uint32
		lookup     func(string) (string, error)
	}{
		{"user", userName, &uid, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		}},
		{"group", groupName, &gid, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		}},
	} {
		if o.name == "" {
			continue
		}
		id, err := lookupID(o.name, o.lookup)
		if err != nil {
			return nil, nil, fmt.Errorf("Failed to parse %s '%s'", o.kind, o.name)
		}
		*o.dst = &id
	}
	return uid, gid, nil
}

// lookupID accepts "+N" or "N" as a numeric id (as libvirt does), else asks
// the host's user database.
func lookupID(name string, lookup func(string) (string, error)) (uint32, error) {
	if n, err := strconv.ParseUint(strings.TrimPrefix(name, "+"), 10, 32); err == nil && n != 1<<32-1 {
		return uint32(n), nil
	}
	if strings.HasPrefix(name, "+") {
		return 0, fmt.Errorf("invalid id %q", name)
	}
	s, err := lookup(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// FreeTAPName returns the first vnetN that is neither a link on the host nor
// taken (by another port), the way libvirt's QEMU driver names guest TAPs.
func FreeTAPName(taken func(string) bool) (string, error) {
	h, err := newHandle()
	if err != nil {
		return "", err
	}
	defer h.Close()
	for i := 0; i < 1<<16; i++ {
		name := "vnet" + strconv.Itoa(i)
		if taken(name) {
			continue
		}
		l, err := h.linkByName(name)
		if err != nil {
			return "", fmt.Errorf("tap %q: look up: %w", name, err)
		}
		if l == nil {
			return name, nil
		}
	}
	return "", fmt.Errorf("no free vnetN device name")
}

// openTAP opens a netlink handle and looks the device up (nil when it does
// not exist); errors name obj. The caller closes the handle.
func openTAP(obj, name string) (handle, netlink.Link, error) {
	h, err := newHandle()
	if err != nil {
		return handle{}, nil, fmt.Errorf("%s: %w", obj, err)
	}
	l, err := h.linkByName(name)
	if err != nil {
		h.Close()
		return handle{}, nil, fmt.Errorf("%s: look up: %w", obj, err)
	}
	return h, l, nil
}

// CheckTAP fails, changing nothing, when the port's device cannot be used:
// for a TAP to create, a device of that name that vnet did not create for
// this port; for one to adopt, no device of that name.
func CheckTAP(s TAPSpec) error {
	h, l, err := openTAP(s.object(), s.Name)
	if err != nil {
		return err
	}
	defer h.Close()
	switch {
	case s.Adopt && l == nil:
		return fmt.Errorf("%s: does not exist, so it cannot be adopted", s.object())
	case !s.Adopt && l != nil && !tapOwnedBy(l, s.Port):
		return fmt.Errorf("%s: %w", s.object(), ErrNotOurs)
	}
	return nil
}

// tapOwnedBy reports whether vnet created the TAP for the port.
func tapOwnedBy(l netlink.Link, port string) bool {
	return l.Type() == "tuntap" && l.Attrs().Alias == tapAliasPrefix+port
}

// EnsureTAP brings the port's device to its desired state and returns what
// it had to fix: a TAP vnet owns is created when missing (persistent, TAP
// mode, no packet info, vnet_hdr, its owner and group, the host-side MAC,
// the network's MTU, marked as ours); any device is plugged into the bridge
// and set up. A device that is already right is not touched. An adopted
// device that is gone is left alone (its hypervisor owns it). When creating
// fails midway, the half-made TAP is deleted.
func EnsureTAP(s TAPSpec) (fixed []string, err error) {
	h, l, err := openTAP(s.object(), s.Name)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if l == nil {
		if s.Transient {
			return nil, fmt.Errorf("%s: %w", s.object(), ErrTAPGone)
		}
		if s.Adopt {
			return nil, nil
		}
		if err := createTAP(s); err != nil {
			return nil, err
		}
		if l, err = h.linkByName(s.Name); err != nil || l == nil {
			return nil, fmt.Errorf("%s: look up after create: %v", s.object(), orGone(err))
		}
		if err := setupTAP(h, l, s); err != nil {
			_ = h.LinkDel(l)
			return nil, err
		}
		return []string{s.object() + ": created"}, nil
	}
	if !s.Adopt && !tapOwnedBy(l, s.Port) {
		return nil, fmt.Errorf("%s: %w", s.object(), ErrNotOurs)
	}
	problems := tapDrift(h, l, s)
	if len(problems) == 0 {
		return nil, nil
	}
	if err := setupTAP(h, l, s); err != nil {
		return nil, err
	}
	return []string{s.object() + ": " + strings.Join(problems, "; ")}, nil
}

// VerifyTAP compares the device with the spec without changing anything: nil,
// a *DriftError, or an error when the state cannot be read.
func VerifyTAP(s TAPSpec) error {
	h, l, err := openTAP(s.object(), s.Name)
	if err != nil {
		return err
	}
	defer h.Close()
	drift := &DriftError{Object: s.object()}
	switch {
	case l == nil && s.Adopt && !s.Transient:
		return nil
	case l == nil:
		drift.Problems = []string{"does not exist"}
	default:
		drift.Problems = tapDrift(h, l, s)
	}
	if len(drift.Problems) > 0 {
		return drift
	}
	return nil
}

// tapDrift lists how an existing device differs from the spec.
func tapDrift(h handle, l netlink.Link, s TAPSpec) []string {
	var p []string
	a := l.Attrs()
	if !s.Adopt {
		if s.MAC != nil && !bytes.Equal(a.HardwareAddr, s.MAC) {
			p = append(p, fmt.Sprintf("mac is %s, want %s", a.HardwareAddr, s.MAC))
		}
		if s.MTU != 0 && a.MTU != s.MTU {
			p = append(p, fmt.Sprintf("mtu is %d, want %d", a.MTU, s.MTU))
		}
	}
	if s.Bridge != "" {
		br, err := h.linkByName(s.Bridge)
		switch {
		case err != nil || br == nil:
			p = append(p, fmt.Sprintf("bridge %q missing", s.Bridge))
		case a.MasterIndex != br.Attrs().Index:
			p = append(p, fmt.Sprintf("not plugged into bridge %q", s.Bridge))
		}
	}
	if a.Flags&net.FlagUp == 0 {
		p = append(p, "is down")
	}
	return p
}

// setupTAP sets what tapDrift checks: MAC and MTU of our own TAPs, the bridge
// and up.
func setupTAP(h handle, l netlink.Link, s TAPSpec) error {
	fail := func(step string, err error) error { return fmt.Errorf("%s: %s: %w", s.object(), step, err) }
	a := l.Attrs()
	if !s.Adopt {
		if a.Alias != tapAliasPrefix+s.Port {
			if err := h.LinkSetAlias(l, tapAliasPrefix+s.Port); err != nil {
				return fail("set alias", err)
			}
		}
		if s.MAC != nil && !bytes.Equal(a.HardwareAddr, s.MAC) {
			if err := h.LinkSetHardwareAddr(l, s.MAC); err != nil {
				return fail("set mac", err)
			}
		}
		if s.MTU != 0 && a.MTU != s.MTU {
			if err := h.LinkSetMTU(l, s.MTU); err != nil {
				return fail(fmt.Sprintf("set mtu %d", s.MTU), err)
			}
		}
	}
	if s.Bridge != "" {
		br, err := h.linkByName(s.Bridge)
		if err != nil || br == nil {
			return fail("plug into bridge "+strconv.Quote(s.Bridge), orGone(err))
		}
		if a.MasterIndex != br.Attrs().Index {
			if err := h.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
				return fail("plug into bridge "+strconv.Quote(s.Bridge), err)
			}
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return fail("set up", err)
		}
	}
	return nil
}

// createTAP creates a persistent TAP with TUNSETIFF.
//
// Why not netlink.Tuntap: vishvananda/netlink always sends TUNSETOWNER and
// TUNSETGROUP, so an owner that is not wanted becomes uid 0 — and the
// kernel then refuses an unprivileged hypervisor even when it is in the
// TAP's group (tun_not_capable: a set owner that differs locks out). We send
// only what the port asks for. IFF_TUN_EXCL makes the kernel refuse a device
// that appeared since CheckTAP instead of attaching to it.
func createTAP(s TAPSpec) error {
	fd, err := tunSetIFF(s, true, true)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// tunSetIFF creates the TAP s on a new /dev/net/tun fd, with IFF_VNET_HDR
// when vnetHdr, made persistent when persist, and returns the fd.
func tunSetIFF(s TAPSpec, persist, vnetHdr bool) (int, error) {
	fail := func(step string, err error) error { return fmt.Errorf("%s: create: %s: %w", s.object(), step, err) }
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fail("open /dev/net/tun", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(s.Name)
	if err != nil {
		return -1, fail("name", err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_TUN_EXCL)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	if s.MultiQueue {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return -1, fmt.Errorf("%s: %w", s.object(), ErrNotOurs)
		}
		return -1, fail("TUNSETIFF", err)
	}
	if s.Owner != nil {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, int(*s.Owner)); err != nil {
			return -1, fail("set owner", err)
		}
	}
	if s.Group != nil {
		if err := unix.IoctlSetInt(fd, unix.TUNSETGROUP, int(*s.Group)); err != nil {
			return -1, fail("set group", err)
		}
	}
	if persist {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			return -1, fail("make persistent", err)
		}
	}
	ok = true
	return fd, nil
}

// OpenTAP creates the port's TAP without making it persistent, sets it up
// as EnsureTAP does (marked as ours, MAC, MTU, plugged, up) and returns its
// only fd: the TAP lives exactly as long as that fd (and its copies, e.g.
// in a hypervisor it was passed to). This is what QEMU's bridge helper
// protocol hands over. On failure nothing is left.
func OpenTAP(s TAPSpec, vnetHdr bool) (*os.File, error) {
	h, l, err := openTAP(s.object(), s.Name)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if l != nil {
		return nil, fmt.Errorf("%s: %w", s.object(), ErrNotOurs)
	}
	fd, err := tunSetIFF(s, false, vnetHdr)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun:"+s.Name)
	if l, err = h.linkByName(s.Name); err != nil || l == nil {
		f.Close()
		return nil, fmt.Errorf("%s: look up after create: %v", s.object(), orGone(err))
	}
	if err := setupTAP(h, l, s); err != nil {
		f.Close() // the last fd: the kernel deletes the TAP
		return nil, err
	}
	return f, nil
}

// DeleteTAP deletes the TAP vnet created for port. A missing device is not
// an error; a device vnet did not create for this port is left alone
// (ErrNotOurs).
func DeleteTAP(name, port string) error {
	h, l, err := openTAP(fmt.Sprintf("tap %q", name), name)
	if err != nil {
		return err
	}
	defer h.Close()
	if l == nil {
		return nil
	}
	if !tapOwnedBy(l, port) {
		return fmt.Errorf("tap %q: %w", name, ErrNotOurs)
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tap %q: delete: %w", name, err)
	}
	return nil
}
