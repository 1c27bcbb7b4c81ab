// Package atomicfile replaces a file whole, atomically: a reader sees
// the old contents or the new, never a part.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to a temporary file beside path (".NAME.*", synced)
// and renames it over path. An existing file's permission bits are kept;
// a new file gets os.CreateTemp's 0600. On error path is unchanged and
// the temporary file is removed.
func Write(path string, data []byte) error { return WritePerm(path, data, 0o600) }

// WritePerm is Write with newPerm for a file that does not exist yet
// (an existing file still keeps its own permission bits).
func WritePerm(path string, data []byte, newPerm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if st, err := os.Stat(path); err == nil {
		os.Chmod(tmp.Name(), st.Mode().Perm())
	} else if newPerm != 0o600 {
		if err := os.Chmod(tmp.Name(), newPerm); err != nil {
			return err
		}
	}
	return os.Rename(tmp.Name(), path)
}
