package dbusapi

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/godbus/dbus/v5"

	netxml "vnet/xml"
)

// object is one object path as the handler sees it during a call. Objects are
// built per call from the path, so any child of …/network dispatches (libvirt-
// dbus's "dispatch to un-enumerated nodes").
type object struct {
	s    *Server
	path dbus.ObjectPath
	// own are the object's interfaces besides the standard ones.
	own []*iface
	// std is false for the intermediate nodes (/, /org, …) that only
	// introspect to their children.
	std      bool
	children func() []string
	// uuid is the network's dashed uuid decoded from the path (network
	// objects only).
	uuid string
}

// call is one incoming method call, handed to a method implementation.
type call struct {
	s      *Server
	obj    *object
	conn   *dbus.Conn
	sender string
	iface  string
	member string
	body   []any
}

// interfaces returns every interface of o, standard ones first (as GDBus
// lists them).
func (o *object) interfaces() []*iface {
	if !o.std {
		return []*iface{o.introspectable()}
	}
	all := []*iface{o.properties(), o.introspectable(), o.peer()}
	return append(all, o.own...)
}

// LookupInterface implements dbus.ServerObject. An empty name (a call without
// an interface header) searches every interface for the member.
func (o *object) LookupInterface(name string) (dbus.Interface, bool) {
	if name == "" {
		return anyIface{o}, true
	}
	for _, i := range o.interfaces() {
		if i.name == name {
			return boundIface{o, i}, true
		}
	}
	return nil, false
}

type boundIface struct {
	obj *object
	i   *iface
}

// LookupMethod implements dbus.Interface.
func (b boundIface) LookupMethod(name string) (dbus.Method, bool) {
	m := b.i.method(name)
	if m == nil || m.fn == nil {
		return nil, false
	}
	return boundMethod{b.obj, b.i, m}, true
}

type anyIface struct{ obj *object }

// LookupMethod implements dbus.Interface for calls without an interface.
func (a anyIface) LookupMethod(name string) (dbus.Method, bool) {
	for _, i := range a.obj.interfaces() {
		if m, ok := (boundIface{a.obj, i}).LookupMethod(name); ok {
			return m, true
		}
	}
	return nil, false
}

// boundMethod is a method of an interface of an object. It decodes its own
// arguments (dbus.ArgumentDecoder) so it sees the sender, and checks the
// call's signature against the introspection data as GDBus does.
type boundMethod struct {
	obj *object
	i   *iface
	m   *method
}

// DecodeArguments implements dbus.ArgumentDecoder.
func (b boundMethod) DecodeArguments(conn *dbus.Conn, sender string, msg *dbus.Message, body []any) ([]any, error) {
	got := ""
	if v, ok := msg.Headers[dbus.FieldSignature]; ok {
		if sig, ok := v.Value().(dbus.Signature); ok {
			got = sig.String()
		}
	} else if len(body) > 0 {
		got = dbus.SignatureOf(body...).String()
	}
	if want := signature(b.m.in); got != want {
		return nil, dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs",
			[]any{fmt.Sprintf("Type of message, “(%s)”, does not match expected type “(%s)”", got, want)})
	}
	return []any{&call{s: b.obj.s, obj: b.obj, conn: conn, sender: sender, iface: b.i.name, member: b.m.name, body: body}}, nil
}

// Call implements dbus.Method.
func (b boundMethod) Call(a ...any) ([]any, error) {
	c := a[0].(*call)
	s := c.s
	if !s.calls.enter() {
		return nil, libvirtError("internal error: the daemon is shutting down")
	}
	defer s.calls.leave()
	// Held until the daemon is ready (networks adopted and autostarted),
	// like the local API, so no client sees a half-started state.
	select {
	case <-s.m.Ready():
	case <-c.conn.Context().Done():
		return nil, libvirtError("internal error: the daemon is shutting down")
	case <-s.calls.stopping():
		return nil, libvirtError("internal error: the daemon is shutting down")
	}
	if b.m.write {
		if err := s.authorize(c); err != nil {
			return nil, err
		}
	}
	out, err := b.m.fn(c)
	if err != nil {
		s.log.Debug("D-Bus call failed", "path", c.obj.path, "method", c.iface+"."+c.member, "sender", c.sender, "err", err)
		return nil, toDBusError(err)
	}
	return out, nil
}

// NumArguments implements dbus.Method (unused: the method decodes itself).
func (b boundMethod) NumArguments() int { return 1 }

// NumReturns implements dbus.Method.
func (b boundMethod) NumReturns() int { return len(b.m.out) }

// ArgumentValue implements dbus.Method.
func (b boundMethod) ArgumentValue(int) any { return (*call)(nil) }

// ReturnValue implements dbus.Method (unused by godbus).
func (b boundMethod) ReturnValue(int) any { return nil }

