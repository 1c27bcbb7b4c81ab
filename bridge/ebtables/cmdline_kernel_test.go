package ebtables

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// The ebtables command against this machine's ebtables (ebtables-nft
// 1.8.9) in a throw-away namespace: the same command lines run on both,
// and their stdout, stderr and exit status, then the state they leave
// (-L --Lc of filter and nat, ebtables-save -c), must agree.

// cmdHarness runs commands on the kernel and on a Ruleset side by side.
type cmdHarness struct {
	t  *testing.T
	ns *kerneltest.Netns
	rs *Ruleset
	n  int // commands run
}

func newCmdHarness(t *testing.T) *cmdHarness {
	kerneltest.Require(t, "ebtables", "ebtables-save", "ebtables-restore")
	return &cmdHarness{t: t, ns: kerneltest.NewNetns(t), rs: &Ruleset{}}
}

// cmdOpts are this machine's: no CONFIG_NFT_BRIDGE_META.
var cmdOpts = CmdOptions{NoBridgeMeta: true}

// uswitch runs one command on h.rs as the cli package does.
func (h *cmdHarness) uswitch(args []string) (stdout, stderr string, code int) {
	cl, err := ParseCommandLine(args, cmdOpts)
	if err != nil {
		return "", err.Stderr, err.Code
	}
	var out strings.Builder
	next, err := h.rs.Exec(cl, &out)
	if err != nil {
		return out.String(), err.Stderr, err.Code
	}
	if next != nil {
		h.rs = next
	}
	return out.String(), "", 0
}

// run runs args on both and reports a difference; it returns the exit
// status (the kernel's).
func (h *cmdHarness) run(args ...string) int {
	h.t.Helper()
	h.n++
	ko, ke, kc, err := h.ns.Run("", append([]string{"ebtables"}, args...)...)
	if err != nil {
		h.t.Fatal(err)
	}
	uo, ue, uc := h.uswitch(args)
	if kc < 0 {
		// ebtables itself died of a signal: nothing to compare
		// (-L of a rule "-i ! +" makes 1.8.9 crash)
		h.t.Logf("ebtables %s: ebtables crashed; uswitch: exit %d", quoteArgs(args), uc)
		return uc
	}
	if ko != uo || ke != ue || kc != uc {
		if len(ko) > 2000 {
			ko, uo = firstDiff(ko, uo)
		}
		h.t.Errorf("ebtables %s:\n--- uswitch (exit %d)\n%s%s--- ebtables (exit %d)\n%s%s", quoteArgs(args), uc, uo, ue, kc, ko, ke)
	}
	return kc
}

// state compares what both hold: the listings with counters and the
// save form.
func (h *cmdHarness) state(what string) bool {
	h.t.Helper()
	ok := true
	for _, tbl := range []string{"filter", "nat"} {
		ko, _, _, _ := h.ns.Run("", "ebtables", "-t", tbl, "-L", "--Lc", "--Ln")
		uo, _, _ := h.uswitch([]string{"-t", tbl, "-L", "--Lc", "--Ln"})
		if ko != uo {
			h.t.Errorf("after %s: -t %s -L --Lc --Ln:\n--- uswitch\n%s--- ebtables\n%s", what, tbl, uo, ko)
			ok = false
		}
	}
	ks, _, _, _ := h.ns.Run("", "ebtables-save", "-c")
	var us strings.Builder
	h.rs.Save(&us, SaveOptions{Counters: true})
	if k := kerneltest.StripComments(ks); k != us.String() {
		h.t.Errorf("after %s: ebtables-save -c:\n--- uswitch\n%s--- ebtables\n%s", what, us.String(), k)
		ok = false
	}
	return ok
}

