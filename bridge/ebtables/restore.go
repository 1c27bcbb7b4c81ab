package ebtables

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// RestoreError is a refused restore: what ebtables-restore prints on
// stderr, its exit status, and the line it blamed (0 if none).
type RestoreError struct {
	Stderr   string
	ExitCode int
	Line     int
}

func (e *RestoreError) Error() string { return strings.TrimRight(e.Stderr, "\n") }

// Loader reads ebtables-restore input.
type Loader struct {
	// Base is the rule set in place; with NoFlush the tables named are
	// changed from it instead of from empty (ebtables-restore --noflush).
	Base    *Ruleset
	NoFlush bool
	// Broute accepts the broute table, which ebtables-nft 1.8.9 does not
	// know ("table name 'broute' invalid"); legacy ebtables and 1.8.10
	// have it.
	Broute bool
	// NoBridgeMeta refuses --logical-in/--logical-out at commit as a
	// kernel without CONFIG_NFT_BRIDGE_META does (this machine's).
	NoBridgeMeta bool
	// Prog is the program name in messages ("ebtables-restore").
	Prog string
	// Counters takes a rule's counters from its "[pcnt:bcnt]" prefix
	// (ebtables-save -c), which ebtables-restore ignores.
	Counters bool

	cmdMode bool // Command: messages as the ebtables command prints them
}

const version = "v1.8.9 (nf_tables)"

func (l *Loader) prog() string {
	if l.Prog != "" {
		return l.Prog
	}
	return "ebtables-restore"
}

func (l *Loader) paramError(line int, msg string) *RestoreError {
	p := l.prog()
	if l.cmdMode {
		return &RestoreError{ExitCode: 2, Stderr: fmt.Sprintf(
			"%s %s: %s\nTry `%s -h' or '%s --help' for more information.\n", p, version, msg, p, p)}
	}
	return &RestoreError{ExitCode: 2, Line: line, Stderr: fmt.Sprintf(
		"%s %s: %s\nError occurred at line: %d\nTry `%s -h' or '%s --help' for more information.\n", p, version, msg, line, p, p)}
}

func (l *Loader) commitError() *RestoreError {
	p := l.prog()
	return &RestoreError{ExitCode: 1, Stderr: fmt.Sprintf("%s %s: %s: final implicit COMMIT failed\n", p, version, p)}
}

// kernelFail is a message of the batch the kernel refuses when it
// commits: "WHAT failed (ERRNO): OBJECT", from line.
type kernelFail struct {
	line int
	msg  string
}

// kernelFail records that the kernel refuses line n's message (what, its
// errno text, and the object, "rule in chain X" or "chain X").
func (st *loadState) kernelFail(n int, what, errno, object string) {
	st.kernelFails = append(st.kernelFails, kernelFail{n, fmt.Sprintf("%s failed (%s): %s", what, errno, object)})
}

// kernelError is the batch's refused messages as ebtables-nft prints
// them: one line each, in line order (the ebtables command: its one).
func (l *Loader) kernelError(fails []kernelFail) *RestoreError {
	if l.cmdMode {
		return &RestoreError{ExitCode: 4, Stderr: fmt.Sprintf("%s %s:  %s\n", l.prog(), version, fails[0].msg)}
	}
	fails = slices.Clone(fails)
	slices.SortStableFunc(fails, func(a, b kernelFail) int { return a.line - b.line })
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: \n", l.prog(), version)
	for _, f := range fails {
		fmt.Fprintf(&b, "line %d: %s\n", f.line, f.msg)
	}
	return &RestoreError{ExitCode: 4, Line: fails[0].line, Stderr: b.String()}
}

// newTable makes a table with its builtin chains, policy ACCEPT.
func newTable(id TableID) *Table {
	t := &Table{ID: id}
	for _, h := range id.Hooks() {
		t.Chains = append(t.Chains, &Chain{Name: h.String(), Builtin: true, Hook: h, Policy: VAccept})
	}
	return t
}

// Clone copies a rule set (rules are shared: they are immutable but for
// their counters, which the clone then shares).
func (rs *Ruleset) Clone() *Ruleset {
	out := &Ruleset{}
	for i, t := range rs.Tables {
		if t == nil {
			continue
		}
		nt := &Table{ID: t.ID}
		for _, c := range t.Chains {
			nc := *c
			nc.cachePolicy = c.Policy
			nc.Rules = append([]*Rule(nil), c.Rules...)
			nt.Chains = append(nt.Chains, &nc)
		}
		out.Tables[i] = nt
	}
	return out
}

