#!/usr/bin/python3
"""A libvirt-dbus client in the style of frontends built on dbus-python.

dbus-python introspects every object it is given and takes the argument types
from the introspection data, so ListNetworks(0) goes out as (u) and
Update('4', '4', 0, xml, 0) as (uuisu) only if vnetd's introspection is exact.

Usage: client.py BUS_ADDRESS CONNECT_PATH
Prints one line per check and "PASS" at the end; any failure raises.
"""
import sys

import dbus

NAME = "org.libvirt"
PROPS = "org.freedesktop.DBus.Properties"


def network(bus, path):
    obj = bus.get_object(NAME, path)  # introspects
    return dbus.Interface(obj, "org.libvirt.Network"), dbus.Interface(obj, PROPS)


def main():
    address, connect_path = sys.argv[1], sys.argv[2]
    bus = dbus.bus.BusConnection(address)
    obj = bus.get_object(NAME, connect_path)
    connect = dbus.Interface(obj, "org.libvirt.Connect")
    props = dbus.Interface(obj, PROPS)

    xml = dbus.Interface(obj, "org.freedesktop.DBus.Introspectable").Introspect()
    assert '<method name="NetworkDefineXML">' in xml, xml
    print("introspect ok")

    lib = props.Get("org.libvirt.Connect", "LibVersion")
    assert isinstance(lib, dbus.UInt64) and lib == 9000000, repr(lib)
    print("LibVersion", int(lib))

    before = connect.ListNetworks(0)  # sent as (u) thanks to introspection
    assert isinstance(before, dbus.Array) and before.signature == "o", repr(before)
    for path in before:
        net, nprops = network(bus, path)
        desc = net.GetXMLDesc(0)
        assert "<uuid>" in desc, desc
        allp = nprops.GetAll("org.libvirt.Network")
        # dbus-python unwraps the outer variant; the values are usable as is.
        assert allp["Name"] in desc, (allp, desc)
        print("network", str(allp["Name"]), "active", bool(allp["Active"]))

    path = connect.NetworkDefineXML(
        '<network><name>pytest</name><forward mode="nat"/>'
        '<ip address="192.168.201.1" netmask="255.255.255.0">'
        '<dhcp><range start="192.168.201.2" end="192.168.201.254"/></dhcp></ip></network>')
    assert path in connect.ListNetworks(0)
    net, nprops = network(bus, path)
    assert not bool(nprops.Get("org.libvirt.Network", "Active"))
    net.Create()
    assert bool(nprops.Get("org.libvirt.Network", "Active"))
    # Strings where the signature says u: converted because of introspection.
    net.Update("4", "4", 0, "<host mac='00:16:3e:77:e2:ed' name='foo.example.com' ip='192.168.201.10'/>", 0)
    desc = net.GetXMLDesc(0)
    assert "<host mac='00:16:3e:77:e2:ed' name='foo.example.com' ip='192.168.201.10'/>" in desc, desc
    print("update ok")
    nprops.Set("org.libvirt.Network", "Autostart", True)
    assert bool(nprops.Get("org.libvirt.Network", "Autostart"))
    net.Destroy()
    assert not bool(nprops.Get("org.libvirt.Network", "Active"))
    net.Undefine()
    assert path not in connect.ListNetworks(0)
    print("lifecycle ok")

    try:
        connect.NetworkLookupByName("nope")
        raise AssertionError("lookup of 'nope' succeeded")
    except dbus.exceptions.DBusException as e:
        assert e.get_dbus_name() == "org.libvirt.Error", e.get_dbus_name()
        assert e.get_dbus_message() == "Network not found: no network with matching name 'nope'", e.get_dbus_message()
    print("errors ok")
    print("PASS")


if __name__ == "__main__":
    main()