// firstDiff cuts two long texts to the first line where they differ.
func firstDiff(a, b string) (string, string) {
	al, bl := strings.SplitAfter(a, "\n"), strings.SplitAfter(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d: %s", i+1, al[i]), fmt.Sprintf("line %d: %s", i+1, bl[i])
		}
	}
	return fmt.Sprintf("%d lines\n", len(al)), fmt.Sprintf("%d lines\n", len(bl))
}

func quoteArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t'\"!") {
			b.WriteString("'" + a + "'")
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// cmdScript is a sequence of command lines: every command, option and
// error path of do_commandeb that ebtables-nft 1.8.9 reaches, in an
// order where each sees the state the ones before left.
var cmdScript = [][]string{
	{"-L"}, {"-L", "nochain"}, {"-t", "nat", "-L", "nochain"}, {"-t", "broute", "-L"}, {"-t", "bogus", "-L"},
	{"-t", "filter", "-t", "nat", "-L"}, {"--table=nat", "-L"}, {"-tnat", "-L", "--Lc"}, {"-t"},
	{"-F"}, {"-Z"}, {"-X"}, {"-X", "INPUT"}, {"-F", "nochain"}, {"-Z", "nochain"},
	{"-A", "FORWARD", "-j", "DROP"}, {"-A", "FORWARD", "-j", "ACCEPT"}, {"-A", "FORWARD", "-p", "ARP", "-j", "ACCEPT"},
	// command_jump's target name checks (not for CONTINUE)
	{"-A", "FORWARD", "-j", "a b"}, {"-A", "FORWARD", "-j", "DROP\r"}, {"-A", "FORWARD", "-j", strings.Repeat("t", 28)},
	{"-A", "FORWARD", "-j", strings.Repeat("t", 29)}, {"-A", "FORWARD", "-j", "a\vb"},
	{"-A", "FORWARD", "-p", "IPv6", "-j", "ACCEPT"}, {"-A", "FORWARD", "-p", "IPv4", "-j", "ACCEPT"},
	{"-D", "FORWARD", "1:2"}, {"-D", "FORWARD", "2:"}, {"-A", "FORWARD", "-j", "DROP"}, {"-A", "FORWARD", "-j", "CONTINUE"},
	{"-D", "FORWARD", ":2"}, {"-I", "FORWARD", "3", "-j", "DROP"}, {"-I", "FORWARD", "5", "-j", "DROP"},
	{"-I", "FORWARD", "-j", "RETURN"}, {"-I", "FORWARD", "0", "-j", "DROP"}, {"-I", "FORWARD", "x", "-j", "DROP"},
	{"-I", "FORWARD", "0x1", "-p", "0x0800", "-j", "DROP"},
	{"-L", "--Ln"}, {"-L", "--Lc", "--Ln"}, {"-L", "--Lx"}, {"-L", "--Lmac2"}, {"-L", "--Lx", "--Lc"},
	{"-L", "FORWARD"}, {"-L", "FORWARD", "--Lc"}, {"-L", "--Ln", "--Lx"}, {"-L", "--Lx", "--Ln"},
	{"-L", "--Lc", "--Lc"}, {"--Lc", "-L"}, {"-F", "--Lc"}, {"-L", "--Lc", "FORWARD"}, {"-LFORWARD"}, {"--list=FORWARD"},
	{"-vL"}, {"-Lv"}, {"-L", "-L"}, {"-L", "-F"}, {"-F", "-L"}, {"-Z", "-Z"}, {"-Z", "-F"}, {"-Z", "-L"}, {"-L", "-Z"},
	{"-Z", "FORWARD", "-L"}, {"-L", "-Z", "FORWARD"}, {"-Z", "FORWARD", "-L", "INPUT"}, {"-L", "FORWARD", "x"},
	{"-A", "FORWARD", "-j", "nochain"}, {"-A", "nochain", "-j", "ACCEPT"}, {"-I", "nochain", "-j", "ACCEPT"},
	{"-D", "nochain", "-j", "ACCEPT"}, {"-D", "nochain", "1"}, {"-D", "FORWARD", "-j", "nochain"},
	{"-N", "a"}, {"-N", "a"}, {"-N", "FORWARD"}, {"-N", "-x"}, {"-N", "!"}, {"-N", "a", "b"}, {"-N", "bar", "-P", "DROP"},
	{"-L", "bar"}, {"-P", "bar", "ACCEPT"}, {"-P", "bar", "RETURN"}, {"-P", "FORWARD", "RETURN"},
	{"-P", "FORWARD", "FOO"}, {"-P", "FORWARD", "CONTINUE"}, {"-P", "nothere", "DROP"}, {"-P", "FORWARD"}, {"-P"},
	{"-P", "FORWARD", "DROP", "x"}, {"-P", "OUTPUT", "DROP"},
	{"-A", "FORWARD", "-j", "a"}, {"-X"}, {"-X", "a"}, {"-X", "nothere"}, {"-X", "FORWARD"},
	{"-E", "bar", "baz"}, {"-E", "nothere", "x"}, {"-E", "baz"}, {"-E", "baz", "a", "b"}, {"-E", "baz", "a"},
	{"-E", "baz", "x y"}, {"-E", "baz", strings.Repeat("x", 256)}, {"-E", "baz", "-y"}, {"-E", "a", "b2"},
	{"-L", "--Lc"}, {"-N", "c"}, {"-A", "b2", "-j", "c"}, {"-A", "c", "-j", "b2"}, {"-I", "c", "-j", "b2"},
	{"-A", "c", "-j", "c"}, {"-N", "d"}, {"-N", "e"}, {"-A", "d", "-j", "e"}, {"-A", "e", "-j", "d"},
	{"-X", "c"}, {"-F", "c"}, {"-X", "c"}, {"-X"}, {"-F", "d"}, {"-X"},
	{"-A"}, {"-A", "FORWARD"}, {"-D", "FORWARD"}, {"-D", "FORWARD", "0"}, {"-D", "FORWARD", "1:0"}, {"-D", "FORWARD", "2:1"},
	{"-D", "FORWARD", "30"}, {"-D", "FORWARD", "1:2", "x"}, {"-D", "FORWARD", "a"},
	{"-A", "FORWARD", "-L"}, {"-L", "-A", "FORWARD"},
	{"-A", "FORWARD", "-p", "IPv4", "-p", "ARP"}, {"-A", "FORWARD", "-j", "ACCEPT", "-j", "DROP"}, {"-A", "FORWARD", "-x"},
	{"-A", "FORWARD", "--foo", "bar"}, {"-A", "FORWARD", "!", "!", "-p", "IPv4"}, {"-A", "FORWARD", "-p", "!", "!", "IPv4"},
	{"-A", "FORWARD", "!", "-p", "IPv4", "-j", "DROP"}, {"-A", "FORWARD", "-p", "!", "IPv4", "-j", "DROP"},
	{"-A", "FORWARD", "--ip-src", "1.2.3.4"}, {"-A", "FORWARD", "-p", "IPv4", "--ip-src", "1.2.3.4", "--ip-src", "1.2.3.5"},
	{"-A", "FORWARD", "-p", "IPv4", "--ip-s", "1.2.3.4"}, {"-A", "FORWARD", "-p", "IPv4", "--ip-sr=1.2.3.4"},
	{"-A", "FORWARD", "--in", "foo"}, {"-A", "FORWARD", "--pro", "IPv4"}, {"-A", "FORWARD", "-c", "1", "2", "-j", "ACCEPT"},
	{"-A", "FORWARD", "-c", "1"}, {"-A", "FORWARD", "-c", "!", "1", "2"}, {"-A", "FORWARD", "-c", "x", "2"},
	{"-A", "FORWARD", "-c", "1", "y"}, {"-A", "FORWARD", "-c", "1", "2", "-c", "3", "4"},
	{"-p", "IPv4"}, {"--ip-src", "1.2.3.4"}, {"--ip-src", "bad"}, {"-A", "FORWARD", "--", "-p", "IPv4"}, {"-"}, {"!"},
	{"-A", "FORWARD", "-v", "-p", "IPv4", "--ip-dst", "10.0.0.0/8", "-j", "ACCEPT"},
	{"-D", "FORWARD", "-v", "-p", "IPv4", "--ip-dst", "10.0.0.0/8", "-j", "ACCEPT"},
	{"-t", "nat", "-A", "PREROUTING", "-o", "eth0"}, {"-t", "nat", "-A", "POSTROUTING", "-i", "eth0"},
	{"-A", "PREROUTING", "-o", "eth0"}, {"-A", "FORWARD", "-i", "eth+0"}, {"-A", "FORWARD", "-i", "eth0", "-i", "eth1"},
	{"-A", "FORWARD", "-i", "0123456789abcdefg"}, {"-A", "FORWARD", "-i", "eth+", "-o", "!", "veth1", "-j", "ACCEPT"}, {"-A", "FORWARD", "-o", "!", "", "-j", "CONTINUE"},
	{"-A", "FORWARD", "--logical-in", "br0", "-j", "ACCEPT"}, {"-I", "FORWARD", "1", "--logical-out", "br+", "-j", "ACCEPT"},
	{"-A", "FORWARD", "-s", "00:11:22:33:44:55/ff:ff:ff:00:00:00", "-d", "Broadcast", "-j", "ACCEPT"},
	{"-A", "FORWARD", "-s", "bad"}, {"-A", "FORWARD", "-d", "!", "Multicast"},
	{"-A", "FORWARD", "--mark", "1", "--mark", "2", "-j", "ACCEPT"}, {"-A", "FORWARD", "--log-prefix", "a", "--log-prefix", "b"},
	{"-A", "FORWARD", "--nflog-group", "1", "--nflog-group", "2"}, {"-A", "FORWARD", "--mark-set", "1", "--mark-set", "2"},
	{"-A", "FORWARD", "-p", "ARP", "--arp-op", "1", "--arp-op", "2"}, {"-A", "FORWARD", "-p", "ARP", "--arp-op", "1", "--arp-htype", "1", "--arp-htype", "2"},
	{"-A", "FORWARD", "-p", "IPv4", "--ip-proto", "tcp", "--ip-dport", "22", "--log", "--log-prefix", "x", "-j", "mark", "--mark-set", "5", "--mark-target", "ACCEPT"},
	{"-D", "FORWARD", "-p", "IPv4", "--ip-proto", "tcp", "--ip-dport", "22", "--log", "--log-prefix", "x", "-j", "mark", "--mark-set", "5", "--mark-target", "ACCEPT"},
	{"-t", "nat", "-A", "PREROUTING", "-p", "ARP", "-j", "arpreply", "--arpreply-mac", "02:00:00:00:00:01"},
	{"-t", "nat", "-A", "POSTROUTING", "-j", "snat", "--to-src", "02:00:00:00:00:02", "--snat-arp"},
	{"-t", "nat", "-A", "PREROUTING", "-j", "dnat", "--to-dst", "02:00:00:00:00:03", "--dnat-target", "CONTINUE"},
	{"-t", "nat", "-I", "PREROUTING", "2", "-j", "redirect"}, {"-t", "nat", "-L", "--Lc", "--Ln"}, {"-t", "nat", "-F"},
	{"--check", "FORWARD", "-j", "ACCEPT"}, {"--check", "FORWARD", "-j", "DROP"}, {"-C", "FORWARD", "1", "5", "5"},
	{"-C", "FORWARD", "5"}, {"-M", "x"}, {"--concurrent", "-L", "INPUT"}, {"--db", "x"},
	{"-V"}, {"--version"}, {"-L", "-V"}, {"-h", "ip"}, {"-h", "foo", "bar"}, {"-h", "mark", "snat"}, {"-h", "list_extensions"},
	{"-h"}, {"--help"}, {}, {"-t", "nat"}, {"-p", "IPv4", "--ip-src", "1.2.3.4", "-h"}, {"-A", "FORWARD", "-h"},
	{"--init-table"}, {"-L"},
}

