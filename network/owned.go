package network

import (
	"errors"
	"fmt"
	"strings"
)

// ownedAliasPrefix marks, in a bridge's interface alias (IFLA_IFALIAS), that
// vnet created it; the rest of the alias is the network name (cut to the
// alias's 255 bytes). ConvergeBridge sets it right after creating a bridge
// and adopts or changes only bridges carrying the mark of their network;
// RetireBridge deletes only those, PruneBridges only marked ones; a bridge
// left behind by a crash (a net-destroy killed between taking the bridge out
// of service and the kernel deleting it) is recognised by it at the next
// start.
const ownedAliasPrefix = "vnet:"

// ErrNotOurs is wrapped when a link exists under the name of a network's
// bridge or a port's TAP but vnet did not create it for that network or port
// (and adopting it was not asked for): it is left alone.
var ErrNotOurs = errors.New("not created by vnet for it; left alone")

// PruneBridges deletes every bridge vnet created (marked vnet:NAME, or still
// under its staging name after an interrupted start) whose name is not in
// keep, and returns their names. Bridges of anyone else are never touched.
func PruneBridges(keep map[string]bool) ([]string, error) {
	h, err := newHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.linkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var pruned []string
	for _, l := range links {
		a := l.Attrs()
		staging := strings.HasPrefix(a.Name, stagingPrefix)
		if l.Type() != "bridge" || !(staging || strings.HasPrefix(a.Alias, ownedAliasPrefix)) || keep[a.Name] {
			continue
		}
		if err := h.LinkDel(l); err != nil {
			return pruned, fmt.Errorf("bridge %q: delete: %w", a.Name, err)
		}
		pruned = append(pruned, a.Name)
	}
	return pruned, nil
}
