// Package testdata locates libvirt's golden test data and reads its case tables.
//
// The data directory comes from the environment variable VNET_LIBVIRT_TESTDATA;
// by default it is ../shared/testdata/libvirt relative to the project root (the
// directory holding go.mod). Cases come from the *-cases.tsv files, never from a
// list in code, so the same tests run on any copy of libvirt's data.
package testdata

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// EnvVar names the environment variable that overrides the data directory.
const EnvVar = "VNET_LIBVIRT_TESTDATA"

// Dir returns the libvirt test data directory, skipping the test when it is
// absent.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvVar)
	if dir == "" {
		root, err := projectRoot()
		if err != nil {
			t.Fatalf("find project root: %v", err)
		}
		dir = filepath.Join(root, "..", "shared", "testdata", "libvirt")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("libvirt test data not found at %s (set %s)", dir, EnvVar)
	}
	return dir
}

func projectRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// Case is one line of a case table, keyed by column name.
type Case map[string]string

// Cases reads the table file (e.g. "xml2xml-cases.tsv") from the data
// directory. Each row maps the header's column names to its cells.
func Cases(t testing.TB, file string) (dir string, cases []Case) {
	t.Helper()
	dir = Dir(t)
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("read case table: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) < 1 {
		t.Fatalf("%s: empty case table", file)
	}
	header := strings.Split(lines[0], "\t")
	for i, line := range lines[1:] {
		if line == "" {
			continue
		}
		cells := strings.Split(line, "\t")
		if len(cells) != len(header) {
			t.Fatalf("%s:%d: %d cells, header has %d", file, i+2, len(cells), len(header))
		}
		c := Case{}
		for j, h := range header {
			c[h] = cells[j]
		}
		cases = append(cases, c)
	}
	return dir, cases
}

// Read returns the contents of a file named relative to the data directory.
func Read(t testing.TB, dir, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return data
}

// Skips counts explicit skips by reason so a test can report them at the end.
type Skips struct {
	counts map[string]int
	total  int
}

// Skip records a skip with its reason and skips t.
func (s *Skips) Skip(t *testing.T, reason string) {
	t.Helper()
	if s.counts == nil {
		s.counts = map[string]int{}
	}
	s.counts[reason]++
	s.total++
	t.Skip("unsupported: " + reason)
}

// Report logs the skip counts on parent; call it after the subtests ran.
func (s *Skips) Report(parent *testing.T, ran int) {
	parent.Helper()
	parent.Logf("%d cases, %d passed or failed on their merits, %d skipped as unsupported", ran, ran-s.total, s.total)
	for reason, n := range s.counts {
		parent.Logf("  skipped %d: %s", n, reason)
	}
}
