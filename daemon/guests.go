package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirtxml"

	"vnet/daemon/api"
	netxml "vnet/xml"
)

// Unprivileged guests through vnet-bridge-helper (QEMU's bridge helper
// protocol without a setuid bit): the helper, run by the user's QEMU,
// connects to vnetd's helper socket; vnetd identifies the caller from the
// kernel (SO_PEERCRED, SO_PEERGROUPS), checks the access list
// (<config-dir>/bridge-helper.conf), creates a non-persistent TAP owned by
// the caller as a transient port of the network and sends its only fd back.
// QEMU then holds the TAP's life: when it closes the fd the kernel deletes
// the TAP, and the netlink event ends the port (convergePorts).

// Caller is the process on the other end of the helper socket.
type Caller struct {
	UID, GID uint32
	PID      int32
	// Groups are the caller's supplementary groups.
	Groups []uint32
}

// userName is the caller's user name, or its uid when it has none.
func (c Caller) userName() string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(c.UID), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(c.UID), 10)
}

// errAccess is a denied helper call.
type errAccess struct{ msg string }

func (e errAccess) Error() string { return e.msg }

// AttachGuest serves one vnet-bridge-helper call: on success it returns the
// fd of a new TAP plugged into bridge req.Bridge, owned by the caller, as a
// transient port of the bridge's network. The caller closes the file after
// passing it on. Nothing is left behind on failure.
func (m *Manager) AttachGuest(c Caller, req api.HelperRequest) (*os.File, api.Port, error) {
	who := c.userName()
	if err := netxml.CheckIfName(req.Bridge); err != nil {
		return nil, api.Port{}, fmt.Errorf("invalid bridge name: %s", netxml.Message(err))
	}
	name := m.networkByBridge(req.Bridge)
	if name == "" {
		return nil, api.Port{}, fmt.Errorf("bridge '%s' is not the bridge of an active vnet network", req.Bridge)
	}
	ok, aclErr := false, errNoACL
	if m.acl != nil {
		ok, aclErr = m.acl.allowed(name, append([]uint32{c.GID}, c.Groups...))
	}
	if !ok {
		msg := fmt.Sprintf("user '%s' may not attach to network '%s'", who, name)
		if aclErr != nil {
			msg += " (" + aclErr.Error() + ")"
		}
		m.log.Warn("bridge helper call denied", "user", who, "uid", c.UID, "pid", c.PID, "network", name, "bridge", req.Bridge, "reason", msg)
		return nil, api.Port{}, errAccess{msg}
	}
	ph := m.portHost()
	if ph == nil {
		return nil, api.Port{}, fmt.Errorf("this vnetd (driver test) makes no devices")
	}
	o, err := m.lockRef(name)
	if err != nil {
		return nil, api.Port{}, err
	}
	defer o.mu.Unlock()
	if !o.active() || o.live.BridgeName() != req.Bridge {
		return nil, api.Port{}, fmt.Errorf("bridge '%s' is not the bridge of an active vnet network", req.Bridge)
	}
	n := o.live
	p, err := m.guestPort(n.Name, who, c, req.MAC)
	if err != nil {
		return nil, api.Port{}, err
	}
	if err := m.preparePort(n, p); err != nil {
		return nil, api.Port{}, err
	}
	if err := m.savePort(o.name, p); err != nil {
		return nil, api.Port{}, err
	}
	f, err := ph.OpenPort(n, p, req.VnetHdr)
	if err != nil {
		_ = m.deletePortFile(o.name, p.UUID)
		return nil, api.Port{}, err
	}
	m.ports.put(o.name, p)
	info := portInfo(o.name, p)
	m.log.Info("network port created for a bridge helper", "network", o.name, "port", p.UUID, "user", who, "uid", c.UID, "pid", c.PID, "tap", info.TAP)
	m.emitPort(o, EventPortCreated, p.UUID)
	return f, info, nil
}

