package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"vnet/daemon/api"
)

// fakeNet is one network held by fakeDaemon.
type fakeNet struct {
	api.Network
	live, config string // XML documents
}

// fakeDaemon serves vnetd's API from memory with libvirt's state rules, so
// the virsh transcripts can be replayed against it.
type fakeDaemon struct {
	mu   sync.Mutex
	nets []*fakeNet
	// uuids are handed out to definitions without <uuid>, by network name.
	uuids map[string]string
	// fail answers the next request "METHOD PATH" with this error, once.
	fail map[string]*api.Error
	// defined records the XML of every successful define, in order.
	defined []string
	// requests records every define and create request body, in order.
	requests []api.DefineRequest
	// hook, when set, runs before each request is served, under the lock.
	hook func(r *http.Request)
	// updates records every net-update request, in order.
	updates []api.UpdateRequest
	// leases are the DHCP leases by network name, in the daemon's order.
	leases map[string][]api.Lease
	// events are streamed to every subscriber (those of its network only
	// when it names one), after which the stream stays open.
	events []api.Event
	// hangUp ends each event stream after its events instead of keeping it open.
	hangUp bool
	// subscribed receives the query of each event subscription once its
	// events are sent.
	subscribed chan string
	// dryRuns records the plans handed out, by network name.
	dryRuns []string
	// doctor is net-doctor's report, by the network asked for ("" = all).
	doctor map[string]api.DoctorReport
}

func newFake() *fakeDaemon {
	return &fakeDaemon{uuids: map[string]string{}, fail: map[string]*api.Error{}, leases: map[string][]api.Lease{}, subscribed: make(chan string, 16)}
}

// add seeds a network.
func (f *fakeDaemon) add(n api.Network, xml string) *fakeDaemon {
	f.nets = append(f.nets, &fakeNet{Network: n, live: xml, config: xml})
	return f
}

// start serves f on a unix socket in a temp dir and returns its path.
func (f *fakeDaemon) start(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vnetd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/networks", f.list)
	mux.HandleFunc("GET /v1/networks/{ref}", f.get)
	mux.HandleFunc("GET /v1/networks/{ref}/xml", f.xml)
	mux.HandleFunc("POST /v1/networks", f.define)
	mux.HandleFunc("POST /v1/networks/create", f.define)
	mux.HandleFunc("POST /v1/networks/{ref}/{verb}", f.verb)
	mux.HandleFunc("GET /v1/networks/{ref}/leases", f.leaseList)
	mux.HandleFunc("GET /v1/doctor", func(w http.ResponseWriter, r *http.Request) {
		ref := r.URL.Query().Get("network")
		if ref != "" {
			if _, e := f.find(ref, "any"); e != nil {
				reply(w, http.StatusNotFound, e)
				return
			}
		}
		reply(w, http.StatusOK, f.doctor[ref])
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/events" {
			// A stream outlives the request's turn at the lock.
			f.stream(w, r)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.hook != nil {
			f.hook(r)
		}
		key := r.Method + " " + r.URL.Path
		if e, ok := f.fail[key]; ok {
			delete(f.fail, key)
			reply(w, http.StatusInternalServerError, e)
			return
		}
		mux.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeDaemon) find(ref, by string) (*fakeNet, *api.Error) {
	if (by == "any" || by == "uuid" || by == "") && len(ref) == 36 {
		for _, n := range f.nets {
			if n.UUID == ref {
				return n, nil
			}
		}
		if by == "uuid" {
			return nil, &api.Error{Code: api.CodeNoNetwork, Message: fmt.Sprintf("Network not found: no network with matching uuid '%s'", ref)}
		}
	}
	if by != "uuid" {
		for _, n := range f.nets {
			if n.Name == ref {
				return n, nil
			}
		}
	}
	return nil, &api.Error{Code: api.CodeNoNetwork, Message: fmt.Sprintf("Network not found: no network with matching name '%s'", ref)}
}

func (f *fakeDaemon) remove(n *fakeNet) {
	for i, m := range f.nets {
		if m == n {
			f.nets = append(f.nets[:i], f.nets[i+1:]...)
			return
		}
	}
}

func (f *fakeDaemon) list(w http.ResponseWriter, _ *http.Request) {
	out := []api.Network{}
	for _, n := range f.nets {
		out = append(out, n.Network)
	}
	reply(w, http.StatusOK, out)
}

func (f *fakeDaemon) get(w http.ResponseWriter, r *http.Request) {
	n, e := f.find(r.PathValue("ref"), r.URL.Query().Get("by"))
	if e != nil {
		reply(w, http.StatusNotFound, e)
		return
	}
	reply(w, http.StatusOK, n.Network)
}

func (f *fakeDaemon) xml(w http.ResponseWriter, r *http.Request) {
	n, e := f.find(r.PathValue("ref"), "any")
	if e != nil {
		reply(w, http.StatusNotFound, e)
		return
	}
	doc := n.live
	if r.URL.Query().Get("inactive") != "" && n.Persistent {
		doc = n.config
	}
	reply(w, http.StatusOK, api.XML{XML: doc})
}

var (
	nameRE = regexp.MustCompile(`<name>([^<]*)</name>`)
	uuidRE = regexp.MustCompile(`<uuid>([^<]*)</uuid>`)
)

func (f *fakeDaemon) define(w http.ResponseWriter, r *http.Request) {
	var req api.DefineRequest
	body, _ := io.ReadAll(r.Body)
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, &api.Error{Code: api.CodeBadRequest, Message: err.Error()})
		return
	}
	f.requests = append(f.requests, req)
	m := nameRE.FindStringSubmatch(req.XML)
	if m == nil {
		reply(w, http.StatusBadRequest, &api.Error{Code: api.CodeInvalidXML, Message: "missing name information"})
		return
	}
	name, uuid := m[1], ""
	if u := uuidRE.FindStringSubmatch(req.XML); u != nil {
		uuid = u[1]
	}
	create := strings.HasSuffix(r.URL.Path, "/create")
	if create && r.URL.Query().Get("dry-run") != "" {
		f.dryRuns = append(f.dryRuns, name)
		reply(w, http.StatusOK, planFor(name))
		return
	}
	old, _ := f.find(name, "name")
	if old != nil && (uuid == "" || uuid != old.UUID) {
		reply(w, http.StatusConflict, &api.Error{Code: api.CodeFailed, Message: fmt.Sprintf("operation failed: network '%s' already exists with uuid %s", name, old.UUID)})
		return
	}
	if uuid == "" {
		uuid = f.uuids[name]
	}
	switch {
	case create && old != nil:
		reply(w, http.StatusConflict, &api.Error{Code: api.CodeInvalidOperation, Message: "Requested operation is not valid: network is already active"})
		return
	case create:
		n := &fakeNet{Network: api.Network{Name: name, UUID: uuid, Active: true}, live: req.XML, config: req.XML}
		f.nets = append(f.nets, n)
		reply(w, http.StatusOK, n.Network)
		return
	case old != nil:
		old.Persistent = true
		old.config = req.XML
		if !old.Active {
			old.live = req.XML
		}
		f.defined = append(f.defined, req.XML)
		reply(w, http.StatusOK, old.Network)
	default:
		n := &fakeNet{Network: api.Network{Name: name, UUID: uuid, Persistent: true}, live: req.XML, config: req.XML}
		f.nets = append(f.nets, n)
		f.defined = append(f.defined, req.XML)
		reply(w, http.StatusOK, n.Network)
	}
}

