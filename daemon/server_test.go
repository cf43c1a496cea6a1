package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"vnet/daemon/api"
	"vnet/daemon/client"
	netxml "vnet/xml"
)

// TestReplyErrorMapping: every error kind maps to its HTTP status and API
// code, with libvirt's message and the network's name.
func TestReplyErrorMapping(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{netxml.Errorf(netxml.KindNoNetwork, "no network with matching name 'x'"), http.StatusNotFound, api.CodeNoNetwork},
		{netxml.Errorf(netxml.KindInvalidOperation, "network is already active"), http.StatusConflict, api.CodeInvalidOperation},
		{netxml.Errorf(netxml.KindXML, "bad"), http.StatusBadRequest, api.CodeInvalidXML},
		{netxml.Errorf(netxml.KindPlain, "missing name information"), http.StatusBadRequest, api.CodeInvalidXML},
		{netxml.Errorf(netxml.KindUnsupported, "x"), http.StatusBadRequest, api.CodeInvalidXML},
		{netxml.Errorf(netxml.KindInvalidArg, "x"), http.StatusBadRequest, api.CodeInvalidXML},
		{netxml.Errorf(netxml.KindOperationUnsupported, "x"), http.StatusBadRequest, api.CodeInvalidXML},
		{netxml.Errorf(netxml.KindOperationFailed, "x"), http.StatusInternalServerError, api.CodeFailed},
		{netxml.Errorf(netxml.KindInternal, "Network is already in use by interface virbr0"), http.StatusInternalServerError, api.CodeFailed},
		{netxml.Errorf(netxml.KindNotSupported, "virNetworkGetDHCPLeases"), http.StatusInternalServerError, api.CodeFailed},
		// A wrapped kind keeps its mapping; a plain Go error is a failure.
		{fmt.Errorf("network 'x': %w", netxml.Errorf(netxml.KindNoNetwork, "gone")), http.StatusNotFound, api.CodeNoNetwork},
		{errors.New("bridge \"virbr9\": set up: device busy"), http.StatusInternalServerError, api.CodeFailed},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		reply(w, api.Network{Name: "x"}, c.err)
		var e api.Error
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("%v: body %q: %v", c.err, w.Body.String(), err)
		}
		if w.Code != c.status || e.Code != c.code || e.Message != netxml.Message(c.err) || e.Network != "x" {
			t.Errorf("%v: %d %+v, want %d code %q message %q", c.err, w.Code, e, c.status, c.code, netxml.Message(c.err))
		}
	}
}

// TestAPIErrorsThroughClient: the manager's errors reach the client as
// typed api.Errors with libvirt's messages, over the real handler.
func TestAPIErrorsThroughClient(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	sock := filepath.Join(t.TempDir(), "vnetd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m.Handler()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	c := client.New(sock)
	ctx := context.Background()
	if _, err := c.Define(ctx, netXML("n1", "", "10.71.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, code, msg string) {
		t.Helper()
		var e *api.Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: %v (%T), want an *api.Error", what, err, err)
		}
		if e.Code != code || e.Message != msg {
			t.Errorf("%s: code %q message %q, want %q %q", what, e.Code, e.Message, code, msg)
		}
	}
	_, err = c.Start(ctx, "nope")
	check("start of an unknown network", err, api.CodeNoNetwork, "Network not found: no network with matching name 'nope'")
	_, err = c.Start(ctx, "n1")
	check("second start", err, api.CodeInvalidOperation, "Requested operation is not valid: network is already active")
	_, err = c.Define(ctx, "<network>")
	if e := (*api.Error)(nil); !errors.As(err, &e) || e.Code != api.CodeInvalidXML {
		t.Errorf("define of malformed XML: %v, want code %q", err, api.CodeInvalidXML)
	}
	_, err = c.Create(ctx, netXML("n2", "", "10.71.0"))
	check("create overlapping n1", err, api.CodeFailed, "internal error: Network is already in use by interface virbr0")
}
