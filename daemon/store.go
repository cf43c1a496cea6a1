package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"vnet/internal/atomicfile"
)

// Store persists definitions, autostart marks and the live status of active
// networks. fileStore is the real one; memStore backs the test driver.
type Store interface {
	SaveConfig(name, xml string) error
	DeleteConfig(name string) error
	SaveStatus(name, xml string) error
	DeleteStatus(name string) error
	SetAutostart(name string, on bool) error
	Autostart(name string) bool
	// Configs and Statuses return every stored document by network name.
	Configs() (map[string][]byte, error)
	Statuses() (map[string][]byte, error)
}

// store keeps definitions and live status on disk, in libvirt's layout
// relocated under vnet's directories:
//
//	<config-dir>/networks/NAME.xml             persistent definitions
//	<config-dir>/networks/autostart/NAME.xml   symlinks to them
//	<run-dir>/networks/NAME.xml                live definition of an active network
//
// Every write is atomic (temp file, fsync, rename, fsync of the directory) so a
// crash leaves either the old or the new file, never a torn one.
type store struct {
	configDir string // <config-dir>/networks
	runDir    string // <run-dir>/networks
}

func newStore(configDir, runDir string) (*store, error) {
	s := &store{
		configDir: filepath.Join(configDir, "networks"),
		runDir:    filepath.Join(runDir, "networks"),
	}
	for _, d := range []string{s.configDir, filepath.Join(s.configDir, "autostart"), s.runDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create directory %s: %w", d, err)
		}
		// Best effort: a leftover temp file is only clutter.
		_ = atomicfile.RemoveStale(d)
	}
	return s, nil
}

// safeName rejects names that could escape our directories. The XML layer
// already refuses them; this is the last line of defence at the filesystem.
func safeName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00\n") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("network name %q cannot be used as a file name", name)
	}
	return nil
}

func (s *store) configPath(name string) string { return filepath.Join(s.configDir, name+".xml") }
func (s *store) autostartPath(name string) string {
	return filepath.Join(s.configDir, "autostart", name+".xml")
}
func (s *store) statusPath(name string) string { return filepath.Join(s.runDir, name+".xml") }

const configHeader = `<!--
WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:
  vnetctl net-edit %s
or other application using the vnet API.
-->

`

// SaveConfig implements Store.
func (s *store) SaveConfig(name, xml string) error {
	if err := safeName(name); err != nil {
		return err
	}
	return atomicfile.Write(s.configPath(name), []byte(fmt.Sprintf(configHeader, name)+xml), 0o600, atomicfile.Durable)
}

// DeleteConfig implements Store.
func (s *store) DeleteConfig(name string) error {
	if err := safeName(name); err != nil {
		return err
	}
	if err := removeIfExists(s.autostartPath(name)); err != nil {
		return err
	}
	return removeIfExists(s.configPath(name))
}

// SaveStatus implements Store.
func (s *store) SaveStatus(name, xml string) error {
	if err := safeName(name); err != nil {
		return err
	}
	return atomicfile.Write(s.statusPath(name), []byte(xml), 0o600, atomicfile.Durable)
}

// DeleteStatus implements Store.
func (s *store) DeleteStatus(name string) error {
	if err := safeName(name); err != nil {
		return err
	}
	return removeIfExists(s.statusPath(name))
}

// SetAutostart implements Store.
func (s *store) SetAutostart(name string, on bool) error {
	if err := safeName(name); err != nil {
		return err
	}
	link := s.autostartPath(name)
	if !on {
		return removeIfExists(link)
	}
	tmp := atomicfile.TempName(link)
	_ = os.Remove(tmp)
	if err := os.Symlink(s.configPath(name), tmp); err != nil {
		return fmt.Errorf("create autostart link for %s: %w", name, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("create autostart link for %s: %w", name, err)
	}
	return atomicfile.SyncDir(filepath.Dir(link))
}

// Autostart implements Store.
func (s *store) Autostart(name string) bool {
	_, err := os.Lstat(s.autostartPath(name))
	return err == nil
}

// Configs implements Store.
func (s *store) Configs() (map[string][]byte, error) { return readAll(s.configDir) }

// Statuses implements Store.
func (s *store) Statuses() (map[string][]byte, error) { return readAll(s.runDir) }

func readAll(dir string) (map[string][]byte, error) {
	names, err := listXML(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name+".xml"))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, name+".xml"), err)
		}
		out[name] = data
	}
	return out, nil
}

// memStore is a Store in memory: the test driver keeps everything there.
type memStore struct {
	mu        sync.Mutex
	configs   map[string][]byte
	statuses  map[string][]byte
	autostart map[string]bool
}

// NewMemoryStore returns a Store that keeps everything in memory (the test
// driver's, and handy for tests of front doors).
func NewMemoryStore() Store { return newMemStore() }

func newMemStore() *memStore {
	return &memStore{configs: map[string][]byte{}, statuses: map[string][]byte{}, autostart: map[string]bool{}}
}

// SaveConfig implements Store.
func (s *memStore) SaveConfig(name, xml string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configs[name] = []byte(xml)
	return nil
}

// DeleteConfig implements Store.
func (s *memStore) DeleteConfig(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.configs, name)
	delete(s.autostart, name)
	return nil
}

// SaveStatus implements Store.
func (s *memStore) SaveStatus(name, xml string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statuses[name] = []byte(xml)
	return nil
}

// DeleteStatus implements Store.
func (s *memStore) DeleteStatus(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.statuses, name)
	return nil
}

// SetAutostart implements Store.
func (s *memStore) SetAutostart(name string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.autostart[name] = true
	} else {
		delete(s.autostart, name)
	}
	return nil
}

// Autostart implements Store.
func (s *memStore) Autostart(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.autostart[name]
}

func copyMap(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Configs implements Store.
func (s *memStore) Configs() (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyMap(s.configs), nil
}

// Statuses implements Store.
func (s *memStore) Statuses() (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyMap(s.statuses), nil
}

// list returns the names of the *.xml files in dir, sorted.
func listXML(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".xml") || strings.HasPrefix(n, ".") {
			continue
		}
		names = append(names, strings.TrimSuffix(n, ".xml"))
	}
	sort.Strings(names)
	return names, nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
