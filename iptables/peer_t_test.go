package iptables

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// The iptables project's own extension tests (extensions/*.t, format in
// ../shared/corpus/SOURCES.md), run against uswitch's loader and printer.

// tExtensions are the extensions whose .t lines must hold: the ones the
// rule-language issue lists, plus the base rule syntax.
var tExtensions = map[string]bool{
	"iptables": true, "standard": true,
	"tcp": true, "udp": true, "icmp": true, "multiport": true, "comment": true,
	"mark": true, "connmark": true, "conntrack": true, "state": true,
	"addrtype": true, "statistic": true, "physdev": true, "iprange": true,
	"mac": true, "length": true, "ttl": true, "limit": true, "recent": true,
	"set": true, "owner": true, "pkttype": true, "tos": true, "dscp": true,
	"helper": true, "sctp": true,
	"REJECT": true, "MARK": true, "CONNMARK": true, "DNAT": true, "SNAT": true,
	"MASQUERADE": true, "REDIRECT": true, "NETMAP": true, "LOG": true,
	"NFLOG": true, "TRACE": true, "NOTRACK": true, "CT": true, "TTL": true,
	"TOS": true, "DSCP": true, "CHECKSUM": true, "TCPMSS": true, "NFQUEUE": true,
}

// tLine is one test line of a .t file.
type tLine struct {
	file   string
	line   int
	ext    string
	table  string
	chain  string
	rule   string
	expect string // the save form ("-A CHAIN " excluded)
	result string // OK, FAIL, NOMATCH (for the nft backend)
}

func (l tLine) key() string { return fmt.Sprintf("%s:%d:%s", l.file, l.line, l.chain) }

// tFileExt returns the extension a .t file tests and whether it runs for
// IPv4 iptables at all.
func tFileExt(name string) (string, bool) {
	base := strings.TrimSuffix(name, ".t")
	switch {
	case base == "iptables":
		return "iptables", true
	case strings.HasPrefix(base, "libipt_"):
		return strings.TrimPrefix(base, "libipt_"), true
	case strings.HasPrefix(base, "libxt_"):
		return strings.TrimPrefix(base, "libxt_"), true
	}
	return "", false
}

// readTFiles reads every IPv4 test line of the listed extensions.
func readTFiles(t testing.TB, dir string) []tLine {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []tLine
	for _, e := range ents {
		ext, ok := tFileExt(e.Name())
		if !ok || !tExtensions[ext] {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		table, chains, n := "filter", []string{}, 0
		for sc.Scan() {
			n++
			l := sc.Text()
			switch {
			case l == "" || l[0] == '#' || l[0] == '@' || l[0] == '%':
				continue
			case l[0] == '*':
				table = l[1:]
				continue
			case l[0] == ':':
				chains = strings.Split(l[1:], ",")
				continue
			}
			parts := strings.Split(l, ";")
			if len(parts) < 3 {
				continue
			}
			rule, expect, result := parts[0], parts[1], parts[2]
			if expect == "=" {
				expect = rule
			}
			if len(parts) >= 4 {
				variant := parts[3]
				if variant == "LEGACY" {
					// the result given is legacy's; nft gets the
					// alternative, or the inverse
					if len(parts) >= 5 && parts[4] != "" {
						result = parts[4]
					} else {
						result = map[string]string{"OK": "FAIL", "FAIL": "OK", "NOMATCH": "OK"}[result]
					}
				}
			}
			for _, c := range chains {
				out = append(out, tLine{e.Name(), n, ext, table, c, rule, expect, result})
			}
		}
		f.Close()
	}
	return out
}

// tInput builds the restore input that adds the line's rule.
func tInput(l tLine) string {
	var b strings.Builder
	b.WriteString("*" + l.table + "\n")
	if id, ok := ParseTable(l.table); ok {
		builtin := false
		for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
			if TableHooks(id).Has(h) && h.String() == l.chain {
				builtin = true
			}
		}
		if !builtin {
			b.WriteString(":" + l.chain + " - [0:0]\n")
		}
	}
	b.WriteString("-A " + l.chain + " " + l.rule + "\n")
	b.WriteString("COMMIT\n")
	return b.String()
}

// tOutcome is what happened to a line: refused, or accepted with the
// saved rule lines of its chain.
type tOutcome struct {
	accepted bool
	saved    []string
}

func (o tOutcome) has(chain, expect string) bool {
	want := "-A " + chain + " " + expect
	for _, s := range o.saved {
		if s == want {
			return true
		}
	}
	return false
}

func savedLines(save, chain string) []string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			out = append(out, l)
		}
	}
	return out
}

func runT(l tLine) tOutcome {
	ld := &Loader{Sets: Sets{}}
	rs, err := ld.LoadString(tInput(l))
	if err != nil {
		return tOutcome{}
	}
	var b strings.Builder
	rs.Save(&b, SaveOptions{})
	return tOutcome{accepted: true, saved: savedLines(b.String(), l.chain)}
}

