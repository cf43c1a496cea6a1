package network

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Watch reports, by link name, every link change and every address removal
// the kernel announces, until ctx is done. Drift repair uses it to notice a
// deleted bridge, a bridge set down or an address removed within
// milliseconds instead of waiting for the periodic check. A name of "" means
// "unknown link: check everything" (e.g. after the kernel dropped messages).
func Watch(ctx context.Context, changed func(link string)) error {
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	overflow := func(error) { changed("") }
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: overflow}); err != nil {
		close(done)
		return fmt.Errorf("subscribe to link events: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: overflow}); err != nil {
		close(done)
		return fmt.Errorf("subscribe to address events: %w", err)
	}
	// ifindex → name, so an address event (which carries only the index)
	// names its link.
	names := map[int]string{}
	go func() {
		<-ctx.Done()
		close(done)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-links:
			if !ok {
				return nil
			}
			name := u.Attrs().Name
			if u.Header.Type == unix.RTM_DELLINK {
				delete(names, int(u.Index))
			} else {
				names[int(u.Index)] = name
			}
			changed(name)
		case u, ok := <-addrs:
			if !ok {
				return nil
			}
			if u.NewAddr {
				continue
			}
			name, ok := names[u.LinkIndex]
			if !ok {
				if l, err := netlink.LinkByIndex(u.LinkIndex); err == nil {
					name = l.Attrs().Name
					names[u.LinkIndex] = name
				}
			}
			changed(name)
		}
	}
}
