package iptables

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bench/rulegen"
	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// corpusFiles lists every rule file of ../shared/corpus/iptables-save.
func corpusFiles(t testing.TB) []string {
	dir := kerneltest.Corpus(t, "iptables-save")
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// uswitchSave loads input and prints it; on error it returns the
// RestoreError.
func uswitchSave(input string) (string, *RestoreError, error) {
	rs, err := (&Loader{Sets: Sets{}}).LoadString(input)
	if err != nil {
		var re *RestoreError
		if errors.As(err, &re) {
			return "", re, nil
		}
		return "", nil, err
	}
	var b strings.Builder
	if err := rs.Save(&b, SaveOptions{}); err != nil {
		return "", nil, err
	}
	return b.String(), nil, nil
}

var kernelLineRE = regexp.MustCompile(`(?m)(?:line:? |at line )(\d+)`)

// kernelErrLine finds the line number in iptables-restore's stderr.
func kernelErrLine(stderr string) int {
	m := kernelLineRE.FindStringSubmatch(stderr)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// checkAgainstKernel restores input in a fresh namespace and requires
// uswitch to agree: the same iptables-save output, or a refusal on the
// same line.
func checkAgainstKernel(t *testing.T, name, input string) {
	t.Helper()
	ns := kerneltest.NewNetns(t)
	stderr, code, err := ns.Restore(input)
	if err != nil {
		t.Fatal(err)
	}
	got, uerr, err := uswitchSave(input)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		kl := kernelErrLine(stderr)
		if uerr == nil {
			t.Errorf("%s: kernel refused at line %d (%q) but uswitch accepted it", name, kl, strings.TrimSpace(stderr))
			return
		}
		if uerr.Line != kl {
			t.Errorf("%s: kernel refused at line %d (%q), uswitch at line %d (%q)", name, kl, strings.TrimSpace(stderr), uerr.Line, uerr.Error())
		}
		return
	}
	if uerr != nil {
		t.Errorf("%s: kernel accepted it, uswitch refused: %s", name, uerr.Error())
		return
	}
	want, err := ns.Save()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%s: iptables-save differs:\n%s", name, kerneltest.LineDiff(want, got, 5))
	}
}

// TestCorpusKernelRoundTrip is the kernel round trip of every real-world
// dump in ../shared/corpus/iptables-save.
func TestCorpusKernelRoundTrip(t *testing.T) {
	kerneltest.Require(t)
	for _, f := range corpusFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) { checkAgainstKernel(t, name, string(data)) })
	}
}

// TestNewlineNameAgainstKernel: a quote left open to the end of the
// line puts the newline into an interface name ("-i\"" names "-i<NL>"),
// and quotes put blanks and tabs into one; the kernel's iptables-save
// prints such names raw and iptables-restore reads that back without
// the newline or the blanks at its ends, or refuses it. FuzzLoad found
// the first inputs.
func TestNewlineNameAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	for _, in := range []string{
		"*filter\n-A INPUT -i\"\nCOMMIT\n",
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i -i\n\nCOMMIT\n",
		"*filter\n-A OUTPUT ! -o eth\"0\nCOMMIT\n",
		// iptables -A INPUT '-i"' saves this (FuzzCommandLine in cli)
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i -i\"\nCOMMIT\n",
		// a name with a blank and a newline (FuzzLoad), and its printed
		// form, which neither tool loads back (Bad argument `0' at line 5)
		"*filter 000000000000000\n-AINPUT -\"i0000000 0\nCOMMIT\n",
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i -i0000000 0\n\nCOMMIT\n",
		// the rule's rest after such a name goes to the next line,
		// which neither tool loads back (no command specified, line 6)
		"*filter\n-AFORWARD -j LOG -i0\"\nCOMMIT\n",
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -i -i0\n -j LOG\nCOMMIT\n",
		// quoted blanks and tabs in a name, printed raw: the printed
		// form loads without the blank at the end ("-i -i ", which
		// CI's FuzzLoad found), or not at all ("-i a b": Bad
		// argument `b')
		"*filter \n-AINPUT -\"i \"\nCOMMIT",
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i -i \nCOMMIT\n",
		"*filter\n-A INPUT -i \"a b\"\nCOMMIT\n",
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i a b\nCOMMIT\n",
		"*filter\n-A OUTPUT -o \"\tx\"\nCOMMIT\n",
		// a name that is a newline alone (CI's FuzzLoad): printed
		// "-i " and a blank line, which neither tool loads back
		"*filter\n-AINPUT -i \"\nCOMMIT\n",
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i \n\nCOMMIT\n",
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -o \tx\nCOMMIT\n",
	} {
		checkAgainstKernel(t, fmt.Sprintf("%q", in), in)
	}
}

// TestCorpusStable needs no kernel: every corpus file either fails with a
// located error or loads to a form that loads back to itself.
func TestCorpusStable(t *testing.T) {
	for _, f := range corpusFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, uerr, err := uswitchSave(string(data))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if uerr != nil {
			if uerr.Line <= 0 {
				t.Errorf("%s: error without a line: %v", f, uerr)
			}
			continue
		}
		again, uerr2, err := uswitchSave(out)
		if err != nil || uerr2 != nil {
			t.Errorf("%s: printed form does not load back: %v %v", filepath.Base(f), err, uerr2)
			continue
		}
		if again != out {
			t.Errorf("%s: printed form is not a fixed point:\n%s", filepath.Base(f), kerneltest.LineDiff(out, again, 5))
		}
	}
}

// TestGeneratedKernelRoundTrip runs generated rule sets (kube-proxy
// shaped, long chains, random mixes of the supported extensions) through
// the kernel and uswitch.
func TestGeneratedKernelRoundTrip(t *testing.T) {
	kerneltest.Require(t)
	sets := map[string]string{
		"kube-proxy-300": rulegen.KubeProxy(300),
		"filter-2000":    rulegen.FilterChain(2000),
	}
	for seed := uint64(1); seed <= 6; seed++ {
		for _, table := range []string{"raw", "mangle", "filter", "security", "nat"} {
			sets[fmt.Sprintf("random-%s-%d", table, seed)] = rulegen.Random(seed, table, 60)
		}
	}
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) { checkAgainstKernel(t, name, sets[name]) })
	}
}
