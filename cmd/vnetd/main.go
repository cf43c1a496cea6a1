// Command vnetd is the vnet daemon: it owns the host's virtual networks and
// serves vnetctl on a local socket.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"vnet/daemon"
	dbusapi "vnet/daemon/dbus"
	"vnet/passt"
)

// sessionDirs points the directories a session daemon was not given at the
// user's: config and state under $XDG_CONFIG_HOME/vnet (~/.config/vnet),
// run dir under $XDG_RUNTIME_DIR/vnet. A session daemon serves no D-Bus
// and defines no default network.
func sessionDirs(c *daemon.Config, busAddr *string) error {
	if os.Geteuid() == 0 {
		return fmt.Errorf("--session is for unprivileged users; root's networks are the system vnetd's")
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["run-dir"] {
		rt := os.Getenv("XDG_RUNTIME_DIR")
		if rt == "" {
			return fmt.Errorf("--session needs XDG_RUNTIME_DIR (or --run-dir)")
		}
		c.RunDir = filepath.Join(rt, "vnet")
	}
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("--session needs XDG_CONFIG_HOME or HOME: %w", err)
		}
		cfg = filepath.Join(home, ".config")
	}
	if !set["config-dir"] {
		c.ConfigDir = filepath.Join(cfg, "vnet")
	}
	if !set["state-dir"] {
		c.StateDir = filepath.Join(c.ConfigDir, "state")
	}
	if !set["dbus"] {
		*busAddr = "none"
	}
	c.NoDefaultNetwork = true
	return nil
}

func main() {
	// A port's passt keeper is vnetd re-run by the session daemon.
	if len(os.Args) > 1 && os.Args[1] == passt.KeeperFlag {
		os.Exit(passt.KeeperMain(os.Args[2:]))
	}
	// Why a lower GC target than Go's default (100): vnetd's live heap is
	// small (about 9 MB at a thousand networks) and most of what it
	// allocates is short-lived netlink and nftables replies, so the default
	// let the heap grow to twice the live data between collections; 50
	// keeps about 5 MB less resident at a thousand networks for about 2 %
	// more CPU. An explicit GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	var c daemon.Config
	var verbose bool
	flag.StringVar(&c.ConfigDir, "config-dir", "/etc/vnet", "directory of network definitions")
	flag.StringVar(&c.StateDir, "state-dir", "/var/lib/vnet", "directory of dnsmasq files and leases")
	flag.StringVar(&c.RunDir, "run-dir", "/run/vnet", "directory of live status, pid files and the API socket")
	flag.StringVar(&c.Firewall, "firewall", "nftables", "firewall backend: nftables, iptables or auto")
	flag.BoolVar(&c.NoDefaultNetwork, "no-default-network", false, "do not define the embedded 'default' network on first start")
	flag.BoolVar(&c.DHCPPing, "dhcp-ping", false, "let dnsmasq ping an address before leasing it (libvirt's default; adds ~3 s per new guest)")
	flag.StringVar(&c.DnsmasqBinary, "dnsmasq", "", "path of the dnsmasq binary (default: found in PATH)")
	flag.StringVar(&c.OverlayConfig, "overlay-config", "", "this host's overlay settings: VTEP, BGP AS, peers (default CONFIG-DIR/overlay.conf)")
	flag.StringVar(&c.ResolvConf, "resolv-conf", "/etc/resolv.conf", "resolver configuration whose name servers the networks forward DNS to (followed when it changes)")
	flag.DurationVar(&c.VerifyInterval, "verify-interval", 30*time.Second, "how often to check every active network for drift without a kernel event")
	flag.StringVar(&c.Driver, "driver", "host", "host, or test: libvirt's test:///default driver, all in memory, touching nothing on the host")
	var busAddr, busName string
	flag.StringVar(&busName, "dbus-name", dbusapi.BusName, "well-known D-Bus name to own")
	flag.StringVar(&busAddr, "dbus", "auto", "serve libvirt-dbus's network API on: system, session, a bus ADDRESS, none, or auto (the system bus when it exists)")
	flag.BoolVar(&verbose, "verbose", false, "log debug messages")
	flag.BoolVar(&c.Session, "session", false, "run as this user's session daemon: user-mode (passt) networks only, directories under $XDG_RUNTIME_DIR/vnet and $XDG_CONFIG_HOME/vnet, no root")
	flag.StringVar(&c.PasstBinary, "passt", "", "path of the passt binary (default: found in PATH; --session)")
	flag.Parse()
	if c.Session {
		if err := sessionDirs(&c, &busAddr); err != nil {
			fmt.Fprintf(os.Stderr, "vnetd: %v\n", err)
			os.Exit(2)
		}
	}
	if c.Driver != "host" && c.Driver != "test" {
		fmt.Fprintf(os.Stderr, "vnetd: unknown driver %q (host or test)\n", c.Driver)
		os.Exit(2)
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "vnetd: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if busAddr == "auto" {
		busAddr = "none"
		if _, err := os.Stat("/run/dbus/system_bus_socket"); err == nil {
			busAddr = "system"
		} else {
			c.Logger.Info("no system bus: running without the D-Bus front door (vnetctl works as always)")
		}
	}
	if busAddr != "none" {
		addr := busAddr
		c.FrontDoors = append(c.FrontDoors, func(ctx context.Context, m *daemon.Manager) error {
			dbusapi.New(m, dbusapi.Options{Logger: c.Logger, BusName: busName}).RunWithRetry(ctx, addr, 2*time.Second)
			return nil
		})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, c); err != nil {
		c.Logger.Error("vnetd failed", "err", err)
		os.Exit(1)
	}
}
