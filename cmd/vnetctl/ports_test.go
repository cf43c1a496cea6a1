package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"vnet/daemon"
)

// testDriverSocket serves the daemon's own API over the in-memory test
// driver (network 'default', active; ports are bookkeeping only).
func testDriverSocket(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vnetd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: daemon.NewTestDriver(slog.New(slog.NewTextHandler(io.Discard, nil))).Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestNetPortCommands replays a net-port-* session: virsh's messages, table,
// error lines, and the plug the network fills in.
func TestNetPortCommands(t *testing.T) {
	sock := testDriverSocket(t)
	dir := t.TempDir()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(wd) })
	writeFiles(t, map[string]string{
		"port.xml": `<networkport>
  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>
  <owner>
    <name>memtest</name>
    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>
  </owner>
  <mac address='52:54:00:7b:35:93'/>
  <vnet:tap xmlns:vnet='urn:vnet:port:1'/>
</networkport>
`,
		"port2.xml": `<networkport><uuid>0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10</uuid><owner><name>b</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner><mac address='52:54:00:7b:35:94'/></networkport>`,
	})
	replay(t, sock, `$ virsh net-port-create default port.xml
Network port 5d744f21-ba4a-4d6e-bdb2-30a35ff3207d created from port.xml

$ virsh net-port-create default port.xml
error: Failed to create network from port.xml
error: network port Network port with UUID 5d744f21-ba4a-4d6e-bdb2-30a35ff3207d already exists exists already

$ virsh net-port-create default port2.xml
Network port 0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10 created from port2.xml

$ virsh net-port-list default
 UUID
---------------------------------------
 0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10
 5d744f21-ba4a-4d6e-bdb2-30a35ff3207d

$ virsh net-port-list default --uuid
0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10
5d744f21-ba4a-4d6e-bdb2-30a35ff3207d

$ virsh net-port-list default --uuid --table
error: Only one argument from --table and --uuid may be specified.

$ virsh net-port-dumpxml default 5d744f21-ba4a-4d6e-bdb2-30a35ff3207d
<networkport>
  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>
  <owner>
    <name>memtest</name>
    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>
  </owner>
  <mac address='52:54:00:7b:35:93'/>
  <plug type='network' bridge='virbr0'/>
  <vnet:tap xmlns:vnet='urn:vnet:port:1' dev='vnet0'/>
</networkport>

$ virsh net-info default
Name:           default
UUID:           dd8fe884-6c02-601e-7551-cca97df1c5df
Active:         yes
Persistent:     yes
Autostart:      no
Bridge:         virbr0
Ports:          2

$ virsh net-port-dumpxml nope 5d744f21-ba4a-4d6e-bdb2-30a35ff3207d
error: failed to get network 'nope'
error: Network not found: no network with matching name 'nope'

$ virsh net-port-dumpxml default 11111111-2222-3333-4444-555555555555
error: failed to get network port '11111111-2222-3333-4444-555555555555'
error: network port not found: Network port with UUID 11111111-2222-3333-4444-555555555555 does not exist

$ virsh net-port-delete default bogus
error: failed to get network port 'bogus'
error: invalid argument: uuidstr in virNetworkPortLookupByUUIDString must be a valid UUID

$ virsh net-port-delete default 5d744f21-ba4a-4d6e-bdb2-30a35ff3207d
Network port 5d744f21-ba4a-4d6e-bdb2-30a35ff3207d deleted

$ virsh net-port-delete default 0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10
Network port 0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10 deleted

$ virsh net-port-list default
 UUID
-------

$ virsh net-port-create default
error: command 'net-port-create' requires <file> option
`)
}

// TestNetEventPort: net-event --event port prints vnet's port events (and
// no lifecycle ones).
func TestNetEventPort(t *testing.T) {
	sock := testDriverSocket(t)
	file := filepath.Join(t.TempDir(), "p.xml")
	const uuid = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"
	if err := os.WriteFile(file, []byte(`<networkport><uuid>`+uuid+`</uuid><owner><name>b</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner><mac address='52:54:00:7b:35:94'/></networkport>`), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- vnetctl(sock, "net-event", "default", "--event", "port", "--timeout", "5") }()
	for {
		select {
		case r := <-done:
			// The subscription may start after any of the calls below.
			want := regexp.MustCompile("^event 'port' for network default: Port(Created|Deleted) " + uuid + "\nevents received: 1\n\n$")
			if !want.MatchString(r.stdout) {
				t.Fatalf("net-event printed %q", r.stdout)
			}
			return
		default:
		}
		vnetctl(sock, "net-port-create", "default", file)
		vnetctl(sock, "net-port-delete", "default", uuid)
		vnetctl(sock, "net-destroy", "default")
		vnetctl(sock, "net-start", "default")
	}
}
