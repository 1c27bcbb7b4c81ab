package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/iptables"
)

// sequences are command lines run in order on a fresh kernel namespace
// and on an empty uswitch --file; each must print, fail and exit the
// same, and leave the same iptables-save behind.
var sequences = [][]string{
	{
		"-N FOO", "-N FOO", "-N \"\"", "-A INPUT -j FOO", "-A INPUT -p tcp --dport 22 -j ACCEPT",
		"-I INPUT 2 -s 10.0.0.0/8 -j DROP", "-I INPUT 9 -j ACCEPT", "-C INPUT -j DROP",
		"-C INPUT -s 10.0.0.0/8 -j DROP", "-D INPUT -p tcp -j ACCEPT", "-D INPUT 7",
		"-R INPUT 9 -j ACCEPT", "-R INPUT 1 -p udp --sport 53 -j FOO", "-X FOO", "-X INPUT",
		"-E FOO INPUT", "-E NOPE X", "-E FOO BAR", "-P INPUT DROP", "-P FOO DROP", "-P INPUT FOO",
		"-L NOPE", "-S NOPE", "-F NOPE", "-Z NOPE", "-A NOPE -j ACCEPT", "-A INPUT -j NOSUCH",
		"-S", "-S INPUT 1", "-S INPUT 9", "-L INPUT 1", "-L INPUT 0", "-L -Z INPUT -n", "-F INPUT", "-X", "-X BAR",
	},
	{
		"-t nat -N DOCKER", "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
		"-t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
		"-t nat -A DOCKER -i docker0 -j RETURN", "-t nat -A DOCKER ! -i docker0 -p tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
		"-t nat -P POSTROUTING DROP", "-t nat -L -n", "-t nat -S", "-t nat -D DOCKER 1", "-t nat -F", "-t nat -X",
		"-t foo -L", "-t raw -A PREROUTING -p udp --dport 4789 -j NOTRACK", "-t raw -L -n -v",
	},
	{
		"-A OUTPUT -d 1.2.3.4,5.6.7.8 -j ACCEPT", "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		"-A FORWARD -p icmp --icmp-type echo-request -m limit --limit 5/s -j ACCEPT",
		"-A FORWARD -m comment --comment \"two words\" -j REJECT --reject-with tcp-reset -p tcp",
		"-D OUTPUT -d 1.2.3.4,5.6.7.8 -j ACCEPT", "-L -v -n --line-numbers", "-L", "-Z FORWARD 2",
		"-Z", "-L -n -v -x", "-A INPUT -x", "-L -s 1.2.3.4", "-N X -n", "-D INPUT 1 -v", "-S -n", "-L -Z -F",
		"", "-L INPUT -j ACCEPT", "-C INPUT --line-numbers", "-V", "-F -v", "-Z -v",
	},
	{
		// -v echoes the rules -A, -I, -R, -D and -C name, where
		// iptables-nft prints them (also into a missing chain for -A,
		// not past a missing rule for -D and -C)
		"-v -A INPUT -s 1.2.3.4 -p tcp --dport 22 -j DROP", "-v -I INPUT 1 -i eth0 -d 10.0.0.0/8 -j ACCEPT",
		"-v -A INPUT -s 1.1.1.1,2.2.2.2 -d 3.3.3.3,4.4.4.4 -j ACCEPT", "-v -C INPUT -s 1.2.3.4 -p tcp --dport 22 -j DROP",
		"-v -C INPUT -s 9.9.9.9 -j ACCEPT", "-v -C INPUT -s 1.1.1.1,9.9.9.9 -d 3.3.3.3 -j ACCEPT",
		"-v -D INPUT -s 1.2.3.4 -p tcp --dport 22 -j DROP", "-v -D INPUT -s 8.8.8.8 -j ACCEPT",
		"-v -D INPUT -s 2.2.2.2,8.8.8.8 -d 4.4.4.4 -j ACCEPT", "-v -R INPUT 1 -j ACCEPT", "-v -R INPUT 40 -j ACCEPT",
		"-v -I INPUT 40 -j ACCEPT", "-v -I NOSUCH -j ACCEPT", "-v -A NOSUCH -j ACCEPT", "-v -A INPUT -j NOSUCHT",
		"-N FOO", "-v -A INPUT -m comment --comment \"hi there\" -p udp -m multiport --dports 1,2 ! -i lo -g FOO",
		"-v -A INPUT -f -j REJECT --reject-with tcp-reset -p tcp", "-v -A INPUT ! -p 6 -j LOG --log-prefix \"x: \"",
		"-v -A INPUT -p 99 -j ACCEPT", "-v -A INPUT -s 10.0.0.0/255.0.255.0 ! -d 10.0.0.0/8 -j ACCEPT",
		"-v -t nat -A POSTROUTING -o eth1 -j MASQUERADE", "-v -A FOO -m conntrack --ctstate NEW -m limit --limit 3/min -j ACCEPT",
		"-v -D INPUT 1", "-S",
	},
}

