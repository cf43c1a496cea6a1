// Package crashloop is the restart policy of a supervised process that died
// (dnsmasq, a passt keeper, passt): a death now and then (an admin's kill,
// an OOM kill) is restarted at once, so the service is out only for the
// process's own start-up. Only a crash loop, more than Burst deaths within
// Window, is slowed down: MinBackoff doubling up to MaxBackoff, until the
// deaths fall out of the window again. Deaths older than Window are
// forgotten, so a process that crashed long ago does not count forever.
package crashloop

import "time"

// The policy's parameters.
const (
	Window     = 30 * time.Second
	Burst      = 5
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 10 * time.Second
)

// Policy decides how long to wait before restarting a process that died.
// It is pure: the caller passes the time of each death. The zero Policy is
// ready to use; it is not safe for concurrent use.
type Policy struct {
	deaths []time.Time // within Window of the latest, oldest first
}

// Died records a death at now (an exit, or a restart that failed) and
// returns how long to wait before the next start.
func (p *Policy) Died(now time.Time) time.Duration {
	keep := p.deaths[:0]
	for _, t := range p.deaths {
		if now.Sub(t) < Window {
			keep = append(keep, t)
		}
	}
	p.deaths = append(keep, now)
	over := len(p.deaths) - Burst
	if over <= 0 {
		return 0
	}
	d := MinBackoff
	for i := 1; i < over && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Recent is the number of deaths within Window of the latest.
func (p *Policy) Recent() int { return len(p.deaths) }
