package iptables

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// The iptables-restore input grammar, as iptables-nft 1.8.9's
// xtables-restore.c reads it:
//
//	# comment            ignored
//	*TABLE               start a table (flushed unless --noflush)
//	:CHAIN POLICY [p:b]  set a builtin chain's policy / create a user chain
//	[p:b] -A CHAIN ...   any iptables command
//	COMMIT               apply the table
//
// A Loader applies nothing until the whole input has been read and every
// table has committed: the result is a new Ruleset or an error, never a
// half-applied one.

// Program is the program name used in messages, as iptables-restore.
const Program = "iptables-restore"

// Version is the iptables-nft version whose behaviour uswitch follows.
const Version = "v1.8.9 (nf_tables)"

// ErrorKind says how iptables-restore reports an error.
type ErrorKind uint8

const (
	// KindLineFailed: "iptables-restore: line N failed[: REASON.]", exit 1.
	KindLineFailed ErrorKind = iota
	// KindParam: option error, "iptables-restore v1.8.9 (nf_tables): MSG"
	// + "Error occurred at line: N" + the help hint, exit 2.
	KindParam
	// KindBadArg: "Bad argument `X'" + line + hint, exit 2.
	KindBadArg
	// KindKernel: the kernel refused the batch at commit, exit 4.
	KindKernel
	// KindCommitExpected: "COMMIT expected at line N", exit 1.
	KindCommitExpected
)

// RestoreError is an error in restore input, located at Line.
type RestoreError struct {
	Kind ErrorKind
	Line int
	Msg  string
}

func (e *RestoreError) Error() string {
	return strings.TrimRight(e.Stderr(), "\n")
}

// ExitCode is the exit status iptables-restore uses for the error.
func (e *RestoreError) ExitCode() int {
	switch e.Kind {
	case KindParam, KindBadArg:
		return 2
	case KindKernel:
		return 4
	}
	return 1
}

// Stderr formats the error exactly as iptables-restore prints it.
func (e *RestoreError) Stderr() string {
	hint := fmt.Sprintf("Try `%s -h' or '%s --help' for more information.\n", Program, Program)
	switch e.Kind {
	case KindParam:
		return fmt.Sprintf("%s %s: %s\nError occurred at line: %d\n%s", Program, Version, e.Msg, e.Line, hint)
	case KindBadArg:
		return fmt.Sprintf("Bad argument `%s'\nError occurred at line: %d\n%s", e.Msg, e.Line, hint)
	case KindKernel:
		return fmt.Sprintf("%s %s: \nline %d: %s\n", Program, Version, e.Line, e.Msg)
	case KindCommitExpected:
		return fmt.Sprintf("%s: COMMIT expected at line %d\n", Program, e.Line)
	}
	if e.Msg == "" {
		return fmt.Sprintf("%s: line %d failed\n", Program, e.Line)
	}
	return fmt.Sprintf("%s: line %d failed: %s.\n", Program, e.Line, e.Msg)
}

// Loader reads iptables-restore input.
type Loader struct {
	// NoFlush keeps what Base holds in each table instead of flushing
	// it (iptables-restore --noflush).
	NoFlush bool
	// Counters takes the [pkts:bytes] counters of the input
	// (iptables-restore -c); otherwise they are ignored.
	Counters bool
	// Base is the rule set the input applies to (nil = empty).
	Base *Ruleset
	// Sets resolves ipset names for -m set (nil = no sets known).
	Sets SetLookup
	// Table, when set, restores only that table (iptables-restore -T).
	Table string
	// Test is iptables-restore --test: lines are read and commands
	// parsed, but iptables-nft never runs the commands and aborts the
	// batch instead of committing it, so nothing running or committing
	// them refuses (a missing chain, rule or index, a bad policy name,
	// missing jump targets, loops, jump depth, hook and table checks,
	// deleting a chain still jumped to) is reported. The Ruleset
	// returned then holds no rule of the input: it is not the result.
	Test bool
}

// Load reads the whole input and returns the resulting rule set.
func (l *Loader) Load(r io.Reader) (*Ruleset, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return l.LoadString(string(data))
}

// LoadString is Load on a string. Lines are substrings of s: words the
// rule set keeps (comments, names) share its memory.
func (l *Loader) LoadString(s string) (*Ruleset, error) {
	st := &loadState{l: l, rs: l.Base.clone()}
	line := 0
	for len(s) > 0 {
		var ln string
		ln, s = netfilter.NextRestoreLine(s)
		line++
		if e := st.line(ln, line); e != nil {
			return nil, e
		}
	}
	if st.cur != nil {
		return nil, &RestoreError{Kind: KindCommitExpected, Line: line + 1}
	}
	st.rs.Compile()
	st.rs.prepareMemo()
	return st.rs, nil
}

