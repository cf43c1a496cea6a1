// Package dbusapi is vnetd's D-Bus front door: the network part of
// libvirt-dbus (bus name org.libvirt, interfaces org.libvirt.Connect and
// org.libvirt.Network), so that libvirt-dbus clients such as cockpit-machines
// work against vnetd unchanged, plus vnet's own extras on org.vnet.Connect1 and
// org.vnet.Network1. The wire contract is the shared design doc dbus-api.md.
//
// The server is a godbus dbus.Handler: a connection made with
// server.ConnOption() (see Connect and Run) dispatches every incoming
// call to it, which gives libvirt-dbus's subtree dispatch (any …/network/_UUID
// path answers), its exact introspection data and its GetAll wire format.
package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"vnet/daemon"
)

// BusName is the well-known name the server owns by default.
const BusName = "org.libvirt"

// Connect paths: libvirt-dbus serves qemu:///system at QEMUPath and
// test:///default at TestPath.
const (
	QEMUPath dbus.ObjectPath = "/org/libvirt/QEMU"
	TestPath dbus.ObjectPath = "/org/libvirt/Test"
)

// DefaultLibVersion is the LibVersion property when Options leave it 0:
// libvirt 9.0.0 (Debian 12's), which cockpit-machines accepts.
const DefaultLibVersion = 9000000

// Options configure a Server.
type Options struct {
	// ConnectPath is the org.libvirt.Connect object; default QEMUPath, or
	// TestPath when the manager is the test driver.
	ConnectPath dbus.ObjectPath
	// LibVersion is the LibVersion property (major·10⁶ + minor·10³ + micro);
	// default DefaultLibVersion.
	LibVersion uint64
	// CallerUID returns the Unix uid of the connection that sent a call; by
	// default it asks the bus (GetConnectionUnixUser). Tests inject it.
	CallerUID func(conn *dbus.Conn, sender string) (uint32, error)
	// BusName is the well-known name to own; default BusName (org.libvirt).
	BusName string
	// Logger receives debug logs of failed calls and errors emitting events.
	Logger *slog.Logger
}

// Server serves one Manager on D-Bus at one Connect path.
type Server struct {
	m       *daemon.Manager
	log     *slog.Logger
	busName string
	connect dbus.ObjectPath
	libVer  uint64
	test    bool
	uid     func(conn *dbus.Conn, sender string) (uint32, error)
	euid    uint32

	connectIfaces []*iface
	networkIfaces []*iface

	mu      sync.Mutex
	serving bool
	conns   map[*dbus.Conn]struct{} // connections made with ConnOption

	calls inflight // method calls in progress, joined when Run returns
}

// inflight counts method calls in progress. Once closed it admits no new
// call, and wait returns when the last one has finished.
type inflight struct {
	mu     sync.Mutex
	n      int
	closed bool
	stop   chan struct{} // closed by close: calls waiting to start give up
	idle   chan struct{} // closed when n drops to 0 after close
}

func (f *inflight) init() {
	if f.stop == nil {
		f.stop = make(chan struct{})
	}
}

// enter admits a call; false once closed.
func (f *inflight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *inflight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.closed && f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// stopping is closed once the server stops admitting calls.
func (f *inflight) stopping() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	return f.stop
}

// closeAndWait admits no more calls and waits for those in progress.
func (f *inflight) closeAndWait() {
	f.mu.Lock()
	f.init()
	if !f.closed {
		f.closed = true
		close(f.stop)
	}
	var idle chan struct{}
	if f.n > 0 {
		if f.idle == nil {
			f.idle = make(chan struct{})
		}
		idle = f.idle
	}
	f.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

// reopen admits calls again (a new Run after RunWithRetry's wait).
func (f *inflight) reopen() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		f.closed = false
		f.stop = make(chan struct{})
	}
}

// New returns a server for m. It does nothing until Serve.
func New(m *daemon.Manager, o Options) *Server {
	s := &Server{m: m, log: o.Logger, connect: o.ConnectPath, libVer: o.LibVersion, test: m.IsTestDriver(), uid: o.CallerUID, euid: uint32(os.Geteuid())}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.connect == "" {
		s.connect = QEMUPath
		if s.test {
			s.connect = TestPath
		}
	}
	if s.libVer == 0 {
		s.libVer = DefaultLibVersion
	}
	s.busName = o.BusName
	if s.busName == "" {
		s.busName = BusName
	}
	if s.uid == nil {
		s.uid = busCallerUID
	}
	s.connectIfaces = []*iface{s.connectIface(), s.vnetConnectIface()}
	s.networkIfaces = []*iface{s.networkIface(), s.vnetNetworkIface()}
	return s
}

