// Package api defines the wire types of vnetd's local API: HTTP+JSON over the
// unix socket <run-dir>/vnetd.sock. vnetctl and tests use it through Client;
// the daemon serves it. It depends on nothing else in vnet.
//
// Two sockets serve it: vnetd.sock (mode 0600, root only, checked with
// SO_PEERCRED) for everything, vnetd-ro.sock (0666) for the GET endpoints only.
//
// Endpoints (REF is a network name or UUID, path-escaped):
//
//	GET  /v1/networks                       → []Network (every network; clients filter)
//	GET  /v1/networks/REF?by=any|name|uuid  → Network   (any: a 36-char REF is tried as UUID first, then as name)
//	GET  /v1/networks/REF/xml?inactive=1    → XML
//	POST /v1/networks           DefineRequest → Network (net-define)
//	POST /v1/networks/create    DefineRequest → Network (net-create: transient, started)
//	POST /v1/networks/REF/start               → Network
//	POST /v1/networks/REF/destroy             → Network
//	POST /v1/networks/REF/undefine            → Network
//	POST /v1/networks/REF/autostart AutostartRequest → Network
//	POST /v1/networks/REF/update    UpdateRequest → Network (net-update)
//	GET  /v1/networks/REF/leases?mac=MAC      → []Lease (net-dhcp-leases)
//	POST /v1/networks/REF/start?dry-run=1     → Plan (nothing is changed)
//	POST /v1/networks/create?dry-run=1  DefineRequest → Plan
//	GET  /v1/events?network=REF               → a stream of Event, one JSON object per line,
//	                                            until the client disconnects
//	GET  /v1/doctor?network=REF               → DoctorReport (net-doctor; all active
//	                                            networks without network)
//
// A failure answers a non-2xx status with an Error body.
package api

// Network is the summary of one network, as net-list and net-info show it.
type Network struct {
	Name       string `json:"name"`
	UUID       string `json:"uuid"`
	Active     bool   `json:"active"`
	Persistent bool   `json:"persistent"`
	Autostart  bool   `json:"autostart"`
	// Bridge is the bridge device name; empty when the network has none.
	Bridge string `json:"bridge,omitempty"`
	// Ports is the number of network ports (net-port-list) of the network.
	Ports int `json:"ports,omitempty"`
	// Overlay is the state of an active overlay network's control plane
	// (GET of one network only; net-list leaves it out).
	Overlay *Overlay `json:"overlay,omitempty"`
}

// Overlay is an overlay network's control plane as FRR sees it on this
// host, as net-info shows it (net-doctor checks frr.Status itself).
type Overlay struct {
	// VNI and Device are the overlay's VXLAN network identifier and device.
	VNI    uint32 `json:"vni"`
	Device string `json:"device"`
	// VTEP is this host's VTEP address.
	VTEP string `json:"vtep,omitempty"`
	// Error says why the state could not be read (no overlay settings,
	// FRR not reachable); the other fields are then empty.
	Error string `json:"error,omitempty"`
	// Peers are the BGP l2vpn evpn neighbors.
	Peers []OverlayPeer `json:"peers"`
	// VNIKnown: FRR's zebra has the VNI (its device is up in the bridge).
	VNIKnown bool `json:"vniKnown"`
	// RemoteVTEPs are the hosts that announced the VNI.
	RemoteVTEPs []string `json:"remoteVteps,omitempty"`
	// LocalMACs counts the MACs learned on this host's bridge.
	LocalMACs int `json:"localMacs"`
	// RemoteMACs maps MACs learned from peers to their VTEP.
	RemoteMACs map[string]string `json:"remoteMacs,omitempty"`
}

// OverlayPeer is one BGP neighbor of an overlay.
type OverlayPeer struct {
	Address string `json:"address"`
	// State is BGP's: Established when up, else Idle, Connect, Active …
	State    string `json:"state"`
	Up       bool   `json:"up"`
	Uptime   string `json:"uptime,omitempty"`
	Prefixes int    `json:"prefixes"`
}

// DefineRequest carries network XML for net-define and net-create.
type DefineRequest struct {
	XML string `json:"xml"`
	// Validate is virsh's --validate. vnetd validates every definition fully
	// (parse, semantic checks, conflicts) whether or not it is set, so it is
	// accepted for compatibility and changes nothing.
	Validate bool `json:"validate,omitempty"`
}