// holds applies iptables-test.py's run_test: a refused rule passes only
// when FAIL was expected; an accepted one fails when FAIL was expected,
// and otherwise passes when its save line is found exactly when the
// result is OK (so NOMATCH, and the odd "=" some lines give as the
// alternative result, pass when the line is absent).
func (l tLine) holds(o tOutcome) bool {
	if !o.accepted {
		return l.result == "FAIL"
	}
	if l.result == "FAIL" {
		return false
	}
	return o.has(l.chain, l.expect) == (l.result == "OK")
}

// readKnown reads lists of "key reason" lines from the files matching
// the glob.
func readKnown(t testing.TB, glob string) map[string]string {
	t.Helper()
	m := map[string]string{}
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l == "" || l[0] == '#' {
				continue
			}
			k, reason, _ := strings.Cut(l, " ")
			m[k] = reason
		}
	}
	return m
}

// onlyExts filters lines by $USWITCH_T_ONLY (comma-separated extension
// names), for working on a few extensions at a time.
func onlyExts(lines []tLine) []tLine {
	only := os.Getenv("USWITCH_T_ONLY")
	if only == "" {
		return lines
	}
	want := map[string]bool{}
	for _, e := range strings.Split(only, ",") {
		want[e] = true
	}
	var out []tLine
	for _, l := range lines {
		if want[l.ext] {
			out = append(out, l)
		}
	}
	return out
}

type tStats struct{ pass, total int }

func report(t *testing.T, title string, stats map[string]*tStats) {
	names := make([]string, 0, len(stats))
	for n := range stats {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	var p, n int
	fmt.Fprintf(&b, "%s\n%-12s %6s %6s\n", title, "extension", "pass", "lines")
	for _, name := range names {
		s := stats[name]
		fmt.Fprintf(&b, "%-12s %6d %6d\n", name, s.pass, s.total)
		p += s.pass
		n += s.total
	}
	fmt.Fprintf(&b, "%-12s %6d %6d\n", "TOTAL", p, n)
	t.Log("\n" + b.String())
	if path := os.Getenv("USWITCH_T_REPORT"); path != "" {
		os.WriteFile(path+"."+strings.Fields(title)[0], []byte(b.String()), 0o644)
	}
}

// TestPeerT runs every IPv4 line of the listed extensions' .t files and
// checks the nft backend's expected result. Lines that still fail are
// listed with their reason in testdata/iptables-t-known-failures*.txt; a
// listed line that passes must be removed from the list.
func TestPeerT(t *testing.T) {
	dir := kerneltest.Corpus(t, "iptables-t")
	lines := onlyExts(readTFiles(t, dir))
	known := readKnown(t, "testdata/iptables-t-known-failures*.txt")
	stats := map[string]*tStats{}
	for _, l := range lines {
		s := stats[l.ext]
		if s == nil {
			s = &tStats{}
			stats[l.ext] = s
		}
		s.total++
		ok := l.holds(runT(l))
		if ok {
			s.pass++
		}
		_, listed := known[l.key()]
		switch {
		case !ok && !listed:
			t.Errorf("%s: %s;%s;%s: does not hold", l.key(), l.rule, l.expect, l.result)
		case ok && listed:
			t.Errorf("%s passes now: remove it from testdata/iptables-t-known-failures*.txt", l.key())
		}
	}
	report(t, "iptables .t expectations (v1.8.11 files, nft backend)", stats)
}

// TestPeerTKernel runs the same lines through this machine's iptables-nft
// in a network namespace and requires uswitch to agree with it: refused
// by both, or accepted by both and saved identically. The kernel is the
// oracle: where a v1.8.11 .t expectation and 1.8.9 disagree, 1.8.9 wins.
func TestPeerTKernel(t *testing.T) {
	kerneltest.Require(t)
	dir := kerneltest.Corpus(t, "iptables-t")
	lines := onlyExts(readTFiles(t, dir))
	known := readKnown(t, "testdata/iptables-t-kernel-known*.txt")
	ns := kerneltest.NewNetns(t)
	stats := map[string]*tStats{}
	var mu sync.Mutex
	for _, l := range lines {
		_, code, err := ns.Restore(tInput(l))
		if err != nil {
			t.Fatal(err)
		}
		var k tOutcome
		if code == 0 {
			save, err := ns.Save("-t", l.table)
			if err != nil {
				t.Fatal(err)
			}
			k = tOutcome{accepted: true, saved: savedLines(save, l.chain)}
		}
		u := runT(l)
		agree := k.accepted == u.accepted && strings.Join(k.saved, "\n") == strings.Join(u.saved, "\n")
		mu.Lock()
		s := stats[l.ext]
		if s == nil {
			s = &tStats{}
			stats[l.ext] = s
		}
		s.total++
		if agree {
			s.pass++
		}
		mu.Unlock()
		_, listed := known[l.key()]
		switch {
		case !agree && !listed:
			t.Errorf("%s: %q: kernel accepted=%v %q, uswitch accepted=%v %q", l.key(), l.rule, k.accepted, k.saved, u.accepted, u.saved)
		case agree && listed:
			t.Errorf("%s agrees now: remove it from testdata/iptables-t-kernel-known*.txt", l.key())
		}
	}
	report(t, "kernel-agreement on .t lines (iptables-nft 1.8.9 in a netns)", stats)
}
