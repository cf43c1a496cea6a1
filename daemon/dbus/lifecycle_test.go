package dbusapi

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"vnet/daemon"
	netxml "vnet/xml"
)

// TestCallsWaitForReady: while the daemon is starting (HoldReady), calls
// are accepted but not answered; they are answered once it is ready.
func TestCallsWaitForReady(t *testing.T) {
	m := daemon.NewTestDriver(testLogger(t))
	release := m.HoldReady()
	defer release()
	e := serveEnv(t, m, nil, Options{})
	c := e.connectPath()
	early := make(chan error, 1)
	go func() {
		_, err := e.call(c, connectI+"ListNetworks", uint32(0))
		early <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	call := e.client.Object(BusName, c).CallWithContext(ctx, connectI+"ListNetworks", 0, uint32(0))
	if !errors.Is(call.Err, context.DeadlineExceeded) {
		t.Fatalf("ListNetworks before ready: %v, want no answer (deadline exceeded)", call.Err)
	}
	select {
	case err := <-early:
		t.Fatalf("ListNetworks answered before ready (err %v)", err)
	default:
	}
	release()
	if err := <-early; err != nil {
		t.Fatalf("ListNetworks after ready: %v", err)
	}
}

// blockingHost blocks Start until released and records whether it ended.
type blockingHost struct {
	*fakeHost
	entered  chan struct{}
	release  chan struct{}
	finished atomic.Bool
}

func (h *blockingHost) Start(n *netxml.Network) error {
	close(h.entered)
	<-h.release
	defer h.finished.Store(true)
	return h.fakeHost.Start(n)
}

// TestRunWaitsForCalls: Run returns only after the calls in progress have
// finished, so the daemon can detach from the host after it.
func TestRunWaitsForCalls(t *testing.T) {
	h := &blockingHost{fakeHost: &fakeHost{links: map[string]bool{}}, entered: make(chan struct{}), release: make(chan struct{})}
	m := daemon.NewManagerWith(daemon.NewMemoryStore(), h, testLogger(t))
	addr := startBus(t)
	srv := New(m, Options{Logger: testLogger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, addr) }()
	client := newClient(t, addr)
	waitOwner(t, client, done)
	go func() {
		_ = client.Object(BusName, srv.ConnectPath()).Call(connectI+"NetworkCreateXML", 0,
			"<network><name>w1</name><ip address='10.91.0.1' prefix='24'/></network>").Err
	}()
	<-h.entered
	cancel()
	// Let the blocked call go on once the server has given up its name
	// (it is on its way out of Run).
	go func() {
		for {
			var has bool
			if err := client.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, BusName).Store(&has); err != nil || !has {
				close(h.release)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if !h.finished.Load() {
		t.Fatal("Run returned while a call was still changing the host")
	}
}