type loadState struct {
	l   *Loader
	rs  *Ruleset
	tbl *Table
	// commitBad: a command the batch cannot be built for (a missing
	// chain or rule, a bad index), at line badLine, with badMsg the
	// errno text ebtables-restore prints when a COMMIT line commits
	// ("" for none). Only the first failure counts, a jump to a missing
	// chain (badJump) included: the batch is built in order.
	commitBad bool
	badLine   int
	badMsg    string
	// sawTable: a table line was read (the "line N failed" message
	// then has no errno text: ebtables-restore's ENOENT of its start is
	// gone once it has worked on a table)
	sawTable bool
	// kernelFails are the messages the kernel refuses when the batch
	// commits
	kernelFails []kernelFail
	// batchChains are the user chains this input made (-N, a chain
	// line), with the line. The kernel cannot delete or rename one in
	// the same batch: it refuses the CHAIN_USER_ADD (EOPNOTSUPP) and
	// what named the chain after it (ENOENT).
	batchChains map[*Chain]int
	// named are the later messages that name such a chain: rules into
	// it or jumping to it, flushes of it
	named   map[*Chain][]kernelFail
	badJump string
	// fresh are the rules this input added (for -Z)
	fresh map[*Rule]bool
	// the line's "[pcnt:bcnt]" (Loader.Counters)
	counters   bool
	pcnt, bcnt uint64
}

// Load reads a whole ebtables-restore input and returns the new rule
// set, or the error ebtables-restore would report. Nothing is half
// applied: the result replaces Base only when err is nil.
//
// ebtables-restore (ebtables-nft 1.8.9) is xtables-restore.c, as
// iptables-restore is: lines are read and split into words as
// iptables-restore does (netfilter.NextRestoreLine, SplitWords), and a
// line's kind is told by its first byte, with no white space skipped
// before it.
func (l *Loader) Load(text string) (*Ruleset, *RestoreError) {
	st := &loadState{l: l, rs: &Ruleset{}}
	if l.Base != nil {
		st.rs = l.Base.Clone()
	}
	n := 0
	for len(text) > 0 {
		var line string
		line, text = netfilter.NextRestoreLine(text)
		n++
		if err := st.line(n, line); err != nil {
			return nil, err
		}
	}
	if st.badJump != "" {
		return nil, l.paramError(n, fmt.Sprintf("Chain '%s' does not exist", st.badJump))
	}
	// a command the batch cannot be built for (a missing chain or rule)
	// stops the commit before the kernel sees a rule it would refuse
	if st.commitBad {
		return nil, l.commitError()
	}
	if len(st.kernelFails) > 0 {
		return nil, l.kernelError(st.kernelFails)
	}
	if st.loops() {
		return nil, l.commitError()
	}
	// a table this input named but made nothing in (no rule, policy
	// or user chain) is not made in the kernel either: ebtables-save
	// shows none
	for id, t := range st.rs.Tables {
		if t != nil && (l.Base == nil || l.Base.Tables[id] == nil) && !t.made() {
			st.rs.Tables[id] = nil
		}
	}
	return st.rs, nil
}

// made reports whether the restore made anything in t: a user chain,
// or a builtin chain by a rule or a policy (deleted again or not).
func (t *Table) made() bool {
	for _, c := range t.Chains {
		if !c.Builtin || c.Made || c.gone || len(c.Rules) > 0 {
			return true
		}
	}
	return false
}

