package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Table flags and message types the pinned golang.org/x/sys does not name
// (linux/netfilter/nf_tables.h).
const (
	// nftTableFOwner binds a table to the netlink socket that created it:
	// no other socket may change or delete it, and a ruleset flush from
	// another socket skips it (kernel ≥ 5.12).
	nftTableFOwner = 0x2
	// nftTableFPersist keeps an owned table when its owner's socket closes
	// (the table is then "orphaned", flags persist only); a new socket adopts
	// it by sending NEWTABLE with the owner flag (kernel ≥ 6.9).
	nftTableFPersist = 0x4
	// nftOwnedFlags are the flags of every table vnet creates in owner mode.
	nftOwnedFlags = nftTableFOwner | nftTableFPersist
	// nftMsgDestroyTable deletes a table and is no error when the table is
	// absent (kernel ≥ 6.3).
	nftMsgDestroyTable = 26

	nftMsgNewTable = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE
	nftMsgDelTable = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_DELTABLE
	nftMsgGetGen   = unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN
)

// nftOwner is the lasting netfilter netlink socket that owns vnet's tables.
// Only this socket may change them, so every write of the backend goes
// through it; reads (dumps) work from any socket and keep using
// google/nftables directly.
//
// Why not google/nftables' own lasting connection: it always sends
// NFTA_TABLE_FLAGS 0 and has no flags API (v0.3.0). Its batches are therefore
// captured through its WithTestDial hook (see batch), the NEWTABLE messages
// get the owner flags, and this socket sends them and reads the replies.
type nftOwner struct {
	fd     int
	portid uint32
	seq    uint32
	buf    []byte
}

// openNftOwner opens the socket in the network namespace netns (0: the
// current one).
func openNftOwner(netns int) (*nftOwner, error) {
	o := &nftOwner{fd: -1, buf: make([]byte, 1<<16), seq: uint32(time.Now().Unix())}
	err := inNetNS(netns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		o.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	if err := o.setup(); err != nil {
		o.Close()
		return nil, fmt.Errorf("set up netfilter netlink socket: %w", err)
	}
	return o, nil
}

func (o *nftOwner) setup() error {
	if err := unix.Bind(o.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	sa, err := unix.Getsockname(o.fd)
	if err != nil {
		return err
	}
	if nl, ok := sa.(*unix.SockaddrNetlink); ok {
		o.portid = nl.Pid
	}
	// Errors carry the kernel's explanation but not the whole request.
	_ = unix.SetsockoptInt(o.fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(o.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	// A kernel that never answers must not hang the daemon.
	tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
	return unix.SetsockoptTimeval(o.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
}

// Close closes the socket. Owned tables with the persist flag stay, orphaned.
func (o *nftOwner) Close() error {
	if o.fd < 0 {
		return nil
	}
	err := unix.Close(o.fd)
	o.fd = -1
	return err
}

// nftMsgError is the kernel's refusal of one message of a batch.
type nftMsgError struct {
	// What names the message ("NEWCHAIN ip vnet").
	What string
	// Errno is the kernel's error number.
	Errno unix.Errno
	// Detail is the kernel's extended ack message, if any.
	Detail string
}

func (e *nftMsgError) Error() string {
	s := e.What + ": " + e.Errno.Error()
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *nftMsgError) Unwrap() error { return e.Errno }

// batch builds a batch with google/nftables (build adds messages to c), gives
// every NEWTABLE the owner flags and turns every DELTABLE into DESTROYTABLE
// (no error when absent), sends it over the owner socket and returns the
// kernel's errors.
func (o *nftOwner) batch(build func(c *nftables.Conn)) error {
	var msgs []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			return nil, io.EOF
		}
		// Capture the batch and acknowledge every message, so that
		// google/nftables' Flush returns; the real exchange follows.
		acks := make([]netlink.Message, 0, len(req))
		for _, m := range req {
			t := m.Header.Type
			if t == unix.NFNL_MSG_BATCH_BEGIN || t == unix.NFNL_MSG_BATCH_END {
				continue
			}
			msgs = append(msgs, netlink.Message{Header: m.Header, Data: append([]byte(nil), m.Data...)})
			if m.Header.Flags&netlink.Acknowledge != 0 {
				acks = append(acks, netlink.Message{
					Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID},
					Data:   make([]byte, 4+16),
				})
			}
		}
		return acks, nil
	}))
	if err != nil {
		return err
	}
	build(c)
	if err := c.Flush(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs {
		switch msgs[i].Header.Type {
		case nftMsgNewTable:
			setTableFlags(msgs[i].Data, nftOwnedFlags)
		case nftMsgDelTable:
			msgs[i].Header.Type = unix.NFNL_SUBSYS_NFTABLES<<8 | nftMsgDestroyTable
		}
	}
	return o.exec(msgs)
}

// setTableFlags overwrites NFTA_TABLE_FLAGS in the attributes of a table
// message (after its 4-byte nfgenmsg).
func setTableFlags(data []byte, flags uint32) {
	for off := 4; off+4 <= len(data); {
		l := int(binary.NativeEndian.Uint16(data[off:]))
		typ := binary.NativeEndian.Uint16(data[off+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || off+l > len(data) {
			return
		}
		if typ == unix.NFTA_TABLE_FLAGS && l == 8 {
			binary.BigEndian.PutUint32(data[off+4:], flags)
			return
		}
		off += (l + 3) &^ 3
	}
}

// exec sends msgs in one batch, then a barrier request (GETGEN), and reads
// replies until the barrier's ack: every reply of the batch comes before it.
// It returns the errors of the batch's messages, joined.
func (o *nftOwner) exec(msgs []netlink.Message) error {
	if o.fd < 0 {
		return errors.New("netfilter netlink socket is closed")
	}
	nfgen := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}
	first := o.seq + 1
	var out []byte
	add := func(typ uint16, flags netlink.HeaderFlags, data []byte) {
		o.seq++
		m := netlink.Message{
			Header: netlink.Header{Length: uint32(16 + len(data)), Type: netlink.HeaderType(typ), Flags: flags, Sequence: o.seq},
			Data:   data,
		}
		b, _ := m.MarshalBinary()
		out = append(out, b...)
	}
	add(unix.NFNL_MSG_BATCH_BEGIN, netlink.Request, nfgen)
	for _, m := range msgs {
		// Without per-message acks: the kernel answers failures anyway,
		// and a batch of many messages (adopting a thousand tables)
		// would otherwise overflow the socket's receive buffer with acks
		// and drop the barrier's.
		add(uint16(m.Header.Type), m.Header.Flags&^netlink.Acknowledge, m.Data)
	}
	add(unix.NFNL_MSG_BATCH_END, netlink.Request, nfgen)
	last := o.seq
	kernel := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if err := unix.Sendto(o.fd, out, 0, kernel); err != nil {
		return fmt.Errorf("send nftables batch: %w", err)
	}
	out = nil
	add(nftMsgGetGen, netlink.Request|netlink.Acknowledge, []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0})
	barrier := o.seq
	if err := unix.Sendto(o.fd, out, 0, kernel); err != nil {
		return fmt.Errorf("send nftables barrier: %w", err)
	}

	var errs []error
	for {
		n, _, err := unix.Recvfrom(o.fd, o.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				err = errors.New("no answer from the kernel")
			}
			return errors.Join(append(errs, fmt.Errorf("receive nftables replies: %w", err))...)
		}
		replies, err := syscall.ParseNetlinkMessage(o.buf[:n])
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("parse nftables replies: %w", err))...)
		}
		for _, r := range replies {
			if r.Header.Type != unix.NLMSG_ERROR || len(r.Data) < 4+16 {
				continue
			}
			errno := -int32(binary.NativeEndian.Uint32(r.Data))
			seq := binary.NativeEndian.Uint32(r.Data[4+8:])
			if seq == barrier {
				if errno != 0 {
					errs = append(errs, fmt.Errorf("nftables barrier: %w", unix.Errno(errno)))
				}
				return errors.Join(errs...)
			}
			if errno == 0 || seq < first || seq > last {
				continue
			}
			e := &nftMsgError{What: "batch", Errno: unix.Errno(errno), Detail: extackMsg(r)}
			if i := int(seq - first - 1); i >= 0 && i < len(msgs) {
				e.What = describeMsg(msgs[i])
			}
			errs = append(errs, e)
		}
	}
}

