package iptables

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// restoreLineCases test how iptables-restore reads lines and cuts them
// into words (xtables-restore's fgets and add_param_to_argv, shared with
// ebtables-restore: bridge/ebtables' TestRestoreLinesKernel has the same
// kinds of input): quotes, escapes, white space, comments, the line's
// first byte, long lines.
var restoreLineCases = []string{
	"*filter\n-A INPUT -m comment --comment a\"b\"c -j ACCEPT\nCOMMIT\n",
	"*filter\n-A INPUT -m comment --comment \"a\\\"b\" -j ACCEPT\nCOMMIT\n",
	"*filter\n-A INPUT -m comment --comment \"a\\\\b\" -j ACCEPT\nCOMMIT\n",
	"*filter\n-A INPUT -m comment --comment x\\y -j ACCEPT\nCOMMIT\n",
	"*filter\n-A INPUT -m comment --comment \"\" -j ACCEPT\nCOMMIT\n",
	"*filter\n-N \"ab\nCOMMIT\n",
	"*filter\n-A\tINPUT\t-j\tDROP\nCOMMIT\n",
	"*filter\n-A INPUT -j DROP\r\nCOMMIT\n",
	"*filter\n  # x\n-A INPUT -j DROP\nCOMMIT\n",
	"*filter\n-A INPUT -j DROP\n COMMIT\n",
	"*filter\n-A INPUT -j DROP\nCOMMITTED\n",
	"*filter\n-A INPUT -j DROP\nCOMMIT now\n",
	" *filter\n-A INPUT -j DROP\nCOMMIT\n",
	"*filter \n-A INPUT -j DROP\nCOMMIT\n",
	"*\nCOMMIT\n",
	"*filter\r\nCOMMIT\n",
	"*filter\n:\u00a0foo - [0:0]\n-A INPUT -j \u00a0foo\nCOMMIT\n",
	"*filter\n:foo\v - [0:0]\nCOMMIT\n",
	"*filter\n :foo - [0:0]\nCOMMIT\n",
	"*filter\n:foo - [0:0] extra\nCOMMIT\n",
	"*filter\n:\nCOMMIT\n",
	"*filter\n:foo\rbar - [0:0]\nCOMMIT\n",
	"*filter\n:-foo - [0:0]\nCOMMIT\n",
	"*filter\n:DROP - [0:0]\nCOMMIT\n",
	"*filter\n-A INPUT -j DROP\n*nat\nCOMMIT\n",
	"*filter\nCOMMIT\n-A INPUT -j DROP\n",
	"COMMIT\n",
	"*filter\n   \n-A INPUT -j DROP\nCOMMIT\n",
	"*filter\n-A INPUT -j DROP\x00 -j ACCEPT\nCOMMIT\n",
	"*filter\n\x00-A INPUT -j DROP\nCOMMIT\n",
	"*filter\n-A INPUT -m comment --comment " + strings.Repeat("x", 1030) + " -j ACCEPT\nCOMMIT\n",
	"*filter\n-A INPUT -m comment --comment " + strings.Repeat("x", 10300) + "\nCOMMIT\n",
	"*filter\n#" + strings.Repeat("x", 10300) + " -A INPUT -j DROP\nCOMMIT\n",
	"*filter\n-A INPUT" + strings.Repeat(" -j", 300) + "\nCOMMIT\n",
	"*filter\n-A INPUT -j " + strings.Repeat("t", 29) + "\nCOMMIT\n",
	"*filter\n-A INPUT -j a\vb\nCOMMIT\n",
	"*filter\n-A INPUT -j DROP\nCOMMIT",
	// without -c the policy counters are not read
	"*filter\n:INPUT DROP [0:x]\nCOMMIT\n",
	"*filter\n:INPUT DROP foo\nCOMMIT\n",
	// a table's commands run at COMMIT: a later parse error, or no
	// COMMIT, is what is reported
	"*filter\n-A NOPE -j ACCEPT\n-A INPUT extra\nCOMMIT\n",
	"*filter\n-D INPUT -j ACCEPT\n-A INPUT -j ACCEPT\n",
	"*filter\n-X nochain\nCOMMIT\n",
	// a bare -F flushes only the chains the kernel had; a table with
	// nothing made is not made
	"*filter\n-A INPUT -j ACCEPT\n-F\nCOMMIT\n",
	"*filter\nCOMMIT\n",
	"*filter\n-Z\n# c\nCOMMIT\n",
	"*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
	"*filter\n-N foo\n-X foo\nCOMMIT\n",
	// -Z sets builtin chains again with the kernel's policy
	"*filter\n-P INPUT DROP\n-Z\nCOMMIT\n",
	"*filter\n-P INPUT DROP\n-Z INPUT\n:FORWARD DROP [0:0]\nCOMMIT\n",
	// the first failure wins: a jump to a missing chain, then a flush
	// of a missing chain
	"*filter\n-A INPUT -j foo\n-F foo\nCOMMIT\n",
	"*filter\n-F foo\n-A INPUT -j foo\nCOMMIT\n",
}

func TestRestoreLinesAgainstKernel(t *testing.T) {
	kerneltest.Require(t)
	for _, in := range restoreLineCases {
		checkAgainstKernel(t, fmt.Sprintf("%.60q", in), in)
	}
}