// cmdMACScript: MACs as glibc's ether_aton reads them (what follows the
// sixth group is ignored), in every option that takes one. Apart from
// cmdScript: a table with an among set changes the stale errno some of
// cmdScript's failures print.
var cmdMACScript = [][]string{
	{"-A", "FORWARD", "-s", "02:00:00:00:00:01xyz", "-j", "ACCEPT"}, {"-A", "FORWARD", "-d", "2:0:0:0:0:1", "-j", "ACCEPT"},
	{"-A", "FORWARD", "-d", "02:00:00:00:00:012"}, {"-A", "FORWARD", "-s", "02:00:00:00:00:01/ff:ff:ff:ff:ff:00zz"},
	{"-A", "FORWARD", "-s", "02:00:00:00:00:1x"}, {"-A", "FORWARD", "-s", "002:00:00:00:00:01"}, {"-A", "FORWARD", "-s", "02:00:00:00:00"},
	{"-A", "FORWARD", "-s", "02:0A:bc:00:00:01/FF:ff:0:0:0:0"}, {"-A", "FORWARD", "-s", "02:00:00:00:00:01/ff/ff:ff:ff:ff:ff:ff"},
	{"-A", "FORWARD", "--among-src", "02:00:00:00:00:01x,2:0:0:0:0:2=10.0.0.1", "-j", "ACCEPT"},
	{"-A", "FORWARD", "-p", "ARP", "--arp-mac-src", "02:00:00:00:00:01x", "-j", "ACCEPT"},
	{"-t", "nat", "-A", "PREROUTING", "-j", "dnat", "--to-dst", "02:00:00:00:00:01q"},
	{"-t", "nat", "-A", "POSTROUTING", "-j", "snat", "--to-src", "2:0:0:0:0:1 "},
	{"-t", "nat", "-A", "PREROUTING", "-p", "ARP", "-j", "arpreply", "--arpreply-mac", "02:00:00:00:00:0g"},
}