type loadState struct {
	// pendingJump is the first jump to a chain that did not exist when
	// its rule was added; nft reports it when the table commits.
	pendingJump string
	// failed is the first command of the table being edited that the
	// batch could not run (a missing chain or rule, a bad index or
	// policy): iptables-restore runs a table's commands when it
	// commits, so a later line's parse error, or a missing COMMIT, is
	// what it reports instead
	failed error
	// made: the table being edited got a chain line or a command that
	// makes something (-A, -I, -R, -N, -P, -F of a chain); one that got
	// neither is not made in the kernel by the commit (iptables-save
	// shows none)
	made bool
	// kernelFails are the table's messages the kernel refuses when the
	// batch commits, in line order
	kernelFails []kernelFail
	// batchChains are the user chains the table's batch made (-N, a
	// chain line): the kernel cannot rename one in the same batch
	batchChains map[*Chain]bool
	// renames are the table's -E, done when it commits
	renames []rename
	l       *Loader
	rs      *Ruleset
	cur     *Table // table being edited, nil outside *TABLE ... COMMIT
	// skip is set while a table other than Loader.Table is read.
	skip bool
	// words and parser are reused by every command line (nothing
	// keeps either once the line is applied)
	words  []string
	parser cmdParser
	// echo, when set, gets the line iptables -v prints for each rule a
	// command adds, replaces, deletes or checks, where iptables-nft
	// prints it (apply)
	echo io.Writer
}

// echoRules writes the -v lines of rules to st.echo; none for a jump to
// a chain that is not there (iptables refuses that while it parses the
// command, before printing).
func (st *loadState) echoRules(rules ...*Rule) {
	if st.echo == nil {
		return
	}
	if len(rules) > 0 && rules[0].jumpName != "" && st.cur.byName[rules[0].jumpName] == nil {
		return
	}
	for _, r := range rules {
		io.WriteString(st.echo, RuleLine(r))
	}
}

func (st *loadState) line(s string, n int) error {
	if s == "\n" || strings.HasPrefix(s, "#") {
		return nil
	}
	inTable := st.cur != nil || st.skip
	if inTable && strings.HasPrefix(s, "COMMIT") && (len(s) == 6 || s[6] == '\n') {
		if st.skip {
			st.skip = false
			return nil
		}
		if st.failed != nil {
			return st.failed
		}
		if err := st.commit(n); err != nil {
			return err
		}
		st.cur = nil
		return nil
	}
	if strings.HasPrefix(s, "*") && !inTable {
		f := netfilter.RestoreFields(s[1:])
		if len(f) == 0 {
			return &RestoreError{Kind: KindParam, Line: n, Msg: fmt.Sprintf("%s: line %d table name invalid", Program, n)}
		}
		id, ok := ParseTable(f[0])
		if !ok {
			return &RestoreError{Kind: KindParam, Line: n, Msg: fmt.Sprintf("%s: line %d table name '%s' invalid", Program, n, f[0])}
		}
		if st.l.Table != "" && st.l.Table != f[0] {
			st.skip = true
			return nil
		}
		t := st.rs.Tables[id]
		if t == nil || !st.l.NoFlush {
			t = newTable(id)
		} else {
			t = t.clone()
		}
		st.cur, st.made = t, false
		st.kernelFails, st.renames = st.kernelFails[:0], st.renames[:0]
		clear(st.batchChains)
		return nil
	}
	if st.skip {
		return nil
	}
	var err error
	switch {
	case strings.HasPrefix(s, ":") && st.cur != nil:
		err = st.chainLine(s, n)
	case st.cur == nil:
		return &RestoreError{Kind: KindLineFailed, Line: n}
	default:
		err = st.commandLine(s, n)
	}
	if re, ok := err.(*RestoreError); ok && re.Kind == KindLineFailed {
		// a command the batch cannot run: reported at COMMIT, unless
		// an earlier command failed first (a jump to a missing chain
		// included)
		if st.failed == nil && st.pendingJump == "" {
			st.failed = err
		}
		return nil
	}
	return err
}

