package dnsmasq

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	netxml "vnet/xml"
)

func TestServersFromResolvConf(t *testing.T) {
	in := `# generated
search example.org
nameserver 192.0.2.53
nameserver   2001:db8::53
nameserver fe80::1%eth0
nameserver fe80::2%bad,zone
nameserver not-an-address
options edns0
nameserver 10.0.0.1 # trailing
`
	want := "server=192.0.2.53\nserver=2001:db8::53\nserver=fe80::1%eth0\nserver=10.0.0.1\n"
	if got := ServersFromResolvConf([]byte(in)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := ServersFromResolvConf(nil); got != "" {
		t.Errorf("empty resolv.conf: %q", got)
	}
}

// Upstreams are the network's forwarders and, unless isolated or a
// forwarder for all names replaces them, the servers file's name servers,
// kept from the one read of resolv.conf (no second parser).
func TestUpstreams(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.53\nnameserver fe80::1%bad,zone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(Config{Binary: "/bin/true", StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run"), ResolvConf: resolv})
	if err != nil {
		t.Fatal(err)
	}
	def := func(forward, forwarders string) *netxml.Network {
		t.Helper()
		fw := ""
		if forward != "" {
			fw = "<forward mode='" + forward + "'/>"
		}
		n, err := netxml.Parse([]byte("<network><name>u</name><bridge name='vbr-u'/>" + fw + "<dns>" + forwarders + "</dns><ip address='10.9.0.1' prefix='24'/></network>"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []struct {
		forward, forwarders, want string
	}{
		{"nat", "", "[192.0.2.53:53]"},
		{"nat", "<forwarder domain='corp' addr='10.1.1.1' port='5353'/>", "[10.1.1.1:5353 192.0.2.53:53]"},
		{"nat", "<forwarder addr='10.1.1.1'/>", "[10.1.1.1:53]"},
		{"", "<forwarder domain='corp' addr='10.1.1.1'/>", "[10.1.1.1:53]"},
		{"", "", "[]"},
	} {
		n := def(c.forward, c.forwarders)
		if got := fmt.Sprint(m.Upstreams(n)); got != c.want {
			t.Errorf("forward %q, %s: %s, want %s", c.forward, c.forwarders, got, c.want)
		}
		// The conf reads the servers file exactly when Upstreams names
		// its servers.
		f, err := Generate(n, Options{ServersFile: m.ServersFile()})
		if err != nil {
			t.Fatal(err)
		}
		if ReadsServersFile(f.Conf) != strings.Contains(c.want, "192.0.2.53") {
			t.Errorf("forward %q, %s: conf reads the servers file: %v", c.forward, c.forwarders, ReadsServersFile(f.Conf))
		}
	}
	if err := os.WriteFile(resolv, []byte("nameserver 198.51.100.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(m.Upstreams(def("nat", ""))); got != "[192.0.2.53:53]" {
		t.Errorf("before the watch saw the change: %s (the servers file's servers, which dnsmasq uses)", got)
	}
	m.serversChanged()
	if got := fmt.Sprint(m.Upstreams(def("nat", ""))); got != "[198.51.100.1:53]" {
		t.Errorf("after the change: %s", got)
	}
}

// fakeUpstream runs a dnsmasq in e's namespace on addr:53 that answers
// every A query with answer.
func (e *nsEnv) fakeUpstream(t *testing.T, addr, answer string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", e.ns.Name(), e.cfg.Binary, "-C", "/dev/null", "--keep-in-foreground",
		"--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address="+addr, "--pid-file=",
		"--address=/#/"+answer)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

// inotifyFds counts the inotify instances a process holds.
func inotifyFds(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// TestUpstreamFollowsResolvConf: the networks' dnsmasq forward to the name
// servers of resolv.conf and follow it when it is replaced (as resolvconf
// and NetworkManager do, by rename), without an inotify instance of their
// own.
func TestUpstreamFollowsResolvConf(t *testing.T) {
	e := newNSEnv(t)
	e.ns.MustRun("ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
	e.ns.MustRun("ip", "addr", "add", "127.0.0.3/8", "dev", "lo")
	e.fakeUpstream(t, "127.0.0.2", "192.0.2.7")
	e.fakeUpstream(t, "127.0.0.3", "192.0.2.8")
	etc := t.TempDir()
	e.cfg.ResolvConf = filepath.Join(etc, "resolv.conf")
	if err := os.WriteFile(e.cfg.ResolvConf, []byte("nameserver 127.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.WatchUpstream(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	n := testNetwork("up")
	if err := m.Start(n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop("up") })
	conf, _ := os.ReadFile(m.path("up", ".conf"))
	if !strings.Contains(string(conf), "\nno-resolv\nservers-file="+m.ServersFile()+"\n") {
		t.Fatalf("conf does not read the servers file:\n%s", conf)
	}
	if got := e.dig(t, "a.example"); got != "192.0.2.7" {
		t.Fatalf("a.example = %q, want 192.0.2.7 (from 127.0.0.2)", got)
	}
	tmp := e.cfg.ResolvConf + ".new"
	if err := os.WriteFile(tmp, []byte("# VPN up\nnameserver 127.0.0.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfg.ResolvConf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for got := ""; got != "192.0.2.8"; got = e.dig(t, fmt.Sprintf("b%d.example", time.Now().UnixNano())) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("upstream not switched after 5 s: %q", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("upstream followed resolv.conf after %v", time.Since(start).Round(time.Millisecond))
	if n := inotifyFds(t, m.Pid("up")); n != 0 {
		t.Errorf("dnsmasq holds %d inotify instances, want 0", n)
	}
	if n := inotifyFds(t, os.Getpid()); n != 1 {
		t.Errorf("the manager holds %d inotify instances, want 1", n)
	}
}
