package firewall

import (
	"testing"
	"time"
)

func TestZZTiming(t *testing.T) {
	_, be := iptNS(t, "tim")
	b := be.(*iptBackend)
	b.Apply(planOf(t, "nat-default.xml"))
	for _, f := range []Family{IPv4, IPv6} {
		t0 := time.Now()
		for i := 0; i < 10; i++ {
			b.read(&b.tools[f])
		}
		t.Logf("%s-save: %v", b.tools[f].name, time.Since(t0)/10)
		t0 = time.Now()
		for i := 0; i < 10; i++ {
			b.write(&b.tools[f], "*filter\n-N FOO\n-X FOO\nCOMMIT\n")
		}
		t.Logf("%s-restore trivial: %v", b.tools[f].name, time.Since(t0)/10)
	}
	t0 := time.Now()
	for i := 0; i < 10; i++ {
		inNetNS(b.netns, func() error { return nil })
	}
	t.Logf("setns: %v", time.Since(t0)/10)
}
