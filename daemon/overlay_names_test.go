package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vnet/dnsmasq"
	"vnet/network/frr"
	netxml "vnet/xml"
)

const namesNetXML = `<network><name>ov</name><forward mode='nat'/><bridge name='ovbr0'/>
<dns><host ip='10.77.0.250'><hostname>db</hostname></host></dns>
<ip address='10.77.0.1' prefix='24'><dhcp><range start='10.77.0.10' end='10.77.0.249'/></dhcp></ip>
<vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='10100'/></network>`

// TestRemoteNamesValidated: names and addresses from another host that a
// hosts file or the network cannot take are dropped, so a peer can never
// inject a line into dnsmasq's files; the valid ones become <dns><host>
// entries of the view and land in the addnhosts file.
func TestRemoteNamesValidated(t *testing.T) {
	n, err := netxml.Parse([]byte(namesNetXML))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/overlay/10100/names" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"names":[
			{"name":"alpha","addr":"10.77.0.23"},
			{"name":"beta","addr":"::ffff:10.77.0.24"},
			{"name":"evil\n10.77.0.5 bank","addr":"10.77.0.25"},
			{"name":"sp ace","addr":"10.77.0.26"},
			{"name":"dotted.example","addr":"10.77.0.27"},
			{"name":"-dash","addr":"10.77.0.28"},
			{"name":"outside","addr":"192.0.2.1"},
			{"name":"gateway","addr":"10.77.0.1"},
			{"name":"zone","addr":"fe80::1%eth0"},
			{"name":"` + strings.Repeat("x", 64) + `","addr":"10.77.0.29"},
			{"name":"noaddr","addr":"10.77.0.30\naddn-hosts=/etc/shadow"}]}`))
	}))
	defer srv.Close()
	at := netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
	got, err := fetchNames(context.Background(), srv.Client(), at, overlayNet{name: "ov", vni: 10100, live: n})
	if err != nil {
		t.Fatal(err)
	}
	want := []remoteName{{"alpha", netip.MustParseAddr("10.77.0.23")}, {"beta", netip.MustParseAddr("10.77.0.24")}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("names = %v, want %v", got, want)
	}
	if _, err := fetchNames(context.Background(), srv.Client(), at, overlayNet{name: "ov", vni: 7, live: n}); err == nil {
		t.Errorf("unknown vni: no error")
	}

	h := &realHost{namesDir: t.TempDir(), log: slog.New(slog.DiscardHandler)}
	if !h.setRemoteNames("ov", got) || h.setRemoteNames("ov", got) {
		t.Errorf("setRemoteNames reports changes wrongly")
	}
	// A restarted vnetd reads them back (checked again: a bad line added
	// to the file is dropped).
	data, err := os.ReadFile(filepath.Join(h.namesDir, "ov.json"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), `{"name":"alpha"`, `{"name":"x\ny","addr":"10.77.0.9"},{"name":"alpha"`, 1)
	if err := os.WriteFile(filepath.Join(h.namesDir, "ov.json"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	h2 := &realHost{namesDir: h.namesDir, log: h.log}
	h2.loadNames(n)
	if r := h2.remoteNames("ov"); len(r) != 2 || r[0] != want[0] || r[1] != want[1] {
		t.Errorf("names read back: %v (file %s)", r, bad)
	}
	v := n.Clone()
	h.addRemoteNames(v)
	files, err := dnsmasq.Generate(v, dnsmasq.Options{StateDir: "/s"})
	if err != nil {
		t.Fatal(err)
	}
	if files.Addnhosts != "10.77.0.250\tdb\t\n10.77.0.23\talpha\t\n10.77.0.24\tbeta\t\n" {
		t.Errorf("addnhosts:\n%s", files.Addnhosts)
	}
	if len(n.DNS.Host) != 1 {
		t.Errorf("the definition changed: %+v", n.DNS.Host)
	}
	// A network without DNS serves no names.
	v.DNS.Enable = "no"
	v.DNS.Host = nil
	h.addRemoteNames(v)
	if len(v.DNS.Host) != 0 {
		t.Errorf("names added to a network without DNS")
	}
	if !h.setRemoteNames("ov", nil) || h.remoteNames("ov") != nil {
		t.Errorf("names not cleared")
	}
	if _, err := os.Stat(filepath.Join(h.namesDir, "ov.json")); err == nil {
		t.Errorf("names file left after the names went")
	}
}

// TestOwnNames: a host serves the named, unexpired leases of its own lease
// file, and nothing a peer could not take.
func TestOwnNames(t *testing.T) {
	n, err := netxml.Parse([]byte(namesNetXML))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dns, err := dnsmasq.NewManager(dnsmasq.Config{Binary: "/bin/true", StateDir: dir, RunDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	future, past := time.Now().Add(time.Hour).Unix(), time.Now().Add(-time.Minute).Unix()
	leases := fmt.Sprintf(`%d 52:54:00:00:00:01 10.77.0.11 alpha *
%d 52:54:00:00:00:02 10.77.0.12 expired *
%d 52:54:00:00:00:03 10.77.0.13 * *
%d 52:54:00:00:00:04 10.77.0.14 dotted.name *
0 52:54:00:00:00:05 10.77.0.15 forever *
`, future, past, future, future)
	if err := os.WriteFile(filepath.Join(dir, "ov.leases"), []byte(leases), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &realHost{dns: dns}
	got, err := h.ownNames(n)
	if err != nil {
		t.Fatal(err)
	}
	want := []overlayName{{"alpha", "10.77.0.11"}, {"forever", "10.77.0.15"}}
	if !slices.Equal(got, want) {
		t.Errorf("own names = %v, want %v", got, want)
	}
}

// TestNamesHandlerRefusesStrangers: the names service answers only the
// peers and remote VTEPs of this host's overlays.
func TestNamesHandlerRefusesStrangers(t *testing.T) {
	m := &Manager{}
	h := &realHost{overlay: &frr.Settings{Peers: []netip.Addr{netip.MustParseAddr("192.0.2.2")}}}
	for _, tc := range []struct {
		from string
		want int
	}{{"198.51.100.7:40000", http.StatusForbidden}, {"192.0.2.2:40000", http.StatusNotFound}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/v1/overlay/10100/names", nil)
		req.RemoteAddr = tc.from
		m.namesHandler(h).ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("from %s: %d %s, want %d", tc.from, rec.Code, rec.Body, tc.want)
		}
	}
}

// TestPollNames: names of the VTEPs that answer, those of a VTEP that
// stops answering kept for namesGrace, dropped at once when it leaves the
// flood list; a previous vnetd's names stand in until every VTEP answered.
func TestPollNames(t *testing.T) {
	n, err := netxml.Parse([]byte(namesNetXML))
	if err != nil {
		t.Fatal(err)
	}
	// Host .2 answers on the loopback; host .3 has no service.
	reply := `{"names":[{"name":"alpha","addr":"10.77.0.23"}]}`
	var mu sync.Mutex
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if reply == "" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(reply))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	two, three := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	m := &Manager{log: slog.New(slog.DiscardHandler)}
	o := overlayNet{name: "ov", vni: 10100, live: n}
	client := &http.Client{Timeout: namesTimeout}
	alpha := remoteName{"alpha", netip.MustParseAddr("10.77.0.23")}
	old := remoteName{"old", netip.MustParseAddr("10.77.0.40")}
	st := map[netip.Addr]*peerNames{carried: {names: []remoteName{old}, at: time.Now()}}
	pollIn := func(vteps ...netip.Addr) []remoteName {
		return m.pollNames(context.Background(), client, port, o, vteps, st)
	}
	if got := pollIn(two, three); !slices.Equal(got, []remoteName{alpha, old}) {
		t.Errorf(".3 silent: %v, want alpha and the carried name", got)
	}
	if got := pollIn(two); !slices.Equal(got, []remoteName{alpha}) {
		t.Errorf("every VTEP answered: %v, want alpha only", got)
	}
	mu.Lock()
	reply = ""
	mu.Unlock()
	if got := pollIn(two); !slices.Equal(got, []remoteName{alpha}) {
		t.Errorf(".2 not answering within the grace: %v, want alpha kept", got)
	}
	st[two].at = time.Now().Add(-namesGrace - time.Second)
	if got := pollIn(two); len(got) != 0 {
		t.Errorf(".2 silent past the grace: %v, want none", got)
	}
	mu.Lock()
	reply = `{"names":[{"name":"alpha","addr":"10.77.0.23"}]}`
	mu.Unlock()
	if got := pollIn(two); !slices.Equal(got, []remoteName{alpha}) {
		t.Errorf(".2 back: %v", got)
	}
	if got := pollIn(three); len(got) != 0 {
		t.Errorf(".2 left the flood list: %v, want none", got)
	}
}
