package iptables

import (
	"errors"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// limitCases are inputs at iptables-restore's fixed buffers: a word of
// 1024 characters or more, more words than MAX_ARGC holds, lines longer
// than the 10240-byte fgets buffer, NUL bytes. stderr and exit are what
// iptables-restore v1.8.9 (nf_tables) printed for the input in a
// network namespace (iptables-restore v1.8.9 (legacy) prints the same
// with "(legacy)" except where a case says otherwise); stderr "" means
// accepted, and then save, when set, is the -A lines iptables-save
// printed after it.
var limitCases = []struct {
	name, input string
	stderr      string
	exit        int
	save        string
}{
	{name: "comment of 1023 characters is cut to 255",
		input: "*filter\n-A INPUT -m comment --comment \"" + strings.Repeat("y", 1023) + "\" -j ACCEPT\nCOMMIT\n",
		save:  "-A INPUT -m comment --comment " + strings.Repeat("y", 255) + " -j ACCEPT\n"},
	{name: "comment of 1024 characters",
		input:  "*filter\n-A INPUT -m comment --comment \"" + strings.Repeat("y", 1024) + "\" -j ACCEPT\nCOMMIT\n",
		stderr: paramTooLong(2), exit: 2},
	{name: "comment of 2000 characters",
		input:  "*filter\n-A INPUT -m comment --comment \"" + strings.Repeat("x", 2000) + "\" -j ACCEPT\nCOMMIT\n",
		stderr: paramTooLong(2), exit: 2},
	{name: "comment of 1 MiB",
		input:  "*filter\n-A INPUT -m comment --comment \"" + strings.Repeat("z", 1<<20) + "\" -j ACCEPT\nCOMMIT\n",
		stderr: paramTooLong(2), exit: 2},
	{name: "escaping backslashes are not counted",
		input: "*filter\n-A INPUT -m comment --comment \"" + strings.Repeat(`\y`, 1023) + "\" -j ACCEPT\nCOMMIT\n",
		save:  "-A INPUT -m comment --comment " + strings.Repeat("y", 255) + " -j ACCEPT\n"},
	{name: "unquoted word of 1024 characters at the end of the input",
		input:  "*filter\n-A INPUT -j ACCEPT -m comment --comment " + strings.Repeat("y", 1024),
		stderr: paramTooLong(2), exit: 2},
	{name: "too long before a missing chain",
		input:  "*filter\n-A NOPE -m comment --comment " + strings.Repeat("y", 1024) + "\nCOMMIT\n",
		stderr: paramTooLong(2), exit: 2},
	{name: "251 words",
		input: "*filter\n-A INPUT" + strings.Repeat(" -m comment --comment x", 62) + " -f\nCOMMIT\n"},
	{name: "252 words",
		input:  "*filter\n-A INPUT" + strings.Repeat(" -m comment --comment x", 62) + " -f -f\nCOMMIT\n",
		stderr: tooManyArgs(2), exit: 2},
	{name: "too many words before -t",
		input:  "*filter\n-t nat -A INPUT" + strings.Repeat(" -m comment --comment x", 90) + "\nCOMMIT\n",
		stderr: tooManyArgs(2), exit: 2},
	{name: "line of 10239 characters",
		input: "*filter\n-A INPUT -j ACCEPT" + strings.Repeat(" ", 10239-18) + "\nCOMMIT\n",
		save:  "-A INPUT -j ACCEPT\n"},
	{name: "line of 10240 characters: the rest is line 3",
		input:  "*filter\n-A INPUT -j ACCEPT" + strings.Repeat(" ", 10240-18) + "\nCOMMIT\n",
		stderr: "iptables-restore v1.8.9 (nf_tables): no command specified\nError occurred at line: 3\n" + restoreHint, exit: 2},
	{name: "a word cut at 10239 bytes",
		input:  "*filter\n-A INPUT -j ACCEPT" + strings.Repeat(" ", 10240-18-2) + "-f\nCOMMIT\n",
		stderr: "Bad argument `-'\nError occurred at line: 2\n" + restoreHint, exit: 2},
	{name: "the rest of a long comment line is a command",
		input:  "*filter\n# " + strings.Repeat("x", 20000) + "\n-A INPUT -j ACCEPT\nCOMMIT\n",
		stderr: paramTooLong(3), exit: 2},
	{name: "comment line of 8 MiB: every piece is a comment",
		input: "*filter\n" + strings.Repeat("#", 8<<20) + "\n-A INPUT -j ACCEPT\nCOMMIT\n",
		save:  "-A INPUT -j ACCEPT\n"},
	{name: "NUL in a quoted comment ends the line",
		input: "*filter\n-A INPUT -m comment --comment \"a\x00b\" -j ACCEPT\nCOMMIT\n",
		save:  "-A INPUT -m comment --comment a\n"},
	{name: "NUL after a rule",
		input: "*filter\n-A INPUT -j ACCEPT\x00 -j DROP\nCOMMIT\n",
		save:  "-A INPUT -j ACCEPT\n"},
	{name: "NUL at the start of a rule line",
		input:  "*filter\n\x00-A INPUT -j DROP\nCOMMIT\n",
		stderr: "iptables-restore v1.8.9 (nf_tables): no command specified\nError occurred at line: 2\n" + restoreHint, exit: 2},
	{name: "NUL at the start of a line outside a table",
		input:  "\x00\n*filter\nCOMMIT\n",
		stderr: "iptables-restore: line 1 failed\n", exit: 1},
	{name: "NUL in a table name",
		// legacy: "iptables-restore: unable to initialize table 'fil'"
		input:  "*fil\x00ter\nCOMMIT\n",
		stderr: "iptables-restore v1.8.9 (nf_tables): iptables-restore: line 1 table name 'fil' invalid\nError occurred at line: 1\n" + restoreHint, exit: 2},
	{name: "NUL in a chain line",
		input:  "*filter\n:FOO\x00BAR - [0:0]\nCOMMIT\n",
		stderr: "iptables-restore v1.8.9 (nf_tables): iptables-restore: line 2 policy invalid\nError occurred at line: 2\n" + restoreHint, exit: 2},
	{name: "NUL after COMMIT",
		// legacy: "Bad argument `COMMIT'", exit 2
		input: "*filter\n-A INPUT -j ACCEPT\nCOMMIT\x00junk\n",
		save:  "-A INPUT -j ACCEPT\n"},
	{name: "NUL in a bad argument",
		input:  "*filter\n-A INPUT -j ACCEPT foo\x00bar\nCOMMIT\n",
		stderr: "Bad argument `foo'\nError occurred at line: 2\n" + restoreHint, exit: 2},
}

const restoreHint = "Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n"

func paramTooLong(line int) string {
	return "iptables-restore v1.8.9 (nf_tables): Parameter too long!\nError occurred at line: " + itoa(line) + "\n" + restoreHint
}

func tooManyArgs(line int) string {
	return "iptables-restore v1.8.9 (nf_tables): Parser cannot handle more arguments\nError occurred at line: " + itoa(line) + "\n" + restoreHint
}

func TestRestoreLimits(t *testing.T) {
	for _, c := range limitCases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := (&Loader{}).LoadString(c.input)
			if c.stderr == "" {
				if err != nil {
					t.Fatalf("iptables-restore accepts it, uswitch: %v", err)
				}
				if c.save != "" {
					var b strings.Builder
					if err := rs.Save(&b, SaveOptions{}); err != nil {
						t.Fatal(err)
					}
					if got := ruleLines(b.String()); got != c.save {
						t.Errorf("saved rules:\n%s\nwant:\n%s", got, c.save)
					}
				}
				return
			}
			var re *RestoreError
			if !errors.As(err, &re) {
				t.Fatalf("want %q, got %v", c.stderr, err)
			}
			if re.Stderr() != c.stderr || re.ExitCode() != c.exit {
				t.Errorf("got (exit %d):\n%s\nwant (exit %d):\n%s", re.ExitCode(), re.Stderr(), c.exit, c.stderr)
			}
			if strings.IndexByte(re.Stderr(), 0) >= 0 {
				t.Errorf("a NUL in the message: %q", re.Stderr())
			}
		})
	}
}

