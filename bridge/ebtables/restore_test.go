package ebtables

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// Restore inputs with commands, several tables and --noflush, compared
// with what ebtables-restore leaves behind (ebtables-save -c).
var restoreSeqs = []struct {
	name    string
	base    string // restored first ("" none)
	in      string
	noflush bool
}{
	{"commands", "", "*filter\n-N b\n-N a\n-P FORWARD DROP\n-A FORWARD -j a\n-A a -j b\n-A b -p ARP -j ACCEPT\n-I b 1 -p IPv4 -j DROP\n-I b -p IPv6\n-P b RETURN\nCOMMIT\n", false},
	{"delete and rename", "*filter\n-N a\n-N b\n-N c\n-A FORWARD -j a\n", "*filter\n-X c\n-E a z\n-E b y\n", true},
	{"delete all user chains", "*filter\n-N a\n-N b\n", "*filter\n-X\n", true},
	{"flush chain", "", "*filter\n-A INPUT -j DROP\n-A FORWARD -j DROP\n-F INPUT\n", false},
	{"flush all", "", "*filter\n-A INPUT -j DROP\n-A FORWARD -j DROP\n-F\n-A OUTPUT -j ACCEPT\n", false},
	{"two tables", "", "*nat\n:PREROUTING DROP\n-A POSTROUTING -j ACCEPT\nCOMMIT\n*filter\n-A OUTPUT -j DROP\nCOMMIT\n", false},
	{"counters", "", "*filter\n-A FORWARD -c 10 2000 -j ACCEPT\n[5:6] -A FORWARD -j DROP\n", false},
	{"flush replaces", "*filter\n-N old\n-A FORWARD -j old\n*nat\n-A OUTPUT -j DROP\n", "*filter\n-A INPUT -j ACCEPT\n", false},
	{"noflush appends", "*filter\n-N old\n-A FORWARD -j old\n", "*filter\n-A old -j ACCEPT\n-A FORWARD -j DROP\n", true},
	{"comments and blanks", "", "# hi\n\n*filter\n\n# x\n:FORWARD DROP\n-A FORWARD -p ip6 -j ACCEPT\n", false},
	{"user chain policies", "", "*filter\n:x DROP\n:y RETURN\n:z ACCEPT\n-A FORWARD -j x\n-A FORWARD -j y\n-A FORWARD -j z\n", false},
	{"quoted prefix", "", "*filter\n-A FORWARD --log-prefix \"a b\" --log-ip\n-A FORWARD --nflog-prefix \"x y z\" --nflog-group 4\n", false},
	// a UTF-8 space (U+00A0) is part of a name; FuzzRestore found it
	{"non-ASCII space in a name", "", "*filter\n:\u00a0 ACCEPT\n-A \u00a0 -j DROP\n-A FORWARD -j \u00a0\n", false},
}

func TestRestoreSeqKernel(t *testing.T) {
	kerneltest.Require(t, "ebtables", "ebtables-restore", "ebtables-save")
	for _, c := range restoreSeqs {
		t.Run(c.name, func(t *testing.T) {
			ns := kerneltest.NewNetns(t)
			var base *Ruleset
			if c.base != "" {
				if _, stderr, code, err := ns.Run(c.base, "ebtables-restore"); err != nil || code != 0 {
					t.Fatalf("base: %d %s %v", code, stderr, err)
				}
				base = mustLoad(c.base)
			}
			args := []string{"ebtables-restore"}
			if c.noflush {
				args = append(args, "--noflush")
			}
			if _, stderr, code, err := ns.Run(c.in, args...); err != nil || code != 0 {
				t.Fatalf("restore: %d %s %v", code, stderr, err)
			}
			rs, lerr := (&Loader{Base: base, NoFlush: c.noflush}).Load(c.in)
			if lerr != nil {
				t.Fatal(lerr)
			}
			sameAsKernelSave(t, ns, rs)
		})
	}
}

// sameAsKernelSave compares rs, saved with counters, with what
// ebtables-save -c prints in ns.
// sameAsKernelRestore restores in with ebtables-restore (and flags) in
// ns and with ld: the same exit status and message, or the same
// ebtables-save -c after it. Differences are reported with t.Errorf.
func sameAsKernelRestore(t *testing.T, ns *kerneltest.Netns, ld *Loader, in string, flags ...string) {
	t.Helper()
	_, stderr, code, err := ns.Run(in, append([]string{"ebtables-restore"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	rs, lerr := ld.Load(in)
	switch {
	case code != 0 && lerr == nil:
		t.Errorf("%q: uswitch loaded it; ebtables-restore exit %d\n%s", in, code, stderr)
	case code != 0 && (lerr.Stderr != stderr || lerr.ExitCode != code):
		t.Errorf("%q: uswitch exit %d\n%s\nebtables-restore exit %d\n%s", in, lerr.ExitCode, lerr.Stderr, code, stderr)
	case code == 0 && lerr != nil:
		t.Errorf("%q: uswitch: %v; ebtables-restore loaded it", in, lerr)
	case code == 0:
		sameAsKernelSave(t, ns, rs)
	}
}

func sameAsKernelSave(t *testing.T, ns *kerneltest.Netns, rs *Ruleset) {
	t.Helper()
	out, _, _, err := ns.Run("", "ebtables-save", "-c")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rs.Save(&b, SaveOptions{Counters: true})
	if want := kerneltest.StripComments(out); b.String() != want {
		t.Errorf("--- uswitch\n%q\n--- ebtables-save\n%q", b.String(), want)
	}
}

// TestEtherAton: glibc's ether_aton on the inputs TestCommandMACKernel
// runs through the real ebtables (no kernel needed here).
func TestEtherAton(t *testing.T) {
	for in, want := range map[string]string{
		"02:00:00:00:00:01":    "02:00:00:00:00:01",
		"02:00:00:00:00:01xyz": "02:00:00:00:00:01",
		"2:0:0:0:0:1":          "02:00:00:00:00:01",
		"02:00:00:00:00:012":   "02:00:00:00:00:01",
		"2:0:0:0:0:1 ":         "02:00:00:00:00:01",
		"02:0A:bc:00:00:01":    "02:0a:bc:00:00:01",
		"02:00:00:00:00:1x":    "",
		"002:00:00:00:00:01":   "",
		"02:00:00:00:00":       "",
		"02:00:00:00:00:":      "",
		"02:00:00:00:00:0g":    "",
		"":                     "",
	} {
		m, ok := etherAton(in)
		got := ""
		if ok {
			got = m.String()
		}
		if got != want {
			t.Errorf("etherAton(%q) = %q, want %q", in, got, want)
		}
	}
}
