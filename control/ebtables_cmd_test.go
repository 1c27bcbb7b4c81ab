package control

import (
	"strings"
	"testing"
)

// TestEbtablesCmd: the ebtables command over the socket changes the
// engine's bridge rule set by swaps; rules a command leaves alone keep
// their counters; failures change nothing.
func TestEbtablesCmd(t *testing.T) {
	path := engineServer(t)
	for _, args := range [][]string{
		{"-N", "u"}, {"-A", "FORWARD", "-c", "7", "700", "-j", "u"}, {"-A", "u", "-p", "IPv4", "-j", "DROP"},
		{"-I", "FORWARD", "1", "-p", "ARP", "-j", "ACCEPT"},
	} {
		if r := call(t, path, Request{Cmd: "ebtables", Args: args}); r.Code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	r := call(t, path, Request{Cmd: "ebtables", Args: []string{"-L", "FORWARD", "--Lc", "--Ln"}})
	want := "Bridge table: filter\n\nBridge chain: FORWARD, entries: 2, policy: ACCEPT\n1 -p ARP -j ACCEPT , pcnt = 0 -- bcnt = 0\n2 -j u , pcnt = 7 -- bcnt = 700\n"
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("-L: %+v\nwant\n%s", r, want)
	}
	r = call(t, path, Request{Cmd: "ebtables", Args: []string{"-X", "u"}})
	if r.Code != 4 || !strings.Contains(r.Stderr, "CHAIN_DEL failed (Device or resource busy): chain u") {
		t.Fatalf("-X u: %+v", r)
	}
	save := call(t, path, Request{Cmd: "ebtables-save", Counters: true})
	if !strings.Contains(save.Stdout, "[7:700] -A FORWARD -j u\n") || !strings.Contains(save.Stdout, ":u ACCEPT\n") {
		t.Fatalf("ebtables-save -c after a refused -X:\n%s", save.Stdout)
	}
	if r := call(t, path, Request{Cmd: "ebtables", Args: []string{"-L", "-Z"}}); r.Code != 0 {
		t.Fatalf("-L -Z: %+v", r)
	}
	save = call(t, path, Request{Cmd: "ebtables-save", Counters: true})
	if !strings.Contains(save.Stdout, "[0:0] -A FORWARD -j u\n") {
		t.Fatalf("ebtables-save -c after -Z:\n%s", save.Stdout)
	}
}
