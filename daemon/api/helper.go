package api

// vnet-bridge-helper talks to vnetd on <run-dir>/vnetd-helper.sock, a
// SOCK_SEQPACKET socket open to every local user: one HelperRequest packet,
// one HelperReply packet. vnetd identifies the caller by SO_PEERCRED and
// SO_PEERGROUPS and checks its access list; on success the reply carries the
// new TAP's fd as SCM_RIGHTS.

// HelperSocketName is the helper socket's name in vnetd's run dir.
const HelperSocketName = "vnetd-helper.sock"

// HelperRequest asks for a TAP plugged into a bridge (QEMU's --br=).
type HelperRequest struct {
	Bridge string `json:"bridge"`
	// VnetHdr is QEMU's --use-vnet: the TAP gets IFF_VNET_HDR.
	VnetHdr bool `json:"vnetHdr,omitempty"`
	// MAC is the guest's MAC when the helper was told it (--mac=); vnetd
	// picks a random 52:54:00 one for the port otherwise.
	MAC string `json:"mac,omitempty"`
}

// HelperReply answers a HelperRequest: Error, or the port whose TAP's fd
// comes with the reply.
type HelperReply struct {
	Error string `json:"error,omitempty"`
	Port  *Port  `json:"port,omitempty"`
}
