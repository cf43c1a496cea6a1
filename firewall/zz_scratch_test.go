package firewall

import (
	"os"
	"testing"

	"vnet/internal/netnstest"
)

func TestZZScratch(t *testing.T) {
	ns := netnstest.New(t, "scr")
	script, _ := os.ReadFile("/tmp/ipx/script.sh")
	out, err := ns.Run("sh", "-c", string(script))
	t.Logf("%s %v", out, err)
}
