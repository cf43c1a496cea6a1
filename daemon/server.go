package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"vnet/daemon/api"
	netxml "vnet/xml"
)

// maxBody bounds request bodies: network XML is small.
const maxBody = 4 << 20

// Handler returns the HTTP handler of the local API (see package api).
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, m.List())
	})
	mux.HandleFunc("GET /v1/networks/{ref}", func(w http.ResponseWriter, r *http.Request) {
		by := r.URL.Query().Get("by")
		if by == "" {
			by = "any"
		}
		n, err := m.Get(r.PathValue("ref"), by)
		if err == nil {
			// Only here (net-info), not in Get: D-Bus property reads
			// and events must not wait for FRR.
			n.Overlay, err = m.OverlayStatus(n.UUID)
		}
		reply(w, n, err)
	})
	mux.HandleFunc("GET /v1/networks/{ref}/xml", func(w http.ResponseWriter, r *http.Request) {
		inactive := r.URL.Query().Get("inactive") != ""
		text, err := m.XML(r.PathValue("ref"), inactive)
		reply(w, api.XML{XML: text}, err)
	})
	mux.HandleFunc("POST /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		var req api.DefineRequest
		if !readJSON(w, r, &req) {
			return
		}
		n, err := m.Define(req.XML)
		reply(w, n, err)
	})
	mux.HandleFunc("POST /v1/networks/create", func(w http.ResponseWriter, r *http.Request) {
		var req api.DefineRequest
		if !readJSON(w, r, &req) {
			return
		}
		if r.URL.Query().Get("dry-run") != "" {
			p, err := m.DryRunCreate(req.XML)
			reply(w, p, err)
			return
		}
		n, err := m.Create(req.XML)
		reply(w, n, err)
	})
	mux.HandleFunc("POST /v1/networks/{ref}/start", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("dry-run") != "" {
			p, err := m.DryRunStart(r.PathValue("ref"))
			reply(w, p, err)
			return
		}
		n, err := m.Start(r.PathValue("ref"))
		reply(w, n, err)
	})
	mux.HandleFunc("POST /v1/networks/{ref}/update", func(w http.ResponseWriter, r *http.Request) {
		var req api.UpdateRequest
		if !readJSON(w, r, &req) {
			return
		}
		n, err := m.Update(r.PathValue("ref"), req.Command, req.Section, req.ParentIndex, req.XML, req.Live, req.Config)
		reply(w, n, err)
	})
	mux.HandleFunc("GET /v1/networks/{ref}/leases", func(w http.ResponseWriter, r *http.Request) {
		l, err := m.Leases(r.PathValue("ref"), r.URL.Query().Get("mac"))
		reply(w, l, err)
	})
	mux.HandleFunc("GET /v1/events", m.serveEvents)
	mux.HandleFunc("GET /v1/doctor", func(w http.ResponseWriter, r *http.Request) {
		rep, err := m.Doctor(r.Context(), r.URL.Query().Get("network"))
		reply(w, rep, err)
	})
	m.portRoutes(mux)
	for verb, op := range map[string]func(string) (api.Network, error){
		"destroy":  m.Destroy,
		"undefine": m.Undefine,
	} {
		op := op
		mux.HandleFunc("POST /v1/networks/{ref}/"+verb, func(w http.ResponseWriter, r *http.Request) {
			n, err := op(r.PathValue("ref"))
			reply(w, n, err)
		})
	}
	mux.HandleFunc("POST /v1/networks/{ref}/autostart", func(w http.ResponseWriter, r *http.Request) {
		var req api.AutostartRequest
		if !readJSON(w, r, &req) {
			return
		}
		n, err := m.SetAutostart(r.PathValue("ref"), req.Enable)
		reply(w, n, err)
	})
	return mux
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err == nil && len(body) > maxBody {
		err = errors.New("request body too large")
	}
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, &api.Error{Code: api.CodeBadRequest, Message: "invalid argument: " + err.Error()})
		return false
	}
	return true
}

// reply writes v, or err as an api.Error with the status its kind maps to.
func reply(w http.ResponseWriter, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	e := &api.Error{Message: netxml.Message(err)}
	if n, ok := v.(api.Network); ok {
		e.Network = n.Name
	}
	status := http.StatusInternalServerError
	var bad badPortRef
	switch kind := netxml.KindOf(err); {
	case kind == netxml.KindNoNetworkPort || errors.As(err, &bad):
		// A port reference that is no UUID fails as a lookup, like virsh's.
		e.Code, status = api.CodeNoPort, http.StatusNotFound
	case kind == netxml.KindNetworkPortExists:
		e.Code, status = api.CodeFailed, http.StatusConflict
	case kind == netxml.KindNoNetwork:
		e.Code, status = api.CodeNoNetwork, http.StatusNotFound
	case kind == netxml.KindInvalidOperation:
		e.Code, status = api.CodeInvalidOperation, http.StatusConflict
	case kind == netxml.KindXML, kind == netxml.KindPlain, kind == netxml.KindUnsupported, kind == netxml.KindInvalidArg, kind == netxml.KindOperationUnsupported:
		e.Code, status = api.CodeInvalidXML, http.StatusBadRequest
	default:
		e.Code = api.CodeFailed
	}
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	// Encoded first, so the reply carries its Content-Length (the client
	// reads it into one buffer) and goes out in one write.
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// serveEvents streams lifecycle events as JSON lines until the client goes.
func (m *Manager) serveEvents(w http.ResponseWriter, r *http.Request) {
	var filter string
	if ref := r.URL.Query().Get("network"); ref != "" {
		n, err := m.Get(ref, "any")
		if err != nil {
			reply(w, nil, err)
			return
		}
		filter = n.UUID
	}
	all := r.URL.Query().Get("types") == "all"
	events, cancel := m.Subscribe()
	defer cancel()
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			if (filter != "" && e.UUID != filter) || (!all && !e.Type.IsLifecycle()) {
				continue
			}
			if err := enc.Encode(api.Event{Network: e.Name, UUID: e.UUID, Event: e.Type.String(), Port: e.Port, Detail: e.Detail, Time: e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00")}); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}