func (st *loadState) chainLine(s string, n int) error {
	st.made = true
	f := netfilter.RestoreFields(s[1:])
	if len(f) == 0 {
		return &RestoreError{Kind: KindParam, Line: n, Msg: fmt.Sprintf("%s: line %d chain name invalid", Program, n)}
	}
	name := f[0]
	if err := ValidChainName(name); err != nil {
		return &RestoreError{Kind: KindParam, Line: n, Msg: err.Error()}
	}
	if len(f) < 2 {
		return &RestoreError{Kind: KindParam, Line: n, Msg: fmt.Sprintf("%s: line %d policy invalid", Program, n)}
	}
	t := st.cur
	if c := t.byName[name]; c != nil && c.Builtin {
		makeBuiltin(c)
		// the counters are read only with -c (iptables-restore 1.8.9
		// takes ":INPUT DROP [0:x]" and ":INPUT DROP foo" without it)
		var ctr Counters
		if st.l.Counters {
			ok := false
			if len(f) > 2 {
				ctr, ok = parseBracketCounters(f[2])
			}
			if !ok {
				return &RestoreError{Kind: KindParam, Line: n, Msg: fmt.Sprintf("invalid policy counters for chain '%s'", name)}
			}
		}
		switch f[1] {
		case "ACCEPT":
			c.Policy = VerdictAccept
		case "DROP":
			c.Policy = VerdictDrop
		case "-":
		default:
			if st.l.Test {
				return nil // the policy is set when the batch runs
			}
			return &RestoreError{Kind: KindLineFailed, Line: n, Msg: "Bad policy name"}
		}
		if st.l.Counters {
			c.Counters = ctr
		}
		// the chain line sets the policy and its counters anew
		// (nft_chain_set with NFTA_CHAIN_COUNTERS)
		c.hits = new(hitCounter)
		return nil
	}
	if c := t.byName[name]; c != nil {
		// an existing user chain is flushed (nft_cmd_chain_restore),
		// and added again with the batch
		t.flushChain(c)
		st.madeInBatch(c)
		return nil
	}
	st.madeInBatch(t.addUserChain(name))
	return nil
}

// madeInBatch notes a user chain the table's batch makes.
func (st *loadState) madeInBatch(c *Chain) {
	if st.batchChains == nil {
		st.batchChains = map[*Chain]bool{}
	}
	st.batchChains[c] = true
}

// parseBracketCounters parses "[pkts:bytes]".
func parseBracketCounters(s string) (Counters, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return Counters{}, false
	}
	p, b, ok := strings.Cut(s[1:len(s)-1], ":")
	if !ok {
		return Counters{}, false
	}
	pv, err1 := parseCounter(p)
	bv, err2 := parseCounter(b)
	if err1 != nil || err2 != nil {
		return Counters{}, false
	}
	return Counters{pv, bv}, true
}

func (st *loadState) commandLine(s string, n int) error {
	var pre []string
	p, b, rest, need := netfilter.CutRuleCounters(s)
	if need != "" {
		return &RestoreError{Kind: KindParam, Line: n, Msg: fmt.Sprintf("Bad line %d: need %s", n, need)}
	}
	if p != "" && st.l.Counters {
		// tokenize_rule_counters: "[pkts:bytes]" becomes
		// "--set-counters pkts bytes" when restoring with -c
		pre = []string{"--set-counters", p, b}
	}
	st.words = netfilter.AppendWords(append(st.words[:0], pre...), rest)
	if msg := netfilter.RestoreWordsError(st.words, len(pre)); msg != "" {
		return &RestoreError{Kind: KindParam, Line: n, Msg: msg}
	}
	cmd, err := st.parser.parse(st.words, st.cur.ID, n, st.l.Sets)
	if err != nil {
		var pe *ParamError
		var ba *BadArgError
		switch {
		case errors.As(err, &ba):
			return &RestoreError{Kind: KindBadArg, Line: n, Msg: ba.Arg}
		case errors.As(err, &pe):
			return &RestoreError{Kind: KindParam, Line: n, Msg: pe.Msg}
		}
		return &RestoreError{Kind: KindParam, Line: n, Msg: err.Error()}
	}
	if st.l.Test {
		// --test parses each command but never runs it: what running it
		// refuses (a missing chain, rule or index) is never seen
		return nil
	}
	return st.apply(cmd, n)
}

func lineFailed(n int, msg string) error {
	return &RestoreError{Kind: KindLineFailed, Line: n, Msg: msg}
}

const (
	msgNoChain   = "No chain/target/match by that name"
	msgBadRule   = "Bad rule (does a matching rule exist in that chain?)"
	msgIndex     = "Index of insertion too big"
	msgBadPolicy = "Bad policy name"
	msgBuiltin   = "Bad built-in chain name"
)

