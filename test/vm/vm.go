package vm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// initScript is the guest's PID 1. Kernel command line parameters:
// vnet.mode=net (default) brings eth0 up, leases with udhcpc sending
// vnet.hostname, prints "VNET-LEASE ...", answers every TCP connection to
// port vnet.listen (when given) with "VNET-HELLO", and then pings
// vnet.target every 200 ms (busybox prints "64 bytes from ...: seq=N ..."
// per reply);
// vnet.mode=root mounts /dev/vda (ext4) and switches to its /sbin/init.
const initScript = `#!/bin/sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.load); do insmod /lib/modules/$m || echo "VNET-ERROR insmod $m"; done
arg() { for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}";; esac; done; }
MODE=$(arg vnet.mode)
if [ "$MODE" = root ]; then
	i=0
	while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do usleep 100000; i=$((i+1)); done
	mount -t ext4 -o rw /dev/vda /newroot || { echo "VNET-ERROR mount /dev/vda"; poweroff -f; }
	umount /proc /sys
	mount --move /dev /newroot/dev
	exec switch_root /newroot /sbin/init
fi
HOST=$(arg vnet.hostname)
TARGET=$(arg vnet.target)
ip link set lo up
ip link set eth0 up
echo "VNET-MAC $(cat /sys/class/net/eth0/address)"
udhcpc -i eth0 -f -q -n -t 120 -T 1 -A 1 -s /etc/udhcpc.sh ${HOST:+-x hostname:$HOST} || { echo VNET-NOLEASE; poweroff -f; }
LISTEN=$(arg vnet.listen)
if [ -n "$LISTEN" ]; then
	printf '#!/bin/sh\necho VNET-HELLO\n' >/bin/vnet-hello
	chmod +x /bin/vnet-hello
	nc -ll -p "$LISTEN" -e /bin/vnet-hello &
	echo "VNET-LISTEN $LISTEN"
fi
if [ -n "$TARGET" ]; then
	echo "VNET-PING-START $TARGET"
	exec ping -i 0.2 "$TARGET"
fi
echo VNET-IDLE
exec sh -c 'while :; do sleep 3600; done'
`

// udhcpcScript applies the lease and prints it on the console.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
	echo "VNET-LEASE ip=$ip mask=$mask router=$(echo $router | cut -d' ' -f1) dns=$(echo $dns | cut -d' ' -f1)"
	;;
