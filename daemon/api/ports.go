package api

// Network ports (net-port-*), REF a network name or UUID, PORT a port UUID:
//
//	GET  /v1/networks/REF/ports                   → []Port (sorted by UUID)
//	POST /v1/networks/REF/ports  PortRequest      → Port (net-port-create)
//	GET  /v1/networks/REF/ports/PORT              → XML  (net-port-dumpxml)
//	POST /v1/networks/REF/ports/PORT/delete       → Port (net-port-delete)
//
// An unknown port answers 404 with CodeNoPort.

// CodeNoPort: the PORT named no port of the network (virsh prints
// "failed to get network port 'PORT'" first).
const CodeNoPort = "no-port"

// Port is the summary of one network port.
type Port struct {
	UUID      string `json:"uuid"`
	Network   string `json:"network"`
	MAC       string `json:"mac"`
	OwnerName string `json:"ownerName"`
	OwnerUUID string `json:"ownerUUID"`
	// TAP is the device of the port's <vnet:tap>, empty without one.
	TAP string `json:"tap,omitempty"`
}

// PortRequest carries <networkport> XML for net-port-create.
type PortRequest struct {
	XML string `json:"xml"`
	// Validate is virsh's --validate; vnetd always validates fully.
	Validate bool `json:"validate,omitempty"`
}