// TestCommandMACKernel runs cmdMACScript on the kernel and on uswitch.
func TestCommandMACKernel(t *testing.T) { newCmdHarness(t).script(cmdMACScript) }

// TestCommandKernel runs cmdScript on the kernel and on uswitch and
// compares every answer and the state after each command.
func TestCommandKernel(t *testing.T) { newCmdHarness(t).script(cmdScript) }

// script runs each command line on both and compares their answers and
// the state after each, up to the first difference in the state.
func (h *cmdHarness) script(lines [][]string) {
	for _, args := range lines {
		h.run(args...)
		if !h.state(quoteArgs(args)) {
			break
		}
	}
	h.t.Logf("%d command lines", h.n)
}

// TestCommandHelpKernel: -h TARGET for every target ebtables-nft
// 1.8.9 has. The real ebtables prints the text and then aborts (a
// double free in nft_fini_eb, exit status 134), and when stdout is not
// a terminal the abort loses the buffered text, so it runs under
// script(1) and only the text is compared; uswitch exits 0.
func TestCommandHelpKernel(t *testing.T) {
	h := newCmdHarness(t)
	testtools.Need(t, "script")
	for _, x := range []string{"standard", "ACCEPT", "redirect", "arpreply", "snat", "dnat", "mark", "nflog", "log"} {
		cmd := exec.Command("script", "-qc", "ip netns exec "+h.ns.Name+" ebtables -h "+x, "/dev/null")
		out, _ := cmd.Output()
		want := strings.ReplaceAll(string(out), "\r\n", "\n")
		if i := strings.Index(want, "free(): double free"); i >= 0 {
			want = want[:i]
		}
		got, _, code := h.uswitch([]string{"-h", x})
		if got != want || code != 0 {
			t.Errorf("ebtables -h %s (exit %d):\n--- uswitch\n%s--- ebtables\n%s", x, code, got, want)
		}
	}
}

