package dnsmasq

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Lease is one DHCP lease from a network's lease file.
type Lease struct {
	Expiry   time.Time  // zero for an infinite lease
	MAC      string     // e.g. "52:54:00:12:34:01"; for DHCPv6 only when the DUID carries it
	IAID     string     // DHCPv6 only ("T" prefix for a temporary address)
	IP       netip.Addr //
	Hostname string     // "" when the client sent none
	ClientID string     // DHCPv4 client id or DHCPv6 client DUID, "" when none
}

// Leases returns the current leases of the network from the lease file
// dnsmasq keeps in StateDir (none when the file does not exist).
func (m *Manager) Leases(name string) ([]Lease, error) {
	base, err := FileBase(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(m.path(base, ".leases"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dnsmasq leases of network %q: %w", name, err)
	}
	defer f.Close()
	l, err := ParseLeases(f)
	if err != nil {
		return nil, fmt.Errorf("dnsmasq leases of network %q: %w", name, err)
	}
	return l, nil
}

// ParseLeases parses dnsmasq's lease file format: IPv4 lines
// "EXPIRY MAC IP HOSTNAME CLIENTID", then a "duid SERVERDUID" line and IPv6
// lines "EXPIRY IAID IP HOSTNAME CLIENTDUID"; "*" means none.
func ParseLeases(r io.Reader) ([]Lease, error) {
	var out []Lease
	sc := bufio.NewScanner(r)
	v6 := false
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "duid" {
			v6 = true
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: %d fields", n, len(f))
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: expiry %q: %w", n, f[0], err)
		}
		ip, err := netip.ParseAddr(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: address %q: %w", n, f[2], err)
		}
		l := Lease{IP: ip}
		if exp != 0 {
			l.Expiry = time.Unix(exp, 0)
		}
		if v6 {
			l.IAID = f[1]
		} else {
			l.MAC = f[1]
		}
		if f[3] != "*" {
			l.Hostname = f[3]
		}
		if len(f) > 4 && f[4] != "*" {
			l.ClientID = f[4]
		}
		if v6 {
			l.MAC = duidMAC(l.ClientID)
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// duidMAC returns the Ethernet address in a DUID-LLT or DUID-LL (RFC 8415
// 11.2, 11.4) written as dnsmasq writes it ("00:03:00:01:52:54:00:…"), or ""
// for other DUIDs. Why: dnsmasq's lease file has no MAC column for DHCPv6;
// libvirt shows the guest's MAC on IPv6 leases (dnsmasq hands it to
// libvirt's lease helper), and a DUID built from the MAC is where it is.
func duidMAC(duid string) string {
	b := strings.Split(duid, ":")
	var mac []string
	switch {
	case len(b) == 14 && b[0] == "00" && b[1] == "01" && b[2] == "00" && b[3] == "01":
		mac = b[8:] // type 1 (LLT), hardware type 1 (Ethernet), 4 bytes of time
	case len(b) == 10 && b[0] == "00" && b[1] == "03" && b[2] == "00" && b[3] == "01":
		mac = b[4:] // type 3 (LL), hardware type 1 (Ethernet)
	default:
		return ""
	}
	for _, x := range mac {
		if len(x) != 2 {
			return ""
		}
		if _, err := strconv.ParseUint(x, 16, 8); err != nil {
			return ""
		}
	}
	return strings.ToLower(strings.Join(mac, ":"))
}