// line runs one line, newline included (xtables_restore_parse_line).
func (st *loadState) line(n int, s string) *RestoreError {
	l := st.l
	inTable := st.tbl != nil
	switch {
	case s == "\n" || strings.HasPrefix(s, "#"):
		return nil
	case inTable && strings.HasPrefix(s, "COMMIT") && (len(s) == 6 || s[6] == '\n'):
		if st.badJump != "" {
			return l.paramError(n, fmt.Sprintf("Chain '%s' does not exist", st.badJump))
		}
		if st.commitBad {
			// a COMMIT line commits what came so far, and names the
			// command that failed
			why := ""
			if st.badMsg != "" {
				why = ": " + st.badMsg + "."
			}
			return &RestoreError{ExitCode: 1, Line: st.badLine, Stderr: fmt.Sprintf("%s: line %d failed%s\n", l.prog(), st.badLine, why)}
		}
		st.tbl = nil
		return nil
	case strings.HasPrefix(s, "*"):
		// also inside a table: ebtables-restore commits once, at the
		// end, so a new table line needs no COMMIT before it
		f := netfilter.RestoreFields(s[1:])
		if len(f) == 0 {
			return l.paramError(n, fmt.Sprintf("%s: line %d table name invalid", l.prog(), n))
		}
		id, ok := ParseTable(f[0])
		if !ok || id == BRoute && !l.Broute {
			return l.paramError(n, fmt.Sprintf("%s: line %d table name '%s' invalid", l.prog(), n, f[0]))
		}
		st.sawTable = true
		if l.NoFlush && st.rs.Tables[id] != nil {
			st.tbl = st.rs.Tables[id]
		} else {
			st.tbl = newTable(id)
			st.rs.Tables[id] = st.tbl
		}
		return nil
	case strings.HasPrefix(s, ":") && inTable:
		return st.chainLine(n, s)
	case !inTable:
		why := ""
		if !st.sawTable {
			why = ": No chain/target/match by that name."
		}
		return &RestoreError{ExitCode: 1, Line: n, Stderr: fmt.Sprintf("%s: line %d failed%s\n", l.prog(), n, why)}
	}
	// a "[pcnt:bcnt]" prefix: ebtables-restore reads and ignores it;
	// with Loader.Counters it sets the rule's counters
	p, b, rest, need := netfilter.CutRuleCounters(s)
	if need != "" {
		return l.paramError(n, fmt.Sprintf("Bad line %d: need %s", n, need))
	}
	hasCounters := false
	var pc, bc uint64
	if p != "" && l.Counters {
		var e1, e2 error
		pc, e1 = strconv.ParseUint(p, 10, 64)
		bc, e2 = strconv.ParseUint(b, 10, 64)
		hasCounters = e1 == nil && e2 == nil
	}
	words := netfilter.SplitWords(rest)
	if msg := netfilter.RestoreWordsError(words, 0); msg != "" {
		return l.paramError(n, msg)
	}
	if !hasCounters {
		return st.command(n, words)
	}
	st.counters, st.pcnt, st.bcnt = true, pc, bc
	err := st.command(n, words)
	st.counters = false
	return err
}

// ChainNameProblem is assert_valid_chain_name (xshared.c), which
// xtables-restore runs on a chain line's name: "" when the name is
// good, else the message. The ebtables command's -N and -E do not run
// it, so a name they take may print (ebtables-save) to a chain line
// that ebtables-restore refuses. The names that clash with a target are the
// standard verdicts (the bridge family's extension targets are not
// looked up there: ":mark ACCEPT" is taken).
func ChainNameProblem(name string) string {
	switch {
	case len(name) >= 29:
		return fmt.Sprintf("chain name `%s' too long (must be under 29 chars)", name)
	case name[0] == '-' || name[0] == '!':
		return fmt.Sprintf("chain name not allowed to start with `%c'", name[0])
	case name == "ACCEPT" || name == "DROP" || name == "RETURN" || name == "QUEUE":
		return "chain name may not clash with target name"
	case strings.ContainsAny(name, " \t\n\v\f\r"):
		return fmt.Sprintf("Invalid chain name `%s'", name)
	}
	return ""
}

// chainLine is a ":NAME POLICY" line: a policy for a builtin chain, a
// user chain made.
func (st *loadState) chainLine(n int, s string) *RestoreError {
	l := st.l
	f := netfilter.RestoreFields(s[1:])
	if len(f) == 0 {
		return l.paramError(n, fmt.Sprintf("%s: line %d chain name invalid", l.prog(), n))
	}
	if msg := ChainNameProblem(f[0]); msg != "" {
		return l.paramError(n, msg)
	}
	if len(f) < 2 {
		return l.paramError(n, fmt.Sprintf("%s: line %d policy invalid", l.prog(), n))
	}
	pol, ok := parseVerdict(f[1])
	c := st.tbl.Chain(f[0])
	if c == nil {
		if !ok || pol == VContinue {
			st.bad(n, "")
			return nil
		}
		st.madeInBatch(n, st.tbl.addUserChain(f[0], pol))
		return nil
	}
	if !ok || pol == VContinue || c.Builtin && pol == VReturn {
		st.bad(n, "")
		return nil
	}
	c.Policy = pol
	c.make()
	return nil
}

