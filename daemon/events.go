package daemon

import (
	"sync"
	"time"
)

// EventType is a libvirt network lifecycle event; the values are libvirt's
// (VIR_NETWORK_EVENT_DEFINED … STOPPED), which D-Bus clients receive as is.
type EventType int

// Lifecycle events, in libvirt's numbering.
const (
	EventDefined EventType = iota
	EventUndefined
	EventStarted
	EventStopped
	// EventRepaired is vnet's own, not a libvirt lifecycle event: drift on an
	// active network was found and repaired.
	EventRepaired
	// EventPortCreated and EventPortDeleted are vnet's own: a network port
	// was created or deleted (Event.Port names it).
	EventPortCreated
	EventPortDeleted
	// EventWarning is vnet's own: net-doctor's cheap checks found a new
	// problem around a network (Event.Detail names the check and culprit).
	EventWarning
)

// IsLifecycle reports whether e is one of libvirt's lifecycle events.
func (e EventType) IsLifecycle() bool { return e >= EventDefined && e <= EventStopped }

var eventNames = [...]string{"Defined", "Undefined", "Started", "Stopped", "Repaired", "PortCreated", "PortDeleted", "Warning"}

// String returns virsh's name of the event ("Defined" …).
func (e EventType) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "Unknown"
}

// Event is one lifecycle change of a network.
type Event struct {
	Name string
	UUID string
	Type EventType
	Time time.Time
	// Port is the port's uuid for the port events.
	Port string
	// Detail is a Warning's check id and culprit.
	Detail string
}

// broker fans events out to subscribers. A slow subscriber loses events
// rather than blocking network operations.
type broker struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

// Subscribe returns a channel of every event from now on, and a function that
// ends the subscription (and closes the channel).
func (m *Manager) Subscribe() (<-chan Event, func()) {
	b := &m.events
	ch := make(chan Event, 256)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[chan Event]struct{}{}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, ch)
			b.mu.Unlock()
			close(ch)
		})
	}
}

func (b *broker) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
		}
	}
}
