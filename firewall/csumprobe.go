package firewall

import (
	"bytes"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// csumActionAvailable tells, without changing anything, whether the kernel can
// run tc's csum action: loaded (/sys/module/act_csum), built in
// (modules.builtin) or loadable (the module file). It answers true when it
// cannot tell, so the first Apply finds out for real.
//
// Why: a fresh backend that believed the action exists would report the
// missing checksum filter as drift at every daemon start and replace the
// adopted tables for nothing.
func csumActionAvailable() bool {
	if _, err := os.Stat("/sys/module/act_csum"); err == nil {
		return true
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return true
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]))
	builtin, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		// No module tree: only built-in features exist, and act_csum
		// is not loaded (no /sys/module entry), so it is absent.
		if _, derr := os.Stat(dir); os.IsNotExist(derr) {
			return false
		}
		return true
	}
	if bytes.Contains(builtin, []byte("/act_csum.ko")) {
		return true
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "kernel", "net", "sched", "act_csum.ko*"))
	return len(matches) > 0
}