// command runs one ebtables command of the table being restored. The
// words are parsed as the ebtables command parses its arguments
// (ParseCommandLine: ebtables-restore hands each line to do_commandeb
// after "-t TABLE"); what a command changes is queued in the one batch
// ebtables-restore commits at the end, so what the kernel refuses
// there (a missing chain, a bad index) is remembered and reported after
// the last line.
func (st *loadState) command(n int, w []string) *RestoreError {
	l := st.l
	if len(w) == 0 {
		return nil
	}
	tbl := st.tbl
	o := CmdOptions{NoBridgeMeta: l.NoBridgeMeta, Broute: l.Broute}
	if !l.cmdMode {
		o.restoreProg = l.prog()
	}
	cl, cerr := ParseCommandLine(append([]string{"-t", tbl.ID.String()}, w...), o)
	if cerr != nil {
		if cerr.msg != "" {
			return l.paramError(n, cerr.msg)
		}
		return &RestoreError{ExitCode: cerr.Code, Line: n, Stderr: cerr.Stderr}
	}
	switch cl.Op {
	case 'A', 'I':
		// the jump is resolved when the rule is built, before its
		// chain is looked up, and the kernel sees the rule last
		if cl.badJump != "" && tbl.Chain(cl.badJump) == nil && st.badJump == "" && !st.commitBad {
			st.badJump = cl.badJump
		}
		c := tbl.Chain(cl.Chain)
		if c == nil {
			st.bad(n, msgNoChain)
			return nil
		}
		what := "RULE_APPEND"
		if cl.Op == 'I' {
			what = "RULE_INSERT"
		}
		if cl.kernelErr != nil {
			st.kernelFail(n, what, cl.kernelErr.msg, "rule in chain "+cl.Chain)
			return nil
		}
		r := cl.Rule
		if st.counters && !cl.counters {
			r.Hits.Set(st.pcnt, st.bcnt)
		}
		c.make()
		if st.fresh == nil {
			st.fresh = map[*Rule]bool{}
		}
		st.fresh[r] = true
		if cl.Op == 'A' {
			c.Rules = append(c.Rules, r)
		} else if !insertRule(c, cl.RuleNum, r) {
			st.bad(n, msgInsertTooBig)
			return nil
		}
		st.naming(c, n, what, "rule in chain "+c.Name)
		if j := tbl.Chain(r.Jump); r.Verdict == VJump && j != nil && j != c {
			st.naming(j, n, what, "rule in chain "+c.Name)
		}
	case 'D':
		c := tbl.Chain(cl.Chain)
		if c == nil {
			st.bad(n, msgNoChain)
			return nil
		}
		if !cl.ByNum {
			if cl.kernelErr == nil {
				if i := findRule(c, cl.Rule); i >= 0 {
					c.Rules = append(c.Rules[:i], c.Rules[i+1:]...)
					return nil
				}
			}
			st.bad(n, msgBadRule)
			return nil
		}
		if msg := deleteRange(c, cl.RuleNum, cl.RuleEnd, true); msg != "" {
			st.bad(n, msg)
		}
	case 'N', 'P':
		for _, name := range cl.newChains {
			if tbl.Chain(name) != nil {
				st.bad(n, "Chain already exists")
				return nil
			}
			st.madeInBatch(n, tbl.addUserChain(name, VAccept))
		}
		if cl.PolicySet {
			c := tbl.Chain(cl.Chain)
			if c == nil {
				st.bad(n, "")
				return nil
			}
			c.Policy = cl.Policy
			c.make()
		}
	case 'X':
		if cl.Chain == "" {
			// the user chains, and each made builtin chain that is empty
			// with ACCEPT in the cache (nft_may_delete_chain): a policy
			// this input set on it goes with it
			var keep []*Chain
			for _, c := range tbl.Chains {
				if !c.Builtin {
					st.deleted(n, c)
					continue
				}
				if c.Made && c.cachePolicy == VAccept && len(c.Rules) == 0 {
					c.unmake()
				}
				keep = append(keep, c)
			}
			tbl.Chains = keep
			return nil
		}
		c := tbl.Chain(cl.Chain)
		if c != nil && c.Builtin {
			switch {
			case !c.Made:
				st.bad(n, msgNoChain)
			case c.cachePolicy != VAccept || len(c.Rules) > 0:
				st.bad(n, "Directory not empty")
			default:
				c.unmake()
			}
			return nil
		}
		if c == nil {
			st.bad(n, msgNoChain)
			return nil
		}
		st.deleted(n, c)
		tbl.Chains = removeChain(tbl.Chains, c)
	case 'F':
		if cl.Chain == "" {
			// ebtables-restore 1.8.9 leaves the table as it is for a
			// bare -F (TestRestoreSeqKernel)
			return nil
		}
		c := tbl.Chain(cl.Chain)
		if c == nil {
			st.bad(n, msgNoChain)
			return nil
		}
		st.naming(c, n, "RULE_FLUSH", "rule in chain "+c.Name)
		c.Rules = nil
	case 'Z':
		// the chain must be in the kernel (a builtin chain is made by
		// its first rule or policy)
		if c := tbl.Chain(cl.Chain); cl.Chain != "" && (c == nil || c.Builtin && !c.Made) {
			st.bad(n, msgNoChain)
			return nil
		}
		// zeroing sets each builtin chain again with the policy the
		// kernel has for it (ebtables-restore's cache: ACCEPT for a
		// chain this input makes), undoing a policy this input set
		for _, c := range tbl.Chains {
			if c.Builtin && c.Made && (cl.Chain == "" || c.Name == cl.Chain) {
				c.Policy = c.cachePolicy
			}
		}
		// zeroing replaces each rule whose counters are not zero, and
		// the kernel refuses to replace a rule of this same batch
		// (RULE_REPLACE, EINVAL). A rule already in the kernel (with
		// --noflush) keeps its counters here: uswitch's restore does
		// not zero them.
		for _, c := range tbl.Chains {
			if cl.Chain != "" && c.Name != cl.Chain {
				continue
			}
			for _, r := range c.Rules {
				if p, b := r.Hits.Load(); st.fresh[r] && p|b != 0 {
					st.kernelFail(n, "RULE_REPLACE", "Invalid argument", "rule in chain "+c.Name)
				}
			}
		}
	case 'K':
		// --check: the batch fails at commit when the rule is not there
		if c := tbl.Chain(cl.Chain); c == nil || cl.kernelErr != nil || findRule(c, cl.Rule) < 0 {
			st.bad(n, msgBadRule)
		}
	case 'T':
		return l.paramError(n, "--init-table is not supported in daemon mode")
	case 'E':
		c := tbl.Chain(cl.Chain)
		if c == nil || c.Builtin {
			st.bad(n, msgNoChain)
			return nil
		}
		if tbl.Chain(cl.NewName) != nil {
			st.bad(n, "File exists")
			return nil
		}
		if _, ok := st.batchChains[c]; ok {
			// renamed by its handle, which a chain of this batch does
			// not have yet
			st.kernelFail(n, "CHAIN_RENAME", "No such file or directory", "chain "+cl.NewName)
		}
		renameChain(tbl, c, cl.NewName)
	}
	return nil
}

