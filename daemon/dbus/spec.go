package dbusapi

import (
	"fmt"
	"sort"
	"strings"
)

// Interface names served by this package.
const (
	ifaceConnect        = "org.libvirt.Connect"
	ifaceNetwork        = "org.libvirt.Network"
	ifaceVnetConnect    = "org.vnet.Connect1"
	ifaceVnetNetwork    = "org.vnet.Network1"
	ifaceProperties     = "org.freedesktop.DBus.Properties"
	ifaceIntrospectable = "org.freedesktop.DBus.Introspectable"
	ifacePeer           = "org.freedesktop.DBus.Peer"

	// errLibvirt is libvirt-dbus's only custom error name.
	errLibvirt = "org.libvirt.Error"

	annEmits = "org.freedesktop.DBus.Property.EmitsChangedSignal"
)

// arg is one argument of a method or signal: its name and D-Bus type.
type arg struct{ name, typ string }

// args builds a list from "type name" pairs, e.g. args("u flags", "s xml").
func args(specs ...string) []arg {
	out := make([]arg, 0, len(specs))
	for _, s := range specs {
		typ, name, ok := strings.Cut(s, " ")
		if !ok {
			panic("dbusapi: bad argument spec " + s)
		}
		out = append(out, arg{name: name, typ: typ})
	}
	return out
}

// signature concatenates the types of a.
func signature(a []arg) string {
	var b strings.Builder
	for _, x := range a {
		b.WriteString(x.typ)
	}
	return b.String()
}

// method is one method of an interface and what implements it.
type method struct {
	name    string
	in, out []arg
	// write marks calls that change state: only an authorised caller may
	// make them.
	write bool
	fn    func(c *call) ([]any, error)
}

// property describes one property; the values come from iface.values.
type property struct {
	name, typ string
	writable  bool
	// emits is the EmitsChangedSignal annotation of the property, "" for
	// none (the interface's annotation applies).
	emits string
}

// signal describes one signal (introspection only; emission is separate).
type signal struct {
	name string
	args []arg
}

// iface is one interface on an object: its introspection data and its
// implementation.
type iface struct {
	name string
	// emits is the interface's EmitsChangedSignal annotation ("" for none).
	emits   string
	methods []*method
	props   []property
	signals []signal
	// values returns every property value (nil when there are none). An
	// error is returned to Get; GetAll answers an empty dictionary instead,
	// as GDBus skips getters that fail.
	values func(c *call) (map[string]any, error)
	// set writes a writable property; the value's type has been checked.
	set func(c *call, name string, value any) error
}

func (i *iface) method(name string) *method {
	for _, m := range i.methods {
		if m.name == name {
			return m
		}
	}
	return nil
}

func (i *iface) property(name string) *property {
	for k := range i.props {
		if i.props[k].name == name {
			return &i.props[k]
		}
	}
	return nil
}

// Standard interfaces, for introspection. Peer is answered by godbus itself;
// Properties and Introspectable are implemented per object in object.go.
var (
	peerSpec = &iface{
		name: ifacePeer,
		methods: []*method{
			{name: "Ping"},
			{name: "GetMachineId", out: args("s machine_uuid")},
		},
	}
	introspectableSpec = &iface{
		name:    ifaceIntrospectable,
		methods: []*method{{name: "Introspect", out: args("s xml_data")}},
	}
	propertiesSpec = &iface{
		name: ifaceProperties,
		methods: []*method{
			{name: "Get", in: args("s interface_name", "s property_name"), out: args("v value")},
			{name: "GetAll", in: args("s interface_name"), out: args("a{sv} properties")},
			{name: "Set", in: args("s interface_name", "s property_name", "v value")},
		},
		signals: []signal{{name: "PropertiesChanged", args: args("s interface_name", "a{sv} changed_properties", "as invalidated_properties")}},
	}
)

// introspectXML renders the introspection document of an object with the
// given interfaces and child node names.
func introspectXML(ifaces []*iface, children []string) string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"` + "\n")
	b.WriteString(`"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">` + "\n")
	b.WriteString("<node>\n")
	for _, i := range ifaces {
		fmt.Fprintf(&b, "  <interface name=\"%s\">\n", i.name)
		if i.emits != "" {
			fmt.Fprintf(&b, "    <annotation name=\"%s\" value=\"%s\"/>\n", annEmits, i.emits)
		}
		for _, p := range i.props {
			access := "read"
			if p.writable {
				access = "readwrite"
			}
			if p.emits == "" {
				fmt.Fprintf(&b, "    <property name=\"%s\" type=\"%s\" access=\"%s\"/>\n", p.name, p.typ, access)
				continue
			}
			fmt.Fprintf(&b, "    <property name=\"%s\" type=\"%s\" access=\"%s\">\n", p.name, p.typ, access)
			fmt.Fprintf(&b, "      <annotation name=\"%s\" value=\"%s\"/>\n", annEmits, p.emits)
			b.WriteString("    </property>\n")
		}
		for _, m := range i.methods {
			if len(m.in)+len(m.out) == 0 {
				fmt.Fprintf(&b, "    <method name=\"%s\"/>\n", m.name)
				continue
			}
			fmt.Fprintf(&b, "    <method name=\"%s\">\n", m.name)
			for _, a := range m.in {
				fmt.Fprintf(&b, "      <arg name=\"%s\" type=\"%s\" direction=\"in\"/>\n", a.name, xmlEscape(a.typ))
			}
			for _, a := range m.out {
				fmt.Fprintf(&b, "      <arg name=\"%s\" type=\"%s\" direction=\"out\"/>\n", a.name, xmlEscape(a.typ))
			}
			b.WriteString("    </method>\n")
		}
		for _, s := range i.signals {
			fmt.Fprintf(&b, "    <signal name=\"%s\">\n", s.name)
			for _, a := range s.args {
				fmt.Fprintf(&b, "      <arg name=\"%s\" type=\"%s\"/>\n", a.name, xmlEscape(a.typ))
			}
			b.WriteString("    </signal>\n")
		}
		b.WriteString("  </interface>\n")
	}
	sorted := append([]string(nil), children...)
	sort.Strings(sorted)
	for _, c := range sorted {
		fmt.Fprintf(&b, "  <node name=\"%s\"/>\n", c)
	}
	b.WriteString("</node>\n")
	return b.String()
}

// xmlEscape escapes what may appear in a type signature ('{' and '}' need
// nothing; this is for safety should a type ever carry markup characters).
func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
