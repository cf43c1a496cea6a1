package firewall

import (
	"log/slog"
	"strings"

	netxml "vnet/xml"
)

// Backend installs, removes and checks the firewall of one network at a time.
// Implementations are safe for concurrent use. Errors of its methods name
// what they touched (bridge, table, tool) but never the network: the caller
// wraps them with the network's name. A *DriftError, a finding rather than a
// failure, names the network itself.
type Backend interface {
	// Name returns the backend name ("nftables" or "iptables").
	Name() string
	// Apply makes the live firewall of the plan's network equal to the plan,
	// replacing whatever vnet installed for it before, in one atomic batch
	// (one per family with iptables), and makes sure the structure the
	// rules hang on (iptables: shared chains and jump rules) is complete.
	// It is idempotent. Applying an empty plan removes the network's rules.
	Apply(p *Plan) error
	// Remove deletes exactly this network's rules and tables, nothing else.
	// It is not an error when they are absent.
	Remove(p *Plan) error
	// Verify returns nil when the live state matches the plan, else a
	// *DriftError listing what is missing or unexpected (other errors mean
	// the state could not be read).
	Verify(p *Plan) error
	// Describe returns the steps Apply would run for the plan on this host
	// now, computed by the same code against the live state and rendered
	// as a shell script of the backend's own tools (nft / iptables-restore
	// input / tc), without changing anything. Steps Apply would skip (the tc
	// checksum fix on a kernel without the csum action, iptables chains that
	// exist) are not in it. A bridge that does not exist yet is described as
	// new, as the start creates it before applying the firewall.
	Describe(p *Plan) (string, error)
}

// Options configure a backend.
type Options struct {
	// Logger receives debug logs of each operation; nil discards them.
	Logger *slog.Logger
	// NetNS is an open network namespace file descriptor to work in; 0 means
	// the namespace of the calling process. The caller keeps it open while
	// the backend is in use.
	NetNS int
}

// New returns the backend called kind: "nftables", "iptables", or "auto"
// (also ""), which picks nftables when the kernel answers nftables requests
// and iptables otherwise, and logs its choice. The nftables backend owns its
// tables where the kernel supports it (see nftBackend) and then, at New,
// adopts the tables an earlier run left orphaned: that changes their owner,
// nothing else. Otherwise New changes nothing on the host; see CleanupOthers
// for what the daemon runs at startup. The nftables backend also implements
// io.Closer (closing orphans its tables); the daemon never calls it.
func New(kind string, o Options) (Backend, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch kind {
	case "nftables":
		return newNftBackend(o), nil
	case "iptables":
		return newIptBackend(o)
	case "auto", "":
		err := nftUsable(o)
		if err == nil {
			o.Logger.Info("firewall backend chosen", "backend", "nftables", "reason", "nftables is usable")
			return newNftBackend(o), nil
		}
		o.Logger.Info("firewall backend chosen", "backend", "iptables", "reason", "nftables is not usable", "err", err)
		return newIptBackend(o)
	default:
		return nil, netxml.Errorf(netxml.KindUnsupported, "unknown firewall backend '%s'", kind)
	}
}

// DriftError reports how the live firewall of a network differs from its plan.
type DriftError struct {
	// Network is the network name.
	Network string
	// Missing lists what the plan has and the host lacks (tables, chains,
	// rules, the tc checksum fix), one readable item each.
	Missing []string
	// Unexpected lists what the host has of the network's (its chains and
	// map elements, its bridge) that the plan does not.
	Unexpected []string
}

// Error summarises the drift on one line.
func (e *DriftError) Error() string {
	var b strings.Builder
	b.WriteString("firewall of network '" + e.Network + "' drifted")
	if len(e.Missing) > 0 {
		b.WriteString(": missing " + strings.Join(e.Missing, "; "))
	}
	if len(e.Unexpected) > 0 {
		b.WriteString(": unexpected " + strings.Join(e.Unexpected, "; "))
	}
	return b.String()
}

func (e *DriftError) empty() bool { return len(e.Missing) == 0 && len(e.Unexpected) == 0 }

// Pass is shared by the verifications of one check of every network: the
// nftables ruleset generation is read once for all of them. Like
// network.Snapshot, it can only make a verification skip work for a
// table that was clean at that generation; a change after it is caught by
// its nftables event or by the next check.
type Pass struct {
	// LinkIndex, when set, returns a link's index as a dump shared by the
	// check found it (false: not found there; it is then asked for).
	LinkIndex func(name string) (int, bool)

	read bool
	gen  uint32
	err  error
}

// PassVerifier is a Backend whose Verify can share a Pass.
type PassVerifier interface {
	// VerifyPass is Verify, reading what pass holds from it (pass nil:
	// Verify).
	VerifyPass(p *Plan, pass *Pass) error
}