// apply executes one command on the table being edited.
func (st *loadState) apply(cmd *command, n int) error {
	t := st.cur
	c := t.byName[cmd.chain]
	if strings.IndexByte("AIRNP", cmd.op) >= 0 || cmd.op == 'F' && c != nil {
		// (-F of a chain makes it, a builtin one included)
		st.made = true
	}
	for _, r := range cmd.rules {
		r.jumpName = cmd.jumpName
		r.op = cmd.op
		r.fresh = true
	}
	if cmd.jumpName != "" && (cmd.op == 'A' || cmd.op == 'I' || cmd.op == 'R') &&
		t.byName[cmd.jumpName] == nil && st.pendingJump == "" {
		st.pendingJump = cmd.jumpName
	}
	switch cmd.op {
	case 'A':
		// iptables-nft prints an appended rule before the kernel is
		// asked, so also into a chain that is not there
		st.echoRules(cmd.rules...)
		if c == nil {
			return lineFailed(n, msgNoChain)
		}
		makeBuiltin(c)
		c.Rules = append(c.Rules, cmd.rules...)
	case 'I':
		if c == nil {
			return lineFailed(n, msgNoChain)
		}
		pos := cmd.rulenum - 1
		if pos > len(c.Rules) {
			return lineFailed(n, msgIndex)
		}
		makeBuiltin(c)
		st.echoRules(cmd.rules...)
		for _, r := range cmd.rules {
			c.Rules = append(c.Rules[:pos], append([]*Rule{r}, c.Rules[pos:]...)...)
		}
	case 'R':
		if c == nil {
			return lineFailed(n, msgNoChain)
		}
		if len(cmd.rules) != 1 {
			return &RestoreError{Kind: KindParam, Line: n, Msg: "Replacement rule does not specify a unique address"}
		}
		if cmd.rulenum > len(c.Rules) {
			return lineFailed(n, msgNoChain)
		}
		makeBuiltin(c)
		st.echoRules(cmd.rules[0])
		c.Rules[cmd.rulenum-1] = cmd.rules[0]
	case 'D':
		if c == nil {
			return lineFailed(n, msgNoChain)
		}
		if cmd.deleteNum {
			if cmd.rulenum > len(c.Rules) {
				return lineFailed(n, msgNoChain)
			}
			c.Rules = append(c.Rules[:cmd.rulenum-1], c.Rules[cmd.rulenum:]...)
			return nil
		}
		for _, r := range cmd.rules {
			i := findRule(c, r)
			if i < 0 {
				return lineFailed(n, msgBadRule)
			}
			st.echoRules(r)
			c.Rules = append(c.Rules[:i], c.Rules[i+1:]...)
		}
	case 'C':
		if c == nil {
			return lineFailed(n, msgNoChain)
		}
		for _, r := range cmd.rules {
			if findRule(c, r) < 0 {
				return lineFailed(n, msgBadRule)
			}
			st.echoRules(r)
		}
	case 'N':
		if c != nil {
			return lineFailed(n, "Chain already exists")
		}
		st.madeInBatch(t.addUserChain(cmd.chain))
	case 'X':
		if cmd.chain == "" {
			for _, uc := range t.userChains() {
				if t.referenced(uc.Name) {
					st.kernelFail(n, "CHAIN_DEL failed (Device or resource busy): chain "+uc.Name)
				}
				t.delChain(uc)
			}
			// and every builtin chain nft_may_delete_chain lets go: made,
			// empty (the kernel's rules counted too), its cached policy
			// ACCEPT. A policy this batch set on it is lost with it.
			for _, bc := range t.Chains {
				if bc.Builtin && bc.made && bc.cachePolicy == VerdictAccept && len(bc.Rules) == 0 {
					deleteBuiltin(bc)
				}
			}
			return nil
		}
		if c == nil {
			return lineFailed(n, msgNoChain)
		}
		if c.Builtin {
			// a builtin chain goes as in a bare -X, but the kernel's own
			// rules are not in the cache: the kernel refuses then (EBUSY)
			switch {
			case !c.made:
				return lineFailed(n, msgNoChain)
			case c.cachePolicy != VerdictAccept || hasFresh(c):
				return lineFailed(n, "Directory not empty")
			case len(c.Rules) > 0:
				st.kernelFail(n, "CHAIN_DEL failed (Device or resource busy): chain "+c.Name)
			}
			deleteBuiltin(c)
			return nil
		}
		t.flushChain(c)
		if t.referenced(c.Name) {
			st.kernelFail(n, "CHAIN_DEL failed (Device or resource busy): chain "+c.Name)
		}
		t.delChain(c)
	case 'F':
		if cmd.chain == "" {
			// the chains the kernel has (iptables-restore's cache): none
			// in a table this input replaces, so a bare -F there leaves
			// the rules this input added; with --noflush the chains the
			// table already had
			if !st.l.NoFlush || st.l.Base == nil || st.l.Base.Tables[t.ID] == nil {
				return nil
			}
			for _, ch := range t.Chains {
				if st.l.Base.Tables[t.ID].byName[ch.Name] != nil {
					t.flushChain(ch)
				}
			}
			return nil
		}
		if c == nil {
			return lineFailed(n, msgNoChain)
		}
		makeBuiltin(c)
		t.flushChain(c)
	case 'Z':
		chains := t.Chains
		if cmd.chain != "" {
			if c == nil || c.Builtin && !c.made {
				return lineFailed(n, msgNoChain)
			}
			chains = []*Chain{c}
		}
		for _, ch := range chains {
			if cmd.rulenum > 0 {
				if cmd.rulenum > len(ch.Rules) {
					return lineFailed(n, msgNoChain)
				}
				ch.Rules[cmd.rulenum-1] = ch.Rules[cmd.rulenum-1].withCounters(Counters{})
				continue
			}
			ch.Counters = Counters{}
			for i, r := range ch.Rules {
				ch.Rules[i] = r.withCounters(Counters{})
			}
			if ch.Builtin && ch.made {
				// zeroing sets the chain again with the cache's copy:
				// the policy the kernel has for it (ACCEPT for a chain
				// this input made), undoing a policy this input set
				ch.Policy = ch.cachePolicy
			}
		}
	case 'P':
		if c == nil || !c.Builtin {
			return lineFailed(n, msgBuiltin)
		}
		var v Verdict
		switch cmd.policy {
		case "ACCEPT":
			v = VerdictAccept
		case "DROP":
			v = VerdictDrop
		default:
			return lineFailed(n, msgBadPolicy)
		}
		makeBuiltin(c)
		c.Policy = v
	case 'E':
		if c == nil {
			return lineFailed(n, msgNoChain)
		}
		if c.Builtin {
			return lineFailed(n, "Operation not permitted")
		}
		if t.byName[cmd.newName] != nil {
			return lineFailed(n, "File exists")
		}
		// nft_chain_user_rename queues the rename by the chain's handle
		// and leaves iptables-nft's cache as it was: the batch's later
		// commands still name the chain by its old name, and the kernel
		// renames it when the batch commits. A chain this batch made has
		// no handle yet: the kernel finds nothing to rename.
		if st.batchChains[c] {
			st.kernelFail(n, "CHAIN_RENAME failed (No such file or directory): chain "+cmd.newName)
		}
		st.renames = append(st.renames, rename{c, cmd.newName})
	}
	return nil
}

