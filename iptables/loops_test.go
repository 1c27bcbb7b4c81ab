package iptables

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// deepChain is C1 ... Cn, INPUT jumping to C1 and each Ci to Ci+1 (n
// jumps from INPUT), then the extra lines.
func deepChain(n int, extra ...string) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, ":C%d - [0:0]\n", i)
	}
	b.WriteString("-A INPUT -j C1\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "-A C%d -j C%d\n", i, i+1)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

const linksPrefix = "iptables-restore v1.8.9 (nf_tables): \n"

// loopCases are loops and jump nesting. stderr and exit are what
// iptables-restore v1.8.9 (nf_tables) printed in a network namespace,
// and testStderr what it printed with --test (which aborts the batch:
// the kernel never sees it, so "" for all of these). Where
// iptables-restore v1.8.9 (legacy) differs, the case says so.
var loopCases = []struct {
	name, input string
	stderr      string
	exit        int
}{
	{name: "loop reachable from FORWARD",
		// legacy: "iptables-restore: line 11 failed\n", exit 1 (the COMMIT line)
		input:  "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\n-A INPUT -s 1.1.1.1\n-A FORWARD -j A\nCOMMIT\n",
		stderr: linksPrefix + "line 10: RULE_APPEND failed (Too many links): rule in chain FORWARD\n", exit: 4},
	{name: "every later rule of the batch fails",
		input: "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\n-A INPUT -s 1.1.1.1\n-A FORWARD -j A\n-A INPUT -s 2.2.2.2\n-A OUTPUT -j ACCEPT\n-I INPUT 1 -s 3.3.3.3\n-N NEWC\nCOMMIT\n",
		stderr: linksPrefix + "line 10: RULE_APPEND failed (Too many links): rule in chain FORWARD\n" +
			"line 11: RULE_APPEND failed (Too many links): rule in chain INPUT\n" +
			"line 12: RULE_APPEND failed (Too many links): rule in chain OUTPUT\n" +
			"line 13: RULE_INSERT failed (Too many links): rule in chain INPUT\n", exit: 4},
	{name: "loop closed after the base chain's jump",
		// legacy: "iptables-restore: line 6 failed\n", exit 1
		input:  "*filter\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -j A\nCOMMIT\n",
		stderr: linksPrefix + "line 6: RULE_APPEND failed (Too many links): rule in chain B\n", exit: 4},
	{name: "loop no base chain reaches",
		input: "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\nCOMMIT\n"},
	{name: "self-loop in a chain nothing jumps to",
		input: "*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n-A X -s 1.2.3.4\n-A X -j X\nCOMMIT\n"},
	{name: "self-loop reachable from INPUT",
		// legacy: "iptables-restore: line 6 failed\n", exit 1
		input:  "*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n-A X -j X\n-A INPUT -j X\nCOMMIT\n",
		stderr: linksPrefix + "line 5: RULE_APPEND failed (Too many links): rule in chain INPUT\n", exit: 4},
	{name: "goto loop",
		input:  "*filter\n:A - [0:0]\n-A A -g A\n-A INPUT -g A\nCOMMIT\n",
		stderr: linksPrefix + "line 4: RULE_APPEND failed (Too many links): rule in chain INPUT\n", exit: 4},
	{name: "15 jumps", input: deepChain(15)},
	{name: "16 jumps",
		// legacy accepts it (ip_tables has no nesting limit)
		input:  deepChain(16),
		stderr: linksPrefix + "line 33: RULE_APPEND failed (Too many links): rule in chain C15\n", exit: 4},
	{name: "17 jumps",
		// legacy accepts it
		input: deepChain(17),
		stderr: linksPrefix + "line 34: RULE_APPEND failed (Too many links): rule in chain C15\n" +
			"line 35: RULE_APPEND failed (Too many links): rule in chain C16\n", exit: 4},
	{name: "16 jumps and later rules",
		input: deepChain(16, "-A OUTPUT -s 10.0.0.1", "-A OUTPUT -s 10.0.0.2"),
		stderr: linksPrefix + "line 33: RULE_APPEND failed (Too many links): rule in chain C15\n" +
			"line 34: RULE_APPEND failed (Too many links): rule in chain OUTPUT\n" +
			"line 35: RULE_APPEND failed (Too many links): rule in chain OUTPUT\n", exit: 4},
	{name: "a short path does not hide a deep one",
		input: deepChain(16, "-I INPUT 1 -j C8"),
		stderr: linksPrefix + "line 33: RULE_APPEND failed (Too many links): rule in chain C15\n" +
			"line 34: RULE_INSERT failed (Too many links): rule in chain INPUT\n", exit: 4},
	{name: "the deep path made by a later base chain jump",
		input: deepChain(16, "-A OUTPUT -j C1"),
		stderr: linksPrefix + "line 33: RULE_APPEND failed (Too many links): rule in chain C15\n" +
			"line 34: RULE_APPEND failed (Too many links): rule in chain OUTPUT\n", exit: 4},
	// with --test the kernel is never asked: these load
	{name: "jump to a deleted chain still jumped to",
		input:  "*filter\n:X - [0:0]\n-A INPUT -j X\n-X X\nCOMMIT\n",
		stderr: linksPrefix + "line 4: CHAIN_DEL failed (Device or resource busy): chain X\n", exit: 4},
	{name: "SNAT in filter",
		input:  "*filter\n-A INPUT -j SNAT --to-source 1.2.3.4\nCOMMIT\n",
		stderr: linksPrefix + "line 2: RULE_APPEND failed (Invalid argument): rule in chain INPUT\n", exit: 4},
}

func TestRestoreLoops(t *testing.T) {
	for _, c := range loopCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := (&Loader{}).LoadString(c.input)
			if c.stderr == "" {
				if err != nil {
					t.Fatalf("iptables-restore accepts it, uswitch: %v", err)
				}
			} else {
				var re *RestoreError
				if !errors.As(err, &re) {
					t.Fatalf("want %q, got %v", c.stderr, err)
				}
				if re.Stderr() != c.stderr || re.ExitCode() != c.exit {
					t.Errorf("got (exit %d):\n%s\nwant (exit %d):\n%s", re.ExitCode(), re.Stderr(), c.exit, c.stderr)
				}
			}
			// --test: iptables-restore -t accepts every one of them
			if _, err := (&Loader{Test: true}).LoadString(c.input); err != nil {
				t.Errorf("with --test: %v", err)
			}
		})
	}
}

