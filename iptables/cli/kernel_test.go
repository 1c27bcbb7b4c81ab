package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// runFile runs `iptables ARGS` against the iptables-save file path.
func runFile(path string, args ...string) (stdout, stderr string, code int) {
	var o, e strings.Builder
	code = Run(args, &File{Path: path}, &FileNames{}, &o, &e)
	return o.String(), e.String(), code
}

var ruleLine = regexp.MustCompile(`(?m)^\[\d+:\d+\] -A `)

// withCounters gives each rule and builtin chain of an iptables-save -c
// text its own counters, large enough for -L's K/M/G columns.
func withCounters(save string) string {
	n := 0
	next := func() string {
		n++
		p := uint64(n*n*n) * 7919
		return fmt.Sprintf("[%d:%d]", p, p*(1000+uint64(n)*37))
	}
	lines := strings.SplitAfter(save, "\n")
	for i, l := range lines {
		switch {
		case ruleLine.MatchString(l):
			lines[i] = next() + l[strings.IndexByte(l, ']')+1:]
		case strings.HasPrefix(l, ":") && !strings.Contains(l, " - ["):
			if k := strings.LastIndexByte(l, '['); k > 0 {
				lines[i] = l[:k] + next() + "\n"
			}
		}
	}
	return strings.Join(lines, "")
}

// TestListingsAgainstKernel restores every corpus rule set the kernel
// accepts, with counters, into a namespace and compares iptables -L (in
// its flag combinations) and -S, per table and per chain, with uswitch
// iptables --file on the kernel's own iptables-save -c of it.
func TestListingsAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	dir := kerneltest.Corpus(t, "iptables-save")
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	flagSets := [][]string{{"-L"}, {"-L", "-n"}, {"-L", "-n", "-v"}, {"-L", "-n", "-v", "-x"},
		{"-L", "-v"}, {"-L", "-n", "--line-numbers"}, {"-L", "-v", "-x", "--line-numbers"}, {"-S"}, {"-S", "-v"}}
	var agree, total, used, refused, lineAgree, lineTotal int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := filepath.Rel(dir, f)
		ns := kerneltest.NewNetns(t)
		if _, code, err := ns.Restore(string(data)); err != nil || code != 0 {
			refused++
			continue
		}
		save, err := ns.Save("-c")
		if err != nil {
			t.Fatal(err)
		}
		input := withCounters(save)
		if e, code, err := ns.Restore(input, "-c"); err != nil || code != 0 {
			t.Errorf("%s: restoring with counters: %d %s", name, code, e)
			continue
		}
		used++
		path := filepath.Join(t.TempDir(), "rules")
		if err := os.WriteFile(path, []byte(input), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, table := range regexp.MustCompile(`(?m)^\*(\w+)$`).FindAllStringSubmatch(save, -1) {
			var cmds [][]string
			for _, fl := range flagSets {
				cmds = append(cmds, append([]string{"-t", table[1]}, fl...))
			}
			for _, ch := range regexp.MustCompile(`(?m)^:(\S+) `).FindAllStringSubmatch(tableText(save, table[1]), -1) {
				cmds = append(cmds, []string{"-t", table[1], "-L", ch[1], "-n", "-v"}, []string{"-t", table[1], "-S", ch[1]})
			}
			for _, args := range cmds {
				total++
				ko, ke, kc, err := ns.Run("", append([]string{"iptables"}, args...)...)
				if err != nil {
					t.Fatal(err)
				}
				uo, ue, uc := runFile(path, args...)
				kl, ul := strings.Split(ko+ke, "\n"), strings.Split(uo+ue, "\n")
				lineTotal += len(kl)
				for i := range kl {
					if i < len(ul) && kl[i] == ul[i] {
						lineAgree++
					}
				}
				if ko == uo && ke == ue && kc == uc {
					agree++
					continue
				}
				t.Errorf("%s: iptables %s differs", name, strings.Join(args, " "))
				if testing.Verbose() || os.Getenv("USWITCH_IPTCLI_DIFF") != "" {
					t.Logf("%s: iptables %s:\n%s", name, strings.Join(args, " "), kerneltest.LineDiff(ko+ke+fmt.Sprint(kc), uo+ue+fmt.Sprint(uc), 6))
				}
			}
		}
	}
	t.Logf("listings: %d/%d commands agree (%d/%d output lines) over %d rule sets (%d refused by the kernel)", agree, total, lineAgree, lineTotal, used, refused)
}

