package network

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RetiredGroup is the link group (IFLA_GROUP, `ip link set DEV group N`)
// of bridges taken out of service and waiting to be deleted: "vnet" in
// ASCII. Every link in it is deleted; no other program should use it. A
// bridge a stopped daemon left there still carries vnet's mark and is
// pruned at the next start (PruneBridges).
const RetiredGroup = 0x766e6574

// retireBatch is how long a retired bridge waits for others to be deleted
// with it (unless someone waits for it: FlushRetired).
const retireBatch = 50 * time.Millisecond

// retirer deletes retired bridges in batches, one queue per network
// namespace (the daemon has one; tests retire bridges in several).
type retirer struct {
	mu     sync.Mutex
	queues map[uint64]*retireQueue
}

// retireQueue is the batch of one namespace, with a netlink socket opened
// there: the deletion runs on another thread, which may be in another
// namespace.
type retireQueue struct {
	key     uint64
	sock    *nl.SocketHandle
	pending []chan error
	timer   *time.Timer
	running bool
}

var retired = retirer{queues: map[uint64]*retireQueue{}}

// RetireBridge takes the bridge vnet created for network out of service at
// once and deletes it in the background: it sets the link down, removes its
// addresses (so the subnet and the network's traffic are gone when it
// returns) and puts it into RetiredGroup; the returned channel is closed
// when the link is gone. A link of that name vnet did not create for
// network is not touched (ErrNotOurs).
//
// Why: the kernel's unregistration of a net device waits for RCU grace
// periods under the rtnl lock, 20–40 ms on a small VM, whatever else it
// does: deleted one by one, each net-destroy waited for the deletion of the
// one before. Retired bridges are deleted together, by group, with one
// request: the kernel unregisters them as one batch, with one set of waits.
// Callers must wait on the channel (FlushRetired) before anything reuses
// the name.
func RetireBridge(name, network string) (<-chan error, error) {
	h, err := newHandle()
	if err != nil {
		return nil, fmt.Errorf("bridge %q: %w", name, err)
	}
	defer h.Close()
	link, err := h.linkByName(name)
	if err != nil {
		return nil, fmt.Errorf("bridge %q: look up: %w", name, err)
	}
	done := make(chan error, 1)
	if link == nil {
		done <- nil
		close(done)
		return done, nil
	}
	if link.Type() != "bridge" || !ownedBy(link, network) {
		return nil, fmt.Errorf("bridge %q: %w", name, ErrNotOurs)
	}
	if err := h.LinkSetDown(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return nil, fmt.Errorf("bridge %q: set down: %w", name, err)
	}
	if addrs, err := h.addrs(link); err == nil {
		for i := range addrs {
			_ = h.AddrDel(link, &addrs[i])
		}
	}
	if err := h.LinkSetGroup(link, RetiredGroup); err != nil {
		if errors.Is(err, unix.ENODEV) {
			done <- nil
			close(done)
			return done, nil
		}
		return nil, fmt.Errorf("bridge %q: set group: %w", name, err)
	}
	if err := retired.add(done); err != nil {
		return nil, fmt.Errorf("bridge %q: %w", name, err)
	}
	return done, nil
}

// FlushRetired deletes the retired bridges now instead of at the end of
// their batch (someone waits for one).
func FlushRetired() {
	retired.mu.Lock()
	defer retired.mu.Unlock()
	for _, q := range retired.queues {
		if q.timer != nil && q.timer.Stop() {
			q.timer = nil
			retired.startLocked(q)
		}
	}
}

// add queues done in the calling thread's namespace.
func (r *retirer) add(done chan error) error {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	key := st.Ino
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queues[key]
	if q == nil {
		sock, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("open netlink socket: %w", err)
		}
		q = &retireQueue{key: key, sock: &nl.SocketHandle{Socket: sock}}
		r.queues[key] = q
	}
	q.pending = append(q.pending, done)
	if q.timer == nil && !q.running {
		q.timer = time.AfterFunc(retireBatch, func() { r.fire(q) })
	}
	return nil
}

func (r *retirer) fire(q *retireQueue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q.timer = nil
	if !q.running {
		r.startLocked(q)
	}
}

// startLocked deletes the pending batch of q in a goroutine; bridges
// retired meanwhile form the next batch, started when this one ends. An
// idle queue closes its socket and goes.
func (r *retirer) startLocked(q *retireQueue) {
	batch := q.pending
	q.pending = nil
	if len(batch) == 0 {
		if q.timer == nil && !q.running {
			q.sock.Socket.Close()
			delete(r.queues, q.key)
		}
		return
	}
	q.running = true
	go func() {
		err := deleteGroup(q.sock, RetiredGroup)
		if err != nil {
			err = fmt.Errorf("delete retired bridges: %w", err)
		}
		for _, done := range batch {
			done <- err
			close(done)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		q.running = false
		if q.timer == nil {
			r.startLocked(q)
		}
	}()
}

// deleteGroup deletes every link of group with one RTM_DELLINK (the kernel
// unregisters them together), over sock. vishvananda/netlink has no
// request for it.
func deleteGroup(sock *nl.SocketHandle, group uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sock}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(group)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}