// TestRestoreLoopsAgainstKernel runs loopCases through the real
// iptables-restore, with and without --test.
func TestRestoreLoopsAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	ns := kerneltest.NewNetns(t)
	for _, c := range loopCases {
		t.Run(c.name, func(t *testing.T) {
			for _, test := range []bool{false, true} {
				if _, code, err := ns.Restore("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"); err != nil || code != 0 {
					t.Fatalf("reset: %v %d", err, code)
				}
				var flags []string
				want, wexit := c.stderr, c.exit
				if test {
					flags, want, wexit = []string{"--test"}, "", 0
				}
				kerr, kcode, err := ns.Restore(c.input, flags...)
				if err != nil {
					t.Fatal(err)
				}
				if kerr != want || kcode != wexit {
					t.Errorf("%v: the kernel's iptables-restore (exit %d):\n%s\nthe test expects (exit %d):\n%s", flags, kcode, kerr, wexit, want)
				}
			}
		})
	}
}

// noflushLoop: a loop completed by an input restored with --noflush
// over rules already there. Only the rules of the new batch fail (the
// rule of line 6 already there is not one of them); iptables-restore
// v1.8.9 (nf_tables) printed this.
var noflushLoop = struct{ base, input, stderr string }{
	base:  "*filter\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A INPUT -j A\n-A INPUT -s 9.9.9.9\nCOMMIT\n",
	input: "*filter\n-A INPUT -s 1.1.1.1\n-A B -j A\n-A OUTPUT -s 2.2.2.2\nCOMMIT\n",
	stderr: linksPrefix + "line 3: RULE_APPEND failed (Too many links): rule in chain B\n" +
		"line 4: RULE_APPEND failed (Too many links): rule in chain OUTPUT\n",
}

func TestRestoreLoopsNoFlush(t *testing.T) {
	base, err := (&Loader{}).LoadString(noflushLoop.base)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Loader{Base: base, NoFlush: true}).LoadString(noflushLoop.input)
	var re *RestoreError
	if !errors.As(err, &re) || re.Stderr() != noflushLoop.stderr || re.ExitCode() != 4 {
		t.Fatalf("got %v, want (exit 4):\n%s", err, noflushLoop.stderr)
	}
	if _, err := (&Loader{Base: base, NoFlush: true, Test: true}).LoadString(noflushLoop.input); err != nil {
		t.Errorf("with --test: %v", err)
	}
}

func TestRestoreLoopsNoFlushAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	ns := kerneltest.NewNetns(t)
	if kerr, code, err := ns.Restore(noflushLoop.base); err != nil || code != 0 {
		t.Fatalf("base: %v %d %s", err, code, kerr)
	}
	for _, flags := range [][]string{{"--noflush", "--test"}, {"--noflush"}} {
		want, wexit := noflushLoop.stderr, 4
		if len(flags) == 2 {
			want, wexit = "", 0
		}
		kerr, code, err := ns.Restore(noflushLoop.input, flags...)
		if err != nil {
			t.Fatal(err)
		}
		if kerr != want || code != wexit {
			t.Errorf("%v: the kernel's iptables-restore (exit %d):\n%s\nthe test expects (exit %d):\n%s", flags, code, kerr, wexit, want)
		}
	}
}