// rename is a -E the batch commits.
type rename struct {
	c    *Chain
	name string
}

// kernelFail is a message of the batch the kernel refuses at commit.
type kernelFail struct {
	line int
	msg  string
}

// kernelFail records that the kernel refuses line n's message when the
// batch commits (the batch then fails: the commands after it still run
// against iptables-nft's cache).
func (st *loadState) kernelFail(n int, msg string) {
	st.kernelFails = append(st.kernelFails, kernelFail{n, msg})
}

// batchError is the failed messages of a batch as iptables-nft 1.8.9
// prints them: blamed on line, then one line each in line order, at most
// maxBatchErrors.
func batchError(line int, fails []kernelFail) error {
	slices.SortStableFunc(fails, func(a, b kernelFail) int { return a.line - b.line })
	if len(fails) > maxBatchErrors {
		fails = fails[:maxBatchErrors]
	}
	var msg strings.Builder
	for i, f := range fails {
		if i > 0 {
			fmt.Fprintf(&msg, "\nline %d: ", f.line)
		}
		msg.WriteString(f.msg)
	}
	return &RestoreError{Kind: KindKernel, Line: line, Msg: msg.String()}
}

// applyRenames does the batch's -E in order, on the chains still there.
func (st *loadState) applyRenames() {
	t := st.cur
	for _, rn := range st.renames {
		c := rn.c
		if t.byName[c.Name] != c {
			continue // deleted after its -E
		}
		for _, ch := range t.Chains {
			for _, r := range ch.Rules {
				if r.jumpName == c.Name {
					r.jumpName = rn.name
				}
			}
		}
		delete(t.byName, c.Name)
		c.Name = rn.name
		t.byName[c.Name] = c
	}
	st.renames = st.renames[:0]
}

func (r *Rule) withCounters(c Counters) *Rule {
	nr := *r
	nr.Counters = c
	return &nr
}

// findRule finds the first rule of c equal to r (as -D does: the same
// specification, compared in its saved form).
func findRule(c *Chain, r *Rule) int {
	want := ruleSpec(r)
	for i, x := range c.Rules {
		if ruleSpec(x) == want {
			return i
		}
	}
	return -1
}

func ruleSpec(r *Rule) string {
	var w SaveWriter
	writeRuleBody(&w, r)
	w.WriteString("|" + r.jumpName)
	return w.String()
}

// commit checks the table as the kernel does when the batch is
// committed, binds jumps, and installs the table in the working set.
func (st *loadState) commit(n int) error {
	t := st.cur
	st.applyRenames()
	t.sortChains()
	if st.l.Test {
		// --test aborts the batch instead of committing it: what only
		// committing it refuses (missing jump targets, loops, nesting,
		// hooks) is never seen
		st.rs.Tables[t.ID] = t
		return nil
	}
	if st.pendingJump != "" {
		return &RestoreError{Kind: KindParam, Line: n, Msg: fmt.Sprintf("Chain '%s' does not exist", st.pendingJump)}
	}
	if len(st.kernelFails) > 0 {
		return batchError(st.kernelFails[0].line, st.kernelFails)
	}
	// every jump target must exist (nft checks this at commit and
	// reports the COMMIT line)
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if r.jumpName == "" {
				r.Jump = nil
				continue
			}
			j := t.byName[r.jumpName]
			if j == nil {
				return &RestoreError{Kind: KindParam, Line: n, Msg: fmt.Sprintf("Chain '%s' does not exist", r.jumpName)}
			}
			if j.Builtin {
				return &RestoreError{Kind: KindKernel, Line: r.Line, Msg: fmt.Sprintf("%s failed (Operation not supported): rule in chain %s", opName(r.op), c.Name)}
			}
			r.Jump = j
		}
	}
	if err := t.validate(); err != nil {
		return err
	}
	if !st.made && (st.l.Base == nil || st.l.Base.Tables[t.ID] == nil) {
		// nothing made: the table is not made in the kernel
		return nil
	}
	st.rs.Tables[t.ID] = t
	return nil
}

