package pidfd

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Notify calls exited once, on the package's one watcher goroutine, when
// the pinned process exits. The returned cancel stops the watch and reports
// whether it did so before exited ran (then exited never runs); it must be
// called before Close. exited must not block.
//
// Why not a goroutine blocked in Wait per process: a daemon supervising a
// thousand processes kept a thousand parked goroutines (their stacks, about
// 4 kB each, were a tenth of its memory); one epoll set serves them all.
func (p *Process) Notify(exited func()) (cancel func() bool, err error) {
	w, err := theWatcher()
	if err != nil {
		return nil, err
	}
	var id int32
	var regErr error
	if err := p.rc.Control(func(fd uintptr) { id, regErr = w.add(int(fd), exited) }); err != nil {
		return nil, fmt.Errorf("watch process %d: %w", p.pid, err)
	}
	if regErr != nil {
		return nil, fmt.Errorf("watch process %d: %w", p.pid, regErr)
	}
	return func() bool {
		var removed bool
		_ = p.rc.Control(func(fd uintptr) { removed = w.remove(int(fd), id) })
		return removed
	}, nil
}

// watcher is the epoll set of every Notify.
type watcher struct {
	epfd int
	mu   sync.Mutex
	next int32
	fns  map[int32]func()
}

var (
	watcherOnce sync.Once
	watcherOne  *watcher
	watcherErr  error
)

func theWatcher() (*watcher, error) {
	watcherOnce.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			watcherErr = fmt.Errorf("epoll: %w", err)
			return
		}
		watcherOne = &watcher{epfd: fd, fns: map[int32]func(){}}
		go watcherOne.run()
	})
	return watcherOne, watcherErr
}

func (w *watcher) add(fd int, f func()) (int32, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	id := w.next
	w.fns[id] = f
	// One-shot: a pidfd stays readable once its process exited.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: id}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		delete(w.fns, id)
		return 0, err
	}
	return id, nil
}

func (w *watcher) remove(fd int, id int32) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.fns[id]; !ok {
		return false
	}
	delete(w.fns, id)
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	return true
}

// run waits for exits for the daemon's life. Why a blocking EpollWait: it
// holds one OS thread, however many processes are watched.
func (w *watcher) run() {
	evs := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.epfd, evs, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			panic(fmt.Sprintf("pidfd: epoll wait: %v", err))
		}
		for _, ev := range evs[:n] {
			w.mu.Lock()
			f := w.fns[ev.Fd]
			delete(w.fns, ev.Fd)
			w.mu.Unlock()
			if f != nil {
				f()
			}
		}
	}
}
