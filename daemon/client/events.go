package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"vnet/daemon/api"
)

// eventsURL is the path of the event stream endpoint.
const eventsURL = "/v1/events"

// ErrStreamEnded reports that the daemon closed the event stream while the
// client still wanted events (the daemon stopped or restarted).
var ErrStreamEnded = errors.New("vnetd closed the event stream")

// Events subscribes to the lifecycle events of the network ref, or of every
// network when ref is empty (net-event). Events arrive on the first channel
// in the daemon's order until the stream ends; the first channel is then
// closed and the second yields exactly one error before it is closed too:
// ctx.Err() after a cancellation, ErrStreamEnded when the daemon hung up,
// *api.Error when the daemon refused the subscription (CodeNoNetwork for an
// unknown ref), *ConnectError when it could not be reached. The stream holds
// a connection until it ends: cancel ctx once no more events are wanted.
func (c *Client) Events(ctx context.Context, ref string) (<-chan api.Event, <-chan error) {
	return c.EventsWith(ctx, ref, false)
}

// EventsWith is Events; with all it also delivers vnet's own events
// (Repaired, PortCreated, PortDeleted), not only libvirt's lifecycle ones.
func (c *Client) EventsWith(ctx context.Context, ref string, all bool) (<-chan api.Event, <-chan error) {
	events := make(chan api.Event)
	errc := make(chan error, 1)
	go func() {
		err := c.stream(ctx, ref, all, events)
		close(events)
		errc <- err
		close(errc)
	}()
	return events, errc
}

// stream reads the newline-delimited JSON of GET /v1/events into out until
// the stream fails or ctx is cancelled, and says why it stopped.
func (c *Client) stream(ctx context.Context, ref string, all bool, out chan<- api.Event) error {
	q := url.Values{}
	if ref != "" {
		q.Set("network", ref)
	}
	if all {
		q.Set("types", "all")
	}
	u := eventsURL
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := c.roundTrip(ctx, "GET", u, nil)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return transportError("GET", eventsURL, err)
	}
	defer resp.Close()
	if resp.status < 200 || resp.status > 299 {
		// An error body is small; the bound only guards against a broken peer.
		data, _ := io.ReadAll(io.LimitReader(resp, 64<<10))
		return decodeError(resp.status, resp.reason, data)
	}
	dec := json.NewDecoder(resp)
	for {
		var ev api.Event
		if err := dec.Decode(&ev); err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, io.EOF):
				return ErrStreamEnded
			}
			return fmt.Errorf("vnetd GET %s: read event: %w", eventsURL, err)
		}
		select {
		case out <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
