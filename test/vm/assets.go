// Package vm boots real QEMU guests for vnet's end-to-end tests: a Debian
// kernel and a busybox initramfs built by the test from Debian's packages
// (cached between runs), run under TCG inside a test's network namespace on a
// TAP device, reporting DHCP leases and pings on the serial console.
package vm

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Assets are the kernel and initramfs a guest boots.
type Assets struct {
	// Kernel is the vmlinuz of Debian's linux-image package.
	Kernel string
	// Initrd is the busybox initramfs (gzip'd cpio newc).
	Initrd string
	// KernelVersion is the release, e.g. "6.1.0-57-amd64".
	KernelVersion string
	// KernelPackage is the linux-image-6.x package and version used.
	KernelPackage string
	// KernelDeb is that package's cached .deb file.
	KernelDeb string
}

// NetModules are the kernel modules the network guest loads (Debian builds
// virtio_pci and virtio_net as modules); their dependencies come along.
var NetModules = []string{"virtio_pci", "virtio_net"}

// RootModules are what a guest needs to mount a virtio disk with ext4 as
// its root file system.
var RootModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic"}

// CacheDir is where kernels and initramfs images are kept between runs:
// $VNET_TEST_CACHE, else $XDG_CACHE_HOME/vnet-test, else
// /var/cache/vnet-test.
func CacheDir() string {
	if d := os.Getenv("VNET_TEST_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "vnet-test")
	}
	return "/var/cache/vnet-test"
}

// RequireQEMU skips the test when qemu-system-x86_64 or the Debian tools
// needed to fetch the guest's kernel are missing.
func RequireQEMU(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("QEMU guests need %s (Debian packages qemu-system-x86, apt, dpkg): %v", tool, err)
		}
	}
}

var prepareMu sync.Mutex

// lockCache serialises builds in the cache between processes (go test runs
// test packages in parallel) and, with prepareMu, between goroutines; the
// returned function unlocks.
func lockCache(t testing.TB, cache string) func() {
	t.Helper()
	prepareMu.Lock()
	f, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		prepareMu.Unlock()
		t.Fatalf("vm cache lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		prepareMu.Unlock()
		t.Fatalf("vm cache lock: %v", err)
	}
	return func() {
		f.Close()
		prepareMu.Unlock()
	}
}

