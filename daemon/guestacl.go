package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"vnet/network"
)

// GuestACLFile is the name, in vnetd's config dir, of the access list of
// vnet-bridge-helper: which groups' members may plug guests into which
// network. Modelled on QEMU's bridge.conf:
//
//	# comment
//	allow NETWORK GROUP
//	deny  NETWORK GROUP
//
// NETWORK and GROUP may be "all"; GROUP is a group name or a numeric gid.
// A caller matches a line when its primary or a supplementary group (as the
// kernel reports them for the connecting process) is GROUP. Any matching deny
// wins over any allow; nothing matching denies. A missing file denies
// everything. The file is read again whenever it changed.
const GuestACLFile = "bridge-helper.conf"

// aclRule is one allow/deny line.
type aclRule struct {
	allow   bool
	network string // "all" matches any
	group   string // "all", a name or a numeric gid, as written
	gid     uint32 // resolved when group is not "all"
}

// guestACL is the access list, re-read when the file's size or time changed.
type guestACL struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	stamp   string // the file stamp of the version read; "" none (read again)
	rules   []aclRule
	loadErr error // the file could not be used: everything is denied
}

func newGuestACL(path string, log *slog.Logger) *guestACL {
	return &guestACL{path: path, log: log}
}

// errNoACL is the reason of a denial when the access list does not exist.
var errNoACL = errors.New("no access list")

// refresh reads the file again when it changed since the last read.
func (a *guestACL) refresh() {
	st, err := os.Stat(a.path)
	stamp := ""
	if err == nil {
		// The file stamps' rule: inode, size and both times, and none kept
		// for a file changed within racyWindow (an edit of the same size
		// in the same clock tick would otherwise go unseen).
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && time.Since(time.Unix(0, sys.Ctim.Nano())) >= racyWindow {
			stamp = fmt.Sprint(stampOf(sys))
		}
	} else if errors.Is(err, os.ErrNotExist) {
		stamp = "missing"
	}
	if stamp != "" && stamp == a.stamp {
		return
	}
	var rules []aclRule
	if err == nil {
		var data []byte
		if data, err = os.ReadFile(a.path); err == nil {
			rules, err = parseGuestACL(a.path, data)
		}
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		err = fmt.Errorf("%w: %s does not exist", errNoACL, a.path)
		if a.stamp != "missing" {
			a.log.Info("bridge helper access list missing: every vnet-bridge-helper call is denied", "file", a.path)
		}
	case err != nil:
		a.log.Error("bridge helper access list unusable: every vnet-bridge-helper call is denied", "file", a.path, "err", err)
	default:
		a.log.Info("bridge helper access list loaded", "file", a.path, "rules", len(rules))
	}
	// An empty stamp (the file could not be examined) is read again next
	// time.
	a.stamp, a.rules, a.loadErr = stamp, rules, err
}

// parseGuestACL parses the access list; errors name the file and line.
func parseGuestACL(path string, data []byte) ([]aclRule, error) {
	var rules []aclRule
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
		}
		if f[0] != "allow" && f[0] != "deny" {
			return nil, bad("unknown keyword '%s' (allow NETWORK GROUP or deny NETWORK GROUP)", f[0])
		}
		if len(f) != 3 {
			return nil, bad("'%s' needs exactly a network and a group: %s NETWORK GROUP", f[0], f[0])
		}
		r := aclRule{allow: f[0] == "allow", network: f[1], group: f[2]}
		if r.group != "all" {
			_, gid, err := network.ResolveOwner("", r.group)
			if err != nil {
				return nil, bad("unknown group '%s'", r.group)
			}
			r.gid = *gid
		}
		rules = append(rules, r)
	}
	return rules, sc.Err()
}

// allowed reports whether a process with these groups may attach to the
// network; err says why not when the list itself is unusable.
func (a *guestACL) allowed(network string, gids []uint32) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refresh()
	if a.loadErr != nil {
		return false, a.loadErr
	}
	allow := false
	for _, r := range a.rules {
		if r.network != "all" && r.network != network {
			continue
		}
		match := r.group == "all"
		for _, g := range gids {
			match = match || g == r.gid
		}
		if !match {
			continue
		}
		if !r.allow {
			return false, nil
		}
		allow = true
	}
	return allow, nil
}