func opName(op byte) string {
	switch op {
	case 'I':
		return "RULE_INSERT"
	case 'R':
		return "RULE_REPLACE"
	}
	return "RULE_APPEND"
}

// jumpStackSize is NFT_JUMP_STACK_SIZE: the deepest chain nesting the
// kernel accepts (net/netfilter/nf_tables_api.c nft_chain_validate).
const jumpStackSize = 16

// validate computes every chain's hook reachability, rejects loops and
// too deep nesting (-EMLINK, "Too many links", validateJumps), and runs
// the extensions' hook checks.
func (t *Table) validate() error {
	if err := t.validateJumps(); err != nil {
		return err
	}
	// nft checks a rule when it is added: a hook violation is reported
	// on the earliest line at which it exists, the offending rule or
	// the later jump completing a path to it
	// (the reach times are computed only once a check fails)
	var times map[*Chain]*[netfilter.NumHooks]reachStep
	timesOf := func(c *Chain) *[netfilter.NumHooks]reachStep {
		if times == nil {
			times = t.reachTimes()
		}
		return times[c]
	}
	var first *RestoreError
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if len(r.Matches) == 0 && r.Target == nil {
				continue
			}
			if err := checkRuleHooks(t.ID, c, r, timesOf); err != nil && (first == nil || err.Line < first.Line) {
				first = err
			}
		}
	}
	if first != nil {
		return first
	}
	return nil
}

// reachStep is when a chain became reachable from a hook: the input
// line and the jump rule (and its chain) that completed the path; a nil
// rule is the base chain itself.
type reachStep struct {
	line  int
	rule  *Rule
	chain *Chain
}

// reachTimes computes for every chain and hook the earliest line after
// which the chain is reachable from the hook (the latest jump on the
// best path). Loops were refused before.
func (t *Table) reachTimes() map[*Chain]*[netfilter.NumHooks]reachStep {
	times := map[*Chain]*[netfilter.NumHooks]reachStep{}
	for _, c := range t.Chains {
		var ts [netfilter.NumHooks]reachStep
		for h := range ts {
			ts[h].line = -1
		}
		if c.Builtin {
			ts[c.Hook].line = 0
		}
		times[c] = &ts
	}
	for changed := true; changed; {
		changed = false
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if r.Jump == nil || times[r.Jump] == nil {
					continue
				}
				for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
					from := times[c][h]
					if from.line < 0 {
						continue
					}
					step := reachStep{from.line, from.rule, from.chain}
					if r.Line >= from.line {
						step = reachStep{r.Line, r, c}
					}
					to := &times[r.Jump][h]
					if to.line < 0 || step.line < to.line {
						*to = step
						changed = true
					}
				}
			}
		}
	}
	return times
}

// withErrno puts the strerror text of an *Errno check error into the
// kernel's refusal message in place of EINVAL's.
func withErrno(fail *RestoreError, err error) *RestoreError {
	var e *Errno
	if !errors.As(err, &e) {
		return fail
	}
	f := *fail
	f.Msg = strings.Replace(f.Msg, "(Invalid argument)", "("+e.Text+")", 1)
	return &f
}

