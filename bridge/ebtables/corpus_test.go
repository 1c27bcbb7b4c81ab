package ebtables

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// The ebtables-save corpus (../shared/corpus/ebtables-save, from
// iptables' own shell tests): each dump must load and print back as
// ebtables-restore / ebtables-save do.

type corpusCase struct {
	input, want string // file names; want "" means the input itself
	save        SaveOptions
	saveArgs    []string
}

var corpusCases = []corpusCase{
	{input: "iptables-shelltest-0002-save-restore.ebtables"},
	{input: "iptables-shelltest-0003-restore-defaults.input.ebtables", want: "iptables-shelltest-0003-restore-defaults.expected-save.ebtables"},
	{input: "iptables-shelltest-0004-save-c.ebtables", save: SaveOptions{Counters: true}, saveArgs: []string{"-c"}},
	{input: "iptables-shelltest-0004-save-EBTABLES_SAVE_COUNTER.ebtables", want: "iptables-shelltest-0004-save-c.ebtables", save: SaveOptions{Counters: true}, saveArgs: []string{"-c"}},
	{input: "iptables-shelltest-0006-among.ebtables"},
}

func readCorpus(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func saveString(t *testing.T, rs *Ruleset, o SaveOptions) string {
	var b strings.Builder
	if err := rs.Save(&b, o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestCorpusRoundTrip loads each dump and compares uswitch's save with
// the expected one.
func TestCorpusRoundTrip(t *testing.T) {
	dir := kerneltest.Corpus(t, "ebtables-save")
	for _, c := range corpusCases {
		t.Run(c.input, func(t *testing.T) {
			in := readCorpus(t, dir, c.input)
			want := in
			if c.want != "" {
				want = readCorpus(t, dir, c.want)
			}
			rs, err := (&Loader{}).Load(in)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			got := saveString(t, rs, c.save)
			if got != kerneltest.StripComments(want) {
				t.Errorf("save differs:\n--- got\n%s--- want\n%s", got, want)
			}
			// and the save loads back to itself
			rs2, err := (&Loader{}).Load(got)
			if err != nil {
				t.Fatalf("reload: %v", err)
			}
			if got2 := saveString(t, rs2, c.save); got2 != got {
				t.Errorf("second round trip differs:\n%s", got2)
			}
		})
	}
}

// TestCorpusKernel restores each dump with this machine's
// ebtables-restore in a fresh namespace and compares its ebtables-save
// with uswitch's.
func TestCorpusKernel(t *testing.T) {
	kerneltest.Require(t, "ebtables", "ebtables-restore", "ebtables-save")
	dir := kerneltest.Corpus(t, "ebtables-save")
	for _, c := range corpusCases {
		t.Run(c.input, func(t *testing.T) {
			in := readCorpus(t, dir, c.input)
			ns := kerneltest.NewNetns(t)
			_, stderr, code, err := ns.Run(in, "ebtables-restore")
			if err != nil {
				t.Fatal(err)
			}
			rs, lerr := (&Loader{NoBridgeMeta: true}).Load(in)
			if code != 0 {
				if lerr == nil || lerr.Stderr != stderr || lerr.ExitCode != code {
					t.Fatalf("kernel refused (exit %d) %q; uswitch: %v", code, stderr, lerr)
				}
				return
			}
			if lerr != nil {
				t.Fatalf("kernel loaded it, uswitch: %v", lerr)
			}
			out, _, _, err := ns.Run("", append([]string{"ebtables-save"}, c.saveArgs...)...)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := saveString(t, rs, c.save), kerneltest.StripComments(out); got != want {
				t.Errorf("save differs:\n--- uswitch\n%s--- ebtables-save\n%s", got, want)
			}
		})
	}
}
