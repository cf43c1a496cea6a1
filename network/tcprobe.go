package network

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The kernel parts <bandwidth> needs, named by their modules.
const (
	featHTB     = "sch_htb"
	featSFQ     = "sch_sfq"
	featIngress = "sch_ingress"
	featU32     = "cls_u32"
	featFW      = "cls_fw"
	featPolice  = "act_police"
)

// allTCFeatures in the order they are reported.
var allTCFeatures = []string{featHTB, featSFQ, featIngress, featU32, featFW, featPolice}

var tcProbe struct {
	once    sync.Once
	missing map[string]bool
	err     error
}

// missingTCFeatures returns which of need the running kernel lacks, in the
// order of allTCFeatures. The kernel is probed once per process.
func missingTCFeatures(need []string) ([]string, error) {
	tcProbe.once.Do(func() { tcProbe.missing, tcProbe.err = probeTC() })
	if tcProbe.err != nil {
		return nil, tcProbe.err
	}
	var out []string
	for _, f := range allTCFeatures {
		for _, n := range need {
			if n == f && tcProbe.missing[f] {
				out = append(out, f)
				break
			}
		}
	}
	return out, nil
}

// probeTC creates each needed qdisc, classifier and action once on the
// loopback device of a throwaway network namespace and reports those the
// kernel refuses as unknown (built without them and no module to load).
// Nothing on the host changes: the namespace lives only as long as the
// locked OS thread that created it.
func probeTC() (map[string]bool, error) {
	type result struct {
		missing map[string]bool
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, now in its own namespace, is
		// discarded by the runtime when this goroutine ends.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("unshare network namespace: %w", err)}
			return
		}
		m, err := probeTCHere()
		ch <- result{m, err}
	}()
	r := <-ch
	return r.missing, r.err
}

func probeTCHere() (map[string]bool, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	defer h.Close()
	lo, err := handle{h}.linkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("loopback of the probe namespace: %w", err)
	}
	if lo == nil {
		return nil, fmt.Errorf("the probe namespace has no loopback")
	}
	idx := lo.Attrs().Index
	missing := map[string]bool{}
	try := func(feat string, err error) (bool, error) {
		if err == nil {
			return true, nil
		}
		if isUnknownKind(err) {
			missing[feat] = true
			return false, nil
		}
		return false, fmt.Errorf("probe %s: %w", feat, err)
	}
	s := &tcSpec{link: "lo", defcls: 1, police: &tcPolice{rate: 1000, burst: 1000}}

	root, _ := s.rootQdisc(idx)
	htbOK, err := try(featHTB, h.QdiscAdd(root))
	if err != nil {
		return nil, err
	}
	if htbOK {
		c := tcClass{minor: 1, parent: rootHandle, rate: 1000, quantum: 1}
		if err := h.ClassAdd(c.netlink(idx)); err != nil {
			return nil, fmt.Errorf("probe %s class: %w", featHTB, err)
		}
		leaf, _ := s.leafQdisc(idx, 1)
		if _, err := try(featSFQ, h.QdiscAdd(leaf)); err != nil {
			return nil, err
		}
		fw, _ := s.fwFilter(idx)
		if _, err := try(featFW, h.FilterAdd(fw)); err != nil {
			return nil, err
		}
	} else {
		// Without htb, sfq and fw can still be told apart.
		sfq := &netlink.Sfq{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(2, 0), Parent: netlink.HANDLE_ROOT}, Perturb: sfqPerturb}
		if _, err := try(featSFQ, h.QdiscAdd(sfq)); err != nil {
			return nil, err
		}
		missing[featFW] = !probeFwOnIngress(h, idx)
	}
	ing, _ := s.ingressQdisc(idx)
	ingOK, err := try(featIngress, h.QdiscAdd(ing))
	if err != nil {
		return nil, err
	}
	if !ingOK {
		// Filters need a qdisc to hang on; without ingress report what
		// the classifiers need as unknown rather than guess.
		if htbOK {
			return probeFiltersOn(h, idx, rootHandle, missing)
		}
		missing[featU32], missing[featPolice] = true, true
		return missing, nil
	}
	return probeFiltersOn(h, idx, ingressHandle, missing)
}

// probeFiltersOn tries a plain u32 filter, then one with a police action, on
// the qdisc parent.
func probeFiltersOn(h *netlink.Handle, idx int, parent uint32, missing map[string]bool) (map[string]bool, error) {
	u := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: parent, Priority: 10, Protocol: unix.ETH_P_ALL},
		ClassId:     netlink.MakeHandle(0, 1),
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Keys: []netlink.TcU32Key{{}}},
	}
	if err := h.FilterAdd(u); err != nil {
		if !isUnknownKind(err) {
			return nil, fmt.Errorf("probe %s: %w", featU32, err)
		}
		missing[featU32] = true
		// The police action cannot be tried without u32.
		missing[featPolice] = true
		return missing, nil
	}
	s := &tcSpec{police: &tcPolice{rate: 1000, burst: 1000}}
	p, _ := s.policeFilter(idx)
	p.Parent, p.Priority = parent, 11
	if err := h.FilterAdd(p); err != nil {
		if !isUnknownKind(err) {
			return nil, fmt.Errorf("probe %s: %w", featPolice, err)
		}
		missing[featPolice] = true
	}
	return missing, nil
}

// probeFwOnIngress reports whether an fw filter can be created on an
// ingress qdisc (used when htb is missing).
func probeFwOnIngress(h *netlink.Handle, idx int) bool {
	ing := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}
	if err := h.QdiscAdd(ing); err != nil {
		return false
	}
	defer h.QdiscDel(ing)
	f := &netlink.FwFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: ingressHandle, Priority: 1, Protocol: unix.ETH_P_ALL, Handle: 1}, ClassId: 1}
	return h.FilterAdd(f) == nil
}
