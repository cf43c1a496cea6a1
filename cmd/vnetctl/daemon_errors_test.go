package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"vnet/daemon"
)

// TestRealDaemonErrors runs vnetctl against the real API handler (libvirt's
// test driver: no root, nothing on the host) and checks virsh's two error
// lines and exit code for each error kind the daemon maps.
func TestRealDaemonErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vnetd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: daemon.NewTestDriver(nil).Handler()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	bad := filepath.Join(t.TempDir(), "bad.xml")
	if err := os.WriteFile(bad, []byte("<network><name>x</name><forward mode='bogus'/></network>"), 0o644); err != nil {
		t.Fatal(err)
	}
	clash := filepath.Join(t.TempDir(), "clash.xml")
	if err := os.WriteFile(clash, []byte("<network><name>default</name><uuid>11111111-2222-3333-4444-555555555555</uuid></network>"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"net-start", "nope"}, "error: failed to get network 'nope'\nerror: Network not found: no network with matching name 'nope'\n"},
		{[]string{"net-start", "default"}, "error: Failed to start network default\nerror: Requested operation is not valid: network is already active\n"},
		{[]string{"net-undefine", "default"}, "error: Failed to undefine network default\nerror: Requested operation is not valid: Network 'default' is still running\n"},
		{[]string{"net-define", bad}, "error: Failed to define network from " + bad + "\nerror: unsupported configuration: unknown forwarding type 'bogus'\n"},
		{[]string{"net-define", clash}, "error: Failed to define network from " + clash + "\nerror: operation failed: network 'default' already exists with uuid dd8fe884-6c02-601e-7551-cca97df1c5df\n"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"--socket", sock}, c.args...), &stdout, &stderr)
		if code != 1 || stderr.String() != c.stderr {
			t.Errorf("%v: exit %d, stderr\n%s\nwant exit 1, stderr\n%s", c.args, code, stderr.String(), c.stderr)
		}
	}
}
