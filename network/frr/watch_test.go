package frr

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchRestarts: a new bgpd vty socket (a restarted bgpd) is reported,
// an unchanged one and a missing one are not.
func TestWatchRestarts(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "bgpd.vty")
	listen := func() net.Listener {
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := listen()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{}, 4)
	go WatchRestarts(ctx, &Settings{VtyDir: dir}, func() { started <- struct{}{} })
	select {
	case <-started:
		t.Fatal("reported a restart of a bgpd that did not restart")
	case <-time.After(restartPoll + 500*time.Millisecond):
	}
	l.Close()
	os.Remove(sock)
	l = listen() // bgpd started again: a new socket
	defer l.Close()
	select {
	case <-started:
	case <-time.After(3 * restartPoll):
		t.Fatal("restart not reported")
	}
}
