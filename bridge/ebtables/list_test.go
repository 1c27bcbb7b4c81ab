package ebtables

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

const listRules = "*filter\n:FORWARD DROP\n:foo RETURN\n-A FORWARD -i nodev123 -o nodev432 -j ACCEPT\n-A FORWARD -c 3 99 -j foo\n-A foo -p IPv4 --ip-src 1.2.3.4 --log -j mark --mark-set 1\n*nat\n-A PREROUTING -j redirect\n"

var listCases = []struct {
	args []string
	t    TableID
	o    ListOptions
}{
	{[]string{"-L"}, Filter, ListOptions{}},
	{[]string{"-L", "--Lc", "--Ln"}, Filter, ListOptions{Counters: true, Numbers: true}},
	{[]string{"-L", "FORWARD", "--Lc"}, Filter, ListOptions{Chain: "FORWARD", Counters: true}},
	{[]string{"-t", "nat", "-L"}, NAT, ListOptions{}},
	{[]string{"-t", "nat", "-L", "--Lc"}, NAT, ListOptions{Counters: true}},
}

// TestListCorpus: the -L and -L --Lc listings in the corpus.
func TestListCorpus(t *testing.T) {
	dir := kerneltest.Corpus(t, "ebtables-save")
	rs := mustLoad("*filter\n-A FORWARD -i nodev123 -o nodev432 -j ACCEPT\n-A FORWARD -i nodev432 -o nodev123 -j ACCEPT\n")
	for file, o := range map[string]ListOptions{
		"iptables-shelltest-0004-ebtables-L.txt":    {Chain: "FORWARD"},
		"iptables-shelltest-0004-ebtables-L-Lc.txt": {Chain: "FORWARD", Counters: true},
	} {
		var b strings.Builder
		rs.List(&b, Filter, o)
		if want := readCorpus(t, dir, file); b.String() != want {
			t.Errorf("%s:\n--- got\n%s--- want\n%s", file, b.String(), want)
		}
	}
}

// TestListKernel compares List with ebtables -L on the same rules.
func TestListKernel(t *testing.T) {
	kerneltest.Require(t, "ebtables", "ebtables-restore", "ebtables-save")
	ns := kerneltest.NewNetns(t)
	if _, stderr, code, err := ns.Run(listRules, "ebtables-restore"); err != nil || code != 0 {
		t.Fatalf("restore: %d %s %v", code, stderr, err)
	}
	rs := mustLoad(listRules)
	for _, c := range listCases {
		out, _, _, err := ns.Run("", append([]string{"ebtables"}, c.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		rs.List(&b, c.t, c.o)
		if b.String() != out {
			t.Errorf("ebtables %v:\n--- uswitch\n%s--- ebtables\n%s", c.args, b.String(), out)
		}
	}
}