// Prepare returns the kernel and an initramfs loading the given modules,
// fetching and building them on the first call (and whenever a package
// version changes); it logs how long each stage took. Where Debian's
// packages cannot be fetched the test skips: then QEMU could not have been
// installed either.
func Prepare(t testing.TB, modules []string) Assets {
	t.Helper()
	RequireQEMU(t)
	cache := CacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatalf("vm cache %s: %v", cache, err)
	}
	defer lockCache(t, cache)()
	start := time.Now()
	kpkg, kver, err := kernelPackage()
	if err != nil {
		t.Skipf("cannot resolve Debian's kernel package: %v", err)
	}
	kdeb, cached, err := fetchDeb(cache, kpkg, kver)
	if err != nil {
		t.Skipf("cannot download %s: %v", kpkg, err)
	}
	t.Logf("vm: kernel package %s %s: %v (cached: %v)", kpkg, kver, time.Since(start).Round(time.Millisecond), cached)

	start = time.Now()
	bver, err := candidate("busybox-static")
	if err != nil {
		t.Skipf("cannot resolve busybox-static: %v", err)
	}
	bdeb, bcached, err := fetchDeb(cache, "busybox-static", bver)
	if err != nil {
		t.Skipf("cannot download busybox-static: %v", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n", kver, bver, initScript, udhcpcScript, strings.Join(modules, ","))
	key := hex.EncodeToString(h.Sum(nil))[:16]
	a := Assets{
		Kernel:        filepath.Join(cache, "vmlinuz-"+sanitize(kver)),
		Initrd:        filepath.Join(cache, "initrd-"+key+".gz"),
		KernelPackage: kpkg + " " + kver,
		KernelDeb:     kdeb,
	}
	verFile := a.Kernel + ".release"
	if _, err := os.Stat(a.Initrd); err == nil && exists(a.Kernel) && exists(verFile) {
		rel, _ := os.ReadFile(verFile)
		a.KernelVersion = string(rel)
		t.Logf("vm: initramfs %s: %v (cached; busybox cached: %v)", filepath.Base(a.Initrd), time.Since(start).Round(time.Millisecond), bcached)
		return a
	}
	rel, err := buildAssets(kdeb, bdeb, a, modules)
	if err != nil {
		t.Fatalf("vm: build kernel/initramfs: %v", err)
	}
	if err := os.WriteFile(verFile, []byte(rel), 0o644); err != nil {
		t.Fatal(err)
	}
	a.KernelVersion = rel
	t.Logf("vm: initramfs %s built: %v", filepath.Base(a.Initrd), time.Since(start).Round(time.Millisecond))
	return a
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func sanitize(s string) string { return strings.NewReplacer(":", "_", "/", "_").Replace(s) }

// kernelPackage resolves linux-image-amd64 to the linux-image-6.x package
// it depends on, and that package's version.
func kernelPackage() (pkg, version string, err error) {
	out, err := exec.Command("apt-cache", "show", "--no-all-versions", "linux-image-amd64").Output()
	if err != nil {
		return "", "", fmt.Errorf("apt-cache show linux-image-amd64: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "Depends:") {
			continue
		}
		for _, dep := range strings.Split(strings.TrimPrefix(line, "Depends:"), ",") {
			f := strings.Fields(dep)
			if len(f) > 0 && strings.HasPrefix(f[0], "linux-image-") {
				pkg = f[0]
				break
			}
		}
	}
	if pkg == "" {
		return "", "", errors.New("linux-image-amd64 depends on no linux-image-* package")
	}
	version, err = candidate(pkg)
	return pkg, version, err
}

// candidate returns the version apt would install of pkg.
func candidate(pkg string) (string, error) {
	out, err := exec.Command("apt-cache", "show", "--no-all-versions", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache show %s: %w", pkg, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Version: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("apt-cache show %s: no Version", pkg)
}

// fetchDeb downloads pkg=version into the cache once (apt-get download).
func fetchDeb(cache, pkg, version string) (path string, cached bool, err error) {
	path = filepath.Join(cache, sanitize(pkg+"_"+version)+".deb")
	if exists(path) {
		return path, true, nil
	}
	tmp, err := os.MkdirTemp(cache, "dl-")
	if err != nil {
		return "", false, err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("apt-get", "download", "-q", pkg+"="+version)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("apt-get download %s=%s: %w: %s", pkg, version, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", false, fmt.Errorf("apt-get download %s: got %v", pkg, debs)
	}
	return path, false, os.Rename(debs[0], path)
}

// buildAssets unpacks both packages, copies the vmlinuz into the cache and
// writes the initramfs; it returns the kernel release.
func buildAssets(kdeb, bdeb string, a Assets, modules []string) (string, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(a.Initrd), "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	kdir, bdir := filepath.Join(tmp, "k"), filepath.Join(tmp, "b")
	for _, x := range [][2]string{{kdeb, kdir}, {bdeb, bdir}} {
		if out, err := exec.Command("dpkg-deb", "-x", x[0], x[1]).CombinedOutput(); err != nil {
			return "", fmt.Errorf("dpkg-deb -x %s: %w: %s", x[0], err, out)
		}
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
	if len(vmlinuz) != 1 {
		return "", fmt.Errorf("%s: want one boot/vmlinuz-*, got %v", kdeb, vmlinuz)
	}
	rel := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	if err := copyAtomic(vmlinuz[0], a.Kernel); err != nil {
		return "", err
	}
	mods, err := resolveModules(filepath.Join(kdir, "lib", "modules", rel), modules)
	if err != nil {
		return "", err
	}
	bb, err := os.ReadFile(filepath.Join(bdir, "bin", "busybox"))
	if err != nil {
		return "", err
	}
	w := newCPIO()
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "etc", "newroot", "lib", "lib/modules"} {
		w.dir(d)
	}
	w.chardev("dev/console", 5, 1)
	w.chardev("dev/null", 1, 3)
	w.file("bin/busybox", 0o755, bb)
	w.symlink("bin/sh", "busybox")
	w.file("init", 0o755, []byte(initScript))
	w.file("etc/udhcpc.sh", 0o755, []byte(udhcpcScript))
	var order []string
	for _, m := range mods {
		data, err := os.ReadFile(m.path)
		if err != nil {
			return "", err
		}
		name := m.name + ".ko"
		w.file("lib/modules/"+name, 0o644, data)
		order = append(order, name)
	}
	w.file("etc/modules.load", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(w.finish()); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return rel, writeAtomic(a.Initrd, gz.Bytes())
}

type module struct{ name, path string }

// resolveModules returns the modules (not built into the kernel) needed for
// wanted, dependencies first, read from each module's .modinfo section
// (modules.dep is only made by depmod at installation).
func resolveModules(moddir string, wanted []string) ([]module, error) {
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	builtin := map[string]bool{}
	if data, err := os.ReadFile(filepath.Join(moddir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(data)) {
			builtin[norm(strings.TrimSuffix(filepath.Base(l), ".ko"))] = true
		}
	}
	paths := map[string]string{}
	err := filepath.WalkDir(filepath.Join(moddir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			paths[norm(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []module
	seen := map[string]bool{}
	var visit func(string) error
	visit = func(name string) error {
		name = norm(name)
		if seen[name] || builtin[name] {
			return nil
		}
		seen[name] = true
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("kernel module %s: neither built in nor in %s (compressed modules are not supported)", name, moddir)
		}
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, dep := range deps {
			if err := visit(dep); err != nil {
				return err
			}
		}
		out = append(out, module{name, p})
		return nil
	}
	sort.Strings(wanted)
	for _, w := range wanted {
		if err := visit(w); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// moduleDepends reads depends= from a module's .modinfo ELF section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	var deps []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			deps = append(deps, strings.Split(string(v), ",")...)
		}
	}
	return deps, nil
}

func copyAtomic(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeAtomic(dst, data)
}

func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// cpioWriter writes a cpio archive in the "newc" format the kernel unpacks
// as its initramfs.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func newCPIO() *cpioWriter { return &cpioWriter{ino: 1} }

func (w *cpioWriter) entry(name string, mode uint32, data []byte, rmaj, rmin int) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string)                         { w.entry(name, 0o040755, nil, 0, 0) }
func (w *cpioWriter) file(name string, perm uint32, b []byte) { w.entry(name, 0o100000|perm, b, 0, 0) }
func (w *cpioWriter) symlink(name, target string)             { w.entry(name, 0o120777, []byte(target), 0, 0) }
func (w *cpioWriter) chardev(name string, major, minor int) {
	w.entry(name, 0o020600, nil, major, minor)
}
func (w *cpioWriter) finish() []byte {
	w.entry("TRAILER!!!", 0, nil, 0, 0)
	return w.buf.Bytes()
}
