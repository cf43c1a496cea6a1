package daemon

import (
	"errors"
	"net/http"

	"vnet/daemon/api"
	netxml "vnet/xml"
)

// portRoutes adds the net-port-* endpoints (see api/ports.go) to mux.
func (m *Manager) portRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/networks/{ref}/ports", func(w http.ResponseWriter, r *http.Request) {
		ports, err := m.ListPorts(r.PathValue("ref"))
		replyPort(w, ports, err)
	})
	mux.HandleFunc("POST /v1/networks/{ref}/ports", func(w http.ResponseWriter, r *http.Request) {
		var req api.PortRequest
		if !readJSON(w, r, &req) {
			return
		}
		p, err := m.CreatePort(r.PathValue("ref"), req.XML)
		replyPort(w, p, err)
	})
	mux.HandleFunc("GET /v1/networks/{ref}/ports/{port}", func(w http.ResponseWriter, r *http.Request) {
		text, err := m.PortXML(r.PathValue("ref"), r.PathValue("port"))
		replyPort(w, api.XML{XML: text}, err)
	})
	mux.HandleFunc("POST /v1/networks/{ref}/ports/{port}/delete", func(w http.ResponseWriter, r *http.Request) {
		p, err := m.DeletePort(r.PathValue("ref"), r.PathValue("port"))
		replyPort(w, p, err)
	})
}

// replyPort is reply with the port error kinds mapped to their codes.
func replyPort(w http.ResponseWriter, v any, err error) {
	var bad badPortRef
	switch kind := netxml.KindOf(err); {
	case kind == netxml.KindNoNetworkPort || errors.As(err, &bad):
		writeJSON(w, http.StatusNotFound, &api.Error{Code: api.CodeNoPort, Message: netxml.Message(err)})
	case kind == netxml.KindNetworkPortExists:
		writeJSON(w, http.StatusConflict, &api.Error{Code: api.CodeFailed, Message: netxml.Message(err)})
	default:
		reply(w, v, err)
	}
}
