package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNetPortAttachErrors: net-port-attach's usage errors and a port that
// has no passt socket (a bridge network's) are refused precisely, running
// nothing. (The happy path, with a session vnetd: test/
// TestSessionPasstAttach.)
func TestNetPortAttachErrors(t *testing.T) {
	sock := testDriverSocket(t)
	dir := t.TempDir()
	port := filepath.Join(dir, "port.xml")
	if err := os.WriteFile(port, []byte(`<networkport><uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid><owner><name>b</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner><mac address='52:54:00:7b:35:94'/></networkport>`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--socket", sock, "net-port-create", "default", port}, &out, &errb); code != 0 {
		t.Fatalf("net-port-create: %d %s", code, errb.String())
	}
	marker := filepath.Join(dir, "ran")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"default", "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"}, "error: command 'net-port-attach' requires a COMMAND after --"},
		{[]string{"default"}, "error: command 'net-port-attach' requires <port> option"},
		{[]string{"default", "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d", "--fd", "2", "--", "touch", marker}, "error: --fd 2: the connection needs a descriptor of 3 or more"},
		{[]string{"default", "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d", "--", "touch", marker},
			"error: network port '5d744f21-ba4a-4d6e-bdb2-30a35ff3207d' of network 'default' has no passt socket: net-port-attach needs a port of a network of forward mode 'user' (a session vnetd's)"},
		{[]string{"default", "11111111-2222-3333-4444-555555555555", "--", "touch", marker}, "error: failed to get network port '11111111-2222-3333-4444-555555555555'"},
	} {
		out.Reset()
		errb.Reset()
		code := run(append([]string{"--socket", sock, "net-port-attach"}, c.args...), &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("net-port-attach %q: exit %d\n%s\nwant …%s", c.args, code, errb.String(), c.want)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("net-port-attach %q ran the command", c.args)
		}
	}
}
