package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, f func([]string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (string, string, int) {
	t.Helper()
	var o, e bytes.Buffer
	code := f(args, &o, &e)
	return o.String(), e.String(), code
}

func TestIptablesSaveCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "rules")
	os.WriteFile(in, []byte("*nat\n:PREROUTING ACCEPT [3:4]\n[1:2] -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.1\nCOMMIT\n*filter\n:INPUT DROP [0:0]\nCOMMIT\n"), 0o644)
	save := func(args []string, o, e *bytes.Buffer) int { return iptablesSave(args, strings.NewReader(""), o, e) }

	out, _, code := run(t, save, "-t", "nat", "--input", in)
	want := "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.1\nCOMMIT\n"
	if code != 0 || out != want {
		t.Fatalf("iptables-save -t nat: exit %d\n%s\nwant\n%s", code, out, want)
	}
	out, _, code = run(t, save, "-c", "-t", "nat", "--input", in)
	if code != 0 || !strings.Contains(out, ":PREROUTING ACCEPT [3:4]\n") || !strings.Contains(out, "\n[1:2] -A PREROUTING -p tcp") {
		t.Fatalf("iptables-save -c: exit %d\n%s", code, out)
	}
	if _, _, code = run(t, save, "--input", in, "-t", "nat"); code != 0 {
		// flags after --input are still flags
		t.Fatalf("exit %d", code)
	}
	// without --input it reads the running instance
	if _, e, code := run(t, save, "--socket", filepath.Join(dir, "none.sock")); code != 1 || !strings.Contains(e, "no running uswitch instance at") {
		t.Fatalf("no instance: exit %d %q", code, e)
	}
}

func TestIptablesRestoreCLI(t *testing.T) {
	restore := func(in string) func([]string, *bytes.Buffer, *bytes.Buffer) int {
		return func(args []string, o, e *bytes.Buffer) int { return iptablesRestore(args, strings.NewReader(in), o, e) }
	}
	_, e, code := run(t, restore("*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n"), "--test")
	if code != 2 || !strings.Contains(e, "invalid port/service `99999' specified\nError occurred at line: 2\n") {
		t.Fatalf("exit %d, stderr %q", code, e)
	}
	_, e, code = run(t, restore("*filter\n-A INPUT -j ACCEPT\n"), "--test")
	if code != 1 || e != "iptables-restore: COMMIT expected at line 3\n" {
		t.Fatalf("exit %d, stderr %q", code, e)
	}
	if _, e, code = run(t, restore("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n"), "--test"); code != 0 || e != "" {
		t.Fatalf("exit %d, stderr %q", code, e)
	}
}

// TestIptablesCmdFile: `uswitch iptables --file` changes and lists a
// file; -h and a refused command line need no running instance.
func TestIptablesCmdFile(t *testing.T) {
	path := t.TempDir() + "/rules"
	run := func(args ...string) (string, string, int) {
		var o, e bytes.Buffer
		code := iptablesCmd(args, strings.NewReader(""), &o, &e)
		return o.String(), e.String(), code
	}
	if _, e, c := run("--file", path, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"); c != 0 {
		t.Fatalf("-A: %d %s", c, e)
	}
	o, _, c := run("--file="+path, "-S", "INPUT")
	if want := "-P INPUT ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"; c != 0 || o != want {
		t.Fatalf("-S: %d %q, want %q", c, o, want)
	}
	if _, e, c := run("--file", path, "-D", "INPUT", "3"); c != 1 || e != "iptables: Index of deletion too big.\n" {
		t.Fatalf("-D 3: %d %q", c, e)
	}
	if o, _, c := run("--socket", "/nonexistent", "-h"); c != 0 || !strings.HasPrefix(o, "iptables v1.8.9 (nf_tables)\n\nUsage:") {
		t.Fatalf("-h: %d %q", c, o)
	}
	if _, e, c := run("--socket", "/nonexistent", "-L", "-s", "1.2.3.4"); c != 2 || !strings.Contains(e, "Illegal option `-s' with this command") {
		t.Fatalf("-L -s: %d %q", c, e)
	}
}
