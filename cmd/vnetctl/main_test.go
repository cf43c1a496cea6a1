package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"vnet/daemon/api"
)

// The networks of virsh-formats.md's examples.
const (
	uuidDefault  = "400e018b-b381-4cf2-aa2e-65601ecf6eeb"
	uuidFwddev   = "3eaea67c-bddc-49d0-96ad-d975b4935cfd"
	uuidIsolated = "70639fbf-9056-4d48-87b0-b21f583a983a"
	uuidNat2     = "e9e5f96c-7192-480b-a75a-2cfedc6ba82d"
	uuidNat3     = "da16f9f1-bc1e-4fbe-b02a-7f8e4cefff32"
	uuidOpen     = "1f50f7e6-fcf8-4c1a-a58f-48a1bdde3abc"
	uuidRouted   = "1b5ae054-57bd-486c-8ff2-d0aa6c2317a9"
)

// refNetworks seeds the six persistent inactive networks every example has,
// in an order the output must not depend on, plus extra.
func refNetworks(extra ...api.Network) *fakeDaemon {
	f := newFake()
	for _, n := range []api.Network{
		{Name: "ref-routed", UUID: uuidRouted, Persistent: true},
		{Name: "ref-nat3", UUID: uuidNat3, Persistent: true},
		{Name: "default", UUID: uuidDefault, Persistent: true},
		{Name: "ref-isolated", UUID: uuidIsolated, Persistent: true},
		{Name: "ref-fwddev", UUID: uuidFwddev, Persistent: true},
		{Name: "ref-nat2", UUID: uuidNat2, Persistent: true},
	} {
		f.add(n, "<network>\n  <name>"+n.Name+"</name>\n  <uuid>"+n.UUID+"</uuid>\n</network>\n")
	}
	for _, n := range extra {
		f.add(n, "<network>\n  <name>"+n.Name+"</name>\n  <uuid>"+n.UUID+"</uuid>\n</network>\n")
	}
	return f
}

// result is what one vnetctl run wrote.
type result struct {
	stdout, stderr string
	// merged is stdout and stderr interleaved in write order, as on a terminal.
	merged string
	code   int
}

// teeWriter writes to its own buffer and to the shared terminal buffer.
type teeWriter struct{ own, term *bytes.Buffer }

func (w teeWriter) Write(p []byte) (int, error) {
	w.own.Write(p)
	return w.term.Write(p)
}

// vnetctl runs the command tree in-process against the daemon at sock.
func vnetctl(sock string, args ...string) result {
	var out, errb, term bytes.Buffer
	if sock != "" {
		args = append([]string{"--socket", sock}, args...)
	}
	code := run(args, teeWriter{&out, &term}, teeWriter{&errb, &term})
	return result{stdout: out.String(), stderr: errb.String(), merged: term.String(), code: code}
}

// replay runs every "$ virsh ARGS" line of a transcript and compares the
// whole session, byte for byte. The exit status must be 1 exactly when the
// command printed an error, and stderr must carry only the error lines.
func replay(t *testing.T, sock, transcript string) {
	t.Helper()
	var got strings.Builder
	for _, line := range strings.SplitAfter(transcript, "\n") {
		cmdline, ok := strings.CutPrefix(line, "$ virsh ")
		if !ok {
			continue
		}
		got.WriteString(line)
		r := vnetctl(sock, strings.Fields(cmdline)...)
		got.WriteString(r.merged)
		failed := strings.HasPrefix(r.stderr, "error: ")
		if want := map[bool]int{false: 0, true: 1}[failed]; r.code != want {
			t.Errorf("%s: exit status %d, want %d", strings.TrimSpace(line), r.code, want)
		}
		if strings.Contains(r.stdout, "error: ") {
			t.Errorf("%s: error text on stdout: %q", strings.TrimSpace(line), r.stdout)
		}
	}
	if got.String() != transcript {
		t.Errorf("session differs\n--- got:\n%s\n--- want:\n%s", got.String(), transcript)
	}
}

// outputs returns each command's output in a transcript.
func outputs(transcript string) []string {
	var outs []string
	for _, part := range strings.Split(transcript, "$ virsh ")[1:] {
		_, out, _ := strings.Cut(part, "\n")
		outs = append(outs, out)
	}
	return outs
}

