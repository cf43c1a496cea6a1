package frr

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
)

// Peer is one BGP neighbor of the l2vpn evpn family as FRR sees it.
type Peer struct {
	// Address is the neighbor's address.
	Address string `json:"address"`
	// State is BGP's session state: "Established" when up, else Idle,
	// Connect, Active, OpenSent, OpenConfirm.
	State string `json:"state"`
	// Uptime is how long the session has been in its state (FRR's text).
	Uptime string `json:"uptime,omitempty"`
	// Prefixes is the number of EVPN routes received from the peer.
	Prefixes int `json:"prefixes"`
}

// Up reports whether the session is established.
func (p Peer) Up() bool { return p.State == "Established" }

// BGP is FRR's host-wide BGP l2vpn evpn state: the same for every overlay
// of the host (one `show bgp l2vpn evpn summary`).
type BGP struct {
	// RouterID and AS are the BGP instance's.
	RouterID string `json:"routerId,omitempty"`
	AS       uint32 `json:"as,omitempty"`
	// Peers are the l2vpn evpn neighbors, by address.
	Peers []Peer `json:"peers"`
}

// Status is FRR's view of one overlay: the BGP sessions, whether zebra
// knows the VNI, the remote VTEPs of its flood list and the MACs it holds.
type Status struct {
	BGP
	// VNIKnown: zebra has the VNI (its VXLAN device is up in a bridge).
	VNIKnown bool `json:"vniKnown"`
	// RemoteVTEPs are the VTEPs that announced the VNI (EVPN type-3).
	RemoteVTEPs []string `json:"remoteVteps"`
	// LocalMACs counts MACs learned on this host's bridge ports.
	LocalMACs int `json:"localMacs"`
	// RemoteMACs maps each MAC learned from a peer (EVPN type-2) to its
	// VTEP.
	RemoteMACs map[string]string `json:"remoteMacs"`
}

// summary is `show bgp l2vpn evpn summary json`.
type summary struct {
	RouterID string `json:"routerId"`
	AS       uint32 `json:"as"`
	Peers    map[string]struct {
		State      string `json:"state"`
		PeerUptime string `json:"peerUptime"`
		PfxRcd     int    `json:"pfxRcd"`
	} `json:"peers"`
}

// vniDetail is `show evpn vni VNI json`.
type vniDetail struct {
	VNI            uint32          `json:"vni"`
	NumRemoteVteps json.RawMessage `json:"numRemoteVteps"`
}

// macTable is `show evpn mac vni VNI json`.
type macTable struct {
	Macs map[string]struct {
		Type       string `json:"type"`
		RemoteVtep string `json:"remoteVtep"`
	} `json:"macs"`
}

// BGP reads FRR's host-wide BGP state (one vtysh call, read-only).
func (v VTY) BGP() (*BGP, error) {
	var sum summary
	if err := v.JSON("show bgp l2vpn evpn summary json", &sum); err != nil {
		return nil, fmt.Errorf("frr: %w", err)
	}
	b := &BGP{RouterID: sum.RouterID, AS: sum.AS, Peers: []Peer{}}
	for addr, p := range sum.Peers {
		b.Peers = append(b.Peers, Peer{Address: addr, State: p.State, Uptime: p.PeerUptime, Prefixes: p.PfxRcd})
	}
	sort.Slice(b.Peers, func(i, j int) bool { return b.Peers[i].Address < b.Peers[j].Address })
	return b, nil
}

// Status reads FRR's state of the overlay with that VNI (three vtysh
// calls, read-only).
func (v VTY) Status(vni uint32) (*Status, error) {
	b, err := v.BGP()
	if err != nil {
		return nil, err
	}
	return v.StatusWith(b, vni)
}

// StatusWith reads FRR's state of the overlay with that VNI with b, the
// host-wide BGP state read once for every overlay of a caller (two vtysh
// calls, read-only).
func (v VTY) StatusWith(b *BGP, vni uint32) (*Status, error) {
	st := &Status{BGP: *b, RemoteMACs: map[string]string{}, RemoteVTEPs: []string{}}
	st.Peers = slices.Clone(b.Peers)
	id := strconv.FormatUint(uint64(vni), 10)
	var d vniDetail
	if err := v.JSON("show evpn vni "+id+" json", &d); err != nil {
		return nil, fmt.Errorf("frr: %w", err)
	}
	st.VNIKnown = d.VNI == vni
	// In the detail of one VNI, numRemoteVteps is the list of VTEPs
	// (FRR 8.4), in the list of all VNIs a count.
	var vteps []string
	if json.Unmarshal(d.NumRemoteVteps, &vteps) == nil {
		st.RemoteVTEPs = append(st.RemoteVTEPs, vteps...)
	}
	if !st.VNIKnown {
		return st, nil
	}
	var macs macTable
	if err := v.JSON("show evpn mac vni "+id+" json", &macs); err != nil {
		return nil, fmt.Errorf("frr: %w", err)
	}
	for mac, m := range macs.Macs {
		switch m.Type {
		case "local":
			st.LocalMACs++
		case "remote":
			st.RemoteMACs[mac] = m.RemoteVtep
		}
	}
	return st, nil
}