// ConnOption makes a connection dispatch incoming calls to s (it is
// dbus.WithHandler(s), remembered so that Serve can tell).
func (s *Server) ConnOption() dbus.ConnOption {
	return func(conn *dbus.Conn) error {
		s.mu.Lock()
		if s.conns == nil {
			s.conns = map[*dbus.Conn]struct{}{}
		}
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		return dbus.WithHandler(s)(conn)
	}
}

// ConnectPath returns the path of the server's org.libvirt.Connect object.
func (s *Server) ConnectPath() dbus.ObjectPath { return s.connect }

// Connect opens a connection to a message bus: address is "system", "session"
// or a D-Bus address such as "unix:path=/run/dbus/system_bus_socket". The
// connection is authenticated and has said Hello. Pass s.ConnOption() to
// make it serve s.
func Connect(address string, opts ...dbus.ConnOption) (*dbus.Conn, error) {
	var (
		conn *dbus.Conn
		err  error
	)
	switch address {
	case "system":
		conn, err = dbus.SystemBusPrivate(opts...)
	case "session":
		conn, err = dbus.SessionBusPrivate(opts...)
	case "":
		return nil, errors.New("D-Bus: empty bus address")
	default:
		conn, err = dbus.Connect(address, opts...)
		if err != nil {
			return nil, fmt.Errorf("D-Bus: connect to %s: %w", address, err)
		}
		return conn, nil
	}
	if err != nil {
		return nil, fmt.Errorf("D-Bus: connect to the %s bus: %w", address, err)
	}
	if err := conn.Auth(nil); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("D-Bus: authenticate on the %s bus: %w", address, err)
	}
	if err := conn.Hello(); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("D-Bus: hello on the %s bus: %w", address, err)
	}
	return conn, nil
}

// Run connects to the bus at address (as Connect), serves until ctx is done
// or the name is lost, and closes the connection. It returns only after the
// method calls in progress have finished: after Run, nothing it served
// touches the manager.
func (s *Server) Run(ctx context.Context, address string) error {
	s.calls.reopen()
	conn, err := Connect(address, s.ConnOption())
	if err != nil {
		return err
	}
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		_ = conn.Close()
		s.calls.closeAndWait()
	}()
	return s.Serve(ctx, conn)
}