func (f *fakeDaemon) verb(w http.ResponseWriter, r *http.Request) {
	n, e := f.find(r.PathValue("ref"), "any")
	if e != nil {
		reply(w, http.StatusNotFound, e)
		return
	}
	invalid := func(msg string) {
		reply(w, http.StatusConflict, &api.Error{Code: api.CodeInvalidOperation, Message: "Requested operation is not valid: " + msg, Network: n.Name})
	}
	switch r.PathValue("verb") {
	case "start":
		if n.Active {
			invalid("network is already active")
			return
		}
		if r.URL.Query().Get("dry-run") != "" {
			f.dryRuns = append(f.dryRuns, n.Name)
			reply(w, http.StatusOK, planFor(n.Name))
			return
		}
		n.Active, n.live = true, n.config
	case "update":
		var req api.UpdateRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, &api.Error{Code: api.CodeBadRequest, Message: err.Error()})
			return
		}
		if req.Live && !n.Active {
			invalid("network is not running")
			return
		}
		f.updates = append(f.updates, req)
	case "destroy":
		if !n.Active {
			invalid(fmt.Sprintf("network '%s' is not active", n.Name))
			return
		}
		n.Active = false
		if !n.Persistent {
			f.remove(n)
		}
	case "undefine":
		if !n.Persistent {
			invalid("cannot undefine transient network")
			return
		}
		n.Persistent, n.Autostart = false, false
		if !n.Active {
			f.remove(n)
		}
	case "autostart":
		var req api.AutostartRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, &api.Error{Code: api.CodeBadRequest, Message: err.Error()})
			return
		}
		if !n.Persistent {
			invalid("cannot set autostart for transient network")
			return
		}
		n.Autostart = req.Enable
	default:
		http.NotFound(w, r)
		return
	}
	reply(w, http.StatusOK, n.Network)
}

// planFor is the fake's dry-run plan for a network.
func planFor(name string) api.Plan {
	return api.Plan{Network: name, Text: "ip link add name virbr-" + name + " type bridge\nip link set dev virbr-" + name + " up\n"}
}

func (f *fakeDaemon) leaseList(w http.ResponseWriter, r *http.Request) {
	n, e := f.find(r.PathValue("ref"), "any")
	if e != nil {
		reply(w, http.StatusNotFound, e)
		return
	}
	if !n.Active {
		reply(w, http.StatusConflict, &api.Error{Code: api.CodeInvalidOperation, Message: fmt.Sprintf("Requested operation is not valid: network '%s' is not active", n.Name), Network: n.Name})
		return
	}
	out := []api.Lease{}
	mac := r.URL.Query().Get("mac")
	for _, l := range f.leases[n.Name] {
		if mac == "" || strings.EqualFold(l.MAC, mac) {
			out = append(out, l)
		}
	}
	reply(w, http.StatusOK, out)
}

// stream serves GET /v1/events: the seeded events as JSON lines, then
// nothing until the client goes away.
func (f *fakeDaemon) stream(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	ref := r.URL.Query().Get("network")
	var evs []api.Event
	name := ""
	if ref != "" {
		n, e := f.find(ref, "any")
		if e != nil {
			f.mu.Unlock()
			reply(w, http.StatusNotFound, e)
			return
		}
		name = n.Name
	}
	for _, ev := range f.events {
		if name == "" || ev.Network == name {
			evs = append(evs, ev)
		}
	}
	hangUp := f.hangUp
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	for _, ev := range evs {
		json.NewEncoder(w).Encode(ev)
		w.(http.Flusher).Flush()
	}
	select {
	case f.subscribed <- r.URL.RawQuery:
	default:
	}
	if !hangUp {
		<-r.Context().Done()
	}
}
