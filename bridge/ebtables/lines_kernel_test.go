package ebtables

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
)

// Restore inputs that test how ebtables-restore reads lines and splits
// them into words (xtables-restore's fgets and add_param_to_argv, which
// ebtables-nft-restore shares with iptables-restore): quotes, escapes,
// white space, comments, long lines. TestRestoreLinesKernel compares
// each with the real program: its exit status and message, or what
// ebtables-save shows after it.
var restoreLines = []struct{ name, in string }{
	{"quote inside a word", "*filter\n-N a\"b\"c\n"},
	{"escaped quote", "*filter\n-N \"a\\\"b\"\n"},
	{"escaped backslash", "*filter\n-N \"a\\\\b\"\n"},
	{"backslash outside quotes", "*filter\n-N x\\y\n"},
	{"quote left open", "*filter\n-N \"ab\n"},
	{"quote left open, blanks", "*filter\n-N \"ab  \n"},
	{"quote left open on the last line", "*filter\n-N \"ab"},
	{"interface name left open", "*filter\n:foo RETURN\n-Afoo -o\"\n"},
	{"interface name left open, as saved", "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n:foo RETURN\n-A foo -o \n -j CONTINUE\n"},
	{"empty quotes", "*filter\n-N \"\"\n"},
	{"quoted blank", "*filter\n-N \"a b\"\n"},
	{"quoted prefix with escape", "*filter\n-A FORWARD --log-prefix \"a\\\"b\" --log-ip\n"},
	{"tabs", "*filter\n-A\tFORWARD\t-j\tDROP\n"},
	{"carriage return", "*filter\n-A FORWARD -j DROP\r\n"},
	{"comment after blanks", "*filter\n  # x\n-A FORWARD -j DROP\n"},
	{"COMMIT after a blank", "*filter\n-A FORWARD -j DROP\n COMMIT\n"},
	{"COMMIT with more", "*filter\n-A FORWARD -j DROP\nCOMMITTED\n"},
	{"table after a blank", " *filter\n-A FORWARD -j DROP\n"},
	{"table with a blank after", "*filter \n-A FORWARD -j DROP\n"},
	{"chain line after a blank", "*filter\n :foo ACCEPT\n"},
	{"chain line with more", "*filter\n:foo ACCEPT extra\n"},
	{"chain line with tabs", "*filter\n:foo\tDROP\n"},
	{"two tables without COMMIT", "*filter\n-A FORWARD -j DROP\n*nat\n-A OUTPUT -j DROP\n"},
	{"blank line", "*filter\n   \n-A FORWARD -j DROP\n"},
	{"NUL in a line", "*filter\n-A FORWARD -j DROP\x00 -j ACCEPT\n"},
	{"long line", "*filter\n-A FORWARD --log-prefix " + strings.Repeat("x", 10300) + "\n"},
	{"COMMIT before a table", "COMMIT\n*filter\n-A FORWARD -j DROP\n"},
	{"rule after COMMIT", "*filter\nCOMMIT\n-A FORWARD -j DROP\n"},
	{"chain line after COMMIT", "*filter\nCOMMIT\n:foo ACCEPT\n"},
	{"table name missing", "*\n-A FORWARD -j DROP\n"},
	{"chain name missing", "*filter\n:\n"},
	{"chain line with a carriage return", "*filter\n:foo\rDROP ACCEPT\n-A FORWARD -j foo\rDROP\n"},
	{"long chain name", "*filter\n:" + strings.Repeat("c", 40) + " ACCEPT\n"},
	{"long chain name by -N", "*filter\n-N " + strings.Repeat("c", 40) + "\n"},
	{"counters", "*filter\n[1:2] -A FORWARD -j DROP\n"},
	{"counters without ]", "*filter\n[1:2 -A FORWARD -j DROP\n"},
	{"counters without :", "*filter\n[12] -A FORWARD -j DROP\n"},
	{"counters without bytes", "*filter\n[1:] -A FORWARD -j DROP\n"},
	{"counters not numbers", "*filter\n[a:b] -A FORWARD -j DROP\n"},
	{"NUL at a line's start", "*filter\n\x00-A FORWARD -j DROP\n-A FORWARD -j ACCEPT\n"},
	{"too many words", "*filter\n-A FORWARD" + strings.Repeat(" -j", 300) + "\n"},
	{"chain line, name starts with -", "*filter\n:-foo ACCEPT\n"},
	{"chain line, name starts with !", "*filter\n:!foo ACCEPT\n"},
	{"chain line, name of a target", "*filter\n:mark ACCEPT\n"},
	{"chain line, name of a verdict", "*filter\n:DROP ACCEPT\n"},
	{"chain line, name QUEUE", "*filter\n:QUEUE ACCEPT\n"},
	{"chain line, name CONTINUE", "*filter\n:CONTINUE ACCEPT\n"},
	{"chain line, name of a match", "*filter\n:ip ACCEPT\n"},
	{"chain line, 28 characters", "*filter\n:" + strings.Repeat("c", 28) + " ACCEPT\n"},
	{"chain line, 29 characters", "*filter\n:" + strings.Repeat("c", 29) + " ACCEPT\n"},
	{"target name with a vertical tab", "*filter\n-A FORWARD -j a\vb\n"},
	{"target name of 29 characters", "*filter\n-A FORWARD -j " + strings.Repeat("t", 29) + "\n"},
	{"target CONTINUE", "*filter\n-A FORWARD -j CONTINUE\n"},
	{"delete a rule", "*filter\n-A FORWARD -j DROP\n-A FORWARD -j ACCEPT\n-D FORWARD -j DROP\n"},
	{"delete a missing rule", "*filter\n-A FORWARD -j ACCEPT\n-D FORWARD -j DROP\n"},
	{"delete by number", "*filter\n-A FORWARD -j DROP\n-A FORWARD -j ACCEPT\n-A FORWARD -j CONTINUE\n-D FORWARD 2\n"},
	{"delete a range", "*filter\n-A FORWARD -j DROP\n-A FORWARD -j ACCEPT\n-A FORWARD -j CONTINUE\n-D FORWARD 1:2\n"},
	{"delete past the end", "*filter\n-A FORWARD -j DROP\n-D FORWARD 3\n"},
	{"insert past the end", "*filter\n-A FORWARD -j DROP\n-I FORWARD 3 -j ACCEPT\n"},
	{"insert at the end", "*filter\n-A FORWARD -j DROP\n-I FORWARD 2 -j ACCEPT\n"},
	{"new chain with a policy", "*filter\n-N foo -P DROP\n"},
	{"zero in a restore", "*filter\n-A FORWARD -j DROP\n-Z\n"},
	{"check in a restore", "*filter\n-A FORWARD -j DROP\n--check FORWARD -j DROP\n"},
	{"init-table in a restore", "*filter\n-N foo\n-P FORWARD DROP\n-A FORWARD -j DROP\n--init-table\n-A FORWARD -j ACCEPT\n"},
	{"zero a chain in a restore", "*filter\n-A FORWARD -c 5 6 -j DROP\n-A FORWARD -j ACCEPT\n-Z FORWARD\n"},
	{"zero a chain of older rules", "*filter\n-A FORWARD -c 5 6 -j DROP\n-A INPUT -c 1 1 -j DROP\n-Z INPUT\n"},
	{"zero all, counters", "*filter\n-A FORWARD -c 5 6 -j DROP\n-Z\n"},
	{"zero a chain, zero counters", "*filter\n-A FORWARD -c 0 0 -j DROP\n-Z FORWARD\n"},
	{"insert refused by the kernel", "*filter\n-I FORWARD --ip-src 1.2.3.4 -j ACCEPT\n"},
	{"zero a chain not made", "*filter\n-A INPUT -j DROP\n-Z FORWARD\n"},
	{"zero a missing chain", "*filter\n-Z nochain\n"},
	{"zero all in a restore", "*filter\n-A FORWARD -j DROP\n-Z\n"},
	{"change counters in a restore", "*filter\n-A FORWARD -j DROP\n-C FORWARD 1 -c 5 6\n"},
	{"check a missing rule in a restore", "*filter\n-A FORWARD -j DROP\n--check FORWARD -j ACCEPT\n"},
	// the first command the batch cannot be built for wins; a COMMIT
	// line commits and names it
	{"missing chain, then a bad jump", "*filter\n-A nochain -j DROP\n-A FORWARD -j foo\n"},
	{"bad jump, then a missing chain", "*filter\n-A FORWARD -j foo\n-A nochain -j DROP\n"},
	{"bad jump, then a kernel error", "*filter\n-A FORWARD -j foo\n-A FORWARD --ip-src 1.2.3.4 -j ACCEPT\n"},
	{"kernel error, then a bad jump", "*filter\n-A FORWARD --ip-src 1.2.3.4 -j ACCEPT\n-A FORWARD -j foo\n"},
	{"missing chain, then a kernel error", "*filter\n-A PREROUTING -j dnat --to-dst 02:00:00:00:00:01\n-A FORWARD --ip-src 1.2.3.4 -j ACCEPT\n"},
	{"bad jump, then a missing chain, COMMIT", "*filter\n-A FORWARD -j foo\n-A nochain -j DROP\nCOMMIT\n"},
	{"missing chain, bad jump, COMMIT", "*filter\n-A nochain -j DROP\n-A FORWARD -j foo\nCOMMIT\n*nat\n"},
	{"bad jump in a missing chain", "*nat\n-A FORWARD -j foo\n"},
	{"COMMIT: chain made twice", "*filter\n-N foo\n-N foo\nCOMMIT\n"},
	{"COMMIT: missing rule", "*filter\n-D FORWARD -j DROP\nCOMMIT\n"},
	{"COMMIT: insert past the end", "*filter\n-I FORWARD 3 -j DROP\nCOMMIT\n"},
	{"COMMIT: rename onto a chain", "*filter\n-N a\n-N b\n-E a b\nCOMMIT\n"},
	{"COMMIT: zero a missing chain", "*filter\n-Z nochain\nCOMMIT\n"},
	{"COMMIT: policy of a missing chain", "*filter\n-P nochain DROP\nCOMMIT\n"},
	{"COMMIT: delete from a chain not made", "*filter\n-D FORWARD 2\nCOMMIT\n"},
	{"COMMIT: policy CONTINUE", "*filter\n:foo CONTINUE\nCOMMIT\n"},
	{"COMMIT: more after it", "*filter\n-A nochain -j DROP\n# c\nCOMMIT\n-A FORWARD\n"},
	{"second table option", "*filter\n-t nat -A FORWARD -j DROP\n"},
	{"counters cut a command", "*filter\n[1] -A FORWARD -j DROP:x\n"},
	{"counters with a colon later", "*filter\n[1:2 x] -A FORWARD -j DROP]y\n"},
	{"long comment", "*filter\n#" + strings.Repeat("x", 10300) + " -A FORWARD -j DROP\n"},
	// builtin chains are made when something names them; -X deletes
	// an empty one whose cached policy is ACCEPT (iptables/nft.c
	// nft_chain_del, shared with iptables-restore)
	{"bare -X undoes a policy", "*filter\n-P FORWARD DROP\n-X\n"},
	{"bare -X undoes a chain line's policy", "*filter\n:FORWARD DROP\n-X\n"},
	{"bare -X keeps a chain with rules", "*filter\n-A FORWARD -j ACCEPT\n-P FORWARD DROP\n-X\n"},
	{"-X of a builtin chain", "*filter\n-P FORWARD DROP\n-X FORWARD\n"},
	{"-X of a builtin chain with rules", "*filter\n-A FORWARD -j ACCEPT\n-X FORWARD\n"},
	{"-X of a builtin chain not made", "*filter\n-X FORWARD\n"},
	{"-Z of a builtin chain not made", "*filter\n-Z FORWARD\n"},
	{"-X then a rule", "*filter\n-P FORWARD DROP\n-X\n-A FORWARD -j ACCEPT\n"},
	// a user chain made and deleted (or renamed) in one batch: the
	// kernel refuses its CHAIN_USER_ADD and every later message naming it
	{"new chain deleted", "*filter\n-N foo\n-X foo\n"},
	{"chain line deleted by a bare -X", "*filter\n:foo RETURN\n-X\n"},
	{"new chain flushed, deleted", "*filter\n-N foo\n-F foo\n-X foo\n"},
	{"new chain with a rule deleted", "*filter\n-N foo\n-A foo -j ACCEPT\n-X foo\n"},
	{"new chain jumped to, deleted", "*filter\n-N foo\n-A FORWARD -j foo\n-X\n"},
	{"new chain deleted, COMMIT", "*filter\n-N foo\n-A foo -j ACCEPT\n-X foo\nCOMMIT\n"},
	{"new chain renamed", "*filter\n-N foo\n-E foo bar\n"},
	{"two new chains deleted", "*filter\n-N foo\n-N bar -P DROP\n-X\n"},
}