func checkRuleHooks(t TableID, c *Chain, r *Rule, timesOf func(*Chain) *[netfilter.NumHooks]reachStep) *RestoreError {
	failAt := func(r *Rule, c *Chain) *RestoreError {
		return &RestoreError{Kind: KindKernel, Line: r.Line, Msg: fmt.Sprintf("%s failed (Invalid argument): rule in chain %s", opName(r.op), c.Name)}
	}
	check := func(x any) *RestoreError {
		if ec, ok := x.(EntryChecker); ok {
			var own netfilter.HookMask
			if c.Builtin {
				own = netfilter.Hooks(c.Hook)
			}
			if err := ec.CheckEntry(t, own); err != nil {
				return withErrno(failAt(r, c), err)
			}
		}
		hc, ok := x.(HookChecker)
		if !ok {
			return nil
		}
		if err := hc.CheckHooks(t, c.Reach); err != nil {
			fail := failAt(r, c)
			if hc.CheckHooks(t, 0) != nil {
				return withErrno(fail, err) // refused whatever the hooks
			}
			times := timesOf(c)
			if times == nil {
				return withErrno(fail, err)
			}
			// the hook that made the rule invalid earliest
			var best *RestoreError
			for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
				st := times[h]
				if !c.Reach.Has(h) || st.line < 0 || hc.CheckHooks(t, netfilter.Hooks(h)) == nil {
					continue
				}
				e := fail
				if st.rule != nil && st.line > r.Line {
					e = failAt(st.rule, st.chain)
				}
				if best == nil || e.Line < best.Line {
					best = e
				}
			}
			if best == nil {
				return fail
			}
			return best
		}
		return nil
	}
	for _, m := range r.Matches {
		if err := check(m); err != nil {
			return err
		}
		if pc, ok := m.(ProtoChecker); ok {
			if n, isNative := m.(nftNative); isNative && n.nftNative() {
				continue // translated to nftables expressions, no xt check
			}
			if r.IP.Proto != pc.RequiredProto() || r.IP.Inv&InvProto != 0 {
				return &RestoreError{Kind: KindKernel, Line: r.Line, Msg: fmt.Sprintf("%s failed (Invalid argument): rule in chain %s", opName(r.op), c.Name)}
			}
		}
	}
	if r.Target != nil {
		if err := check(r.Target); err != nil {
			return err
		}
		if pc, ok := r.Target.(ProtoChecker); ok && (r.IP.Proto != pc.RequiredProto() || r.IP.Inv&InvProto != 0) {
			return &RestoreError{Kind: KindKernel, Line: r.Line, Msg: fmt.Sprintf("%s failed (Invalid argument): rule in chain %s", opName(r.op), c.Name)}
		}
	}
	return nil
}

func newTable(id TableID) *Table {
	t := &Table{ID: id, byName: map[string]*Chain{}}
	for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
		if tableHooks[id].Has(h) {
			c := &Chain{Name: h.String(), Builtin: true, Hook: h, Policy: VerdictAccept, hits: new(hitCounter)}
			t.Chains = append(t.Chains, c)
			t.byName[c.Name] = c
		}
	}
	return t
}

// clone copies the table deeply enough that edits don't reach the
// original (chains and rule slices; rules themselves are immutable).
func (t *Table) clone() *Table {
	nt := &Table{ID: t.ID, byName: make(map[string]*Chain, len(t.Chains))}
	for _, c := range t.Chains {
		nc := *c
		// a copy starts a batch: the cache holds the policy it has
		nc.cachePolicy = c.Policy
		nc.Rules = make([]*Rule, len(c.Rules))
		for i, r := range c.Rules {
			nr := *r
			nr.fresh = false
			nc.Rules[i] = &nr
		}
		nt.Chains = append(nt.Chains, &nc)
		nt.byName[nc.Name] = &nc
	}
	// a jump names the copy's chain: a table the next input leaves
	// alone is not committed again (which binds jumps), and a rule of
	// the copy that jumped into the old table's chain would count and
	// trace there
	for _, c := range nt.Chains {
		for _, r := range c.Rules {
			if r.Jump != nil {
				r.Jump = nt.byName[r.Jump.Name]
			}
		}
	}
	return nt
}

func (rs *Ruleset) clone() *Ruleset {
	n := &Ruleset{}
	if rs == nil {
		return n
	}
	for i, t := range rs.Tables {
		if t != nil {
			n.Tables[i] = t.clone()
		}
	}
	return n
}

func (t *Table) addUserChain(name string) *Chain {
	c := &Chain{Name: name}
	t.Chains = append(t.Chains, c)
	t.byName[name] = c
	return c // sorted at commit
}

// sortChains keeps builtin chains in hook order first, then user chains
// sorted by name (nft_cache_sort_chains).
func (t *Table) sortChains() {
	// builtin chains by hook, then user chains by name: every key is
	// unique, so an unstable sort gives the one order (and a table saved
	// by iptables-save is in it already)
	cmp := func(a, b *Chain) int {
		switch {
		case a.Builtin != b.Builtin:
			if a.Builtin {
				return -1
			}
			return 1
		case a.Builtin:
			return int(a.Hook) - int(b.Hook)
		}
		return strings.Compare(a.Name, b.Name)
	}
	if !slices.IsSortedFunc(t.Chains, cmp) {
		slices.SortFunc(t.Chains, cmp)
	}
}

func (t *Table) userChains() []*Chain {
	var out []*Chain
	for _, c := range t.Chains {
		if !c.Builtin {
			out = append(out, c)
		}
	}
	return out
}

func (t *Table) flushChain(c *Chain) { c.Rules = nil }

