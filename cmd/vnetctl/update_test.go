package main

import (
	"fmt"
	"reflect"
	"testing"

	"vnet/daemon/api"
)

const hostXML = "<host mac='52:54:00:00:00:01' ip='10.40.0.50'/>"

// updateDaemon serves ref-open, active or not, and writes host.xml.
func updateDaemon(t *testing.T, active bool) (*fakeDaemon, string) {
	t.Helper()
	writeFiles(t, map[string]string{"host.xml": hostXML})
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true, Active: active})
	return f, f.start(t)
}

// TestNetUpdateMessages runs every flag combination against an active and
// an inactive network. virsh prints the message without a newline of its
// own, so the end-of-command newline ends it and no empty line follows.
func TestNetUpdateMessages(t *testing.T) {
	t.Run("active", func(t *testing.T) {
		f, sock := updateDaemon(t, true)
		replay(t, sock, `$ virsh net-update ref-open add-last ip-dhcp-host host.xml
Updated network ref-open live state
$ virsh net-update ref-open add-last ip-dhcp-host host.xml --current
Updated network ref-open live state
$ virsh net-update ref-open add-last ip-dhcp-host host.xml --live
Updated network ref-open live state
$ virsh net-update ref-open add-last ip-dhcp-host host.xml --config
Updated network ref-open persistent config
$ virsh net-update `+uuidOpen+` add-last ip-dhcp-host host.xml --live --config
Updated network ref-open persistent config and live state
`)
		want := []api.UpdateRequest{
			{Command: 3, Section: 4, ParentIndex: -1, XML: hostXML},
			{Command: 3, Section: 4, ParentIndex: -1, XML: hostXML},
			{Command: 3, Section: 4, ParentIndex: -1, XML: hostXML, Live: true},
			{Command: 3, Section: 4, ParentIndex: -1, XML: hostXML, Config: true},
			{Command: 3, Section: 4, ParentIndex: -1, XML: hostXML, Live: true, Config: true},
		}
		if !reflect.DeepEqual(f.updates, want) {
			t.Errorf("requests\n%+v\nwant\n%+v", f.updates, want)
		}
	})
	t.Run("inactive", func(t *testing.T) {
		f, sock := updateDaemon(t, false)
		replay(t, sock, `$ virsh net-update ref-open delete dns-host host.xml
Updated network ref-open persistent config
$ virsh net-update ref-open delete dns-host host.xml --current
Updated network ref-open persistent config
$ virsh net-update ref-open delete dns-host host.xml --config
Updated network ref-open persistent config
$ virsh net-update ref-open delete dns-host host.xml --live
error: Failed to update network ref-open
error: Requested operation is not valid: network is not running

$ virsh net-update ref-open delete dns-host host.xml --config --live
error: Failed to update network ref-open
error: Requested operation is not valid: network is not running

`)
		if len(f.updates) != 3 {
			t.Errorf("%d updates reached the daemon, want 3", len(f.updates))
		}
	})
	t.Run("quiet", func(t *testing.T) {
		_, sock := updateDaemon(t, true)
		if r := vnetctl(sock, "-q", "net-update", "ref-open", "add", "ip-dhcp-host", "host.xml"); r.merged != "" || r.code != 0 {
			t.Errorf("got %q (%d), want nothing", r.merged, r.code)
		}
	})
}

