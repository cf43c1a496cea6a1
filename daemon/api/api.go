// Package api defines the wire types of vnetd's local API: HTTP+JSON over the
// unix socket <run-dir>/vnetd.sock. vnetctl and tests use it through Client;
// the daemon serves it. It depends on nothing else in vnet.
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
}

// DefineRequest carries network XML for net-define and net-create.
type DefineRequest struct {
	XML string `json:"xml"`
	// Validate asks for the stricter check virsh's --validate performs.
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