// toDBusError turns a manager error into org.libvirt.Error with libvirt's
// message; D-Bus errors built here pass unchanged.
func toDBusError(err error) error {
	var de dbus.Error
	if errors.As(err, &de) {
		return de
	}
	var pde *dbus.Error
	if errors.As(err, &pde) {
		return pde
	}
	return libvirtError(netxml.Message(err))
}

func libvirtError(msg string) *dbus.Error {
	return dbus.NewError(errLibvirt, []any{msg})
}

func invalidArgs(format string, a ...any) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{fmt.Sprintf(format, a...)})
}

func (o *object) introspectable() *iface {
	return &iface{
		name: ifaceIntrospectable,
		methods: []*method{{
			name: "Introspect",
			out:  introspectableSpec.methods[0].out,
			fn: func(c *call) ([]any, error) {
				var children []string
				if o.children != nil {
					children = o.children()
				}
				var ifs []*iface
				if o.std {
					ifs = o.interfaces()
				}
				return []any{introspectXML(ifs, children)}, nil
			},
		}},
	}
}

// peer answers Peer calls made without an interface header (godbus answers
// those that name org.freedesktop.DBus.Peer before they reach us).
func (o *object) peer() *iface {
	return &iface{
		name: ifacePeer,
		methods: []*method{
			{name: "Ping", fn: func(*call) ([]any, error) { return nil, nil }},
			{name: "GetMachineId", out: peerSpec.methods[1].out, fn: func(*call) ([]any, error) {
				for _, f := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
					if b, err := os.ReadFile(f); err == nil {
						return []any{strings.TrimSpace(string(b))}, nil
					}
				}
				return nil, dbus.NewError("org.freedesktop.DBus.Error.Failed", []any{"machine id not found"})
			}},
		},
	}
}

// ownIface finds one of the object's non-standard interfaces for Properties.
func (o *object) ownIface(name string) (*iface, error) {
	for _, i := range o.interfaces() {
		if i.name == name {
			return i, nil
		}
	}
	return nil, invalidArgs("No such interface “%s”", name)
}

func noSuchProperty(name string) error {
	return dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{fmt.Sprintf("No such property “%s”", name)})
}

// properties implements org.freedesktop.DBus.Properties: Get answers a plain
// variant, GetAll a variant holding a variant for each value (libvirt-dbus's
// wire format, which cockpit-machines depends on), Set writes Autostart.
func (o *object) properties() *iface {
	get := func(c *call) ([]any, error) {
		in, name := c.body[0].(string), c.body[1].(string)
		i, err := o.ownIface(in)
		if err != nil {
			return nil, err
		}
		if i.property(name) == nil {
			return nil, noSuchProperty(name)
		}
		vals, err := i.values(c)
		if err != nil {
			return nil, err
		}
		v, ok := vals[name]
		if !ok {
			return nil, noSuchProperty(name)
		}
		return []any{dbus.MakeVariant(v)}, nil
	}
	getAll := func(c *call) ([]any, error) {
		i, err := o.ownIface(c.body[0].(string))
		if err != nil {
			return nil, err
		}
		out := map[string]dbus.Variant{}
		if i.values == nil || len(i.props) == 0 {
			return []any{out}, nil
		}
		vals, err := i.values(c)
		if err != nil {
			// GDBus skips the getters that fail: a vanished network answers
			// an empty dictionary.
			return []any{out}, nil
		}
		for _, p := range i.props {
			if v, ok := vals[p.name]; ok {
				out[p.name] = dbus.MakeVariant(dbus.MakeVariant(v))
			}
		}
		return []any{out}, nil
	}
	set := func(c *call) ([]any, error) {
		in, name, v := c.body[0].(string), c.body[1].(string), c.body[2].(dbus.Variant)
		i, err := o.ownIface(in)
		if err != nil {
			return nil, err
		}
		p := i.property(name)
		if p == nil {
			return nil, noSuchProperty(name)
		}
		if !p.writable || i.set == nil {
			return nil, invalidArgs("Property “%s” is not writable", name)
		}
		if got := v.Signature().String(); got != p.typ {
			return nil, invalidArgs("Error setting property “%s”: Expected type “%s” but got “%s”", name, p.typ, got)
		}
		if err := c.s.authorize(c); err != nil {
			return nil, err
		}
		return nil, i.set(c, name, v.Value())
	}
	m := propertiesSpec.methods
	return &iface{
		name: ifaceProperties,
		methods: []*method{
			{name: "Get", in: m[0].in, out: m[0].out, fn: get},
			{name: "GetAll", in: m[1].in, out: m[1].out, fn: getAll},
			{name: "Set", in: m[2].in, out: m[2].out, fn: set},
		},
		signals: propertiesSpec.signals,
	}
}