// TestCommandTFilesKernel: every rule of iptables' libebt_*.t files as
// "ebtables -t T -A CHAIN RULE", then listed, deleted again with -D and
// the same words, and the chain flushed, on both.
func TestCommandTFilesKernel(t *testing.T) {
	dir := kerneltest.Corpus(t, "iptables-t")
	h := newCmdHarness(t)
	lines := readTFiles(t, dir)
	for _, l := range lines {
		words := netfilter.SplitWords(l.rule)
		chain := l.chain
		base := []string{"-t", l.table}
		if _, builtin := chainHook(chain); !builtin && chain != "BROUTING" {
			h.run(append(base, "-N", chain)...)
		}
		if h.run(append(append(base, "-A", chain), words...)...) == 0 {
			h.run(append(base, "-L", "--Lc")...)
			h.run(append(append(base, "-D", chain), words...)...)
			// what -D left (among rules cannot be deleted by
			// their words): a long listing of among sets makes
			// ebtables -L crash
			h.run(append(base, "-F", chain)...)
		}
		if _, builtin := chainHook(chain); !builtin && chain != "BROUTING" {
			h.run(append(base, "-X", chain)...)
		}
		if t.Failed() {
			break
		}
	}
	h.state("the .t rules")
	t.Logf("%d .t rules, %d command lines", len(lines), h.n)
}