func TestNetList(t *testing.T) {
	open := func(active, persistent bool) api.Network {
		return api.Network{Name: "ref-open", UUID: uuidOpen, Active: active, Persistent: persistent}
	}
	cases := []struct {
		name       string
		daemon     *fakeDaemon
		transcript string
	}{
		{"one", newFake().add(api.Network{Name: "default", UUID: uuidDefault, Active: true, Persistent: true}, ""), exListOne},
		{"empty", refNetworks(), exListEmpty},
		{"several", refNetworks(open(true, false)), exListSeveral},
		{"name", refNetworks(open(true, false)), exListName},
		{"uuid", refNetworks(open(true, false)), exListUUID},
		{"persistent", refNetworks(open(false, true)), exListPersistent},
		{"quiet", refNetworks(open(false, true)), exListQuiet},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			replay(t, tc.daemon.start(t), tc.transcript)
		})
	}
}

func TestNetListFilters(t *testing.T) {
	f := newFake()
	for _, n := range []api.Network{
		{Name: "c-trans", UUID: "u1", Active: true},
		{Name: "B-auto", UUID: "u2", Active: true, Persistent: true, Autostart: true},
		{Name: "d-off", UUID: "u3", Persistent: true},
		{Name: "a-plain", UUID: "u4", Persistent: true, Active: true},
	} {
		f.add(n, "")
	}
	sock := f.start(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"net-list", "--name"}, "a-plain\nB-auto\nc-trans\n\n"},
		{[]string{"net-list", "--name", "--all"}, "a-plain\nB-auto\nc-trans\nd-off\n\n"},
		{[]string{"net-list", "--name", "--inactive"}, "d-off\n\n"},
		{[]string{"net-list", "--name", "--inactive", "--all"}, "a-plain\nB-auto\nc-trans\nd-off\n\n"},
		{[]string{"net-list", "--name", "--all", "--transient"}, "c-trans\n\n"},
		{[]string{"net-list", "--name", "--all", "--persistent"}, "a-plain\nB-auto\nd-off\n\n"},
		{[]string{"net-list", "--name", "--all", "--persistent", "--transient"}, "a-plain\nB-auto\nc-trans\nd-off\n\n"},
		{[]string{"net-list", "--name", "--all", "--autostart"}, "B-auto\n\n"},
		{[]string{"net-list", "--name", "--all", "--no-autostart"}, "a-plain\nc-trans\nd-off\n\n"},
		{[]string{"net-list", "--uuid", "--all", "--no-autostart"}, "u4\nu1\nu3\n\n"},
		{[]string{"-q", "net-list", "--name", "--inactive"}, "d-off\n"},
		{[]string{"-q", "net-list", "--inactive", "--transient"}, ""},
		{[]string{"net-list", "--table", "--autostart"}, " Name     State    Autostart   Persistent\n" +
			"-------------------------------------------\n" +
			" B-auto   active   yes         yes\n\n"},
	}
	for _, tc := range cases {
		r := vnetctl(sock, tc.args...)
		if r.stdout != tc.want || r.stderr != "" || r.code != 0 {
			t.Errorf("%v: got %q %q %d, want %q", tc.args, r.stdout, r.stderr, r.code, tc.want)
		}
	}
}

func TestTableEscapes(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, []string{"Name", "X"}, [][]string{{"a\tb", "1"}, {"é", "2"}, {"\xff", "3"}}, false)
	want := " Name     X\n" +
		"-------------\n" +
		" a\\x09b   1\n" +
		" é        2\n" +
		" \\xff     3\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestNetInfo(t *testing.T) {
	t.Run("persistent", func(t *testing.T) {
		f := newFake().add(api.Network{Name: "ref-open", UUID: uuidOpen, Active: true, Persistent: true, Bridge: "virbr-open"}, "")
		replay(t, f.start(t), exInfoPersistent)
	})
	t.Run("transient", func(t *testing.T) {
		f := newFake().add(api.Network{Name: "ref-open", UUID: "247db271-84f2-4190-b58e-ca769b6404ce", Active: true, Bridge: "virbr-open"}, "")
		replay(t, f.start(t), exInfoTransient)
	})
	t.Run("no-bridge-quiet", func(t *testing.T) {
		f := newFake().add(api.Network{Name: "hostdev", UUID: uuidOpen, Persistent: true, Autostart: true}, "")
		r := vnetctl(f.start(t), "-q", "net-info", uuidOpen)
		want := "Name:           hostdev\n" +
			"UUID:           " + uuidOpen + "\n" +
			"Active:         no\n" +
			"Persistent:     yes\n" +
			"Autostart:      yes\n"
		if r.stdout != want || r.code != 0 {
			t.Errorf("got %q (%d), want %q", r.stdout, r.code, want)
		}
	})
}