// TestNetUpdateRequest checks what reaches the daemon: names → libvirt's
// enum values, inline XML, --parent-index, the data options by name.
func TestNetUpdateRequest(t *testing.T) {
	f, sock := updateDaemon(t, true)
	commands := []struct {
		name string
		want int
	}{{"modify", 1}, {"delete", 2}, {"add-last", 3}, {"add", 3}, {"add-first", 4}}
	sections := []string{"bridge", "domain", "ip", "ip-dhcp-host", "ip-dhcp-range", "forward",
		"forward-interface", "forward-pf", "portgroup", "dns-host", "dns-txt", "dns-srv"}
	for _, c := range commands {
		for i, s := range sections {
			f.updates = nil
			r := vnetctl(sock, "net-update", "ref-open", c.name, s, hostXML)
			want := api.UpdateRequest{Command: c.want, Section: i + 1, ParentIndex: -1, XML: hostXML}
			if r.code != 0 || len(f.updates) != 1 || f.updates[0] != want {
				t.Errorf("%s %s: code %d %q, requests %+v, want %+v", c.name, s, r.code, r.stderr, f.updates, want)
			}
		}
	}
	f.updates = nil
	r := vnetctl(sock, "net-update", "--xml", "<range start='10.40.0.100' end='10.40.0.120'/>", "--section", "ip-dhcp-range",
		"--network", "ref-open", "--parent-index", "2", "--command", "add-first", "--config")
	want := api.UpdateRequest{Command: 4, Section: 5, ParentIndex: 2, XML: "<range start='10.40.0.100' end='10.40.0.120'/>", Config: true}
	if r.code != 0 || r.stdout != "Updated network ref-open persistent config\n" || len(f.updates) != 1 || f.updates[0] != want {
		t.Errorf("named options: %+v, requests %+v, want %+v", r, f.updates, want)
	}
	f.updates = nil
	if r := vnetctl(sock, "net-update", "ref-open", "modify", "--parent-index=-1", "ip-dhcp-host", hostXML); r.code != 0 ||
		len(f.updates) != 1 || f.updates[0].ParentIndex != -1 {
		t.Errorf("--parent-index=-1: %+v %+v", r, f.updates)
	}
}

func TestNetUpdateErrors(t *testing.T) {
	f, sock := updateDaemon(t, true)
	notFound := "error: failed to get network 'nosuchnet'\nerror: Network not found: no network with matching name 'nosuchnet'\n"
	cases := []struct {
		name   string
		args   []string
		fail   map[string]*api.Error
		stdout string
		stderr string
	}{
		{name: "current-live", args: []string{"ref-open", "add", "ip", "host.xml", "--current", "--live"},
			stdout: "\n", stderr: "error: Options --current and --live are mutually exclusive\n"},
		{name: "current-config", args: []string{"ref-open", "add", "ip", "host.xml", "--config", "--current"},
			stdout: "\n", stderr: "error: Options --current and --config are mutually exclusive\n"},
		{name: "current-live-config", args: []string{"ref-open", "add", "ip", "host.xml", "--config", "--live", "--current"},
			stdout: "\n", stderr: "error: Options --current and --live are mutually exclusive\n"},
		{name: "exclusive-before-lookup", args: []string{"nosuchnet", "add", "ip", "host.xml", "--current", "--live"},
			stdout: "\n", stderr: "error: Options --current and --live are mutually exclusive\n"},
		{name: "unknown-command", args: []string{"ref-open", "insert", "ip-dhcp-host", "host.xml"},
			stdout: "\n", stderr: "error: unrecognized command name 'insert'\n"},
		{name: "command-none", args: []string{"ref-open", "none", "ip-dhcp-host", "host.xml"},
			stdout: "\n", stderr: "error: unrecognized command name 'none'\n"},
		{name: "unknown-section", args: []string{"ref-open", "add", "dhcp", "host.xml"},
			stdout: "\n", stderr: "error: unrecognized section name 'dhcp'\n"},
		{name: "lookup-before-command", args: []string{"nosuchnet", "insert", "dhcp", "host.xml"},
			stdout: "\n", stderr: notFound},
		{name: "bad-parent-index", args: []string{"ref-open", "add", "ip-dhcp-host", "host.xml", "--parent-index", "x"},
			stdout: "\n", stderr: "error: Numeric value 'x' for <parent-index> option is malformed or out of range\n"},
		{name: "no-xml-file", args: []string{"ref-open", "add", "ip-dhcp-host", "nope.xml"},
			stdout: "\n", stderr: "error: Failed to open file 'nope.xml': No such file or directory\n"},
		{name: "empty-command", args: []string{"ref-open", "", "ip-dhcp-host", "host.xml"},
			stdout: "\n", stderr: "error: Failed to get option 'command': Option argument is empty\n"},
		{name: "missing-xml", args: []string{"ref-open", "add", "ip-dhcp-host"},
			stderr: "error: command 'net-update' requires <xml> option\n"},
		{name: "extra-argument", args: []string{"ref-open", "add", "ip-dhcp-host", "host.xml", "more"},
			stderr: "error: unexpected data 'more'\n"},
		{name: "bad-option", args: []string{"ref-open", "add", "ip-dhcp-host", "host.xml", "--affect-live"},
			stderr: "error: command 'net-update' doesn't support option --affect-live\n"},
		{name: "no-network", args: []string{"nosuchnet", "add", "ip-dhcp-host", "host.xml"},
			stdout: "\n", stderr: notFound},
		{name: "daemon-error-by-uuid", args: []string{uuidOpen, "add", "ip-dhcp-host", "host.xml"},
			fail: map[string]*api.Error{"POST /v1/networks/" + uuidOpen + "/update": {Code: api.CodeFailed,
				Message: "operation failed: there is an existing dhcp host entry in network 'ref-open' that matches \"<host mac='52:54:00:00:00:01' ip='10.40.0.50'/>\""}},
			stdout: "\n", stderr: "error: Failed to update network ref-open\n" +
				"error: operation failed: there is an existing dhcp host entry in network 'ref-open' that matches \"<host mac='52:54:00:00:00:01' ip='10.40.0.50'/>\"\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.mu.Lock()
			for k, v := range tc.fail {
				f.fail[k] = v
			}
			f.updates = nil
			f.mu.Unlock()
			r := vnetctl(sock, append([]string{"net-update"}, tc.args...)...)
			if r.code != 1 || r.stdout != tc.stdout || r.stderr != tc.stderr {
				t.Errorf("got code %d stdout %q stderr %q\nwant code 1 stdout %q stderr %q", r.code, r.stdout, r.stderr, tc.stdout, tc.stderr)
			}
			if len(f.updates) != 0 {
				t.Errorf("a failed command updated: %+v", f.updates)
			}
		})
	}
}