// guestPort is the port of a helper call: owned (in libvirt's <owner>) by
// the user, with a fresh uuid, the guest's MAC when told else a random one
// unused on the network, and a transient TAP owned by the caller's uid.
func (m *Manager) guestPort(network, who string, c Caller, mac string) (*netxml.Port, error) {
	p := &netxml.Port{}
	p.UUID = uuid.NewString()
	p.Owner = &libvirtxml.NetworkPortOwner{Name: who, UUID: uuid.NewString()}
	if mac != "" {
		canon, err := netxml.CanonicalMAC(mac)
		if err != nil {
			return nil, fmt.Errorf("invalid MAC '%s'", mac)
		}
		mac = canon
	}
	for mac == "" {
		cand, err := netxml.RandomMAC()
		if err != nil {
			return nil, err
		}
		mac = cand
		for _, q := range m.ports.of(network) {
			if q.MAC.Address == cand {
				mac = ""
			}
		}
	}
	p.MAC = &libvirtxml.NetworkPortMAC{Address: mac}
	p.TAP = &netxml.TAP{User: strconv.FormatUint(uint64(c.UID), 10), Transient: true}
	return p, nil
}

// portEnded drops a transient port whose device is gone (its guest closed
// the TAP). The network's lock is held.
func (m *Manager) portEnded(n *netxml.Network, p *netxml.Port) {
	if err := m.deletePortFile(n.Name, p.UUID); err != nil {
		m.log.Error("removing the file of an ended network port", "network", n.Name, "port", p.UUID, "err", err)
		return
	}
	m.ports.remove(n.Name, p.UUID)
	m.log.Info("network port ended: its guest closed the device", "network", n.Name, "port", p.UUID, "tap", p.TAP.Dev, "owner", p.Owner.Name)
	m.events.publish(Event{Name: n.Name, UUID: n.UUID, Type: EventPortDeleted, Port: p.UUID, Time: time.Now()})
}

// serveHelper answers vnet-bridge-helper calls on ln until ctx ends; it
// returns once the calls in progress have finished.
func (m *Manager) serveHelper(ctx context.Context, ln *net.UnixListener) {
	go func() { <-ctx.Done(); ln.Close() }()
	var calls sync.WaitGroup
	defer calls.Wait()
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil {
				m.log.Error("bridge helper socket failed", "err", err)
			}
			return
		}
		calls.Go(func() {
			defer conn.Close()
			select {
			case <-m.Ready():
			case <-ctx.Done():
				return
			}
			m.helperCall(conn)
		})
	}
}

// helperCall serves one connection: one request, one reply.
func (m *Manager) helperCall(conn *net.UnixConn) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	reply := func(r api.HelperReply, f *os.File) {
		data, _ := json.Marshal(r)
		var oob []byte
		if f != nil {
			oob = unix.UnixRights(int(f.Fd()))
		}
		if _, _, err := conn.WriteMsgUnix(data, oob, nil); err != nil {
			m.log.Warn("bridge helper reply failed", "err", err)
		}
	}
	c, err := peerCaller(conn, true)
	if err != nil {
		reply(api.HelperReply{Error: "cannot identify the caller: " + err.Error()}, nil)
		return
	}
	buf := make([]byte, 4096)
	nr, err := conn.Read(buf)
	var req api.HelperRequest
	if err == nil {
		err = json.Unmarshal(buf[:nr], &req)
	}
	if err != nil {
		reply(api.HelperReply{Error: "bad request: " + err.Error()}, nil)
		return
	}
	f, port, err := m.AttachGuest(c, req)
	if err != nil {
		// The error's own words: "internal error: " would mislead a user
		// who was simply refused.
		reply(api.HelperReply{Error: err.Error()}, nil)
		return
	}
	// vnetd's copy of the fd goes once the helper has it: the TAP's life is
	// then the guest's.
	defer f.Close()
	reply(api.HelperReply{Port: &port}, f)
}
