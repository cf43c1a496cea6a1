// Command fakednsmasq stands in for dnsmasq in end-to-end tests on machines
// without it: it reads the pid-file= line of its --conf-file, writes its pid
// there (which is what vnet waits for), ignores SIGHUP (a reload) and exits
// on SIGTERM or SIGINT. It serves nothing.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	var conf string
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "--conf-file="); ok {
			conf = v
		}
	}
	f, err := os.Open(conf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakednsmasq:", err)
		os.Exit(1)
	}
	var pidFile string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pid-file="); ok {
			pidFile = v
		}
	}
	f.Close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if pidFile != "" {
		if err := os.WriteFile(pidFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "fakednsmasq:", err)
			os.Exit(1)
		}
	}
	for s := range sigs {
		if s != syscall.SIGHUP {
			if pidFile != "" {
				os.Remove(pidFile)
			}
			os.Exit(0)
		}
	}
}
