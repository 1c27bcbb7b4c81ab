package iptables

import (
	"errors"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// restoreErrorCases are inputs iptables-restore refuses; uswitch must
// refuse them with the same text and exit status.
var restoreErrorCases = []struct {
	name, input string
}{
	{"no table", "-A INPUT -j ACCEPT\n"},
	{"bad table", "*filtre\nCOMMIT\n"},
	{"missing commit", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n"},
	{"append to missing chain", "*filter\n-A NOPE -j ACCEPT\nCOMMIT\n"},
	{"bad policy", "*filter\n:INPUT FOO [0:0]\nCOMMIT\n"},
	{"jump to missing chain", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NOPE\nCOMMIT\n"},
	{"jump before -N", "*filter\n:FOO - [0:0]\n-A FOO -g FOO2\n-N FOO2\nCOMMIT\n"},
	{"delete missing chain", "*filter\n:A - [0:0]\n-X A\n-X B\nCOMMIT\n"},
	{"delete referenced chain", "*filter\n:A - [0:0]\n-A INPUT -j A\n-X A\nCOMMIT\n"},
	{"delete missing rule", "*filter\n-D INPUT -j ACCEPT\nCOMMIT\n"},
	{"delete missing rule number", "*filter\n-D INPUT 3\nCOMMIT\n"},
	{"insert too far", "*filter\n-I INPUT 3 -j ACCEPT\nCOMMIT\n"},
	{"replace missing", "*filter\n-R INPUT 1 -j ACCEPT\nCOMMIT\n"},
	{"policy on user chain", "*filter\n-P INPUT DROP\n-P FOO DROP\nCOMMIT\n"},
	{"bad policy name", "*filter\n-P INPUT BLAH\nCOMMIT\n"},
	{"loop", "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -j A\nCOMMIT\n"},
	{"unknown match", "*filter\n-A INPUT -m nosuchmatch --x 1 -j ACCEPT\nCOMMIT\n"},
	{"unknown option", "*filter\n-A INPUT -p tcp --nosuch 1 -j ACCEPT\nCOMMIT\n"},
	{"stray word", "*filter\n-A INPUT 1.2.3.4 -j ACCEPT\nCOMMIT\n"},
	{"two protocols", "*filter\n-A INPUT -p tcp -p udp -j ACCEPT\nCOMMIT\n"},
	{"tcp without -p", "*filter\n-A INPUT -m tcp --dport 1 -j ACCEPT\nCOMMIT\n"},
	{"bad port", "*filter\n-A INPUT -p tcp --dport 70000 -j ACCEPT\nCOMMIT\n"},
	{"bad address", "*filter\n-A INPUT -s 1.2.3.4/33 -j ACCEPT\nCOMMIT\n"},
	{"-o in INPUT", "*filter\n-A INPUT -o eth0 -j ACCEPT\nCOMMIT\n"},
	{"DROP in nat", "*nat\n-A PREROUTING -j DROP\nCOMMIT\n"},
	{"-t in restore", "*filter\n-t nat -A INPUT -j ACCEPT\nCOMMIT\n"},
	{"double bang", "*filter\n-A INPUT ! ! -s 1.2.3.4 -j ACCEPT\nCOMMIT\n"},
	{"trailing bang", "*filter\n-A INPUT -j ACCEPT !\nCOMMIT\n"},
	{"no command", "*filter\n-s 1.2.3.4\nCOMMIT\n"},
	{"chain name too long", "*filter\n:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA - [0:0]\nCOMMIT\n"},
	{"missing argument", "*filter\n-A INPUT -s\nCOMMIT\n"},
	{"second table fails", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n*nat\n-A NOPE -j ACCEPT\nCOMMIT\n"},
	{"counters required", "*filter\n:INPUT ACCEPT\nCOMMIT\n"},
	// tokenize_rule_counters' two strtok calls (netfilter.CutRuleCounters)
	{"counters without ]", "*filter\n[1:2 -A INPUT -j ACCEPT\nCOMMIT\n"},
	{"counters without :", "*filter\n[12] -A INPUT -j ACCEPT\nCOMMIT\n"},
	{"counters without bytes", "*filter\n[1:] -A INPUT -j ACCEPT\nCOMMIT\n"},
	{"counters cut the command", "*filter\n[1] -A INPUT -j ACCEPT:x\nCOMMIT\n"},
	{"counters cut the command at ]", "*filter\n[1:2 x] -A INPUT -j ACCEPT]x\nCOMMIT\n"},
}

func TestRestoreErrorsAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	ns := kerneltest.NewNetns(t)
	for _, c := range restoreErrorCases {
		t.Run(c.name, func(t *testing.T) {
			kerr, kcode, err := ns.Restore(c.input)
			if err != nil {
				t.Fatal(err)
			}
			_, uerr := (&Loader{}).LoadString(c.input)
			if kcode == 0 {
				if uerr != nil {
					t.Errorf("kernel accepted, uswitch: %v", uerr)
				}
				return
			}
			var re *RestoreError
			if !errors.As(uerr, &re) {
				t.Fatalf("kernel refused with %q, uswitch: %v", kerr, uerr)
			}
			if re.Stderr() != kerr || re.ExitCode() != kcode {
				t.Errorf("kernel (exit %d):\n%s\nuswitch (exit %d):\n%s", kcode, kerr, re.ExitCode(), re.Stderr())
			}
		})
	}
}

// TestNothingHalfApplied: a failure in a later table leaves nothing of
// the input applied, and the base rule set is untouched.
func TestNothingHalfApplied(t *testing.T) {
	base, err := (&Loader{}).LoadString("*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	ld := &Loader{Base: base}
	rs, err := ld.LoadString("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n*nat\n-A NOPE -j ACCEPT\nCOMMIT\n")
	if err == nil || rs != nil {
		t.Fatalf("want an error and no rule set, got %v, %v", rs, err)
	}
	if c := base.Tables[Filter].Chain("INPUT"); c.Policy != VerdictDrop || len(c.Rules) != 1 {
		t.Fatalf("base rule set changed: policy %v, %d rules", c.Policy, len(c.Rules))
	}
}

// TestNoflushAgainstKernel: --noflush keeps what the tables held and adds
// to it, as iptables-restore --noflush does in the kernel.
func TestNoflushAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	base := "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -s 10.0.0.0/8 -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n"
	for _, c := range []struct{ name, input string }{
		{"append", "*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-I A 1 -s 192.168.0.0/16 -j RETURN\nCOMMIT\n"},
		{"redeclare user chain flushes it", "*filter\n:A - [0:0]\n-A A -j DROP\nCOMMIT\n"},
		{"new chain and policy", "*filter\n:B - [0:0]\n:FORWARD DROP [0:0]\n-A FORWARD -j B\nCOMMIT\n"},
		{"delete rule", "*filter\n-D A -s 10.0.0.0/8 -j ACCEPT\nCOMMIT\n"},
		{"other table untouched", "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j NOTRACK\nCOMMIT\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := kerneltest.NewNetns(t)
			if e, code, err := ns.Restore(base); err != nil || code != 0 {
				t.Fatalf("base: %v %d %s", err, code, e)
			}
			kerr, kcode, err := ns.Restore(c.input, "--noflush")
			if err != nil {
				t.Fatal(err)
			}
			b, err := (&Loader{}).LoadString(base)
			if err != nil {
				t.Fatal(err)
			}
			rs, uerr := (&Loader{Base: b, NoFlush: true}).LoadString(c.input)
			if kcode != 0 {
				if uerr == nil {
					t.Fatalf("kernel refused (%s), uswitch accepted", kerr)
				}
				return
			}
			if uerr != nil {
				t.Fatalf("kernel accepted, uswitch: %v", uerr)
			}
			want, err := ns.Save()
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			rs.Save(&got, SaveOptions{})
			if got.String() != want {
				t.Errorf("differs:\n%s", kerneltest.LineDiff(want, got.String(), 5))
			}
		})
	}
}