// tableText is the part of an iptables-save text for one table.
func tableText(save, table string) string {
	i := strings.Index(save, "*"+table+"\n")
	if i < 0 {
		return ""
	}
	s := save[i:]
	if j := strings.Index(s, "COMMIT\n"); j >= 0 {
		s = s[:j]
	}
	return s
}

// TestHashlimitListingAgainstKernel lists hashlimit rules in the forms the
// corpus lacks (bytes, rate-match and its interval, masks, table sizes,
// expiry, above, every mode) with the kernel's iptables and with uswitch.
func TestHashlimitListingAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	rules := []string{
		"--hashlimit-upto 10/sec --hashlimit-name a1",
		"--hashlimit-above 3/min --hashlimit-burst 9 --hashlimit-mode srcip,dstport --hashlimit-name a2",
		"--hashlimit-upto 7/hour --hashlimit-mode srcip,srcport,dstip,dstport --hashlimit-name a3 --hashlimit-htable-size 64 --hashlimit-htable-max 512 --hashlimit-htable-gcinterval 500 --hashlimit-htable-expire 9000",
		"--hashlimit-upto 2/day --hashlimit-mode dstip --hashlimit-dstmask 24 --hashlimit-srcmask 16 --hashlimit-name a4",
		"--hashlimit-upto 1mb/s --hashlimit-name a5",
		"--hashlimit-above 512kb/s --hashlimit-burst 2mb --hashlimit-mode srcip --hashlimit-name a6",
		"--hashlimit-upto 1000b/s --hashlimit-burst 5000b --hashlimit-name a7 --hashlimit-htable-expire 1234",
		"--hashlimit-upto 5/sec --hashlimit-rate-match --hashlimit-name a8",
		"--hashlimit-upto 6/min --hashlimit-rate-match --hashlimit-rate-interval 5 --hashlimit-mode srcip --hashlimit-name a9",
		"--hashlimit-above 100kb/s --hashlimit-rate-match --hashlimit-rate-interval 3 --hashlimit-name a10",
		"--hashlimit-upto 1/sec --hashlimit-rate-match --hashlimit-rate-interval 1 --hashlimit-name a11",
		"--hashlimit-upto 333/sec --hashlimit-burst 1000 --hashlimit-name a12",
		"--hashlimit-upto 7/sec --hashlimit-name a13 --hashlimit-htable-expire 1000",
	}
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, r := range rules {
		b.WriteString("-A INPUT -p tcp -m hashlimit " + r + " -j ACCEPT\n")
	}
	b.WriteString("COMMIT\n")
	ns := kerneltest.NewNetns(t)
	if e, code, err := ns.Restore(b.String()); err != nil || code != 0 {
		t.Fatalf("kernel refuses the hashlimit rules: %d %s %v", code, e, err)
	}
	save, err := ns.Save("-c")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules")
	if err := os.WriteFile(path, []byte(save), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-L", "INPUT"}, {"-L", "INPUT", "-n"}, {"-L", "INPUT", "-n", "-v"}, {"-S", "INPUT"}} {
		ko, ke, kc, err := ns.Run("", append([]string{"iptables"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(regexp.MustCompile(`(?m)^.*limit.*$`).FindAllString(ko, -1)); n != len(rules) {
			t.Fatalf("kernel's iptables %s lists %d hashlimit rules, want %d:\n%s%s", strings.Join(args, " "), n, len(rules), ko, ke)
		}
		if testing.Verbose() {
			t.Logf("kernel: iptables %s:\n%s", strings.Join(args, " "), ko)
		}
		uo, ue, uc := runFile(path, args...)
		if ko != uo || ke != ue || kc != uc {
			t.Errorf("iptables %s differs:\n%s", strings.Join(args, " "), kerneltest.LineDiff(ko+ke+fmt.Sprint(kc), uo+ue+fmt.Sprint(uc), 6))
		}
	}
}