// extackMsg returns NLMSGERR_ATTR_MSG of an error reply with a capped
// request header.
func extackMsg(r syscall.NetlinkMessage) string {
	if r.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || r.Header.Flags&unix.NLM_F_CAPPED == 0 {
		return ""
	}
	ad, err := netlink.NewAttributeDecoder(r.Data[4+16:])
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NLMSGERR_ATTR_MSG {
			return ad.String()
		}
	}
	return ""
}

var nftMsgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_DELTABLE: "DELTABLE", nftMsgDestroyTable: "DESTROYTABLE",
	unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_DELCHAIN: "DELCHAIN",
	unix.NFT_MSG_NEWRULE: "NEWRULE", unix.NFT_MSG_DELRULE: "DELRULE",
	unix.NFT_MSG_NEWSET: "NEWSET", unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_DELSETELEM: "DELSETELEM",
}

// describeMsg names a message for errors: its type, family and table.
func describeMsg(m netlink.Message) string {
	name, ok := nftMsgNames[uint16(m.Header.Type)&0xff]
	if !ok {
		name = fmt.Sprintf("message %#x", uint16(m.Header.Type))
	}
	if len(m.Data) < 4 {
		return name
	}
	fam := map[byte]string{unix.NFPROTO_IPV4: "ip", unix.NFPROTO_IPV6: "ip6", unix.NFPROTO_INET: "inet"}[m.Data[0]]
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return name
	}
	for ad.Next() {
		// NFTA_TABLE_NAME, NFTA_CHAIN_TABLE and NFTA_RULE_TABLE are all 1.
		if ad.Type() == 1 {
			return name + " " + fam + " " + ad.String()
		}
	}
	return name
}
