package iptables

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// builtinChainCases (and the -E cases at their end): iptables-nft 1.8.9
// makes a builtin chain only when
// something names it, and -X deletes an empty one whose policy, in its
// cache, is ACCEPT (a -P or chain line of the same input goes into the
// batch, not into the cache, so a bare -X undoes it). Each input is
// restored after base (--noflush when base is set), with -c when
// counters is set.
var builtinChainCases = []struct {
	base, input string
	counters    bool
}{
	// a bare -X
	{input: "*filter\n-P INPUT DROP\n-X\nCOMMIT\n"},
	{input: "*filter\n:FORWARD ACCEPT [1:2]\n-P INPUT DROP\n-X\nCOMMIT\n"},
	{input: "*filter\n:FORWARD ACCEPT [1:2]\n:INPUT DROP [3:4]\n-X\nCOMMIT\n", counters: true},
	{input: "*filter\n-A INPUT -j ACCEPT\n-P INPUT DROP\n-X\nCOMMIT\n"},
	{input: "*filter\n-P INPUT DROP\n-X\n-A INPUT -j ACCEPT\nCOMMIT\n"},
	{input: "*filter\n-P INPUT DROP\n-A INPUT -j ACCEPT\n-D INPUT 1\n-X\nCOMMIT\n"},
	{input: "*filter\n-P INPUT DROP\n-X\n-P INPUT DROP\nCOMMIT\n"},
	{input: "*filter\n-P INPUT DROP\n-X\n-P OUTPUT DROP\n-X\nCOMMIT\n"},
	{input: "*filter\n-P INPUT DROP\n-F INPUT\n-X\nCOMMIT\n"},
	{input: "*filter\n:INPUT DROP [0:0]\n-X\nCOMMIT\n"},
	// -X of a builtin chain
	{input: "*filter\n-X INPUT\nCOMMIT\n"},
	{input: "*filter\n-P INPUT DROP\n-X INPUT\nCOMMIT\n"},
	{input: "*filter\n-A INPUT -j ACCEPT\n-X INPUT\nCOMMIT\n"},
	{input: "*filter\n:INPUT ACCEPT [3:4]\n-X INPUT\nCOMMIT\n", counters: true},
	{input: "*filter\n-F INPUT\n-X INPUT\nCOMMIT\n"},
	{input: "*filter\n-X INPUT\n-A INPUT -j DROP\nCOMMIT\n"},
	{input: "*filter\n-I INPUT 2 -j ACCEPT\n-X INPUT\nCOMMIT\n"},
	{input: "*filter\n-N foo\n-X INPUT\nCOMMIT\n"},
	// -Z of a builtin chain nothing made
	{input: "*filter\n-Z INPUT\nCOMMIT\n"},
	{input: "*filter\n-Z\n-X INPUT\nCOMMIT\n"},
	{input: "*filter\n:INPUT ACCEPT [0:0]\n-X INPUT\n-Z INPUT\nCOMMIT\n"},
	// --noflush: the kernel's chains
	{base: "*filter\n-P INPUT DROP\nCOMMIT\n", input: "*filter\n-X\nCOMMIT\n"},
	{base: "*filter\n-P INPUT DROP\nCOMMIT\n", input: "*filter\n-P INPUT ACCEPT\n-X\nCOMMIT\n"},
	{base: "*filter\n-P FORWARD DROP\nCOMMIT\n", input: "*filter\n-P INPUT DROP\n-X\nCOMMIT\n"},
	{base: "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", input: "*filter\n-P INPUT DROP\n-X\nCOMMIT\n"},
	{base: "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", input: "*filter\n-X INPUT\nCOMMIT\n"},
	{base: "*filter\n-P INPUT DROP\nCOMMIT\n", input: "*filter\n-X INPUT\nCOMMIT\n"},
	{base: "*filter\n-P INPUT ACCEPT\nCOMMIT\n", input: "*filter\n-X INPUT\nCOMMIT\n"},
	{base: "*filter\n-P INPUT ACCEPT\nCOMMIT\n", input: "*filter\n-Z INPUT\nCOMMIT\n"},
	{base: "*filter\n-P INPUT ACCEPT\nCOMMIT\n", input: "*filter\n-X INPUT\n-Z INPUT\nCOMMIT\n"},
	{base: "*filter\n-P INPUT ACCEPT\nCOMMIT\n", input: "*filter\n-Z FORWARD\nCOMMIT\n"},
	{base: "*filter\n:INPUT ACCEPT [5:100]\n:OUTPUT ACCEPT [7:70]\n-A OUTPUT -j ACCEPT\nCOMMIT\n",
		input: "*filter\n-X\nCOMMIT\n", counters: true},

	// -E is done when the batch commits, by the chain's handle:
	// iptables-nft's cache keeps the old name until then, and a chain
	// the batch made cannot be renamed (the kernel's ENOENT)
	{input: "*filter\n-N foo\n-E foo baz\nCOMMIT\n"},
	{input: "*filter\n:foo - [0:0]\n-E foo baz\n-E foo baz\nCOMMIT\n"},
	{input: "*filter\n:foo - [0:0]\n-E foo baz\n-A INPUT extra\nCOMMIT\n"},
	{base: "*filter\n:foo - [0:0]\nCOMMIT\n", input: "*filter\n-E foo baz\nCOMMIT\n"},
	{base: "*filter\n:foo - [0:0]\nCOMMIT\n", input: "*filter\n-E foo baz\n-A baz -j ACCEPT\nCOMMIT\n"},
	{base: "*filter\n:foo - [0:0]\nCOMMIT\n", input: "*filter\n-E foo baz\n-A foo -j ACCEPT\nCOMMIT\n"},
	{base: "*filter\n:foo - [0:0]\nCOMMIT\n", input: "*filter\n-E foo baz\n-E foo qux\nCOMMIT\n"},
	{base: "*filter\n:foo - [0:0]\nCOMMIT\n", input: "*filter\n-E foo baz\n-X foo\nCOMMIT\n"},
	{base: "*filter\n:foo - [0:0]\nCOMMIT\n", input: "*filter\n:foo - [0:0]\n-E foo baz\nCOMMIT\n"},
	{base: "*filter\n:foo - [0:0]\n-A INPUT -j foo\nCOMMIT\n", input: "*filter\n-E foo baz\nCOMMIT\n"},
	{base: "*filter\n:foo - [0:0]\n-A INPUT -j foo\nCOMMIT\n", input: "*filter\n-E foo baz\n-A OUTPUT -j foo\nCOMMIT\n"},
	// the kernel's refusals are reported when the batch commits, each on
	// its line
	{input: "*filter\n-A INPUT -j foo\n:foo - [0:0]\n-X\n"},
	{input: "*filter\n:foo - [0:0]\n:bar - [0:0]\n-A INPUT -j foo\n-A INPUT -j bar\n-X\nCOMMIT\n"},
	{input: "*filter\n:foo - [0:0]\n-A INPUT -j foo\n-X foo\n-A foo -j ACCEPT\nCOMMIT\n"},
}

