package daemon

import (
	"net/http"

	"vnet/daemon/api"
)

// portRoutes adds the net-port-* endpoints (see api/ports.go) to mux.
func (m *Manager) portRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/networks/{ref}/ports", func(w http.ResponseWriter, r *http.Request) {
		ports, err := m.ListPorts(r.PathValue("ref"))
		reply(w, ports, err)
	})
	mux.HandleFunc("POST /v1/networks/{ref}/ports", func(w http.ResponseWriter, r *http.Request) {
		var req api.PortRequest
		if !readJSON(w, r, &req) {
			return
		}
		p, err := m.CreatePort(r.PathValue("ref"), req.XML)
		reply(w, p, err)
	})
	mux.HandleFunc("GET /v1/networks/{ref}/ports/{port}", func(w http.ResponseWriter, r *http.Request) {
		text, err := m.PortXML(r.PathValue("ref"), r.PathValue("port"))
		reply(w, api.XML{XML: text}, err)
	})
	mux.HandleFunc("POST /v1/networks/{ref}/ports/{port}/delete", func(w http.ResponseWriter, r *http.Request) {
		p, err := m.DeletePort(r.PathValue("ref"), r.PathValue("port"))
		reply(w, p, err)
	})
}
