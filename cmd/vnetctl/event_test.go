package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vnet/daemon/api"
)

// eventDaemon has three events queued: two of ref-open, one of default.
func eventDaemon() *fakeDaemon {
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true})
	f.events = []api.Event{
		{Network: "ref-open", UUID: uuidOpen, Event: "Started", Time: "2026-05-01T10:00:00.123Z"},
		{Network: "default", UUID: uuidDefault, Event: "Defined", Time: "2026-05-01T10:00:00.5+02:00"},
		{Network: "ref-open", UUID: uuidOpen, Event: "Stopped", Time: "2026-05-01T10:00:01Z"},
	}
	return f
}

// watchWriter is a stdout safe for concurrent reading that signals once it
// has seen n event lines.
type watchWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	n    int
	seen chan struct{}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.seen != nil && strings.Count(w.buf.String(), "event 'lifecycle'") >= w.n {
		close(w.seen)
		w.seen = nil
	}
	return len(p), nil
}

func TestNetEvent(t *testing.T) {
	f := eventDaemon()
	sock := f.start(t)
	started := "event 'lifecycle' for network ref-open: Started\n"
	stopped := "event 'lifecycle' for network ref-open: Stopped\n"

	// Interrupted first and alone: it replaces the SIGINT hook while the
	// parallel cases below wait.
	t.Run("loop-interrupted", func(t *testing.T) {
		intr := make(chan os.Signal, 1)
		old := notifyInterrupt
		notifyInterrupt = func() (<-chan os.Signal, func()) { return intr, func() {} }
		defer func() { notifyInterrupt = old }()
		seen := make(chan struct{})
		out := &watchWriter{n: 2, seen: seen}
		var errb bytes.Buffer
		done := make(chan int)
		go func() { done <- run([]string{"--socket", sock, "net-event", "ref-open", "--loop"}, out, &errb) }()
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
			t.Fatal("no events within 10s")
		}
		intr <- os.Interrupt
		code := <-done
		want := started + stopped + "event loop interrupted\nevents received: 2\n\n"
		if code != 0 || out.buf.String() != want || errb.String() != "" {
			t.Errorf("got %d %q %q, want %q", code, out.buf.String(), errb.String(), want)
		}
	})

	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "one-shot", args: []string{"ref-open"},
			stdout: started + "events received: 1\n\n"},
		{name: "one-shot-event-positional", args: []string{"ref-open", "lifecycle", "--timeout", "1"},
			stdout: started + "events received: 1\n\n"},
		{name: "one-shot-timestamp", args: []string{"--network", "ref-open", "--event", "lifecycle", "--timestamp"},
			stdout: "2026-05-01 10:00:00.123+0000: " + started + "events received: 1\n\n"},
		{name: "loop-timeout", args: []string{"--loop", "--timeout", "1", "ref-open"},
			stdout: started + stopped + "event loop timed out\nevents received: 2\n\n"},
		{name: "loop-timeout-timestamp-all", args: []string{"--loop", "--timeout", "1", "--timestamp"},
			stdout: "2026-05-01 10:00:00.123+0000: " + started +
				"2026-05-01 08:00:00.500+0000: event 'lifecycle' for network default: Defined\n" +
				"2026-05-01 10:00:01.000+0000: " + stopped +
				"event loop timed out\nevents received: 3\n\n"},
		{name: "timeout-nothing", args: []string{"ref-nat2", "--timeout", "1"}, code: 1,
			stdout: "event loop timed out\nevents received: 0\n\n"},
		{name: "quiet", args: []string{"-q", "ref-open", "--event=lifecycle"},
			stdout: started + "events received: 1\n"},
		{name: "list", args: []string{"--list"}, stdout: "lifecycle\n\n"},
		{name: "unknown-event", args: []string{"--event", "metadata-change"}, code: 1,
			stdout: "\n", stderr: "error: unknown event type metadata-change\n"},
		{name: "empty-event", args: []string{"ref-open", "--event="}, code: 1,
			stdout: "\n", stderr: "error: Failed to get option 'event': Option argument is empty\n"},
		{name: "timeout-zero", args: []string{"--timeout", "0"}, code: 1,
			stdout: "\n", stderr: "error: Numeric value '0' for <timeout> option is malformed or out of range\n"},
		{name: "timeout-fraction", args: []string{"--timeout", "0.2"}, code: 1,
			stdout: "\n", stderr: "error: Numeric value '0.2' for <timeout> option is malformed or out of range\n"},
		{name: "timeout-too-big", args: []string{"--timeout", "2147484"}, code: 1,
			stdout: "\n", stderr: "error: Numeric value '2147484' for <timeout> option is malformed or out of range\n"},
		{name: "no-network", args: []string{"nosuchnet"}, code: 1,
			stdout: "\n", stderr: "error: failed to get network 'nosuchnet'\nerror: Network not found: no network with matching name 'nosuchnet'\n"},
		{name: "extra-argument", args: []string{"ref-open", "lifecycle", "x"}, code: 1,
			stderr: "error: unexpected data 'x'\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := vnetctl(sock, append([]string{"net-event"}, tc.args...)...)
			if r.code != tc.code || r.stdout != tc.stdout || r.stderr != tc.stderr {
				t.Errorf("got code %d stdout %q stderr %q\nwant code %d stdout %q stderr %q", r.code, r.stdout, r.stderr, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestNetEventStreamEnds(t *testing.T) {
	f := eventDaemon()
	f.hangUp = true
	r := vnetctl(f.start(t), "net-event", "--loop", "ref-open")
	want := "event 'lifecycle' for network ref-open: Started\nevent 'lifecycle' for network ref-open: Stopped\nevents received: 2\n\n"
	if r.code != 1 || r.stdout != want || r.stderr != "error: vnetd closed the event stream\n" {
		t.Errorf("got %d %q %q, want stdout %q", r.code, r.stdout, r.stderr, want)
	}
	missing := filepath.Join(t.TempDir(), "vnetd.sock")
	r = vnetctl(missing, "net-event")
	if want := "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '" + missing + "': No such file or directory\n"; r.code != 1 || r.stderr != want {
		t.Errorf("no daemon: got %d %q, want %q", r.code, r.stderr, want)
	}
}