func TestRestoreLinesKernel(t *testing.T) {
	kerneltest.Require(t, "ebtables", "ebtables-restore", "ebtables-save")
	for _, c := range restoreLines {
		t.Run(c.name, func(t *testing.T) {
			sameAsKernelRestore(t, kerneltest.NewNetns(t), &Loader{}, c.in)
		})
	}
}

// noflushBuiltinCases: ebtables-restore --noflush on a kernel base
// restored first: the kernel's builtin chains are in the cache with their
// own policy and rules, so -X deletes only an empty ACCEPT one.
var noflushBuiltinCases = []struct{ base, in string }{
	{"*filter\n-P FORWARD DROP\n", "*filter\n-X FORWARD\nCOMMIT\n"},
	{"*filter\n-A FORWARD -j ACCEPT\n", "*filter\n-X FORWARD\nCOMMIT\n"},
	{"*filter\n-P FORWARD ACCEPT\n", "*filter\n-X FORWARD\nCOMMIT\n"},
	{"*filter\n-P FORWARD DROP\n", "*filter\n-P FORWARD DROP\n-X\nCOMMIT\n"},
	{"*filter\n-P FORWARD DROP\n", "*filter\n-P FORWARD ACCEPT\n-X\nCOMMIT\n"},
	{"*filter\n-P INPUT DROP\n", "*filter\n-P FORWARD DROP\n-X\n-Z\nCOMMIT\n"},
	{"*filter\n-P FORWARD ACCEPT\n", "*filter\n-X FORWARD\n-X FORWARD\nCOMMIT\n"},
	// a user chain the kernel has is not deleted while it has rules or a
	// rule jumps to it (CHAIN_DEL, EBUSY)
	{"*filter\n-N foo\n-A foo -j ACCEPT\n", "*filter\n-X\n"},
	{"*filter\n-N foo\n-A foo -j ACCEPT\n", "*filter\n-X foo\nCOMMIT\n"},
	{"*filter\n-N foo\n-A FORWARD -j foo\n", "*filter\n-X foo\n"},
	{"*filter\n-N foo\n", "*filter\n-E foo bar\n"},
}

func TestRestoreNoFlushBuiltinKernel(t *testing.T) {
	kerneltest.Require(t, "ebtables", "ebtables-restore", "ebtables-save")
	for i, c := range noflushBuiltinCases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ns := kerneltest.NewNetns(t)
			if _, stderr, code, err := ns.Run(c.base, "ebtables-restore"); err != nil || code != 0 {
				t.Fatalf("base: %v, exit %d: %s", err, code, stderr)
			}
			base, lerr := (&Loader{}).Load(c.base)
			if lerr != nil {
				t.Fatalf("base: %v", lerr)
			}
			sameAsKernelRestore(t, ns, &Loader{NoFlush: true, Base: base}, c.in, "--noflush")
		})
	}
}
