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
