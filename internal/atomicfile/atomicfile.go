// Package atomicfile replaces files so that a reader (or a crash) never sees
// half of one: the data goes to a hidden temp file next to the target, which
// is then renamed over it. Temp files are named ".NAME.tmpNNN"; RemoveStale
// deletes the ones a crash left between create and rename.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Durability says whether Write must survive a power loss.
type Durability bool

const (
	// Durable fsyncs the file before the rename and the directory after it:
	// for state that is not generated again (definitions, status files).
	Durable Durability = true
	// Volatile skips the fsyncs: for files generated again on every start,
	// where a crash can only cost a regeneration and an fsync costs
	// milliseconds of every start.
	Volatile Durability = false
)

// TempName returns the hidden temp name used for path in its directory
// (without the random suffix CreateTemp adds): ".NAME.tmp".
func TempName(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
}

// Write replaces path with data, created with mode. On failure path is
// unchanged and no temp file is left.
func Write(path string, data []byte, mode os.FileMode, d Durability) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if d == Durable {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d == Durable {
		return SyncDir(dir)
	}
	return nil
}

// SyncDir fsyncs a directory, making a rename or removal in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// IsTemp reports whether a file name is one of Write's (or TempName's) temp files.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp")
}

// RemoveStale deletes the temp files in dir that an interrupted Write left
// behind; nothing else would ever remove them. It returns the errors of
// removals that failed (a missing directory is not one).
func RemoveStale(dir string) []error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !IsTemp(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove stale temp file %s: %w", p, err))
		}
	}
	return errs
}
