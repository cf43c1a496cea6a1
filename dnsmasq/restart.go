package dnsmasq

import "time"

// Restart policy of a supervised dnsmasq that died. A death now and then (an
// admin's kill, an OOM kill) is restarted at once: the network's DHCP and DNS
// are out only for dnsmasq's own start-up. Only a crash loop, more than
// crashBurst deaths within crashWindow, is slowed down: minBackoff doubling up
// to maxBackoff, until the deaths fall out of the window again.
const (
	crashWindow = 30 * time.Second
	crashBurst  = 5
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 10 * time.Second
)

// restartPolicy decides how long to wait before restarting a dnsmasq that
// died. It is pure: the caller passes the time of each death.
type restartPolicy struct {
	deaths []time.Time // within crashWindow of the latest, oldest first
}

// died records a death at now (an exit, or a restart that failed) and
// returns how long to wait before the next start.
func (p *restartPolicy) died(now time.Time) time.Duration {
	keep := p.deaths[:0]
	for _, t := range p.deaths {
		if now.Sub(t) < crashWindow {
			keep = append(keep, t)
		}
	}
	p.deaths = append(keep, now)
	over := len(p.deaths) - crashBurst
	if over <= 0 {
		return 0
	}
	d := minBackoff
	for i := 1; i < over && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}