// TestCommandListCorpusKernel: each ebtables-save dump of the corpus
// restored into the kernel, then every -L flag combination, for every
// table and chain, compared with uswitch on the kernel's own
// ebtables-save -c of it.
func TestCommandListCorpusKernel(t *testing.T) {
	kerneltest.Require(t, "ebtables", "ebtables-save", "ebtables-restore")
	dir := kerneltest.Corpus(t, "ebtables-save")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ebtables"))
	flagSets := [][]string{{}, {"--Lc"}, {"--Ln"}, {"--Lx"}, {"--Lmac2"}, {"--Lc", "--Ln"}, {"--Lc", "--Lx"},
		{"--Ln", "--Lmac2"}, {"--Lc", "--Ln", "--Lmac2"}, {"-Z"}}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h := newCmdHarness(t)
		if _, e, code, _ := h.ns.Run(string(data), "ebtables-restore"); code != 0 {
			t.Logf("%s: the kernel refuses it: %s", filepath.Base(f), e)
			continue
		}
		// counters, so that --Lc shows numbers
		h.ns.Run("", "ebtables", "-A", "FORWARD", "-c", "12345", "678901", "-j", "CONTINUE")
		h.ns.Run("", "ebtables", "-t", "nat", "-I", "PREROUTING", "-c", "7", "8", "-j", "CONTINUE")
		save, _, _, _ := h.ns.Run("", "ebtables-save", "-c")
		rs, rerr := (&Loader{Counters: true}).Load(save)
		if rerr != nil {
			t.Fatalf("%s: %v", filepath.Base(f), rerr)
		}
		h.rs = rs
		for _, tbl := range []string{"filter", "nat"} {
			chains := []string{""}
			if tid, _ := ParseTable(tbl); rs.Tables[tid] != nil {
				for _, c := range saveOrder(rs.Tables[tid]) {
					chains = append(chains, c.Name)
				}
			}
			for _, c := range chains {
				for _, fl := range flagSets {
					args := []string{"-t", tbl, "-L"}
					if c != "" {
						args = append(args, c)
					}
					h.run(append(args, fl...)...)
					n++
				}
			}
		}
		h.state(filepath.Base(f))
	}
	t.Logf("%d listings", n)
}

