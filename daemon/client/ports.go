package client

import (
	"context"
	"net/url"

	"vnet/daemon/api"
)

// CreatePort creates a network port on the active network ref from
// <networkport> XML (net-port-create).
func (c *Client) CreatePort(ctx context.Context, ref string, req api.PortRequest) (api.Port, error) {
	var out api.Port
	err := c.do(ctx, "POST", refURL(ref, "ports"), req, &out)
	return out, err
}

// ListPorts returns the network's ports, sorted by UUID (net-port-list).
func (c *Client) ListPorts(ctx context.Context, ref string) ([]api.Port, error) {
	var out []api.Port
	if err := c.do(ctx, "GET", refURL(ref, "ports"), nil, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []api.Port{}
	}
	return out, nil
}

// PortXML returns the XML of the port with that UUID (net-port-dumpxml).
func (c *Client) PortXML(ctx context.Context, ref, port string) (string, error) {
	var out api.XML
	if err := c.do(ctx, "GET", refURL(ref, "ports")+"/"+url.PathEscape(port), nil, &out); err != nil {
		return "", err
	}
	return out.XML, nil
}

// DeletePort deletes the port with that UUID (net-port-delete); a TAP vnetd
// created for it is deleted too.
func (c *Client) DeletePort(ctx context.Context, ref, port string) (api.Port, error) {
	var out api.Port
	err := c.do(ctx, "POST", refURL(ref, "ports")+"/"+url.PathEscape(port)+"/delete", nil, &out)
	return out, err
}