// addUserChain appends a user chain with policy pol.
func (t *Table) addUserChain(name string, pol Verdict) *Chain {
	c := &Chain{Name: name, Policy: pol}
	t.Chains = append(t.Chains, c)
	return c
}

// madeInBatch notes user chain c, made by line n.
func (st *loadState) madeInBatch(n int, c *Chain) {
	if st.batchChains == nil {
		st.batchChains, st.named = map[*Chain]int{}, map[*Chain][]kernelFail{}
	}
	st.batchChains[c] = n
}

// naming notes line n's message what (on object) if it names a chain
// this batch made: it fails (ENOENT) should the chain be deleted.
func (st *loadState) naming(c *Chain, n int, what, object string) {
	if _, ok := st.batchChains[c]; ok {
		st.named[c] = append(st.named[c], kernelFail{n, what + " failed (No such file or directory): " + object})
	}
}

// deleted notes the deletion of user chain c at line n. One this batch
// made fails in the kernel: its CHAIN_USER_ADD (EOPNOTSUPP), and the
// messages that named it and the CHAIN_DEL (ENOENT). One the kernel has
// is not deleted while it has rules or a rule jumps to it (EBUSY).
func (st *loadState) deleted(n int, c *Chain) {
	add, ok := st.batchChains[c]
	if !ok {
		if len(c.Rules) > 0 || st.referenced(c.Name) {
			st.kernelFail(n, "CHAIN_DEL", "Device or resource busy", "chain "+c.Name)
		}
		return
	}
	st.kernelFail(add, "CHAIN_USER_ADD", "Operation not supported", "chain "+c.Name)
	st.kernelFails = append(st.kernelFails, st.named[c]...)
	st.kernelFail(n, "CHAIN_DEL", "No such file or directory", "chain "+c.Name)
	delete(st.batchChains, c)
}

// make notes that a command makes c in the kernel: a builtin chain
// made now is cached with the default policy, ACCEPT.
func (c *Chain) make() {
	if !c.Made {
		c.Made, c.gone, c.cachePolicy = true, false, VAccept
	}
}

