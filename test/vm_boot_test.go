package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
	"vnet/test/vm"
)

var (
	vmStageRE = regexp.MustCompile(`^VNET-STAGE (\S+)`)
	vmCheckRE = regexp.MustCompile(`^VNET-CHECK (\S+) (PASS|FAIL)(.*)$`)
	vmEndRE   = regexp.MustCompile(`^VNET-(REBOOT|DONE)$`)
)

// TestSystemdBootVM boots a Debian 12 image with vnet installed by `make
// install` under QEMU (TCG) with systemd as PID 1, twice (a reboot in
// between), and reports what testdata/vmboot/vnet-boot-check checks inside:
// vnetd.service active with the default network autostarted; a restart does
// not autostart again and leaves bridges and dnsmasq untouched (same
// ifindexes and pids), as do stop and the watchdog's restart of a SIGSTOPped
// vnetd; after the reboot the autostart network comes up exactly once and
// the other stays down. It is slow: make test-vm-boot runs it.
func TestSystemdBootVM(t *testing.T) {
	if os.Getenv("VNET_VM_BOOT") == "" {
		t.Skip("slow (boots Debian 12 with systemd under TCG twice): run make test-vm-boot, or set VNET_VM_BOOT=1")
	}
	netnstest.RequireRoot(t)
	assets := vm.Prepare(t, vm.RootModules)
	base := vm.BaseImage(t, assets)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	disk := vm.Disk(t, base, func(root string) {
		if out, err := exec.Command("make", "-C", repo, "install", "DESTDIR="+root).CombinedOutput(); err != nil {
			t.Fatalf("make install DESTDIR=%s: %v\n%s", root, err, out)
		}
		lib := filepath.Join(root, "usr/local/lib/vnet-test")
		if err := os.MkdirAll(lib, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"vnet-boot-check", "net2.xml", "net3.xml"} {
			copyFile(t, filepath.Join("testdata/vmboot", f), filepath.Join(lib, f))
		}
		buildBandwidthTests(t, repo, filepath.Join(lib, "bw"))
		units := filepath.Join(root, "etc/systemd/system")
		copyFile(t, "testdata/vmboot/vnet-boot-check.service", filepath.Join(units, "vnet-boot-check.service"))
		// No login prompt on the serial console: its getty hangs up the
		// tty at start, and the check's output to it would be lost if the
		// check opened it first.
		if err := os.Symlink("/dev/null", filepath.Join(units, "serial-getty@ttyS0.service")); err != nil {
			t.Fatal(err)
		}
		// What `systemctl enable` would do.
		wants := filepath.Join(units, "multi-user.target.wants")
		if err := os.MkdirAll(wants, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{"vnetd.service", "vnet-boot-check.service"} {
			if err := os.Symlink("/etc/systemd/system/"+u, filepath.Join(wants, u)); err != nil {
				t.Fatal(err)
			}
		}
	})
	// QEMU runs in a throwaway namespace: the guest has no NIC.
	ns := netnstest.New(t, "vmsd")
	for boot, end := range []string{"REBOOT", "DONE"} {
		g := vm.Start(t, assets, vm.Config{NetNS: ns.Name(), Disk: disk, Memory: 512, Timeout: 20 * time.Minute})
		m, last, _ := g.MustWait(0, vmEndRE, 15*time.Minute)
		if m[1] != end {
			t.Fatalf("boot %d ended with VNET-%s, want VNET-%s", boot+1, m[1], end)
		}
		if err := g.WaitExit(3 * time.Minute); err != nil {
			t.Fatalf("boot %d: %v\n%s", boot+1, err, g.Console())
		}
		reportBoot(t, g, boot+1, last.At)
	}
}

// reportBoot logs the time of each stage of one boot and fails the test for
// each failed check.
func reportBoot(t *testing.T, g *vm.VM, boot int, end time.Time) {
	t.Helper()
	console := g.Console()
	var checks int
	prev, prevName := g.Started, "QEMU start → vnetd active"
	for _, l := range g.Lines() {
		text, at := strings.TrimSpace(l.Text), l.At
		if m := vmStageRE.FindStringSubmatch(text); m != nil {
			t.Logf("vm: boot %d: %-28s %v", boot, prevName, at.Sub(prev).Round(time.Millisecond))
			prev, prevName = at, m[1]
		}
		if m := vmCheckRE.FindStringSubmatch(text); m != nil {
			checks++
			if m[2] == "FAIL" {
				t.Errorf("boot %d: check %s failed:%s", boot, m[1], m[3])
			}
		}
		if strings.HasPrefix(text, "VNET-BW ") {
			t.Logf("vm: boot %d: %s", boot, strings.TrimPrefix(text, "VNET-BW "))
		}
		if strings.HasPrefix(text, "VNET-WATCHDOG") {
			t.Logf("vm: boot %d: %s (WatchdogSec=30s in vnetd.service)", boot, text)
		}
	}
	t.Logf("vm: boot %d: %-28s %v", boot, prevName, end.Sub(prev).Round(time.Millisecond))
	t.Logf("vm: boot %d: %d checks, whole boot %v", boot, checks, end.Sub(g.Started).Round(time.Millisecond))
	if checks == 0 {
		t.Errorf("boot %d ran no checks:\n%s", boot, console)
	}
	if t.Failed() {
		t.Logf("console of boot %d:\n%s", boot, console)
	}
}

// bandwidthTests are the test binaries (package → tests) that
// vnet-boot-check runs inside the booted VM, whose Debian kernel has every tc
// part libvirt's shaping uses (this host's may not: there they skip).
var bandwidthTests = map[string]string{
	"network": "^(TestBandwidthKernel(MatchesTC|Reconcile|RemoveKeepsForeignFilter|Throughput|ApplyUndo)|TestWatchTC|TestPlanBandwidthMissingLink)$",
	"daemon":  "^(TestStartWithBandwidth|TestPortBandwidthOnHost|TestPortFloorOnHost)$",
	"test":    "^(TestPortBandwidthCLI|TestPortBandwidthThroughput)$",
}

// buildBandwidthTests compiles the test binaries of bandwidthTests into
// dir/PKG/PKG.test with the list of tests to run in dir/PKG/run, and puts
// vnetd and vnetctl (as make install built them) in dir/bin for the
// end-to-end package.
func buildBandwidthTests(t *testing.T, repo, dir string) {
	t.Helper()
	start := time.Now()
	for pkg, run := range bandwidthTests {
		pdir := filepath.Join(dir, pkg)
		if err := os.MkdirAll(pdir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "test", "-c", "-o", filepath.Join(pdir, pkg+".test"), "./"+pkg+"/")
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go test -c ./%s/: %v\n%s", pkg, err, out)
		}
		if err := os.WriteFile(filepath.Join(pdir, "run"), []byte(run+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"vnetd", "vnetctl"} {
		copyFile(t, filepath.Join(repo, "bin", b), filepath.Join(dir, "bin", b))
	}
	t.Logf("vm: bandwidth test binaries built: %v", time.Since(start).Round(time.Millisecond))
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}