// TestRestoreCountersWords: with -c the "--set-counters P B" words of a
// "[P:B]" line take three of the 251 places (248 words remain).
func TestRestoreCountersWords(t *testing.T) {
	words := func(n int) string {
		return "*filter\n[1:2] -A INPUT" + strings.Repeat(" -m comment --comment x", (n-3)/4) + " -f\nCOMMIT\n"
	}
	if _, err := (&Loader{Counters: true}).LoadString(words(247)); err != nil {
		t.Fatalf("247 words with -c: %v", err)
	}
	_, err := (&Loader{Counters: true}).LoadString(words(251))
	var re *RestoreError
	if !errors.As(err, &re) || re.Stderr() != tooManyArgs(2) {
		t.Fatalf("251 words with -c: got %v, want %q", err, tooManyArgs(2))
	}
	if _, err := (&Loader{}).LoadString(words(251)); err != nil {
		t.Fatalf("251 words without -c: %v", err)
	}
}

// ruleLines keeps the -A lines of iptables-save output.
func ruleLines(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "-A ") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// TestRestoreLimitsAgainstKernel runs limitCases through the real
// iptables-restore: the same text, exit status and saved rules.
func TestRestoreLimitsAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	ns := kerneltest.NewNetns(t)
	for _, c := range limitCases {
		t.Run(c.name, func(t *testing.T) {
			if _, code, err := ns.Restore("*filter\n:INPUT ACCEPT [0:0]\n:FOO - [0:0]\n-A INPUT -s 9.9.9.9\nCOMMIT\n"); err != nil || code != 0 {
				t.Fatalf("reset: %v %d", err, code)
			}
			kerr, kcode, err := ns.Restore(c.input)
			if err != nil {
				t.Fatal(err)
			}
			if kerr != c.stderr || kcode != c.exit {
				t.Fatalf("the kernel's iptables-restore (exit %d):\n%s\nthe test expects (exit %d):\n%s", kcode, kerr, c.exit, c.stderr)
			}
			if c.save == "" {
				return
			}
			out, err := ns.Save("-t", "filter")
			if err != nil {
				t.Fatal(err)
			}
			if got := ruleLines(out); got != c.save {
				t.Errorf("iptables-save:\n%s\nthe test expects:\n%s", got, c.save)
			}
		})
	}
}