// unmake deletes builtin chain c (-X): it lists again as ACCEPT, and the
// next command that names it makes it again.
func (c *Chain) unmake() {
	c.Made, c.gone, c.Policy, c.cachePolicy = false, true, VAccept, VAccept
}

// bad records a command the batch cannot be built for, unless an
// earlier command failed.
func (st *loadState) bad(n int, msg string) {
	if st.commitBad || st.badJump != "" {
		return
	}
	st.commitBad, st.badLine, st.badMsg = true, n, msg
}

func (st *loadState) referenced(name string) bool {
	for _, c := range st.tbl.Chains {
		for _, r := range c.Rules {
			if r.Verdict == VJump && r.Jump == name {
				return true
			}
		}
	}
	return false
}

// loops reports a jump loop among user chains (the kernel refuses the
// batch: ELOOP).
func (st *loadState) loops() bool {
	for _, t := range st.rs.Tables {
		if t == nil {
			continue
		}
		if jumpLoop(t, false, true) {
			return true
		}
	}
	return false
}

// Command applies one ebtables command line (the words after
// "ebtables": an optional -t TABLE, then -A, -I, -N, -X, -F, -P or -E
// and its arguments) to Base, as ebtables-nft 1.8.9 does, and returns
// the new rule set or the error the ebtables command prints (messages
// without a line, exit status 1, 2 or 4).
func (l *Loader) Command(words []string) (*Ruleset, *RestoreError) {
	lc := *l
	lc.cmdMode, lc.NoFlush = true, true
	if lc.Prog == "" {
		lc.Prog = "ebtables"
	}
	table := "filter"
	for len(words) >= 2 && (words[0] == "-t" || words[0] == "--table") {
		table, words = words[1], words[2:]
	}
	id, ok := ParseTable(table)
	if !ok || id == BRoute && !lc.Broute {
		return nil, &RestoreError{ExitCode: 3, Stderr: fmt.Sprintf(
			"%s %s: table '%s' does not exist\nPerhaps %s or your kernel needs to be upgraded.\n", lc.Prog, version, table, lc.Prog)}
	}
	st := &loadState{l: &lc, rs: &Ruleset{}}
	if lc.Base != nil {
		st.rs = lc.Base.Clone()
	}
	if st.rs.Tables[id] == nil {
		st.rs.Tables[id] = newTable(id)
	}
	st.tbl = st.rs.Tables[id]
	if err := st.command(1, words); err != nil {
		return nil, err
	}
	if st.badJump != "" {
		return nil, lc.paramError(1, fmt.Sprintf("Chain '%s' does not exist", st.badJump))
	}
	if len(st.kernelFails) > 0 {
		return nil, lc.kernelError(st.kernelFails)
	}
	if st.commitBad || st.loops() {
		return nil, &RestoreError{ExitCode: 1, Stderr: lc.Prog + ": No chain/target/match by that name\n"}
	}
	return st.rs, nil
}

// ParseRule parses the rule part of "ebtables -t TABLE -A CHAIN
// <words>" against a fresh table (CHAIN may be a user chain, made
// first) and returns the rule, or the error ebtables prints.
func ParseRule(table TableID, chain string, words []string) (*Rule, *RestoreError) {
	var base *Ruleset
	t := newTable(table)
	if t.Chain(chain) == nil {
		t.Chains = append(t.Chains, &Chain{Name: chain, Policy: VAccept})
	}
	base = &Ruleset{}
	base.Tables[table] = t
	l := &Loader{Base: base, Broute: true}
	rs, err := l.Command(append([]string{"-t", table.String(), "-A", chain}, words...))
	if err != nil {
		return nil, err
	}
	c := rs.Tables[table].Chain(chain)
	return c.Rules[len(c.Rules)-1], nil
}

// withJump copies r with another jump target (and its counters).
func (r *Rule) withJump(name string) *Rule {
	n := &Rule{
		ProtoSet: r.ProtoSet, ProtoInv: r.ProtoInv, Length: r.Length, Proto: r.Proto,
		Src: r.Src, Dst: r.Dst, In: r.In, Out: r.Out, LogicalIn: r.LogicalIn, LogicalOut: r.LogicalOut,
		Matches: r.Matches, Watchers: r.Watchers, Verdict: r.Verdict, Jump: name, Target: r.Target,
		saveOrder: r.saveOrder,
	}
	n.Hits.Set(r.Counts())
	return n
}