// makeBuiltin notes that the batch makes builtin chain c in the kernel
// (nft_xt_builtin_init for one chain, when a command names it): the
// cache's copy has the default policy, ACCEPT.
func makeBuiltin(c *Chain) {
	if c != nil && c.Builtin && !c.made {
		c.made, c.cachePolicy = true, VerdictAccept
	}
}

// deleteBuiltin deletes builtin chain c from the kernel (-X): it is shown
// again with policy ACCEPT and no counters, and made again by the next
// command that names it.
func deleteBuiltin(c *Chain) {
	c.made = false
	c.Policy, c.cachePolicy = VerdictAccept, VerdictAccept
	c.Counters = Counters{}
	c.hits = new(hitCounter)
}

// hasFresh reports whether c has a rule this batch added (one in
// iptables-nft's rule cache, unlike the kernel's own rules when a
// single chain is deleted).
func hasFresh(c *Chain) bool {
	for _, r := range c.Rules {
		if r.fresh {
			return true
		}
	}
	return false
}

func (t *Table) referenced(name string) bool {
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if r.jumpName == name {
				return true
			}
		}
	}
	return false
}

func (t *Table) delChain(c *Chain) {
	delete(t.byName, c.Name)
	for i, x := range t.Chains {
		if x == c {
			t.Chains = append(t.Chains[:i], t.Chains[i+1:]...)
			break
		}
	}
}

// maxBatchErrors is how many failed messages iptables-nft 1.8.9 printed
// for one batch in every case tried. Its text is then cut at about 1022
// bytes: the 16th line of a longer list was printed cut short, and
// sometimes for a later rule than the 16th ("line 53: RULE_APPEND" after
// line 47); uswitch prints the first 16 lines whole.
const maxBatchErrors = 16

// jumpsValid walks the jumps the base chains reach, as
// nft_chain_validate does from each base chain, using only the jump
// rules of lines up to last (last < 0: all of them), and sets each
// chain's Reach. It reports whether no chain is on a loop or deeper
// than the jump stack. Loops among chains no base chain reaches are
// never walked: the kernel accepts them ("-A X -j X" in a chain nothing
// jumps to commits, as A -> B -> A does).
func (t *Table) jumpsValid(last int) bool {
	for _, c := range t.Chains {
		c.Reach = 0
		c.vstate = 0
	}
	// deepest is the deepest each chain was entered at from the current
	// base chain: entering it again no deeper finds nothing new
	deepest := map[*Chain]int{}
	var visit func(c *Chain, hooks netfilter.HookMask, depth int) bool
	visit = func(c *Chain, hooks netfilter.HookMask, depth int) bool {
		if d, ok := deepest[c]; ok && d >= depth {
			return true
		}
		deepest[c] = depth
		c.Reach |= hooks
		c.vstate = 1
		defer func() { c.vstate = 0 }()
		for _, r := range c.Rules {
			if r.Jump == nil || (last >= 0 && r.fresh && r.Line > last) {
				continue
			}
			if r.Jump.vstate == 1 || depth+1 >= jumpStackSize {
				return false
			}
			if !visit(r.Jump, hooks, depth+1) {
				return false
			}
		}
		return true
	}
	ok := true
	for _, c := range t.Chains {
		if c.Builtin {
			clear(deepest)
			if !visit(c, netfilter.Hooks(c.Hook), 0) {
				ok = false
			}
		}
	}
	return ok
}

// validateJumps refuses loops and nesting deeper than the jump stack as
// the nf_tables batch does: the kernel validates the table again at each
// rule added once a jump is in it, so the first rule that fails is the
// one whose line makes the table invalid (the jump completing the loop
// or the too deep path, or the base chain's jump that reaches it, e.g.
// "line 10: RULE_APPEND failed (Too many links): rule in chain
// FORWARD"), and every later rule of the batch fails as well, since the
// failed ones stay in place until the batch is aborted. iptables-legacy
// reports "line N failed" on the COMMIT line instead (exit 1) and has no
// depth limit.
func (t *Table) validateJumps() error {
	if t.jumpsValid(-1) {
		return nil
	}
	var lines []int
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if r.Jump != nil && r.fresh {
				lines = append(lines, r.Line)
			}
		}
	}
	slices.Sort(lines)
	lines = slices.Compact(lines)
	// validity only goes down as jumps are added: the first line whose
	// jumps make the table invalid
	i := sort.Search(len(lines), func(i int) bool { return !t.jumpsValid(lines[i]) })
	first := 0 // cannot happen: what was committed before is valid
	if i < len(lines) {
		first = lines[i]
	}
	t.jumpsValid(-1) // Reach of the whole table
	var fails []kernelFail
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if r.fresh && r.Line >= first {
				fails = append(fails, kernelFail{r.Line, fmt.Sprintf("%s failed (Too many links): rule in chain %s", opName(r.op), c.Name)})
			}
		}
	}
	return batchError(first, fails)
}
