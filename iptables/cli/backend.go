package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/uswitch-lab/uswitch/internal/atomicfile"
	"github.com/uswitch-lab/uswitch/iptables"
)

// File is an iptables-save text (with or without counters) that plays
// the kernel: commands read it, and changes rewrite it whole with
// counters (a temporary file renamed over it). A missing file is an
// empty rule set.
type File struct {
	Path string
	// ReadOnly refuses changes (a host snapshot's iptables-save).
	ReadOnly bool
	// Sets resolves -m set names (nil: none).
	Sets iptables.SetLookup
}

// Load reads the file with its counters.
func (f *File) Load() (*iptables.Ruleset, error) {
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) && !f.ReadOnly {
		return &iptables.Ruleset{}, nil
	}
	if err != nil {
		return nil, err
	}
	ld := &iptables.Loader{Counters: true, Sets: f.Sets}
	rs, err := ld.LoadString(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", f.Path, err)
	}
	return rs, nil
}

// Store writes next to a temporary file beside Path and renames it over
// Path.
func (f *File) Store(next *iptables.Ruleset) error {
	if f.ReadOnly {
		return ErrReadOnly
	}
	var b strings.Builder
	if err := next.Save(&b, iptables.SaveOptions{Counters: true}); err != nil {
		return err
	}
	return atomicfile.Write(f.Path, []byte(b.String()))
}
