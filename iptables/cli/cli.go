// Package cli is the `iptables` command line of iptables-nft 1.8.9 over a
// rule set held elsewhere: a running uswitch instance (through its
// control socket, which runs Run next to the engine), an iptables-save
// file that plays the kernel, or a host snapshot (read-only). It parses
// with iptables.ParseCommandLine, lists with Table.List and
// Table.ListRules, and changes the set with Ruleset.Exec, storing the
// whole new set at once; messages and exit statuses are iptables'.
package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/uswitch-lab/uswitch/iptables"
)

// Backend holds the rule set a command reads and changes.
type Backend interface {
	// Load returns the current rule set (nil: empty).
	Load() (*iptables.Ruleset, error)
	// Store replaces the rule set with next, atomically: a reader sees
	// the old set or the new one. ErrReadOnly when it cannot.
	Store(next *iptables.Ruleset) error
}

// ErrReadOnly is Store's error for a backend that cannot change.
var ErrReadOnly = errors.New("the rule set is read-only (a host snapshot)")

// Run runs `iptables ARGS` against b and returns the exit status,
// printing what iptables prints. names answers the lookups of -L
// without -n (nil: none, as if no name were known).
func Run(args []string, b Backend, names iptables.Names, stdout, stderr io.Writer) int {
	cl, err := iptables.ParseCommandLine(args)
	if err != nil {
		return fail(err, stderr)
	}
	switch {
	case cl.Help != "":
		io.WriteString(stdout, cl.Help)
		return 0
	case cl.Version:
		fmt.Fprintf(stdout, "iptables %s\n", iptables.Version)
		return 0
	}
	tid, err := cl.TableOf()
	if err != nil {
		return fail(err, stderr)
	}
	rs, err := b.Load()
	if err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	if cl.Op == 'L' || cl.Op == 'S' {
		t := rs.Table(tid)
		var out string
		if cl.Op == 'L' {
			out, err = t.List(cl.Chain, cl.RuleNum, iptables.ListOptions{
				Numeric: cl.Numeric, Verbose: cl.Verbose, Expanded: cl.Expanded,
				LineNumbers: cl.LineNumbers, Names: names})
		} else {
			out, err = t.ListRules(cl.Chain, cl.RuleNum, cl.Verbose)
		}
		if err != nil {
			return fail(err, stderr)
		}
		io.WriteString(stdout, out)
		if !cl.Zero {
			return 0
		}
	}
	if cl.Verbose {
		verbose(cl, rs.Table(tid), stdout)
	}
	var echo io.Writer
	if cl.Verbose {
		echo = stdout
	}
	next, err := rs.ExecEcho(cl, echo)
	if err != nil {
		return fail(err, stderr)
	}
	if cl.Op == 'C' {
		return 0
	}
	if err := b.Store(next); err != nil {
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
	return 0
}

// verbose prints what -v adds to -F, -Z and -X (flush_chain,
// zero_entries and delete_chain in iptables/nft.c).
func verbose(cl *iptables.CommandLine, t *iptables.Table, w io.Writer) {
	var verb string
	switch {
	case cl.Op == 'F':
		verb = "Flushing"
	case cl.Op == 'Z' || cl.Zero:
		if cl.RuleNum > 0 && cl.Op == 'Z' {
			return
		}
		verb = "Zeroing"
	case cl.Op == 'X':
		verb = "Deleting"
	default:
		return
	}
	for _, c := range t.Chains {
		if cl.Chain != "" && c.Name != cl.Chain {
			continue
		}
		if cl.Op == 'X' && c.Builtin {
			continue
		}
		if cl.Chain != "" && t.Chain(cl.Chain) == nil {
			return
		}
		fmt.Fprintf(w, "%s chain `%s'\n", verb, c.Name)
	}
}

func fail(err error, stderr io.Writer) int {
	ce := iptables.CommandError(err)
	io.WriteString(stderr, ce.Stderr)
	return ce.Code
}