// TestBuiltinChainsAgainstKernel restores each case with iptables-restore
// in a namespace and with uswitch's loader: the same stderr and exit, or
// the same iptables-save -c after it.
func TestBuiltinChainsAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	for i, c := range builtinChainCases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ns := kerneltest.NewNetns(t)
			var flags []string
			if c.counters {
				flags = append(flags, "-c")
			}
			ld := &Loader{Counters: c.counters}
			if c.base != "" {
				if kerr, code, err := ns.Restore(c.base, "-c"); err != nil || code != 0 {
					t.Fatalf("base: %v, exit %d: %s", err, code, kerr)
				}
				base, err := (&Loader{Counters: true}).LoadString(c.base)
				if err != nil {
					t.Fatalf("base: %v", err)
				}
				flags = append(flags, "--noflush")
				ld.NoFlush, ld.Base = true, base
			}
			kerr, kcode, err := ns.Restore(c.input, flags...)
			if err != nil {
				t.Fatal(err)
			}
			rs, uerr := ld.LoadString(c.input)
			if kcode != 0 {
				var re *RestoreError
				if !errors.As(uerr, &re) {
					t.Fatalf("%q: kernel refused with %q, uswitch: %v", c.input, kerr, uerr)
				}
				if re.Stderr() != kerr || re.ExitCode() != kcode {
					t.Errorf("%q: kernel (exit %d):\n%s\nuswitch (exit %d):\n%s", c.input, kcode, kerr, re.ExitCode(), re.Stderr())
				}
				return
			}
			if uerr != nil {
				t.Fatalf("%q: kernel took it, uswitch: %v", c.input, uerr)
			}
			want, err := ns.Save("-c")
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := rs.Save(&b, SaveOptions{Counters: true}); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != kerneltest.StripComments(want) {
				t.Errorf("%q: iptables-save -c differs:\n%s", c.input, kerneltest.LineDiff(kerneltest.StripComments(want), got, 5))
			}
		})
	}
}
