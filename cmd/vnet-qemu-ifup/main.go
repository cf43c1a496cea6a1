// Command vnet-qemu-ifup (and vnet-qemu-ifdown, the same binary under that
// name) are QEMU's -netdev tap,script=…,downscript=… for a root QEMU:
//
//	vnet-qemu-ifup IFNAME    the TAP QEMU made becomes an adopted, transient
//	                         port of the configured network (plugged into its
//	                         bridge and re-plugged by vnetd like any port)
//	vnet-qemu-ifdown IFNAME  deletes that port (the TAP stays QEMU's)
//
// The network is `network NAME` in /etc/vnet/qemu-ifup.conf ($VNET_QEMU_CONF),
// or $VNET_NETWORK, else "default". The port's owner is QEMU's -name and
// -uuid when its command line has them. A port whose TAP disappears (QEMU
// killed before its downscript) ends by itself.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"vnet/daemon/api"
	"vnet/daemon/client"
	netxml "vnet/xml"
)

// confPath is the default configuration file.
const confPath = "/etc/vnet/qemu-ifup.conf"

func main() {
	name := filepath.Base(os.Args[0])
	down := strings.Contains(name, "ifdown")
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s IFNAME (QEMU's -netdev tap,script=/path/vnet-qemu-ifup,downscript=/path/vnet-qemu-ifdown)\n", name)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if down {
		err = ifdown(ctx, os.Args[1])
	} else {
		err = ifup(ctx, os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// network reads the configured network name.
func network() (string, error) {
	if n := os.Getenv("VNET_NETWORK"); n != "" {
		return n, nil
	}
	path := os.Getenv("VNET_QEMU_CONF")
	if path == "" {
		path = confPath
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "default", nil
	}
	if err != nil {
		return "", err
	}
	net := "default"
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case f[0] == "network" && len(f) == 2:
			net = f[1]
		default:
			return "", fmt.Errorf("%s:%d: expected 'network NAME'", path, line)
		}
	}
	return net, nil
}

func ifup(ctx context.Context, ifname string) error {
	net, err := network()
	if err != nil {
		return err
	}
	owner, ownerUUID := qemuIdentity(os.Getppid())
	mac, err := netxml.RandomMAC()
	if err != nil {
		return err
	}
	xml, err := portXML(ifname, owner, ownerUUID, mac)
	if err != nil {
		return err
	}
	p, err := client.New(client.DefaultSocket()).CreatePort(ctx, net, api.PortRequest{XML: xml})
	if err != nil {
		return fmt.Errorf("network '%s': %w", net, err)
	}
	fmt.Fprintf(os.Stderr, "vnet-qemu-ifup: %s is port %s of network '%s'\n", ifname, p.UUID, net)
	return nil
}

// portXML is the <networkport> of the TAP ifname QEMU made: adopted,
// transient, owned by the guest. The owner's name comes from QEMU's command
// line, so the document is written by the port formatter, which escapes it;
// a device name the kernel would not accept is refused.
func portXML(ifname, owner, ownerUUID, mac string) (string, error) {
	if err := netxml.CheckIfName(ifname); err != nil {
		return "", errors.New(netxml.Message(err))
	}
	p := &netxml.Port{
		NetworkPort: libvirtxml.NetworkPort{
			UUID:  uuid.NewString(),
			Owner: &libvirtxml.NetworkPortOwner{Name: owner, UUID: ownerUUID},
			MAC:   &libvirtxml.NetworkPortMAC{Address: mac},
		},
		TAP: &netxml.TAP{Dev: ifname, Adopt: true, Transient: true},
	}
	return netxml.FormatPort(p)
}

func ifdown(ctx context.Context, ifname string) error {
	c := client.New(client.DefaultSocket())
	nets, err := c.List(ctx)
	if err != nil {
		return err
	}
	// The configured network first; the port may be on another one if the
	// configuration changed since ifup.
	want, _ := network()
	for i, n := range nets {
		if n.Name == want {
			nets[0], nets[i] = nets[i], nets[0]
		}
	}
	for _, n := range nets {
		ports, err := c.ListPorts(ctx, n.Name)
		if err != nil {
			continue
		}
		for _, p := range ports {
			if p.TAP == ifname {
				_, err := c.DeletePort(ctx, n.Name, p.UUID)
				return err
			}
		}
	}
	// Already gone (the port ended with its TAP): nothing to do.
	return nil
}

// qemuIdentity returns the guest's -name and -uuid from QEMU's command line
// (QEMU is the script's parent), else "qemu-PID" and a fresh uuid.
func qemuIdentity(pid int) (name, id string) {
	name, id = "qemu-"+strconv.Itoa(pid), uuid.NewString()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return name, id
	}
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-name", "--name":
			v := args[i+1]
			if strings.Contains(v, "guest=") {
				for _, kv := range strings.Split(v, ",") {
					if g, ok := strings.CutPrefix(kv, "guest="); ok {
						v = g
					}
				}
			} else {
				v, _, _ = strings.Cut(v, ",")
			}
			if v != "" {
				name = v
			}
		case "-uuid", "--uuid":
			if u, err := netxml.NormalizeUUID(args[i+1]); err == nil {
				id = u
			}
		}
	}
	return name, id
}
