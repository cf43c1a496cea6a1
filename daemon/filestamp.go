package daemon

import (
	"hash/maphash"
	"os"
	"sync"
	"syscall"
	"time"
)

// fileStamps tells whether a file still holds given content, reading it only
// when its inode, size, mtime or ctime changed since it was last found to
// hold that content: the periodic check compares three dnsmasq files per
// network, and a stat is a fraction of an open, read and close.
type fileStamps struct {
	seed maphash.Seed
	mu   sync.Mutex
	m    map[string]fileStamp
}

// fileStamp is what a file looked like when it held the content hashed in sum.
type fileStamp struct {
	ino, size    uint64
	mtime, ctime int64
	sum          uint64
}

// racyWindow: a stamp is only kept for a file whose last change is older
// than this. The kernel's file timestamps are coarse (a clock tick), so an
// edit right after our read could leave every field of the stamp as it was.
const racyWindow = time.Second

func newFileStamps() *fileStamps {
	return &fileStamps{seed: maphash.MakeSeed(), m: map[string]fileStamp{}}
}

func stampOf(st *syscall.Stat_t) fileStamp {
	return fileStamp{ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// same reports whether the file at path holds exactly want.
// A nil *fileStamps always reads the file.
func (f *fileStamps) same(path, want string) bool {
	if f == nil {
		cur, err := os.ReadFile(path)
		return err == nil && string(cur) == want
	}
	sum := maphash.String(f.seed, want)
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return false
	}
	stamp := stampOf(&st)
	stamp.sum = sum
	f.mu.Lock()
	known, ok := f.m[path]
	f.mu.Unlock()
	if ok && known == stamp {
		return true
	}
	cur, err := os.ReadFile(path)
	if err != nil || string(cur) != want {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(time.Unix(0, max(stamp.mtime, stamp.ctime))) > racyWindow {
		f.m[path] = stamp
	} else {
		delete(f.m, path)
	}
	return true
}

// forget drops the stamps of removed files.
func (f *fileStamps) forget(paths ...string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range paths {
		delete(f.m, p)
	}
}
