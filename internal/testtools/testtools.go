// Package testtools is how a test says what it needs from the machine:
// the external programs it runs (Need), root (Root) and /dev/net/tun
// (TUN). When something is missing the test is skipped with a message a
// newcomer can act on, e.g. "ipset not found: apt-get install ipset";
// the program-to-package table below is the only place that knows
// which Debian package brings which program.
//
// With USWITCH_REQUIRE_TOOLS=1 in the environment (CI, .ci/run) a
// missing tool, root or TUN device fails the test instead, so a machine
// set up wrong cannot turn the kernel comparisons into a row of skips.
package testtools

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "USWITCH_REQUIRE_TOOLS"

// packages maps each program a test runs to the Debian package that
// installs it.
var packages = map[string]string{
	"ip":                      "iproute2",
	"bridge":                  "iproute2",
	"iptables":                "iptables",
	"iptables-save":           "iptables",
	"iptables-restore":        "iptables",
	"iptables-legacy":         "iptables",
	"iptables-legacy-save":    "iptables",
	"iptables-legacy-restore": "iptables",
	"xtables-monitor":         "iptables",
	"ebtables":                "ebtables",
	"ebtables-save":           "ebtables",
	"ebtables-restore":        "ebtables",
	"ipset":                   "ipset",
	"conntrack":               "conntrack",
	"tcpdump":                 "tcpdump",
	"ping":                    "iputils-ping",
	"sysctl":                  "procps",
	"script":                  "bsdutils",
	"stdbuf":                  "coreutils",
	"chromium":                "chromium",
}

// Required reports whether USWITCH_REQUIRE_TOOLS=1: what would be a skip
// is a failure.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Skipf skips t with the message, or fails it when Required. The
// message is also said once per test binary on the terminal, when there
// is one: `go test ./...` shows a passing package's skips only with -v,
// and a newcomer without a tool should see which and what to install.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf(format+" ("+RequireEnv+"=1: not skipped)", args...)
	}
	notice(t.Name(), fmt.Sprintf(format, args...))
	t.Skipf(format, args...)
}

var noticed sync.Map // the messages said on the terminal

// notice writes msg to the controlling terminal, once per message (a
// test binary's output is shown only with -v or on failure); nothing
// without a terminal (CI).
func notice(test, msg string) {
	if _, done := noticed.LoadOrStore(msg, true); done {
		return
	}
	tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer tty.Close()
	fmt.Fprintf(tty, "SKIP %s (and others like it): %s\n", test, msg)
}

// Need skips t (see Skipf) unless every tool is found in $PATH, naming
// the missing ones and the packages to install. A tool the table does
// not know fails t: add it there.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	var missing, pkgs []string
	for _, tool := range tools {
		pkg, ok := packages[tool]
		if !ok {
			t.Fatalf("testtools: no package known for %q: add it to the table in internal/testtools", tool)
		}
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
			if !slices.Contains(pkgs, pkg) {
				pkgs = append(pkgs, pkg)
			}
		}
	}
	if len(missing) > 0 {
		Skipf(t, "%s not found: apt-get install %s", strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
}

// Root skips t (see Skipf) unless it runs as root; why says what the
// test makes, e.g. "makes network namespaces and TUN devices".
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "needs root: %s", why)
	}
}

// TUN skips t (see Skipf) unless it runs as root with /dev/net/tun.
func TUN(t testing.TB) {
	t.Helper()
	Root(t, "makes network namespaces and TUN devices")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		Skipf(t, "no /dev/net/tun: %v", err)
	}
}
