package vm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ImagePackages are installed (with their dependencies, minbase variant) in
// the Debian 12 image that boots systemd.
var ImagePackages = []string{"systemd-sysv", "udev", "kmod", "dbus", "iproute2", "dnsmasq-base", "nftables"}

// BaseImage returns a tarball of a Debian 12 root file system (mmdebstrap,
// from the host's apt sources) with the kernel package of a unpacked into it
// and depmod run, built once and cached by a hash of its package list and
// kernel. It logs how long it took. Without mmdebstrap the test skips.
func BaseImage(t testing.TB, a Assets) string {
	t.Helper()
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Skipf("the systemd boot test needs mmdebstrap (Debian package mmdebstrap): %v", err)
	}
	for _, tool := range []string{"mkfs.ext4", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the systemd boot test needs %s: %v", tool, err)
		}
	}
	defer lockCache(t, CacheDir())()
	start := time.Now()
	kdeb := a.KernelDeb
	hooks := []string{
		// The root is merged-/usr: keep /lib a symlink to usr/lib.
		`dpkg-deb --fsys-tarfile ` + kdeb + ` | tar -C "$1" -x --keep-directory-symlink`,
		`chroot "$1" /sbin/depmod -a ` + a.KernelVersion,
		`echo vnetvm > "$1/etc/hostname"`,
		`printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$1/etc/fstab"`,
		`chroot "$1" /usr/bin/passwd -d root`,
	}
	h := sha256.New()
	fmt.Fprintf(h, "bookworm minbase\n%s\n%s\n", strings.Join(ImagePackages, ","), strings.Join(hooks, "\n"))
	out := filepath.Join(CacheDir(), "debian12-"+hex.EncodeToString(h.Sum(nil))[:16]+".tar")
	if exists(out) {
		t.Logf("vm: Debian 12 image %s: cached", filepath.Base(out))
		return out
	}
	args := []string{"--variant=minbase", "--include=" + strings.Join(ImagePackages, ",")}
	for _, hk := range hooks {
		args = append(args, "--customize-hook="+hk)
	}
	args = append(args, "bookworm", out+".tmp.tar")
	cmd := exec.Command("mmdebstrap", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(out + ".tmp.tar")
		t.Fatalf("mmdebstrap: %v\n%s", err, lastLines(string(b), 30))
	}
	if err := os.Rename(out+".tmp.tar", out); err != nil {
		t.Fatal(err)
	}
	t.Logf("vm: Debian 12 image %s built: %v", filepath.Base(out), time.Since(start).Round(time.Millisecond))
	return out
}

// Disk unpacks the base tarball into a fresh tree, lets customize add to it
// (make install, test units), and writes an ext4 disk image of it in a
// temporary directory of t. It logs how long it took.
func Disk(t testing.TB, base string, customize func(root string)) string {
	t.Helper()
	start := time.Now()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("tar", "-C", root, "--numeric-owner", "-xpf", base).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", base, err, b)
	}
	customize(root)
	img := filepath.Join(dir, "disk.img")
	if b, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, img, "3G").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, b)
	}
	// The tree is no longer needed: only the image boots.
	_ = os.RemoveAll(root)
	t.Logf("vm: disk image assembled: %v", time.Since(start).Round(time.Millisecond))
	return img
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
