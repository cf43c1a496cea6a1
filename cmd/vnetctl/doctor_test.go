package main

import (
	"encoding/json"
	"testing"

	"vnet/daemon/api"
)

func TestNetDoctor(t *testing.T) {
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true})
	drop := api.DoctorCheck{ID: "fw.foreign-drop", Network: "ref-open", Detail: "nftables table inet filter, chain input (input hook, priority 0) drops DHCP (udp 67) from virbr9 by its policy drop",
		Fix: `nft insert rule inet filter input iifname "virbr9" udp dport 67 accept`}
	pass := api.DoctorCheck{ID: "route.overlap", Network: "ref-open", OK: true, Detail: "no other route or address overlaps the subnets of virbr9"}
	port := api.DoctorCheck{ID: "dns.port-conflict", Network: "ref-open", Detail: "python3 (pid 42) holds tcp 0.0.0.0:53, which collides with the dnsmasq of virbr9", Fix: "kill 42"}
	f.doctor = map[string]api.DoctorReport{
		"":         {Checks: []api.DoctorCheck{pass, drop, port}},
		"ref-open": {Checks: []api.DoctorCheck{pass}},
	}
	sock := f.start(t)
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "problems", code: 1, stdout: "PROBLEM fw.foreign-drop: " + drop.Detail + "\n  fix: " + drop.Fix + "\n" +
			"PROBLEM dns.port-conflict: " + port.Detail + "\n  fix: kill 42\n2 problem(s) found\n"},
		{name: "clean", args: []string{"ref-open"}, stdout: "no problems found\n"},
		{name: "clean-option", args: []string{"--network", "ref-open"}, stdout: "no problems found\n"},
		{name: "no-network", args: []string{"nosuchnet"}, code: 1,
			stderr: "error: failed to get network 'nosuchnet'\nerror: Network not found: no network with matching name 'nosuchnet'\n"},
		{name: "empty-network", args: []string{"--network="}, code: 1, stderr: "error: Failed to get option 'network': Option argument is empty\n"},
		{name: "extra", args: []string{"ref-open", "x"}, code: 1, stderr: "error: unexpected data 'x'\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := vnetctl(sock, append([]string{"net-doctor"}, c.args...)...)
			if r.code != c.code || r.stdout != c.stdout || r.stderr != c.stderr {
				t.Errorf("got code %d stdout %q stderr %q\nwant code %d stdout %q stderr %q", r.code, r.stdout, r.stderr, c.code, c.stdout, c.stderr)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		r := vnetctl(sock, "net-doctor", "--json")
		var rep api.DoctorReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 1 || len(rep.Checks) != 3 || !rep.Checks[0].OK || rep.Checks[1].Fix != drop.Fix {
			t.Fatalf("code %d, %v: %s", r.code, err, r.stdout)
		}
		r = vnetctl(sock, "net-doctor", "--json", "ref-open")
		if r.code != 0 {
			t.Fatalf("clean --json: code %d", r.code)
		}
	})
}

func TestNetEventWarning(t *testing.T) {
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true})
	f.events = []api.Event{
		{Network: "ref-open", UUID: uuidOpen, Event: "Started", Time: "2026-05-01T10:00:00Z"},
		{Network: "ref-open", UUID: uuidOpen, Event: "Warning", Detail: "route.overlap: route 10.0.0.0/25 dev wg0 (table main) overlaps 10.0.0.0/24 of virbr9", Time: "2026-05-01T10:00:01Z"},
	}
	sock := f.start(t)
	r := vnetctl(sock, "net-event", "--event", "warning")
	want := "event 'warning' for network ref-open: route.overlap: route 10.0.0.0/25 dev wg0 (table main) overlaps 10.0.0.0/24 of virbr9\nevents received: 1\n\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("got %d %q, want %q", r.code, r.stdout, want)
	}
	r = vnetctl(sock, "net-event", "--loop", "--timeout", "1")
	if r.code != 0 || r.stdout != "event 'lifecycle' for network ref-open: Started\nevent loop timed out\nevents received: 1\n\n" {
		t.Fatalf("lifecycle only: got %d %q", r.code, r.stdout)
	}
}
