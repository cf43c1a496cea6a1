package frr

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// restartPoll is how often WatchRestarts looks at bgpd's vty socket.
const restartPoll = 2 * time.Second

// socketDir is where the settings' FRR keeps its vty sockets.
func (s *Settings) socketDir() string {
	switch {
	case s.VtyDir != "":
		return s.VtyDir
	case s.Pathspace != "":
		return filepath.Join("/var/run/frr", s.Pathspace)
	}
	return "/var/run/frr"
}

// WatchRestarts calls onStart each time bgpd (re)starts, until ctx is done:
// a restarted FRR has only its own configuration file, and vnet's lines
// must be given again now rather than at the next periodic check. It polls
// the identity (device, inode, change time) of bgpd's vty socket, which
// bgpd creates anew at every start: a stat every 2 s, no vtysh, no inotify
// instance.
func WatchRestarts(ctx context.Context, s *Settings, onStart func()) {
	path := filepath.Join(s.socketDir(), "bgpd.vty")
	// The change time tells a new socket apart even when the file system
	// hands out the old inode number again.
	type identity struct {
		dev, ino uint64
		ctime    syscall.Timespec
	}
	ident := func() identity {
		fi, err := os.Stat(path)
		if err != nil {
			return identity{}
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return identity{}
		}
		return identity{uint64(st.Dev), st.Ino, st.Ctim}
	}
	last := ident()
	t := time.NewTicker(restartPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := ident()
		if cur != last && cur.ino != 0 {
			onStart()
		}
		last = cur
	}
}