// randomCommand makes a command line over a few chains: mostly
// well-formed changes, some that fail at commit, some bad options.
func randomCommand(r *rand.Rand) []string {
	pick := func(l ...string) string { return l[r.IntN(len(l))] }
	chains := []string{"INPUT", "FORWARD", "OUTPUT", "u1", "u2", "u3"}
	ch := pick(chains...)
	// -D N, -X, -F and -Z of a named chain go to user chains only:
	// whether an empty base chain exists in the kernel (it decides
	// between "No chain/target/match by that name", "Index of deletion
	// too big" and success) follows nf_tables' lazy base chains, which
	// uswitch models only in part (Chain.Made; README)
	uch := pick("u1", "u2", "u3")
	var args []string
	if r.IntN(8) == 0 {
		args = append(args, "-t", "nat")
		ch = pick("PREROUTING", "OUTPUT", "POSTROUTING", "u1", "u2")
	}
	rule := func() []string {
		var w []string
		switch r.IntN(6) {
		case 0:
			w = append(w, "-p", pick("IPv4", "ARP", "! IPv6", "0x88cc", "LENGTH"))
		case 1:
			w = append(w, "-p", "IPv4", "--ip-proto", pick("tcp", "udp"), "--ip-dport", pick("22", "! 80", "1:1024"))
		case 2:
			w = append(w, "-s", pick("02:00:00:00:00:01", "! Multicast", "00:11:22:00:00:00/ff:ff:ff:00:00:00"))
		case 3:
			w = append(w, "--mark", pick("1", "0x10/0xf0"))
		case 4:
			w = append(w, "--log-prefix", pick("x", "y"))
		}
		if r.IntN(4) == 0 {
			w = append(w, "-c", fmt.Sprint(r.IntN(100)), fmt.Sprint(r.IntN(10000)))
		}
		w = append(w, "-j", pick("ACCEPT", "DROP", "CONTINUE", "RETURN", "u1", "u2", "u3", "nochain"))
		var out []string
		for _, x := range w {
			out = append(out, strings.Fields(x)...)
		}
		return out
	}
	switch r.IntN(14) {
	case 0, 1, 2:
		args = append(append(args, "-A", ch), rule()...)
	case 3, 4:
		args = append(args, "-I", ch)
		if r.IntN(2) == 0 {
			args = append(args, fmt.Sprint(1+r.IntN(4)))
		}
		args = append(args, rule()...)
	case 5:
		args = append(append(args, "-D", ch), rule()...)
	case 6:
		args = append(args, "-D", uch, pick("1", "2", "1:2", "2:", ":3", "5"))
	case 7:
		args = append(args, "-P", ch, pick("ACCEPT", "DROP", "RETURN"))
	case 8:
		args = append(args, "-N", pick("u1", "u2", "u3"))
	case 9:
		args = append(args, "-X")
		if r.IntN(3) > 0 {
			args = append(args, uch)
		}
	case 10:
		args = append(args, "-E", pick("u1", "u2", "u3"), pick("u1", "u2", "u3", "u4"))
	case 11:
		args = append(args, "-F")
		if r.IntN(2) == 0 {
			args = append(args, uch)
		}
	case 12:
		args = append(args, "-Z")
		if r.IntN(2) == 0 {
			args = append(args, uch)
		}
	case 13:
		args = append(args, "-L", pick("--Lc", "--Ln", "-Z"))
	}
	return args
}

// TestCommandRandomKernel: random sequences of -A -I -D -P -N -X -E -F
// -Z on the kernel and on uswitch, the state compared after each.
func TestCommandRandomKernel(t *testing.T) {
	steps := 200
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			h := newCmdHarness(t)
			r := rand.New(rand.NewPCG(seed, 7))
			for i := 0; i < steps; i++ {
				args := randomCommand(r)
				if os.Getenv("USWITCH_EBT_SHOW") != "" {
					t.Logf("step %d: ebtables %s", i, quoteArgs(args))
				}
				h.run(args...)
				if !h.state(fmt.Sprintf("step %d: ebtables %s", i, quoteArgs(args))) || t.Failed() {
					return
				}
			}
		})
	}
}