func TestUUIDAndName(t *testing.T) {
	sock := refNetworks().start(t)
	replay(t, sock, exUUIDName)
	replay(t, sock, "$ virsh net-uuid "+uuidDefault+"\n"+
		"error: failed to get network '"+uuidDefault+"'\n"+
		"error: Network not found: no network with matching name '"+uuidDefault+"'\n\n")
	replay(t, sock, "$ virsh net-name 400e018b-b381-4cf2-aa2e-000000000000\n"+
		"error: failed to get network '400e018b-b381-4cf2-aa2e-000000000000'\n"+
		"error: Network not found: no network with matching uuid '400e018b-b381-4cf2-aa2e-000000000000'\n\n")
	// Not UUID-shaped: virsh does not even ask, so there is one line.
	replay(t, sock, "$ virsh net-name default\nerror: failed to get network 'default'\n\n")
	if r := vnetctl(sock, "-q", "net-uuid", "default"); r.stdout != uuidDefault+"\n" {
		t.Errorf("-q net-uuid: %q", r.stdout)
	}
}

func TestDumpXML(t *testing.T) {
	outs := outputs(exDumpXML)
	live, config := strings.TrimSuffix(outs[0], "\n"), strings.TrimSuffix(outs[1], "\n")
	f := newFake()
	f.nets = append(f.nets, &fakeNet{Network: api.Network{Name: "default", UUID: uuidDefault, Active: true, Persistent: true}, live: live, config: config})
	sock := f.start(t)
	replay(t, sock, exDumpXML)
	if r := vnetctl(sock, "-q", "net-dumpxml", "--inactive", "default"); r.stdout != config {
		t.Errorf("-q net-dumpxml: %q", r.stdout)
	}
	replay(t, sock, "$ virsh net-dumpxml nosuchnet\n"+
		"error: failed to get network 'nosuchnet'\n"+
		"error: Network not found: no network with matching name 'nosuchnet'\n\n")
}

// writeFiles creates files in a fresh working directory, so that FILE
// arguments can be relative as in the transcripts.
func writeFiles(t *testing.T, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
}

// openXML is ref-open's definition from the transcripts; uuid "" leaves
// <uuid> out, end is the DHCP range end.
func openXML(uuid, end string) string {
	s := "<network>\n  <name>ref-open</name>\n"
	if uuid != "" {
		s += "  <uuid>" + uuid + "</uuid>\n"
	}
	return s + "  <forward mode='open'/>\n" +
		"  <bridge name='virbr-open' stp='on' delay='0'/>\n" +
		"  <mac address='52:54:00:2f:17:4e'/>\n" +
		"  <ip address='10.40.0.1' netmask='255.255.255.0'>\n" +
		"    <dhcp>\n" +
		"      <range start='10.40.0.10' end='" + end + "'/>\n" +
		"    </dhcp>\n" +
		"  </ip>\n" +
		"</network>\n"
}

func TestLifecycle(t *testing.T) {
	writeFiles(t, map[string]string{"open.xml": openXML("", "10.40.0.30")})
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true})
	replay(t, f.start(t), exLifecycle)
}

func TestTransient(t *testing.T) {
	writeFiles(t, map[string]string{"open.xml": openXML("", "10.40.0.30")})
	f := refNetworks()
	f.uuids["ref-open"] = uuidOpen
	sock := f.start(t)
	replay(t, sock, exTransient)
	if r := vnetctl(sock, "net-list", "--all", "--name"); strings.Contains(r.stdout, "ref-open") {
		t.Errorf("transient network still listed after net-destroy: %q", r.stdout)
	}
}

func TestRedefineWhileActive(t *testing.T) {
	const uuid = "8e0f5dc0-9c49-4bcf-b311-5bc0c731c721"
	writeFiles(t, map[string]string{
		"open.xml":  openXML("", "10.40.0.30"),
		"open2.xml": openXML(uuid, "10.40.0.30"),
		"open3.xml": openXML(uuid, "10.40.0.40"),
	})
	f := refNetworks()
	f.uuids["ref-open"] = uuid
	sock := f.start(t)
	replay(t, sock, exRedefine)
	replay(t, sock, exRedefineXML)
	replay(t, sock, exUndefineActive)
}