esac
exit 0
`

// Config describes one guest.
type Config struct {
	// NetNS is the network namespace QEMU runs in (the TAP's namespace).
	NetNS string
	// TAP is the name of an existing TAP device QEMU opens (script=no).
	TAP string
	// Netdev, instead of TAP, is the whole -netdev value of the guest's NIC
	// (its id must be n0), e.g. bridge,id=n0,br=virbr0,helper=….
	Netdev string
	// Wrap runs QEMU under a command (inside NetNS), e.g. setpriv to drop
	// to an unprivileged user.
	Wrap []string
	// Env is added to QEMU's environment (its helpers and scripts see it).
	Env []string
	// MAC is the guest NIC's MAC address.
	MAC string
	// Hostname is sent with the DHCP request (-x hostname:NAME).
	Hostname string
	// Target is pinged continuously after the lease ("" pings nothing).
	Target string
	// Listen is a TCP port the guest answers with "VNET-HELLO" (0: none).
	Listen int
	// Memory in MiB (default 256).
	Memory int
	// Disk is a raw disk image attached as /dev/vda (optional).
	Disk string
	// Append is extra kernel command line.
	Append string
	// Timeout bounds the whole VM's life (default 15 min); QEMU is killed
	// then.
	Timeout time.Duration
}

// Line is one line of the serial console with the time it arrived.
type Line struct {
	At   time.Time
	Text string
}

// VM is a running QEMU guest.
type VM struct {
	t       testing.TB
	cmd     *exec.Cmd
	Started time.Time
	stdin   io.WriteCloser

	mu     sync.Mutex
	cond   *sync.Cond
	lines  []Line
	exited bool
	pings  map[int]time.Time // seq → arrival of its reply
	maxSeq int
}

var seqRE = regexp.MustCompile(`bytes from .*: seq=(\d+)`)

// Start boots a guest and registers its killing (by pid) with t.Cleanup.
func Start(t testing.TB, a Assets, c Config) *VM {
	t.Helper()
	if c.Memory == 0 {
		c.Memory = 256
	}
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Minute
	}
	mode := "net"
	if c.Disk != "" {
		mode = "root"
	}
	cmdline := fmt.Sprintf("console=ttyS0 panic=-1 loglevel=4 vnet.mode=%s", mode)
	if c.Hostname != "" {
		cmdline += " vnet.hostname=" + c.Hostname
	}
	if c.Target != "" {
		cmdline += " vnet.target=" + c.Target
	}
	if c.Listen != 0 {
		cmdline += " vnet.listen=" + strconv.Itoa(c.Listen)
	}
	if c.Append != "" {
		cmdline += " " + c.Append
	}
	argv := []string{"qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-reboot",
		"-m", strconv.Itoa(c.Memory), "-display", "none", "-monitor", "none", "-serial", "stdio",
		"-kernel", a.Kernel, "-initrd", a.Initrd, "-append", cmdline}
	switch {
	case c.Netdev != "":
		argv = append(argv, "-netdev", c.Netdev, "-device", "virtio-net-pci,netdev=n0,mac="+c.MAC)
	case c.TAP != "":
		argv = append(argv, "-netdev", "tap,id=n0,ifname="+c.TAP+",script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac="+c.MAC)
	}
	argv = append(append([]string(nil), c.Wrap...), argv...)
	if c.Disk != "" {
		argv = append(argv, "-drive", "file="+c.Disk+",format=raw,if=virtio,cache=unsafe")
	}
	if c.NetNS != "" {
		// ip execs QEMU, so the started pid is QEMU's own.
		argv = append([]string{"ip", "netns", "exec", c.NetNS}, argv...)
	}
	v := &VM{t: t, pings: map[int]time.Time{}, maxSeq: -1}
	v.cond = sync.NewCond(&v.mu)
	v.cmd = exec.Command(argv[0], argv[1:]...)
	if c.Env != nil {
		v.cmd.Env = append(os.Environ(), c.Env...)
	}
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.cmd.Stdout
	if v.stdin, err = v.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	v.Started = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	pid := v.cmd.Process.Pid
	done := make(chan struct{})
	go v.read(out, done)
	timer := time.AfterFunc(c.Timeout, func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	t.Cleanup(func() {
		timer.Stop()
		v.Stop()
		<-done
		if t.Failed() {
			t.Logf("serial console of the guest (QEMU pid %d):\n%s", pid, v.Console())
		}
	})
	return v
}

func (v *VM) read(r io.Reader, done chan struct{}) {
	defer close(done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := Line{At: time.Now(), Text: strings.TrimRight(sc.Text(), "\r")}
		v.mu.Lock()
		v.lines = append(v.lines, l)
		if m := seqRE.FindStringSubmatch(l.Text); m != nil {
			seq, _ := strconv.Atoi(m[1])
			if _, dup := v.pings[seq]; !dup {
				v.pings[seq] = l.At
			}
			if seq > v.maxSeq {
				v.maxSeq = seq
			}
		}
		v.cond.Broadcast()
		v.mu.Unlock()
	}
	v.mu.Lock()
	v.exited = true
	v.cond.Broadcast()
	v.mu.Unlock()
}

// WaitExit waits until QEMU has exited on its own (the guest powered off
// or rebooted under -no-reboot) and reaps it.
func (v *VM) WaitExit(timeout time.Duration) error {
	timer := time.AfterFunc(timeout, func() { v.mu.Lock(); v.cond.Broadcast(); v.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	v.mu.Lock()
	for !v.exited {
		if time.Now().After(deadline) {
			v.mu.Unlock()
			return fmt.Errorf("QEMU still running after %v", timeout)
		}
		v.cond.Wait()
	}
	v.mu.Unlock()
	if v.cmd.ProcessState == nil {
		_ = v.cmd.Wait()
	}
	return nil
}

// Pid is QEMU's pid.
func (v *VM) Pid() int { return v.cmd.Process.Pid }

// Stop kills QEMU by pid and reaps it; it is idempotent.
func (v *VM) Stop() {
	if v.cmd.ProcessState != nil {
		return
	}
	_ = v.cmd.Process.Kill()
	_ = v.cmd.Wait()
}

// Send writes s to the guest's serial console.
func (v *VM) Send(s string) error {
	_, err := io.WriteString(v.stdin, s)
	return err
}

// Console returns everything the guest printed so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	for _, l := range v.lines {
		fmt.Fprintf(&b, "%7.3f %s\n", l.At.Sub(v.Started).Seconds(), l.Text)
	}
	return b.String()
}

// Lines returns a copy of the console lines so far.
func (v *VM) Lines() []Line {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Line(nil), v.lines...)
}

// Cursor is the number of console lines so far: Wait from it sees only
// later lines.
func (v *VM) Cursor() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.lines)
}

// Wait waits until a console line at index ≥ from matches re and returns
// its submatches, the line and the index after it. It fails when QEMU exits
// or timeout passes.
func (v *VM) Wait(from int, re *regexp.Regexp, timeout time.Duration) ([]string, Line, int, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { v.mu.Lock(); v.cond.Broadcast(); v.mu.Unlock() })
	defer timer.Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := from; ; {
		for ; i < len(v.lines); i++ {
			if m := re.FindStringSubmatch(v.lines[i].Text); m != nil {
				return m, v.lines[i], i + 1, nil
			}
		}
		if v.exited {
			return nil, Line{}, i, fmt.Errorf("guest exited before a line matched %q", re)
		}
		if time.Now().After(deadline) {
			return nil, Line{}, i, fmt.Errorf("no console line matched %q within %v", re, timeout)
		}
		v.cond.Wait()
	}
}

// MustWait is Wait that fails the test.
func (v *VM) MustWait(from int, re *regexp.Regexp, timeout time.Duration) ([]string, Line, int) {
	v.t.Helper()
	m, l, next, err := v.Wait(from, re, timeout)
	if err != nil {
		v.t.Fatalf("%v\nconsole:\n%s", err, v.Console())
	}
	return m, l, next
}

// PingMark is the highest ping sequence number answered so far (-1 before
// the first reply).
func (v *VM) PingMark() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.maxSeq
}

// Lost counts the pings with sequence numbers in (from, to] that got no
// reply (so far).
func (v *VM) Lost(from, to int) (lost []int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for s := from + 1; s <= to; s++ {
		if _, ok := v.pings[s]; !ok {
			lost = append(lost, s)
		}
	}
	return lost
}

// WaitPings waits until n more pings after mark were answered and returns
// the new mark.
func (v *VM) WaitPings(mark, n int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { v.mu.Lock(); v.cond.Broadcast(); v.mu.Unlock() })
	defer timer.Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.maxSeq < mark+n {
		if v.exited {
			return v.maxSeq, fmt.Errorf("guest exited")
		}
		if time.Now().After(deadline) {
			return v.maxSeq, fmt.Errorf("%d pings after seq %d not answered within %v (highest answered: %d)", n, mark, timeout, v.maxSeq)
		}
		v.cond.Wait()
	}
	return v.maxSeq, nil
}

// FirstReplyAfter waits for the first ping reply arriving after t0 and
// returns when it arrived.
func (v *VM) FirstReplyAfter(t0 time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { v.mu.Lock(); v.cond.Broadcast(); v.mu.Unlock() })
	defer timer.Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for {
		for i := len(v.lines) - 1; i >= 0 && v.lines[i].At.After(t0); i-- {
			if seqRE.MatchString(v.lines[i].Text) {
				// Walk back to the earliest reply after t0.
				at := v.lines[i].At
				for j := i - 1; j >= 0 && v.lines[j].At.After(t0); j-- {
					if seqRE.MatchString(v.lines[j].Text) {
						at = v.lines[j].At
					}
				}
				return at, nil
			}
		}
		if v.exited {
			return time.Time{}, fmt.Errorf("guest exited")
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no ping reply within %v", timeout)
		}
		v.cond.Wait()
	}
}