// builtinSequences make and delete builtin chains: iptables-nft 1.8.9
// makes one only when a command names it (-P, -A, -I, -R, -F; -Z and -X
// of one it has not made say ENOENT), and -X deletes one that is empty
// with policy ACCEPT (counters and all) and refuses one with policy DROP
// ("Directory not empty"). They run against a rule set held in memory,
// as a running uswitch holds it: a --file is an iptables-save text,
// which shows every builtin chain, so a chain read back from it is
// always made.
var builtinSequences = [][]string{
	{
		"-Z INPUT", "-X INPUT", "-F INPUT", "-X INPUT", "-X INPUT", "-Z INPUT", "-P INPUT DROP", "-X INPUT",
		"-X", "-P INPUT ACCEPT", "-X", "-Z INPUT", "-A OUTPUT -j ACCEPT", "-X OUTPUT", "-X", "-S",
		"-I FORWARD 2 -j ACCEPT", "-X FORWARD", "-R FORWARD 1 -j DROP", "-X FORWARD", "-N foo", "-X FORWARD",
		"-D OUTPUT 1", "-X OUTPUT", "-X OUTPUT", "-t nat -A POSTROUTING -j MASQUERADE", "-t nat -F", "-t nat -X",
		"-t nat -Z POSTROUTING", "-t nat -X PREROUTING", "-t nat -S",
	},
}

// memory is a Backend that keeps the rule set in memory, as the control
// socket's does.
type memory struct{ rs *iptables.Ruleset }

func (m *memory) Load() (*iptables.Ruleset, error) { return m.rs, nil }

func (m *memory) Store(next *iptables.Ruleset) error { m.rs = next; return nil }

// TestCommandsAgainstKernel runs the sequences on the real iptables and
// on uswitch iptables, with the rule set in a --file and in memory (and
// builtinSequences in memory only).
func TestCommandsAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	var agree, total int
	type run struct {
		seq  []string
		file bool
	}
	var runs []run
	for _, seq := range sequences {
		runs = append(runs, run{seq, true}, run{seq, false})
	}
	for _, seq := range builtinSequences {
		runs = append(runs, run{seq, false})
	}
	for i, r := range runs {
		ns := kerneltest.NewNetns(t)
		path := filepath.Join(t.TempDir(), "rules")
		mem := &memory{}
		for _, line := range r.seq {
			args := splitArgs(line)
			total++
			ko, ke, kc, err := ns.Run("", append([]string{"iptables"}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			ksave, err := ns.Save()
			if err != nil {
				t.Fatal(err)
			}
			var uo, ue, usave string
			var uc int
			if r.file {
				uo, ue, uc = runFile(path, args...)
				usave = fileSave(t, path)
			} else {
				var o, e, b strings.Builder
				uc = Run(args, mem, &FileNames{}, &o, &e)
				uo, ue = o.String(), e.String()
				if mem.rs != nil {
					mem.rs.Save(&b, iptables.SaveOptions{})
				}
				usave = b.String()
			}
			if ko == uo && ke == ue && kc == uc && ksave == usave {
				agree++
				continue
			}
			t.Errorf("run %d (file %v): iptables %s:\n%s%s", i, r.file, line,
				kerneltest.LineDiff(ko+ke+fmt.Sprint(kc), uo+ue+fmt.Sprint(uc), 6), kerneltest.LineDiff(ksave, usave, 6))
		}
	}
	t.Logf("commands: %d/%d agree (output, error, exit status and iptables-save after each)", agree, total)
}

// fileSave is iptables-save of the file's rule set (without counters).
func fileSave(t *testing.T, path string) string {
	rs, err := (&File{Path: path}).Load()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rs.Save(&b, iptables.SaveOptions{})
	return b.String()
}

// splitArgs splits a command line as a shell would (double quotes only).
func splitArgs(s string) []string {
	var out []string
	var cur strings.Builder
	in, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			in, have = !in, true
		case r == ' ' && !in:
			if have {
				out = append(out, cur.String())
			}
			cur.Reset()
			have = false
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// TestHelpAgainstKernel compares -h, -m NAME -h, -j NAME -h and
// -p tcp/udp/icmp -h with the real iptables for every extension uswitch
// implements.
func TestHelpAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	ns := kerneltest.NewNetns(t)
	cmds := [][]string{{"-h"}, {"--help"}, {"-p", "tcp", "-h"}, {"-p", "udp", "--help"}, {"-p", "icmp", "-h"}, {"-m", "tcp", "-j", "REJECT", "-h"}}
	for _, m := range iptables.Matches() {
		cmds = append(cmds, []string{"-m", m, "--help"})
	}
	for _, tg := range iptables.Targets() {
		cmds = append(cmds, []string{"-j", tg, "--help"})
	}
	agree := 0
	for _, args := range cmds {
		ko, ke, kc, err := ns.Run("", append([]string{"iptables"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var o, e strings.Builder
		uc := Run(args, &File{Path: filepath.Join(t.TempDir(), "x")}, nil, &o, &e)
		if ko == o.String() && ke == e.String() && kc == uc {
			agree++
			continue
		}
		t.Errorf("iptables %s:\n%s", strings.Join(args, " "), kerneltest.LineDiff(ko+ke+fmt.Sprint(kc), o.String()+e.String()+fmt.Sprint(uc), 6))
	}
	t.Logf("help: %d/%d agree", agree, len(cmds))
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