func TestDefineAndStartErrors(t *testing.T) {
	writeFiles(t, map[string]string{"e06-range-reversed.xml": "<network><name>ref-e06</name></network>"})
	f := refNetworks(api.Network{Name: "ref-e15", UUID: "e15e15e1-0000-4000-8000-000000000015", Persistent: true})
	f.fail["POST /v1/networks"] = &api.Error{Code: api.CodeInvalidXML, Message: "internal error: range 10.206.0.200 - 10.206.0.100 is reversed "}
	f.fail["POST /v1/networks/ref-e15/start"] = &api.Error{Code: api.CodeFailed, Message: "internal error: Network is already in use by interface virbr0", Network: "ref-e15"}
	replay(t, f.start(t), exStartTimeErrors)
}

// TestErrors covers the messages and exit codes around failures, stream by stream.
func TestErrors(t *testing.T) {
	writeFiles(t, map[string]string{
		"open.xml":      openXML("", "10.40.0.30"),
		"malformed.xml": "<network>",
	})
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true})
	sock := f.start(t)
	missing := filepath.Join(t.TempDir(), "vnetd.sock")
	cases := []struct {
		name   string
		sock   string
		fail   map[string]*api.Error
		args   []string
		stdout string
		stderr string
	}{
		{name: "bad-option", args: []string{"net-start", "--bogus", "ref-open"},
			stderr: "error: command 'net-start' doesn't support option --bogus\n"},
		{name: "bad-option-value", args: []string{"net-list", "--bogus=1"},
			stderr: "error: command 'net-list' doesn't support option --bogus\n"},
		{name: "bad-short-option", args: []string{"net-info", "-x", "ref-open"},
			stderr: "error: command 'net-info' doesn't support option -x\n"},
		{name: "unknown-command", args: []string{"net-frobnicate", "x"},
			stderr: "error: unknown command: 'net-frobnicate'\n"},
		{name: "missing-argument", args: []string{"net-start"},
			stderr: "error: command 'net-start' requires <network> option\n"},
		{name: "missing-file-argument", args: []string{"net-define", "--validate"},
			stderr: "error: command 'net-define' requires <file> option\n"},
		{name: "extra-argument", args: []string{"net-destroy", "a", "b"},
			stderr: "error: unexpected data 'b'\n"},
		{name: "extra-argument-with-option", args: []string{"net-destroy", "--network", "a", "b"},
			stderr: "error: unexpected data 'b'\n"},
		{name: "list-extra-argument", args: []string{"net-list", "x"},
			stderr: "error: unexpected data 'x'\n"},
		{name: "option-needs-value", args: []string{"net-define", "--file"},
			stderr: "error: expected syntax: --file <string>\n"},
		{name: "empty-argument", args: []string{"net-start", ""},
			stdout: "\n", stderr: "error: Failed to get option 'network': Option argument is empty\n"},
		{name: "exclusive", args: []string{"net-list", "--name", "--table"},
			stdout: "\n", stderr: "error: Only one argument from --table, --name and --uuid may be specified.\n"},
		{name: "exclusive-quiet", args: []string{"-q", "net-list", "--uuid", "--name"},
			stderr: "error: Only one argument from --table, --name and --uuid may be specified.\n"},
		{name: "no-file", args: []string{"net-define", "nope.xml"},
			stdout: "\n", stderr: "error: Failed to open file 'nope.xml': No such file or directory\n"},
		{name: "file-is-dir", args: []string{"net-create", "."},
			stdout: "\n", stderr: "error: Failed to read file '.': Is a directory\n"},
		{name: "lookup-failure", args: []string{"net-start", "nosuchnet"},
			stdout: "\n", stderr: "error: failed to get network 'nosuchnet'\nerror: Network not found: no network with matching name 'nosuchnet'\n"},
		{name: "lookup-failure-quiet", args: []string{"-q", "net-autostart", "nosuchnet"},
			stderr: "error: failed to get network 'nosuchnet'\nerror: Network not found: no network with matching name 'nosuchnet'\n"},
		{name: "no-daemon", sock: missing, args: []string{"net-list"},
			stdout: "\n", stderr: "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '" + missing + "': No such file or directory\n"},
		{name: "create-failure", args: []string{"net-create", "open.xml"},
			stdout: "\n", stderr: "error: Failed to create network from open.xml\nerror: operation failed: network 'ref-open' already exists with uuid " + uuidOpen + "\n"},
		{name: "autostart-failure", args: []string{"net-autostart", "ref-open"},
			fail:   map[string]*api.Error{"POST /v1/networks/ref-open/autostart": {Code: api.CodeFailed, Message: "operation failed: cannot create autostart link"}},
			stdout: "\n", stderr: "error: failed to mark network ref-open as autostarted\nerror: operation failed: cannot create autostart link\n"},
		{name: "autostart-disable-failure", args: []string{"net-autostart", "--disable", "ref-open"},
			fail:   map[string]*api.Error{"POST /v1/networks/ref-open/autostart": {Code: api.CodeFailed, Message: "operation failed: x"}},
			stdout: "\n", stderr: "error: failed to unmark network ref-open as autostarted\nerror: operation failed: x\n"},
		{name: "undefine-failure", args: []string{"net-undefine", uuidOpen},
			fail:   map[string]*api.Error{"POST /v1/networks/" + uuidOpen + "/undefine": {Code: api.CodeFailed, Message: "operation failed: y"}},
			stdout: "\n", stderr: "error: Failed to undefine network " + uuidOpen + "\nerror: operation failed: y\n"},
		{name: "list-failure", args: []string{"net-list"},
			fail:   map[string]*api.Error{"GET /v1/networks": {Code: api.CodeFailed, Message: "internal error: z"}},
			stdout: "\n", stderr: "error: Failed to list networks\nerror: internal error: z\n"},
		{name: "multi-line-message", args: []string{"net-define", "malformed.xml"},
			fail: map[string]*api.Error{"POST /v1/networks": {Code: api.CodeInvalidXML,
				Message: "(network_definition):4: Opening and ending tag mismatch: bridge line 3 and network\n</network>\n----------^"}},
			stdout: "\n", stderr: "error: Failed to define network from malformed.xml\n" +
				"error: (network_definition):4: Opening and ending tag mismatch: bridge line 3 and network\n</network>\n----------^\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := sock
			if tc.sock != "" {
				s = tc.sock
			}
			f.mu.Lock()
			for k, v := range tc.fail {
				f.fail[k] = v
			}
			f.mu.Unlock()
			r := vnetctl(s, tc.args...)
			if r.code != 1 || r.stdout != tc.stdout || r.stderr != tc.stderr {
				t.Errorf("got code %d stdout %q stderr %q\nwant code 1 stdout %q stderr %q", r.code, r.stdout, r.stderr, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestSuccessMessages(t *testing.T) {
	writeFiles(t, map[string]string{"open.xml": openXML(uuidOpen, "10.40.0.30")})
	f := refNetworks()
	sock := f.start(t)
	replay(t, sock, `$ virsh net-define --validate open.xml
Network ref-open defined from open.xml

$ virsh net-start --network ref-open
Network ref-open started

$ virsh net-autostart `+uuidOpen+`
Network `+uuidOpen+` marked as autostarted

$ virsh net-destroy --network=ref-open
Network ref-open destroyed

$ virsh net-undefine ref-open
Network ref-open has been undefined

$ virsh net-create --file open.xml
Network ref-open created from open.xml

`)
	if len(f.requests) != 2 || !f.requests[0].Validate || f.requests[1].Validate {
		t.Errorf("define/create requests %+v: want --validate on the define only", f.requests)
	}
	// --quiet: no message, no empty line.
	for _, args := range [][]string{{"-q", "net-destroy", "ref-open"}, {"net-define", "--quiet", "open.xml"}, {"--quiet", "net-autostart", "--disable", "ref-open"}} {
		if r := vnetctl(sock, args...); r.merged != "" || r.code != 0 {
			t.Errorf("%v: got %q (%d), want nothing", args, r.merged, r.code)
		}
	}
}

// editorScript writes an executable editor that runs body with the file as $1.
func editorScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "editor.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNetEdit(t *testing.T) {
	newDaemon := func() (*fakeDaemon, string) {
		f := newFake()
		f.nets = append(f.nets, &fakeNet{Network: api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true},
			live: openXML(uuidOpen, "10.40.0.30"), config: openXML(uuidOpen, "10.40.0.30")})
		return f, f.start(t)
	}
	log := filepath.Join(t.TempDir(), "edited")
	changeRange := editorScript(t, `echo "$1" > `+log+`; sed -i 's/10.40.0.30/10.40.0.99/' "$1"`)

	t.Run("edited", func(t *testing.T) {
		f, sock := newDaemon()
		t.Setenv("VISUAL", "")
		t.Setenv("EDITOR", changeRange)
		replay(t, sock, "$ virsh net-edit ref-open\nNetwork ref-open XML configuration edited.\n\n")
		if want := openXML(uuidOpen, "10.40.0.99"); len(f.defined) != 1 || f.defined[0] != want {
			t.Errorf("defined %q, want %q", f.defined, want)
		}
		tmp, _ := os.ReadFile(log)
		if _, err := os.Stat(strings.TrimSpace(string(tmp))); !os.IsNotExist(err) {
			t.Errorf("temp file %s left behind (%v)", tmp, err)
		}
	})
	t.Run("not-changed", func(t *testing.T) {
		f, sock := newDaemon()
		t.Setenv("VISUAL", "true") // VISUAL wins over EDITOR
		t.Setenv("EDITOR", changeRange)
		replay(t, sock, "$ virsh net-edit "+uuidOpen+"\nNetwork ref-open XML configuration not changed.\n\n")
		if len(f.defined) != 0 {
			t.Errorf("defined %q, want nothing", f.defined)
		}
	})
	t.Run("define-fails", func(t *testing.T) {
		f, sock := newDaemon()
		t.Setenv("VISUAL", "")
		t.Setenv("EDITOR", changeRange)
		f.fail["POST /v1/networks"] = &api.Error{Code: api.CodeInvalidXML, Message: "XML error: Invalid address"}
		r := vnetctl(sock, "net-edit", "ref-open")
		tmp, _ := os.ReadFile(log)
		kept := strings.TrimSpace(string(tmp))
		defer os.Remove(kept)
		want := "error: Failed to define network ref-open from the edited XML, kept in " + kept + "\nerror: XML error: Invalid address\n"
		if r.code != 1 || r.stderr != want || r.stdout != "\n" {
			t.Errorf("got %d %q %q, want stderr %q", r.code, r.stdout, r.stderr, want)
		}
		if data, err := os.ReadFile(kept); err != nil || string(data) != openXML(uuidOpen, "10.40.0.99") {
			t.Errorf("kept file: %q %v", data, err)
		}
	})
	t.Run("changed-meanwhile", func(t *testing.T) {
		f, sock := newDaemon()
		t.Setenv("VISUAL", "")
		t.Setenv("EDITOR", changeRange)
		xmlGets := 0
		f.hook = func(r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/xml") {
				if xmlGets++; xmlGets == 2 {
					f.nets[0].config = openXML(uuidOpen, "10.40.0.50")
				}
			}
		}
		r := vnetctl(sock, "net-edit", "ref-open")
		tmp, _ := os.ReadFile(log)
		kept := strings.TrimSpace(string(tmp))
		defer os.Remove(kept)
		want := "error: The XML configuration was changed by another user.\nerror: your edited XML is kept in " + kept + "\n"
		if r.code != 1 || r.stderr != want || r.stdout != "\n" || len(f.defined) != 0 {
			t.Errorf("got %d %q %q (defined %d), want stderr %q", r.code, r.stdout, r.stderr, len(f.defined), want)
		}
	})
	t.Run("editor-fails", func(t *testing.T) {
		_, sock := newDaemon()
		t.Setenv("VISUAL", "")
		t.Setenv("EDITOR", "false")
		r := vnetctl(sock, "net-edit", "ref-open")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "error: Child process (sh -c 'false /") || !strings.HasSuffix(r.stderr, ".xml') unexpected exit status 1\n") {
			t.Errorf("got %d %q %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("no-network", func(t *testing.T) {
		_, sock := newDaemon()
		replay(t, sock, "$ virsh net-edit nosuchnet\nerror: failed to get network 'nosuchnet'\n"+
			"error: Network not found: no network with matching name 'nosuchnet'\n\n")
	})
}

// TestBinary builds vnetctl and runs it, to be sure main wires the tree up
// and VNET_SOCKET is honoured.
func TestBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	bin := filepath.Join(t.TempDir(), "vnetctl")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := newFake().add(api.Network{Name: "default", UUID: uuidDefault, Active: true, Persistent: true}, "").start(t)
	cmd := exec.Command(bin, "net-list", "--all")
	cmd.Env = append(os.Environ(), "VNET_SOCKET="+sock)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("vnetctl net-list: %v", err)
	}
	if want := outputs(exListOne)[0]; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	cmd = exec.Command(bin, "--socket", filepath.Join(t.TempDir(), "none.sock"), "net-start", "default")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want status 1", err)
	}
	if !strings.HasPrefix(stderr.String(), "error: failed to connect to the hypervisor\n") {
		t.Errorf("stderr %q", stderr.String())
	}
}
