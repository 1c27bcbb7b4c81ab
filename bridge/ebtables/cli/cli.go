// Package cli is the `ebtables` command line of ebtables-nft 1.8.9 over
// a rule set held elsewhere: a running uswitch instance (through its
// control socket, which runs Run next to the engine), an ebtables-save
// file that plays the kernel, or a host snapshot (read-only). It parses
// with ebtables.ParseCommandLine and runs the command with
// Ruleset.Exec, storing the whole new set at once; messages and exit
// statuses are ebtables'.
package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/internal/atomicfile"
)

// Backend holds the rule set a command reads and changes.
type Backend interface {
	// Load returns the current rule set (nil: empty).
	Load() (*ebtables.Ruleset, error)
	// Store replaces the rule set with next, atomically: a reader sees
	// the old set or the new one. ErrReadOnly when it cannot.
	Store(next *ebtables.Ruleset) error
}

// ErrReadOnly is Store's error for a backend that cannot change.
var ErrReadOnly = errors.New("the rule set is read-only (a host snapshot)")

// Run runs `ebtables ARGS` against b and returns the exit status,
// printing what ebtables prints.
func Run(args []string, b Backend, o ebtables.CmdOptions, stdout, stderr io.Writer) int {
	cl, cerr := ebtables.ParseCommandLine(args, o)
	if cerr != nil {
		io.WriteString(stderr, cerr.Stderr)
		return cerr.Code
	}
	if cl.Op == 'h' {
		io.WriteString(stdout, cl.Stdout)
		return 0
	}
	rs, err := b.Load()
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	var out strings.Builder
	next, cerr := rs.Exec(cl, &out)
	io.WriteString(stdout, out.String())
	if cerr != nil {
		io.WriteString(stderr, cerr.Stderr)
		return cerr.Code
	}
	if next == nil {
		return 0
	}
	if err := b.Store(next); err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	return 0
}

// File is an ebtables-save text (with or without "[pcnt:bcnt]"
// counters) that plays the kernel: commands read it, and changes
// rewrite it whole with counters (a temporary file renamed over it). A
// missing file is an empty rule set.
type File struct {
	Path string
	// ReadOnly refuses changes (a host snapshot's ebtables-save).
	ReadOnly bool
	// Broute accepts a broute table in the file.
	Broute bool
}

// Load reads the file with its counters.
func (f *File) Load() (*ebtables.Ruleset, error) {
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) && !f.ReadOnly {
		return &ebtables.Ruleset{}, nil
	}
	if err != nil {
		return nil, err
	}
	rs, rerr := (&ebtables.Loader{Counters: true, Broute: f.Broute}).Load(string(data))
	if rerr != nil {
		return nil, fmt.Errorf("%s: %v", f.Path, rerr)
	}
	return rs, nil
}

// Store writes next to a temporary file beside Path and renames it over
// Path.
func (f *File) Store(next *ebtables.Ruleset) error {
	if f.ReadOnly {
		return ErrReadOnly
	}
	var b strings.Builder
	if err := next.Save(&b, ebtables.SaveOptions{Counters: true}); err != nil {
		return err
	}
	return atomicfile.Write(f.Path, []byte(b.String()))
}