// testModeCases are inputs for iptables-restore --test, whose commands
// iptables-nft parses but never runs: stderr and exit are what
// iptables-restore v1.8.9 (nf_tables) -t printed ("" and 0: accepted,
// though the input fails without -t). iptables-restore v1.8.9 (legacy)
// -t runs the commands on its copy of the table and refuses most of
// them as without -t ("Couldn't load target `NOPE'", "line 2 failed",
// "Can't set policy `FOO' on `INPUT' line 2: Bad policy name"), though
// not what only the kernel checks (MASQUERADE in INPUT, loops).
var testModeCases = []struct {
	name, input string
	counters    bool
	stderr      string
	exit        int
}{
	{name: "jump to a missing chain", input: "*filter\n-A INPUT -j NOPE\nCOMMIT\n"},
	{name: "jump to a builtin chain", input: "*filter\n-A INPUT -j INPUT\nCOMMIT\n"},
	{name: "append to a missing chain", input: "*filter\n-A NOPE -j ACCEPT\nCOMMIT\n"},
	{name: "insert past the end", input: "*filter\n-I INPUT 5 -j ACCEPT\nCOMMIT\n"},
	{name: "replace past the end", input: "*filter\n-R INPUT 3 -j ACCEPT\nCOMMIT\n"},
	{name: "delete a missing rule", input: "*filter\n-D INPUT -s 1.1.1.1\nCOMMIT\n"},
	{name: "check a missing rule", input: "*filter\n-C INPUT -j ACCEPT\nCOMMIT\n"},
	{name: "new builtin chain", input: "*filter\n-N INPUT\nCOMMIT\n"},
	{name: "new chain twice", input: "*filter\n:X - [0:0]\n-N X\nCOMMIT\n"},
	{name: "delete a missing chain", input: "*filter\n-X NOPE\nCOMMIT\n"},
	{name: "delete a builtin chain", input: "*filter\n-X INPUT\nCOMMIT\n"},
	{name: "delete a chain jumped to", input: "*filter\n:X - [0:0]\n-A INPUT -j X\n-X\nCOMMIT\n"},
	{name: "delete a chain jumped to, then new", input: "*filter\n:X - [0:0]\n-A INPUT -j X\n-X X\n-N X\nCOMMIT\n"},
	{name: "flush a missing chain", input: "*filter\n-F NOPE\nCOMMIT\n"},
	{name: "rename a missing chain", input: "*filter\n-E NOPE X\nCOMMIT\n"},
	{name: "bad policy", input: "*filter\n-P INPUT FOO\nCOMMIT\n"},
	{name: "policy of a missing chain", input: "*filter\n-P NOPE DROP\nCOMMIT\n"},
	{name: "bad policy on a chain line", input: "*filter\n:INPUT FOO [0:0]\nCOMMIT\n"},
	{name: "MASQUERADE in INPUT", input: "*nat\n-A INPUT -j MASQUERADE\nCOMMIT\n"},
	// what parsing refuses is refused with -t too
	{name: "bad ctstate", input: "*filter\n-A INPUT -m conntrack --ctstate FOO\nCOMMIT\n",
		stderr: "iptables-restore v1.8.9 (nf_tables): Bad ctstate \"FOO\"\nError occurred at line: 2\n" + restoreHint, exit: 2},
	{name: "no COMMIT", input: "*filter\n-A INPUT -j ACCEPT\n",
		stderr: "iptables-restore: COMMIT expected at line 3\n", exit: 1},
	{name: "policy counters missing with -c", input: "*filter\n:INPUT DROP\nCOMMIT\n", counters: true,
		stderr: "iptables-restore v1.8.9 (nf_tables): invalid policy counters for chain 'INPUT'\nError occurred at line: 2\n" + restoreHint, exit: 2},
}

func TestRestoreTestMode(t *testing.T) {
	for _, c := range testModeCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := (&Loader{Test: true, Counters: c.counters}).LoadString(c.input)
			if c.stderr == "" {
				if err != nil {
					t.Fatalf("iptables-restore -t accepts it, uswitch: %v", err)
				}
				return
			}
			var re *RestoreError
			if !errors.As(err, &re) || re.Stderr() != c.stderr || re.ExitCode() != c.exit {
				t.Fatalf("got %v, want (exit %d):\n%s", err, c.exit, c.stderr)
			}
		})
	}
}

func TestRestoreTestModeAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	ns := kerneltest.NewNetns(t)
	for _, c := range testModeCases {
		t.Run(c.name, func(t *testing.T) {
			flags := []string{"--test"}
			if c.counters {
				flags = append(flags, "-c")
			}
			kerr, code, err := ns.Restore(c.input, flags...)
			if err != nil {
				t.Fatal(err)
			}
			if kerr != c.stderr || code != c.exit {
				t.Errorf("the kernel's iptables-restore -t (exit %d):\n%s\nthe test expects (exit %d):\n%s", code, kerr, c.exit, c.stderr)
			}
		})
	}
}