// TestDryRun: --dry-run prints the daemon's plan and changes nothing.
func TestDryRun(t *testing.T) {
	writeFiles(t, map[string]string{"open.xml": openXML(uuidOpen, "10.40.0.30")})
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true})
	sock := f.start(t)
	plan := planFor("ref-open").Text
	replay(t, sock, "$ virsh net-start ref-open --dry-run\n"+plan+"\n"+
		"$ virsh net-create --dry-run open.xml\n"+plan+"\n"+
		"$ virsh net-start --dry-run nosuchnet\n"+
		"error: failed to get network 'nosuchnet'\n"+
		"error: Network not found: no network with matching name 'nosuchnet'\n\n")
	if r := vnetctl(sock, "-q", "net-start", "--dry-run", "ref-open"); r.stdout != plan || r.code != 0 {
		t.Errorf("-q: got %q (%d), want the plan alone", r.stdout, r.code)
	}
	if r := vnetctl(sock, "net-list", "--all", "--name"); r.stdout != "default\nref-fwddev\nref-isolated\nref-nat2\nref-nat3\nref-open\nref-routed\n\n" {
		t.Errorf("net-list after dry runs: %q", r.stdout)
	}
	if r := vnetctl(sock, "net-info", "ref-open"); r.stdout != fmt.Sprintf(
		"Name:           ref-open\nUUID:           %s\nActive:         no\nPersistent:     yes\nAutostart:      no\n\n", uuidOpen) {
		t.Errorf("ref-open changed by a dry run: %q", r.stdout)
	}
	if want := []string{"ref-open", "ref-open", "ref-open"}; !reflect.DeepEqual(f.dryRuns, want) {
		t.Errorf("dry runs %q, want %q", f.dryRuns, want)
	}
	f.fail["POST /v1/networks/create"] = &api.Error{Code: api.CodeInvalidXML, Message: "XML error: Invalid address"}
	replay(t, sock, "$ virsh net-create open.xml --dry-run\n"+
		"error: Failed to create network from open.xml\n"+
		"error: XML error: Invalid address\n\n")
	replay(t, sock, "$ virsh net-start ref-open\nNetwork ref-open started\n\n"+
		"$ virsh net-start ref-open --dry-run\n"+
		"error: Failed to start network ref-open\n"+
		"error: Requested operation is not valid: network is already active\n\n")
}