// RunWithRetry runs Run until ctx is done. When the connection fails or the
// name is owned by another process (libvirt-dbus, another vnetd), it logs
// the error and tries again after retry, doubling the wait up to a minute;
// the wait starts over after a connection that served for a minute.
func (s *Server) RunWithRetry(ctx context.Context, address string, retry time.Duration) {
	wait := retry
	var last string
	for {
		start := time.Now()
		err := s.Run(ctx, address)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			wait = retry
		}
		// Said once: a bus that stays unreachable must not fill the log.
		if msg := fmt.Sprint(err); msg != last {
			s.log.Warn("D-Bus front door not running; vnetd works without it and keeps trying", "bus", address, "err", err)
			last = msg
		} else {
			s.log.Debug("D-Bus front door still not running", "bus", address, "err", err, "retry", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// Serve serves on conn, which must have been made with s.ConnOption().
// Every object answers from the moment conn exists; Serve checks that, then
// requests org.libvirt (no flags: if another process owns it, Serve fails),
// emits NetworkEvent signals for every manager event, and returns when ctx
// is done (nil), or with an error when the name is lost or the bus
// connection closes.
func (s *Server) Serve(ctx context.Context, conn *dbus.Conn) error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("D-Bus: server is already serving")
	}
	s.serving = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.serving = false
		s.mu.Unlock()
	}()

	// Every object answers before we own the name (clients waiting for the
	// name call at once), provided this connection dispatches to us.
	s.mu.Lock()
	_, ours := s.conns[conn]
	s.mu.Unlock()
	if !ours {
		return errors.New("D-Bus: connection does not dispatch to this server; make it with Connect(address, server.ConnOption())")
	}
	events, unsubscribe := s.m.Subscribe()
	defer unsubscribe()
	sigs := make(chan *dbus.Signal, 16)
	conn.Signal(sigs)
	defer conn.RemoveSignal(sigs)

	reply, err := conn.RequestName(s.busName, 0)
	if err != nil {
		return fmt.Errorf("D-Bus: request name %s: %w", s.busName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
		_, _ = conn.ReleaseName(s.busName)
		return fmt.Errorf("D-Bus: name %s is owned by another connection (%s); is libvirt-dbus or another vnetd running?", s.busName, reply)
	}
	s.log.Info("serving D-Bus", "name", s.busName, "path", s.connect, "unique", conn.Names()[0])
	for {
		select {
		case <-ctx.Done():
			_, _ = conn.ReleaseName(s.busName)
			return nil
		case <-conn.Context().Done():
			return errors.New("D-Bus: connection to the bus closed")
		case sig := <-sigs:
			if sig != nil && sig.Name == "org.freedesktop.DBus.NameLost" && len(sig.Body) == 1 && sig.Body[0] == s.busName {
				return fmt.Errorf("D-Bus: lost the name %s", s.busName)
			}
		case ev, ok := <-events:
			if !ok {
				return errors.New("D-Bus: manager event stream ended")
			}
			if !ev.Type.IsLifecycle() {
				// vnet's own events (drift repaired) are not libvirt's.
				continue
			}
			if err := conn.Emit(s.connect, ifaceConnect+".NetworkEvent", s.networkPath(ev.UUID), int32(ev.Type)); err != nil {
				s.log.Warn("D-Bus: emit NetworkEvent", "network", ev.Name, "event", ev.Type, "err", err)
			}
		}
	}
}

// LookupObject implements dbus.Handler: it maps a path to the object that
// answers it.
func (s *Server) LookupObject(path dbus.ObjectPath) (dbus.ServerObject, bool) {
	p, c := string(path), string(s.connect)
	netRoot := c + "/network"
	switch {
	case p == c:
		return &object{s: s, path: path, own: s.connectIfaces, std: true, children: func() []string { return []string{"network"} }}, true
	case p == netRoot:
		return &object{s: s, path: path, children: s.networkNodes}, true
	case strings.HasPrefix(p, netRoot+"/"):
		elem := p[len(netRoot)+1:]
		if strings.Contains(elem, "/") {
			return nil, false
		}
		return &object{s: s, path: path, own: s.networkIfaces, std: true, uuid: decodeUUID(elem)}, true
	case p == "/" || strings.HasPrefix(c, p+"/"):
		// An ancestor of the Connect path: introspects to its child.
		rest := strings.TrimPrefix(c, p)
		rest = strings.TrimPrefix(rest, "/")
		child, _, _ := strings.Cut(rest, "/")
		return &object{s: s, path: path, children: func() []string { return []string{child} }}, true
	}
	return nil, false
}

// networkNodes lists the child nodes of …/network: one per network.
func (s *Server) networkNodes() []string {
	list := s.m.List()
	out := make([]string, 0, len(list))
	for _, n := range list {
		out = append(out, encodeUUID(n.UUID))
	}
	return out
}

// networkPath is the object path of the network with that uuid.
func (s *Server) networkPath(uuid string) dbus.ObjectPath {
	return s.connect + "/network/" + dbus.ObjectPath(encodeUUID(uuid))
}

// encodeUUID gives the path element of a uuid: "_" then the uuid with every
// "-" turned into "_" (a path element may not start with a digit).
func encodeUUID(uuid string) string {
	return "_" + strings.ReplaceAll(strings.ToLower(uuid), "-", "_")
}

// decodeUUID reverses encodeUUID.
func decodeUUID(elem string) string {
	return strings.ReplaceAll(strings.TrimPrefix(elem, "_"), "_", "-")
}

// busCallerUID asks the bus for the Unix uid of a connection.
func busCallerUID(conn *dbus.Conn, sender string) (uint32, error) {
	var uid uint32
	err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixUser", 0, sender).Store(&uid)
	return uid, err
}

// authorize lets a state-changing call through only from root or from the
// user the daemon runs as (a session-bus daemon serves its own user). The
// bus policy decides who may talk to us at all; reads are open to them.
func (s *Server) authorize(c *call) error {
	what := c.iface + "." + c.member
	if c.iface == ifaceProperties && len(c.body) >= 2 {
		what = fmt.Sprintf("setting %v.%v", c.body[0], c.body[1])
	}
	uid, err := s.uid(c.conn, c.sender)
	if err != nil {
		return libvirtError(fmt.Sprintf("access denied: cannot identify the caller %s: %v", c.sender, err))
	}
	if uid == 0 || uid == s.euid {
		return nil
	}
	s.log.Info("D-Bus: refused call from unprivileged user", "method", what, "sender", c.sender, "uid", uid)
	return libvirtError(fmt.Sprintf("access denied: %s changes networks and needs root; caller %s has uid %d", what, c.sender, uid))
}
