package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"vnet/daemon/api"
)

// seen is one request as the fake daemon received it.
type seen struct {
	Method, Path, RawQuery, Body string
}

// serve runs handler on a unix socket in a temp dir and returns its path.
func serve(t *testing.T, handler http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vnetd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// recorder answers every request with status and body and records it.
func recorder(t *testing.T, status int, body any) (string, *[]seen) {
	var got []seen
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b)})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}))
	return sock, &got
}

var netOpen = api.Network{Name: "ref-open", UUID: "1f50f7e6-fcf8-4c1a-a58f-48a1bdde3abc", Active: true, Persistent: true, Bridge: "virbr-open"}

func TestEndpoints(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		call func(c *Client) (any, error)
		want seen
	}{
		{"get-any", func(c *Client) (any, error) { return c.Get(ctx, "ref-open", "any") }, seen{"GET", "/v1/networks/ref-open", "by=any", ""}},
		{"get-default", func(c *Client) (any, error) { return c.Get(ctx, "ref-open", "") }, seen{"GET", "/v1/networks/ref-open", "", ""}},
		{"get-escaped", func(c *Client) (any, error) { return c.Get(ctx, "a b/c%?", "name") }, seen{"GET", "/v1/networks/a%20b%2Fc%25%3F", "by=name", ""}},
		{"define", func(c *Client) (any, error) { return c.Define(ctx, "<network/>") }, seen{"POST", "/v1/networks", "", `{"xml":"<network/>"}` + "\n"}},
		{"define-validate", func(c *Client) (any, error) {
			return c.DefineWith(ctx, api.DefineRequest{XML: "<network/>", Validate: true})
		}, seen{"POST", "/v1/networks", "", `{"xml":"<network/>","validate":true}`}},
		{"create", func(c *Client) (any, error) { return c.Create(ctx, "<network/>") }, seen{"POST", "/v1/networks/create", "", `{"xml":"<network/>"}`}},
		{"start", func(c *Client) (any, error) { return c.Start(ctx, "ref-open") }, seen{"POST", "/v1/networks/ref-open/start", "", ""}},
		{"destroy", func(c *Client) (any, error) { return c.Destroy(ctx, "ref-open") }, seen{"POST", "/v1/networks/ref-open/destroy", "", ""}},
		{"undefine", func(c *Client) (any, error) { return c.Undefine(ctx, "ref-open") }, seen{"POST", "/v1/networks/ref-open/undefine", "", ""}},
		{"autostart-on", func(c *Client) (any, error) { return c.SetAutostart(ctx, "ref-open", true) }, seen{"POST", "/v1/networks/ref-open/autostart", "", `{"enable":true}`}},
		{"update", func(c *Client) (any, error) {
			return c.Update(ctx, "ref-open", api.UpdateRequest{Command: 4, Section: 4, ParentIndex: -1, XML: "<host mac='52:54:00:00:00:01'/>", Config: true})
		}, seen{"POST", "/v1/networks/ref-open/update", "", `{"command":4,"section":4,"parentIndex":-1,"xml":"<host mac='52:54:00:00:00:01'/>","config":true}`}},
		{"update-current", func(c *Client) (any, error) {
			return c.Update(ctx, "ref-open", api.UpdateRequest{Command: 2, Section: 10, ParentIndex: 0, XML: "<host/>"})
		}, seen{"POST", "/v1/networks/ref-open/update", "", `{"command":2,"section":10,"parentIndex":0,"xml":"<host/>"}`}},
		{"autostart-off", func(c *Client) (any, error) { return c.SetAutostart(ctx, "ref-open", false) }, seen{"POST", "/v1/networks/ref-open/autostart", "", `{"enable":false}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sock, got := recorder(t, http.StatusOK, netOpen)
			res, err := tc.call(New(sock))
			if err != nil {
				t.Fatal(err)
			}
			if res.(api.Network) != netOpen {
				t.Errorf("result %+v, want %+v", res, netOpen)
			}
			if len(*got) != 1 {
				t.Fatalf("%d requests, want 1", len(*got))
			}
			g := (*got)[0]
			g.Body = strings.TrimSpace(g.Body)
			tc.want.Body = strings.TrimSpace(tc.want.Body)
			if g != tc.want {
				t.Errorf("request %+v, want %+v", g, tc.want)
			}
		})
	}
}

func TestListAndXML(t *testing.T) {
	ctx := context.Background()
	list := []api.Network{netOpen, {Name: "default", UUID: "400e018b-b381-4cf2-aa2e-65601ecf6eeb"}}
	sock, got := recorder(t, http.StatusOK, list)
	l, err := New(sock).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l, list) {
		t.Errorf("List = %+v, want %+v", l, list)
	}
	if (*got)[0].Path != "/v1/networks" || (*got)[0].Method != "GET" {
		t.Errorf("request %+v", (*got)[0])
	}

	doc := "<network>\n  <name>x</name>\n</network>\n"
	sock, got = recorder(t, http.StatusOK, api.XML{XML: doc})
	for _, inactive := range []bool{false, true} {
		x, err := New(sock).XML(ctx, "x", inactive)
		if err != nil {
			t.Fatal(err)
		}
		if x != doc {
			t.Errorf("XML = %q, want %q", x, doc)
		}
	}
	want := []seen{{"GET", "/v1/networks/x/xml", "", ""}, {"GET", "/v1/networks/x/xml", "inactive=1", ""}}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("requests %+v, want %+v", *got, want)
	}
}

func TestAPIError(t *testing.T) {
	want := &api.Error{Code: api.CodeInvalidOperation, Message: "Requested operation is not valid: network is already active", Network: "ref-open"}
	sock, _ := recorder(t, http.StatusConflict, want)
	_, err := New(sock).Start(context.Background(), "ref-open")
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T %v, want *api.Error", err, err)
	}
	if *ae != *want {
		t.Errorf("error %+v, want %+v", ae, want)
	}
}

func TestNonJSONError(t *testing.T) {
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusBadGateway)
	}))
	_, err := New(sock).List(context.Background())
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %T %v, want *api.Error", err, err)
	}
	if ae.Code != api.CodeFailed || ae.Message != "internal error: unexpected response from vnetd: 502 Bad Gateway: boom" {
		t.Errorf("error %+v", ae)
	}
}

func TestConnectError(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nope.sock")
	_, err := New(sock).List(context.Background())
	var ce *ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("error %T %v, want *ConnectError", err, err)
	}
	if ce.Socket != sock || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error %+v", ce)
	}
	if want := "failed to connect to the daemon at " + sock + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want prefix %q", err, want)
	}
}

func TestDefaultSocket(t *testing.T) {
	t.Setenv(SocketEnv, "")
	if got := DefaultSocket(); got != "/run/vnet/vnetd.sock" {
		t.Errorf("DefaultSocket() = %q", got)
	}
	t.Setenv(SocketEnv, "/tmp/x.sock")
	if got := DefaultSocket(); got != "/tmp/x.sock" {
		t.Errorf("DefaultSocket() = %q", got)
	}
}

func TestLeases(t *testing.T) {
	ctx := context.Background()
	leases := []api.Lease{
		{ExpiryTime: 1795000000, MAC: "52:54:00:12:34:01", Protocol: "ipv4", IPAddr: "192.168.122.244", Prefix: 24, Hostname: "vm", ClientID: "01:52:54:00:12:34:01"},
		{ExpiryTime: 1795000100, MAC: "52:54:00:12:34:02", Protocol: "ipv6", IPAddr: "fd00::10", Prefix: 64, ClientID: "00:04:aa", IAID: "5"},
	}
	sock, got := recorder(t, http.StatusOK, leases)
	c := New(sock)
	l, err := c.Leases(ctx, "default", "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l, leases) {
		t.Errorf("Leases = %+v, want %+v", l, leases)
	}
	if _, err := c.Leases(ctx, "default", "52:54:00:12:34:01"); err != nil {
		t.Fatal(err)
	}
	want := []seen{{"GET", "/v1/networks/default/leases", "", ""}, {"GET", "/v1/networks/default/leases", "mac=52%3A54%3A00%3A12%3A34%3A01", ""}}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("requests %+v, want %+v", *got, want)
	}

	for _, none := range []any{[]api.Lease{}, nil} {
		sock, _ = recorder(t, http.StatusOK, none)
		if l, err := New(sock).Leases(ctx, "default", ""); err != nil || l == nil || len(l) != 0 {
			t.Errorf("no leases (%#v): %#v %v, want an empty slice", none, l, err)
		}
	}
}

func TestDryRun(t *testing.T) {
	ctx := context.Background()
	plan := api.Plan{Network: "ref-open", Text: "ip link add virbr-open type bridge\n"}
	sock, got := recorder(t, http.StatusOK, plan)
	c := New(sock)
	p, err := c.DryRunStart(ctx, "ref open")
	if err != nil || p != plan {
		t.Errorf("DryRunStart = %+v %v", p, err)
	}
	p, err = c.DryRunCreate(ctx, "<network/>")
	if err != nil || p != plan {
		t.Errorf("DryRunCreate = %+v %v", p, err)
	}
	if _, err := c.DryRunCreateWith(ctx, api.DefineRequest{XML: "<network/>", Validate: true}); err != nil {
		t.Fatal(err)
	}
	want := []seen{
		{"POST", "/v1/networks/ref%20open/start", "dry-run=1", ""},
		{"POST", "/v1/networks/create", "dry-run=1", `{"xml":"<network/>"}` + "\n"},
		{"POST", "/v1/networks/create", "dry-run=1", `{"xml":"<network/>","validate":true}` + "\n"},
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("requests %+v, want %+v", *got, want)
	}
}

// eventServer streams evs as newline-delimited JSON, then ends the stream
// when hangUp is set, else waits for the client to go away. It records the
// query of every subscription.
func eventServer(t *testing.T, evs []api.Event, hangUp bool) (string, chan string) {
	queries := make(chan string, 4)
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries <- r.URL.RawQuery
		if r.URL.Path != "/v1/events" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("network") == "nosuchnet" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(api.Error{Code: api.CodeNoNetwork, Message: "Network not found: no network with matching name 'nosuchnet'"})
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, ev := range evs {
			json.NewEncoder(w).Encode(ev)
			w.(http.Flusher).Flush()
		}
		if !hangUp {
			<-r.Context().Done()
		}
	}))
	return sock, queries
}

var testEvents = []api.Event{
	{Network: "ref-open", UUID: "1f50f7e6-fcf8-4c1a-a58f-48a1bdde3abc", Event: "Started", Time: "2026-05-01T10:00:00.123Z"},
	{Network: "ref-open", UUID: "1f50f7e6-fcf8-4c1a-a58f-48a1bdde3abc", Event: "Stopped", Time: "2026-05-01T10:00:01.456Z"},
}

func TestEvents(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		sock, queries := eventServer(t, testEvents, false)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, errc := New(sock).Events(ctx, "ref-open")
		var got []api.Event
		for ev := range events {
			got = append(got, ev)
			if len(got) == len(testEvents) {
				// The stream stays open: only the cancellation ends it.
				cancel()
			}
		}
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if !reflect.DeepEqual(got, testEvents) {
			t.Errorf("events %+v, want %+v", got, testEvents)
		}
		if q := <-queries; q != "network=ref-open" {
			t.Errorf("query %q", q)
		}
	})
	t.Run("all-networks-hang-up", func(t *testing.T) {
		sock, queries := eventServer(t, testEvents[:1], true)
		events, errc := New(sock).Events(context.Background(), "")
		var n int
		for range events {
			n++
		}
		if err := <-errc; !errors.Is(err, ErrStreamEnded) || n != 1 {
			t.Errorf("%d events, error %v; want 1, ErrStreamEnded", n, err)
		}
		if q := <-queries; q != "" {
			t.Errorf("query %q, want none", q)
		}
	})
	t.Run("no-network", func(t *testing.T) {
		sock, _ := eventServer(t, testEvents, false)
		events, errc := New(sock).Events(context.Background(), "nosuchnet")
		if _, ok := <-events; ok {
			t.Error("got an event")
		}
		var ae *api.Error
		if err := <-errc; !errors.As(err, &ae) || ae.Code != api.CodeNoNetwork {
			t.Errorf("error %v, want CodeNoNetwork", err)
		}
	})
	t.Run("no-daemon", func(t *testing.T) {
		events, errc := New(filepath.Join(t.TempDir(), "none.sock")).Events(context.Background(), "")
		for range events {
			t.Error("got an event")
		}
		var ce *ConnectError
		if err := <-errc; !errors.As(err, &ce) {
			t.Errorf("error %T %v, want *ConnectError", err, err)
		}
	})
}
