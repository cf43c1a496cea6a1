// Package client talks to vnetd's local API (package api) over its unix
// socket. vnetctl and the integration tests use it. It keeps no state and no
// connections between calls: each request dials the socket, speaks a minimal
// HTTP/1.0 (see transport.go) and closes the connection when the response
// has been read.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"vnet/daemon/api"
)

// DefaultSocketPath is where vnetd listens unless told otherwise.
const DefaultSocketPath = "/run/vnet/vnetd.sock"

// SocketEnv names the environment variable that overrides DefaultSocketPath.
const SocketEnv = "VNET_SOCKET"

// ReadOnlySocketPath is the daemon's read-only socket, for callers that are
// not root (queries only, like libvirt's libvirt-sock-ro).
const ReadOnlySocketPath = "/run/vnet/vnetd-ro.sock"

// DefaultSocket returns $VNET_SOCKET when set and non-empty, else
// DefaultSocketPath for root; for anyone else the user's session daemon
// ($XDG_RUNTIME_DIR/vnet/vnetd.sock, vnetd --session) when it runs, like
// virsh's qemu:///session, else ReadOnlySocketPath.
func DefaultSocket() string {
	if s := os.Getenv(SocketEnv); s != "" {
		return s
	}
	if os.Geteuid() != 0 {
		if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
			if s := filepath.Join(rt, "vnet", "vnetd.sock"); isSocket(s) {
				return s
			}
		}
		return ReadOnlySocketPath
	}
	return DefaultSocketPath
}

func isSocket(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

// baseURL is the path prefix of every network request.
const baseURL = "/v1/networks"

// maxErrorBody bounds how much of a non-JSON error body is quoted back.
const maxErrorBody = 512

// Client calls vnetd's API. It is safe for concurrent use.
type Client struct {
	socket string
	dialer net.Dialer
}

// ConnectError reports that the daemon's socket could not be reached at all
// (no daemon, wrong path, permission denied). Callers tell it apart from an
// API failure with errors.As.
type ConnectError struct {
	// Socket is the path that was dialled.
	Socket string
	// Err is the dial error (typically a *net.OpError wrapping a syscall.Errno).
	Err error
}

// Error names the socket and the cause.
func (e *ConnectError) Error() string {
	return fmt.Sprintf("failed to connect to the daemon at %s: %v", e.Socket, e.Err)
}

// Unwrap returns the dial error.
func (e *ConnectError) Unwrap() error { return e.Err }

// New returns a Client for the daemon listening on socketPath.
func New(socketPath string) *Client {
	return &Client{socket: socketPath}
}

// Socket returns the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// List returns every network, active or not, in the daemon's order.
func (c *Client) List(ctx context.Context) ([]api.Network, error) {
	var out []api.Network
	if err := c.do(ctx, "GET", baseURL, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Get looks a network up by ref; by is "any" (a 36-character ref is tried as
// a UUID first, then as a name), "name" or "uuid". An empty by means "any".
func (c *Client) Get(ctx context.Context, ref, by string) (api.Network, error) {
	u := refURL(ref, "")
	if by != "" {
		u += "?by=" + url.QueryEscape(by)
	}
	var out api.Network
	err := c.do(ctx, "GET", u, nil, &out)
	return out, err
}

// XML returns the network's XML document: the live one, or the persistent
// configuration when inactive is set (net-dumpxml --inactive).
func (c *Client) XML(ctx context.Context, ref string, inactive bool) (string, error) {
	u := refURL(ref, "xml")
	if inactive {
		u += "?inactive=1"
	}
	var out api.XML
	if err := c.do(ctx, "GET", u, nil, &out); err != nil {
		return "", err
	}
	return out.XML, nil
}

// Define defines (or redefines) a persistent network from XML (net-define).
func (c *Client) Define(ctx context.Context, xml string) (api.Network, error) {
	return c.DefineWith(ctx, api.DefineRequest{XML: xml})
}

// DefineWith is Define with the full request, e.g. Validate for --validate.
func (c *Client) DefineWith(ctx context.Context, req api.DefineRequest) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, "POST", baseURL, req, &out)
	return out, err
}

// Create creates and starts a transient network from XML (net-create).
func (c *Client) Create(ctx context.Context, xml string) (api.Network, error) {
	return c.CreateWith(ctx, api.DefineRequest{XML: xml})
}

// CreateWith is Create with the full request, e.g. Validate for --validate.
func (c *Client) CreateWith(ctx context.Context, req api.DefineRequest) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, "POST", baseURL+"/create", req, &out)
	return out, err
}

// Start starts a defined network (net-start).
func (c *Client) Start(ctx context.Context, ref string) (api.Network, error) {
	return c.post(ctx, ref, "start", nil)
}

// Destroy stops a network; a transient one ceases to exist (net-destroy).
func (c *Client) Destroy(ctx context.Context, ref string) (api.Network, error) {
	return c.post(ctx, ref, "destroy", nil)
}