// cmdAbbrevScript: abbreviated long options of the command and of the
// extensions.
var cmdAbbrevScript = [][]string{
	{"-t", "nat", "-A", "PREROUTING", "-j", "dnat", "--to-d", "02:00:00:00:00:01"},
	{"-t", "nat", "-A", "PREROUTING", "-j", "dnat", "--to-ds", "02:00:00:00:00:01"},
	{"-t", "nat", "-A", "PREROUTING", "-j", "dnat", "--to", "02:00:00:00:00:01"},
	{"-t", "nat", "-A", "POSTROUTING", "-j", "snat", "--to-s", "02:00:00:00:00:01"},
	{"-t", "nat", "-A", "POSTROUTING", "-j", "snat", "--to-src", "02:00:00:00:00:01", "--snat-a"},
	{"-A", "FORWARD", "-p", "IPv4", "--ip-sr", "10.0.0.1", "-j", "ACCEPT"},
	{"-A", "FORWARD", "-p", "IPv4", "--ip-src", "10.0.0.1", "--ip-pro", "tcp", "-j", "ACCEPT"},
	{"-A", "FORWARD", "--log-pre", "x", "-j", "ACCEPT"},
	{"-A", "FORWARD", "--log", "--log-lev", "info", "-j", "ACCEPT"},
	{"-A", "FORWARD", "--src", "02:00:00:00:00:01", "-j", "ACCEPT"},
	{"-A", "FORWARD", "--in-if", "eth0", "-j", "ACCEPT"},
	{"-A", "FORWARD", "--logical-i", "br0", "-j", "ACCEPT"},
	{"--app", "FORWARD", "-j", "ACCEPT"},
	{"-A", "FORWARD", "-j", "mark", "--mark-se", "1"},
	{"-A", "FORWARD", "-p", "ARP", "--arp-o", "Request", "-j", "ACCEPT"},
	{"-A", "FORWARD", "-j", "mark", "--mark-set", "1", "--mark-t", "CONTINUE"},
	{"-A", "FORWARD", "-j", "mark", "--mark-set", "1", "--mark-target", "CONTINUE"},
	{"-A", "FORWARD", "--mark-se", "1", "-j", "mark"},
	{"-A", "FORWARD", "-j", "ACCEPT", "--mark-se", "1"},
	// a target's options before -j: the target they imply, unless -j
	// names one (then they are lost, and -j's starts with none set)
	{"-A", "FORWARD", "--mark-set", "1"},
	{"-A", "FORWARD", "--mark-set", "1", "-j", "mark"},
	{"-A", "FORWARD", "--mark-set", "1", "-j", "ACCEPT"},
	{"-A", "FORWARD", "--mark-set", "1", "-j", "DROP", "--mark-target", "CONTINUE"},
	{"-A", "FORWARD", "--mark-set", "1", "-j", "mark", "--mark-set", "2"},
	{"-A", "FORWARD", "-j", "ACCEPT", "--mark-set", "foo"},
	{"-t", "nat", "-A", "PREROUTING", "--to-dst", "02:00:00:00:00:01", "-j", "dnat"},
	{"-L", "--Ln"},
	{"-t", "nat", "-L", "--Ln"},
}

// TestCommandAbbrevKernel: once -j has loaded a target extension,
// ebtables-nft 1.8.9 has its options twice in getopt's table, so only
// their exact names are found ("Unknown argument" for the word after a
// prefix); before -j, and for matches and watchers, a unique prefix is.
// And a target's options before -j belong to a target -j replaces.
func TestCommandAbbrevKernel(t *testing.T) { newCmdHarness(t).script(cmdAbbrevScript) }
