// Package kerneltest runs the real Linux kernel and iptables as the oracle
// for differential tests: it makes throw-away network namespaces and runs
// iptables-restore / iptables-save inside them.
//
// Tests that need it call Require, which skips with a clear message when
// the process is not root or the tools are missing (internal/testtools).
// Every namespace made here has a unique name and is removed in
// t.Cleanup, also on failure.
package kerneltest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/internal/testtools"
)

var seq atomic.Int64

// Require skips the test (or fails it, see testtools) unless it runs as
// root on Linux with ip and iptables-nft, and with the other tools the
// test runs in its namespaces (testtools.Need names them).
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		testtools.Skipf(t, "kernel tests need Linux")
	}
	testtools.Root(t, "the kernel differential test makes network namespaces (CI runs it as root)")
	testtools.Need(t, append([]string{"ip", "iptables", "iptables-restore", "iptables-save"}, tools...)...)
	out, err := exec.Command("iptables", "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nf_tables") {
		testtools.Skipf(t, "kernel differential test needs iptables-nft; iptables --version says %q (update-alternatives --set iptables /usr/sbin/iptables-nft)", strings.TrimSpace(string(out)))
	}
}

// Netns is a network namespace made for one test.
type Netns struct{ Name string }

// NewNetns makes a namespace with a unique name, removed at cleanup.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	name := fmt.Sprintf("usw-t%d-%d", os.Getpid(), seq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return &Netns{Name: name}
}

// Run runs a command inside the namespace with stdin, returning stdout,
// stderr and the exit code.
func (n *Netns) Run(stdin string, args ...string) (stdout, stderr string, code int, err error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode(), nil
	}
	return o.String(), e.String(), 0, err
}

// Restore runs iptables-restore (with extra flags) on input.
func (n *Netns) Restore(input string, flags ...string) (stderr string, code int, err error) {
	_, e, c, err := n.Run(input, append([]string{"iptables-restore"}, flags...)...)
	return e, c, err
}

// Save runs iptables-save [args] and drops the "# Generated"/"# Completed"
// comment lines.
func (n *Netns) Save(args ...string) (string, error) {
	o, e, c, err := n.Run("", append([]string{"iptables-save"}, args...)...)
	if err != nil {
		return "", err
	}
	if c != 0 {
		return "", fmt.Errorf("iptables-save: exit %d: %s", c, e)
	}
	return StripComments(o), nil
}

// WaitForwarding waits until each of ports, a bridge port in n, is in
// the forwarding state: the bridge moves a port there when linkwatch has
// seen its carrier, up to a second after `ip link set up` (more on a
// loaded machine), and drops the frames it gets before. It needs
// iproute2's bridge tool.
func (n *Netns) WaitForwarding(t testing.TB, ports ...string) {
	t.Helper()
	for _, p := range ports {
		for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
			out, _, _, err := n.Run("", "bridge", "link", "show", "dev", p)
			if err == nil && strings.Contains(out, "state forwarding") {
				break
			}
			if time.Since(start) > 20*time.Second {
				t.Fatalf("bridge port %s is not forwarding after 20 s: %s %v", p, out, err)
			}
		}
	}
}

// StripComments removes the lines starting with '#'.
func StripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// CorpusDir returns the path of ../shared/corpus/<sub> seen from the
// module root, and whether it is there.
func CorpusDir(sub string) (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			p := filepath.Join(d, "..", "shared", "corpus", sub)
			_, err := os.Stat(p)
			return p, err == nil
		}
		if filepath.Dir(d) == d {
			return "", false
		}
	}
}

// Corpus returns the path of ../shared/corpus/<sub> seen from the module
// root, or skips the test when it is absent.
func Corpus(t testing.TB, sub string) string {
	t.Helper()
	p, ok := CorpusDir(sub)
	if !ok {
		t.Skipf("corpus %s not found beside the module: it lives in ../shared/corpus beside the checkout; CI has it", sub)
	}
	return p
}

// LineDiff shows the first most lines where the kernel's output (want)
// and uswitch's (got) differ, each with its number, quoted.
func LineDiff(want, got string, most int) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	n := 0
	for i := 0; i < max(len(w), len(g)) && n < most; i++ {
		var x, y string
		if i < len(w) {
			x = w[i]
		}
		if i < len(g) {
			y = g[i]
		}
		if x != y {
			fmt.Fprintf(&b, "  line %d\n    kernel:  %q\n    uswitch: %q\n", i+1, x, y)
			n++
		}
	}
	return b.String()
}