// Undefine removes a network's persistent definition; an active network keeps
// running as a transient one (net-undefine).
func (c *Client) Undefine(ctx context.Context, ref string) (api.Network, error) {
	return c.post(ctx, ref, "undefine", nil)
}

// SetAutostart turns autostart on or off (net-autostart [--disable]).
func (c *Client) SetAutostart(ctx context.Context, ref string, enable bool) (api.Network, error) {
	return c.post(ctx, ref, "autostart", api.AutostartRequest{Enable: enable})
}

// Update changes one section of a network's live state and/or persistent
// configuration (net-update). The answer is the network after the change;
// its Active field tells which of the two --current affected.
func (c *Client) Update(ctx context.Context, ref string, req api.UpdateRequest) (api.Network, error) {
	return c.post(ctx, ref, "update", req)
}

// Leases returns the DHCP leases of an active network, all of them or only
// those of mac when it is not empty (net-dhcp-leases), in the daemon's order.
func (c *Client) Leases(ctx context.Context, ref, mac string) ([]api.Lease, error) {
	u := refURL(ref, "leases")
	if mac != "" {
		u += "?mac=" + url.QueryEscape(mac)
	}
	var out []api.Lease
	if err := c.do(ctx, "GET", u, nil, &out); err != nil {
		return nil, err
	}
	if out == nil {
		// A daemon may encode "no lease" as null.
		out = []api.Lease{}
	}
	return out, nil
}

// DryRunStart returns what starting the network would change on the host,
// changing nothing (net-start --dry-run).
func (c *Client) DryRunStart(ctx context.Context, ref string) (api.Plan, error) {
	var out api.Plan
	err := c.do(ctx, "POST", refURL(ref, "start")+"?dry-run=1", nil, &out)
	return out, err
}

// DryRunCreate returns what creating a transient network from xml would
// change on the host, changing nothing (net-create --dry-run).
func (c *Client) DryRunCreate(ctx context.Context, xml string) (api.Plan, error) {
	return c.DryRunCreateWith(ctx, api.DefineRequest{XML: xml})
}

// DryRunCreateWith is DryRunCreate with the full request, e.g. Validate.
func (c *Client) DryRunCreateWith(ctx context.Context, req api.DefineRequest) (api.Plan, error) {
	var out api.Plan
	err := c.do(ctx, "POST", baseURL+"/create?dry-run=1", req, &out)
	return out, err
}

func (c *Client) post(ctx context.Context, ref, verb string, body any) (api.Network, error) {
	var out api.Network
	err := c.do(ctx, "POST", refURL(ref, verb), body, &out)
	return out, err
}

// refURL builds /v1/networks/REF[/verb] with REF path-escaped, so names with
// spaces, '%' or '?' survive; '/' cannot occur in a valid name but is escaped too.
func refURL(ref, verb string) string {
	u := baseURL + "/" + url.PathEscape(ref)
	if verb != "" {
		u += "/" + verb
	}
	return u
}

// do sends one request and decodes a 2xx answer into out; any other status
// is returned as *api.Error.
func (c *Client) do(ctx context.Context, method, u string, body, out any) error {
	var data []byte
	if body != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		// XML travels as-is: "<" escaped to \u003c would only hinder debugging.
		enc.SetEscapeHTML(false)
		if err := enc.Encode(body); err != nil {
			return fmt.Errorf("vnetd %s %s: encode request: %w", method, u, err)
		}
		data = buf.Bytes()
	}
	resp, err := c.roundTrip(ctx, method, u, data)
	if err != nil {
		return transportError(method, pathOf(u), err)
	}
	defer resp.Close()
	data, err = resp.readAll()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("vnetd %s %s: read response: %w", method, pathOf(u), err)
	}
	if resp.status < 200 || resp.status > 299 {
		return decodeError(resp.status, resp.reason, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("vnetd %s %s: decode response: %w", method, pathOf(u), err)
	}
	return nil
}

// transportError is the error of a request that got no answer: the
// *ConnectError itself when the socket could not be dialled, else err
// naming the request.
func transportError(method, path string, err error) error {
	var ce *ConnectError
	if errors.As(err, &ce) {
		return ce
	}
	return fmt.Errorf("vnetd %s %s: %w", method, path, err)
}

// decodeError turns a failed response into *api.Error. A body that is not an
// api.Error (a proxy, a crashed handler) still yields one, with the status,
// its reason phrase and the start of the body as the message.
func decodeError(status int, reason string, data []byte) *api.Error {
	var e api.Error
	if err := json.Unmarshal(data, &e); err == nil && (e.Code != "" || e.Message != "") {
		if e.Code == "" {
			e.Code = api.CodeFailed
		}
		return &e
	}
	text := strings.TrimSpace(string(data))
	if len(text) > maxErrorBody {
		text = text[:maxErrorBody] + "..."
	}
	msg := fmt.Sprintf("internal error: unexpected response from vnetd: %d %s", status, reason)
	if text != "" {
		msg += ": " + text
	}
	return &api.Error{Code: api.CodeFailed, Message: msg}
}
