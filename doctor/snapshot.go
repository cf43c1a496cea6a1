package doctor

import (
	"net/netip"
	"sync"
)

// snapshot is the host as one run of the checks sees it: each host-wide
// fact (the firewall, the routes, the addresses, a sysctl, a link, the
// device towards an address) is read from the Host once, on first use, and
// shared by every check of the run, which run concurrently. The other
// readings (sockets, resources, the probe, the upstream queries) are taken
// once per run or per network by their checks anyway and pass through.
//
// Why: the checks of each network read the same facts (ip_forward per
// network, the routes for the overlap and the accept_ra check, the bridge's
// link for every packet and TAP), which cost a netlink dump or a /proc read
// each time.
//
// network.Snapshot, the periodic verify's, does not fit: it only confirms
// a converge's state from raw netlink links and addresses (no routes, no
// firewall, a fixed set of sysctls), while the checks read everything
// through Host so that unit tests can serve them from a fake.
type snapshot struct {
	Host

	firewall memo[[]*Table]
	routes   memo[[]Route]
	addrs    memo[[]Addr]

	mu        sync.Mutex
	sysctls   map[string]*memo[string]
	links     map[string]*memo[Link]
	routeDevs map[netip.Addr]*memo[string]
}

// newSnapshot returns a snapshot of h with nothing read yet.
func newSnapshot(h Host) *snapshot {
	return &snapshot{Host: h, sysctls: map[string]*memo[string]{}, links: map[string]*memo[Link]{}, routeDevs: map[netip.Addr]*memo[string]{}}
}

// memo is one fact, read once.
type memo[T any] struct {
	once sync.Once
	v    T
	err  error
}

func (m *memo[T]) get(read func() (T, error)) (T, error) {
	m.once.Do(func() { m.v, m.err = read() })
	return m.v, m.err
}

// entry returns the memo of key k in m (under s.mu), adding it when new.
func entry[K comparable, T any](s *snapshot, m map[K]*memo[T], k K) *memo[T] {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := m[k]
	if e == nil {
		e = &memo[T]{}
		m[k] = e
	}
	return e
}

func (s *snapshot) Firewall() ([]*Table, error) { return s.firewall.get(s.Host.Firewall) }
func (s *snapshot) Routes() ([]Route, error)    { return s.routes.get(s.Host.Routes) }
func (s *snapshot) Addrs() ([]Addr, error)      { return s.addrs.get(s.Host.Addrs) }

func (s *snapshot) Sysctl(path string) (string, error) {
	return entry(s, s.sysctls, path).get(func() (string, error) { return s.Host.Sysctl(path) })
}

func (s *snapshot) Link(name string) Link {
	l, _ := entry(s, s.links, name).get(func() (Link, error) { return s.Host.Link(name), nil })
	return l
}

func (s *snapshot) RouteDev(dst netip.Addr) string {
	d, _ := entry(s, s.routeDevs, dst).get(func() (string, error) { return s.Host.RouteDev(dst), nil })
	return d
}
