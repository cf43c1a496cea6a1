package test

import (
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

func TestZZScratchRA(t *testing.T) {
	host := netnstest.New(t, "hz")
	d := newDaemon(t, host)
	d.start("--no-default-network")
	d.mustCtl("net-create", writeFile(t, "v6.xml", v6NatXML))
	start := time.Now()
	g := addGuest(t, host, "vbr-v6", "gz")
	g.quickIPv6(t, "52:54:00:77:00:09")
	var lastBr, lastG string
	for time.Since(start) < 6*time.Second {
		br := host.MustRun("ip", "-6", "-o", "addr", "show", "dev", "vbr-v6", "scope", "link")
		gr := g.MustRun("ip", "-6", "route", "show", "default")
		if br != lastBr || gr != lastG {
			t.Logf("%v br=%q guest=%q", time.Since(start).Round(time.Millisecond), strings.TrimSpace(br), strings.TrimSpace(gr))
			lastBr, lastG = br, gr
		}
		if gr != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Log(d.log.String())
	t.Log(host.MustRun("cat", d.stateDir+"/dnsmasq/v6.conf"))
}