// AutostartRequest turns autostart on or off.
type AutostartRequest struct {
	Enable bool `json:"enable"`
}

// XML is a network's XML document.
type XML struct {
	XML string `json:"xml"`
}

// Error codes: what a client branches on.
const (
	// CodeNoNetwork: the REF named no network (virsh prints "failed to get network 'REF'" first).
	CodeNoNetwork = "no-network"
	// CodeInvalidOperation: the network is in the wrong state (already active, not active …).
	CodeInvalidOperation = "invalid-operation"
	// CodeInvalidXML: the XML was rejected (parse or validation).
	CodeInvalidXML = "invalid-xml"
	// CodeFailed: the operation failed on the host.
	CodeFailed = "failed"
	// CodeBadRequest: the request itself was malformed.
	CodeBadRequest = "bad-request"
	// CodeForbidden: the caller may not do this (not root, or the read-only socket).
	CodeForbidden = "forbidden"
)

// Error is the body of every failed request.
type Error struct {
	Code string `json:"code"`
	// Message is libvirt's message, with its prefix, e.g.
	// "Requested operation is not valid: network is already active".
	Message string `json:"message"`
	// Network is the name of the network the request resolved to, when it did.
	Network string `json:"network,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// UpdateRequest is net-update. Command and Section are libvirt's enum values
// (virNetworkUpdateCommand: 1 modify, 2 delete, 3 add-last, 4 add-first;
// virNetworkUpdateSection: 1 bridge, 2 domain, 3 ip, 4 ip-dhcp-host,
// 5 ip-dhcp-range, 6 forward, 7 forward-interface, 8 forward-pf, 9 portgroup,
// 10 dns-host, 11 dns-txt, 12 dns-srv).
type UpdateRequest struct {
	Command int `json:"command"`
	Section int `json:"section"`
	// ParentIndex selects the <ip> for the ip-dhcp-* sections; -1 = the
	// first suitable one (virsh's default when --parent-index is absent).
	ParentIndex int    `json:"parentIndex"`
	XML         string `json:"xml"`
	// Live and Config are virsh's --live / --config; both false = --current
	// (the live network if active, else the persistent config).
	Live   bool `json:"live,omitempty"`
	Config bool `json:"config,omitempty"`
}

// Lease is one DHCP lease, as net-dhcp-leases lists it.
type Lease struct {
	// ExpiryTime is the lease's end in seconds since the epoch (0 = infinite).
	ExpiryTime int64  `json:"expiryTime"`
	MAC        string `json:"mac,omitempty"`
	// Protocol is "ipv4" or "ipv6".
	Protocol string `json:"protocol"`
	IPAddr   string `json:"ipaddr"`
	Prefix   int    `json:"prefix"`
	Hostname string `json:"hostname,omitempty"`
	ClientID string `json:"clientid,omitempty"`
	IAID     string `json:"iaid,omitempty"`
}

// Plan is what a start would do, for --dry-run.
type Plan struct {
	Network string `json:"network"`
	// Text lists every host change, one per line, as commands (ip, sysctl,
	// nft or iptables, tc) and the dnsmasq argv and files.
	Text string `json:"text"`
}

// Event is a lifecycle event of a network.
type Event struct {
	Network string `json:"network"`
	UUID    string `json:"uuid"`
	// Event is "Defined", "Undefined", "Started" or "Stopped".
	Event string `json:"event"`
	// Time is when it happened, in RFC 3339 with milliseconds, UTC.
	Time string `json:"time"`
	// Port is the port's uuid for vnet's PortCreated and PortDeleted.
	Port string `json:"port,omitempty"`
	// Detail is, for vnet's Warning, the net-doctor check id and the
	// culprit ("fw.foreign-drop: nftables table inet filter …").
	Detail string `json:"detail,omitempty"`
}

// DoctorCheck is one result of net-doctor: a check for one network (""
// for the host), passed or failed.
type DoctorCheck struct {
	// ID is the check's stable id ("fw.foreign-drop", "dns.port-conflict" …).
	ID      string `json:"id"`
	Network string `json:"network"`
	OK      bool   `json:"ok"`
	// Detail is one sentence: what was checked, or the culprit.
	Detail string `json:"detail"`
	// Fix is the exact command or step; empty when OK.
	Fix string `json:"fix,omitempty"`
}

// DoctorReport is net-doctor's answer: every check, passing ones too.
type DoctorReport struct {
	Checks []DoctorCheck `json:"checks"`
}
