package client

import (
	"context"
	"net/url"

	"vnet/daemon/api"
)

// Doctor runs net-doctor's checks for the network ref, or for every active
// network when ref is empty.
func (c *Client) Doctor(ctx context.Context, ref string) (api.DoctorReport, error) {
	u := "/v1/doctor"
	if ref != "" {
		u += "?network=" + url.QueryEscape(ref)
	}
	var out api.DoctorReport
	err := c.do(ctx, "GET", u, nil, &out)
	return out, err
}
