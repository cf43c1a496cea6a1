package daemon

import (
	"errors"
	"strings"
	"sync"
	"testing"

	netxml "vnet/xml"
)

// failingStore is a Store whose saves fail on demand.
type failingStore struct {
	Store
	mu                     sync.Mutex
	failStatus, failConfig bool
}

var errDiskFull = errors.New("write status: no space left on device")

func (s *failingStore) SaveStatus(name, xml string) error {
	s.mu.Lock()
	fail := s.failStatus
	s.mu.Unlock()
	if fail {
		return errDiskFull
	}
	return s.Store.SaveStatus(name, xml)
}

func (s *failingStore) SaveConfig(name, xml string) error {
	s.mu.Lock()
	fail := s.failConfig
	s.mu.Unlock()
	if fail {
		return errDiskFull
	}
	return s.Store.SaveConfig(name, xml)
}

// recordHost is the fake host remembering the definition each network was
// last brought to, and failing Start and Converge of definitions containing
// failOnText.
type recordHost struct {
	*fakeHost
	mu         sync.Mutex
	last       map[string]string
	failOnText string
}

func (h *recordHost) record(n *netxml.Network) error {
	text, err := netxml.Format(n, 0)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failOnText != "" && strings.Contains(text, h.failOnText) {
		return errors.New("injected host failure")
	}
	h.last[n.Name] = text
	return nil
}

func (h *recordHost) Start(n *netxml.Network) error {
	if err := h.record(n); err != nil {
		return err
	}
	return h.fakeHost.Start(n)
}

func (h *recordHost) Converge(n *netxml.Network) ([]string, error) {
	if err := h.record(n); err != nil {
		return nil, err
	}
	return h.fakeHost.Converge(n)
}

func (h *recordHost) lastXML(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last[name]
}

// TestUpdateAllOrNothing: a net-update that fails after the host was
// changed (saving the status or the config fails) or while changing the host
// leaves host, memory and disk as they were.
func TestUpdateAllOrNothing(t *testing.T) {
	const host = "<host mac='52:54:00:00:00:07' name='g7' ip='10.81.0.7'/>"
	const (
		cmdAddLast    = 3
		sectionIPDHCP = 4
	)
	for _, c := range []struct {
		name                   string
		failStatus, failConfig bool
		failHost               bool
	}{
		{name: "status save fails", failStatus: true},
		{name: "config save fails", failConfig: true},
		{name: "host fails", failHost: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &failingStore{Store: NewMemoryStore()}
			h := &recordHost{fakeHost: newFakeHost(), last: map[string]string{}}
			m := NewManagerWith(st, h, nil)
			if _, err := m.Define(netXML("u1", "", "10.81.0")); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Start("u1"); err != nil {
				t.Fatal(err)
			}
			hostBefore := h.lastXML("u1")
			liveBefore, _ := m.XML("u1", false)
			defBefore, _ := m.XML("u1", true)
			statuses, _ := st.Statuses()
			configs, _ := st.Configs()
			statusBefore, configBefore := string(statuses["u1"]), string(configs["u1"])

			st.mu.Lock()
			st.failStatus, st.failConfig = c.failStatus, c.failConfig
			st.mu.Unlock()
			if c.failHost {
				h.mu.Lock()
				h.failOnText = "g7"
				h.mu.Unlock()
			}
			if _, err := m.Update("u1", cmdAddLast, sectionIPDHCP, -1, host, true, true); err == nil {
				t.Fatal("update succeeded despite the injected failure")
			}
			st.mu.Lock()
			st.failStatus, st.failConfig = false, false
			st.mu.Unlock()

			if got := h.lastXML("u1"); got != hostBefore {
				t.Errorf("host left at\n%s\nwant\n%s", got, hostBefore)
			}
			if got, _ := m.XML("u1", false); got != liveBefore {
				t.Errorf("live definition in memory changed:\n%s", got)
			}
			if got, _ := m.XML("u1", true); got != defBefore {
				t.Errorf("persistent definition in memory changed:\n%s", got)
			}
			statuses, _ = st.Statuses()
			configs, _ = st.Configs()
			if string(statuses["u1"]) != statusBefore {
				t.Errorf("status on disk changed:\n%s", statuses["u1"])
			}
			if string(configs["u1"]) != configBefore {
				t.Errorf("config on disk changed:\n%s", configs["u1"])
			}
			// The same update succeeds once the store and host work, on all three.
			h.mu.Lock()
			h.failOnText = ""
			h.mu.Unlock()
			if _, err := m.Update("u1", cmdAddLast, sectionIPDHCP, -1, host, true, true); err != nil {
				t.Fatal(err)
			}
			statuses, _ = st.Statuses()
			configs, _ = st.Configs()
			for what, text := range map[string]string{"host": h.lastXML("u1"), "status": string(statuses["u1"]), "config": string(configs["u1"])} {
				if !strings.Contains(text, "g7") {
					t.Errorf("%s lacks the new host after a successful update:\n%s", what, text)
				}
			}
		})
	}
}
