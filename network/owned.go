package network

import (
	"fmt"
	"strings"
)

// ownedAliasPrefix marks, in a bridge's interface alias (IFLA_IFALIAS), that
// vnet created it; the rest of the alias is the network name.
const ownedAliasPrefix = "vnet:"

// MarkOwned records on the bridge that vnet created it for network, so that a
// bridge left behind by a crash (a net-destroy killed between taking the
// bridge out of service and the kernel deleting it) can be recognised and
// removed at the next start. A name that is too long for an alias is cut:
// the mark, not the name, is what matters.
func MarkOwned(bridge, network string) error {
	h, err := newHandle()
	if err != nil {
		return fmt.Errorf("bridge %q: %w", bridge, err)
	}
	defer h.Close()
	link, err := h.linkByName(bridge)
	if err != nil || link == nil {
		return fmt.Errorf("bridge %q: look up: %v", bridge, err)
	}
	alias := ownedAliasPrefix + network
	if len(alias) > 255 {
		alias = alias[:255]
	}
	if err := h.LinkSetAlias(link, alias); err != nil {
		return fmt.Errorf("bridge %q: set alias: %w", bridge, err)
	}
	return nil
}

// PruneBridges deletes every bridge vnet created (MarkOwned) whose name is not
// in keep, and returns their names. Bridges of anyone else are never touched.
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
		if l.Type() != "bridge" || !strings.HasPrefix(a.Alias, ownedAliasPrefix) || keep[a.Name] {
			continue
		}
		if err := h.LinkDel(l); err != nil {
			return pruned, fmt.Errorf("bridge %q: delete: %w", a.Name, err)
		}
		pruned = append(pruned, a.Name)
	}
	return pruned, nil
}
