package ebtables

import (
	"fmt"
	"strconv"
	"strings"
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

func (l *Loader) kernelError(line int, errno, chain string) *RestoreError {
	if l.cmdMode {
		return &RestoreError{ExitCode: 4, Stderr: fmt.Sprintf(
			"%s %s:  RULE_APPEND failed (%s): rule in chain %s\n", l.prog(), version, errno, chain)}
	}
	return &RestoreError{ExitCode: 4, Line: line, Stderr: fmt.Sprintf(
		"%s %s: \nline %d: RULE_APPEND failed (%s): rule in chain %s\n", l.prog(), version, line, errno, chain)}
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
			nc.Rules = append([]*Rule(nil), c.Rules...)
			nt.Chains = append(nt.Chains, &nc)
		}
		out.Tables[i] = nt
	}
	return out
}

// SplitWords splits a line into words as ebtables-restore does: blanks
// separate, double quotes group (and are removed).
func SplitWords(s string) []string {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quoted = !quoted
			in = true
		case !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'):
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

type loadState struct {
	l         *Loader
	rs        *Ruleset
	tbl       *Table
	commitBad bool
	kernelErr *RestoreError
	badJump   string
	// the line's "[pcnt:bcnt]" (Loader.Counters)
	counters   bool
	pcnt, bcnt uint64
}

// Load reads a whole ebtables-restore input and returns the new rule
// set, or the error ebtables-restore would report. Nothing is half
// applied: the result replaces Base only when err is nil.
func (l *Loader) Load(text string) (*Ruleset, *RestoreError) {
	st := &loadState{l: l, rs: &Ruleset{}}
	if l.Base != nil {
		st.rs = l.Base.Clone()
	}
	lines := strings.Split(text, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, line := range lines {
		n := i + 1
		if err := st.line(n, line); err != nil {
			return nil, err
		}
	}
	if st.badJump != "" {
		return nil, l.paramError(len(lines), fmt.Sprintf("Chain '%s' does not exist", st.badJump))
	}
	if st.kernelErr != nil {
		return nil, st.kernelErr
	}
	if st.commitBad || st.loops() {
		return nil, l.commitError()
	}
	return st.rs, nil
}

// asciiSpace is the white space a restore line is split and trimmed
// on: ebtables-restore works on bytes (strtok " \t\n"), so a UTF-8
// space such as U+00A0 is part of a name, as in ":\u00a0 ACCEPT"
// (strings.Fields and TrimSpace took it for a separator).
const asciiSpace = " \t\n\v\f\r"

func isASCIISpace(r rune) bool { return r < 0x80 && strings.ContainsRune(asciiSpace, r) }

func (st *loadState) line(n int, line string) *RestoreError {
	l := st.l
	t := strings.Trim(line, asciiSpace)
	switch {
	case t == "" || t[0] == '#':
		return nil
	case t == "COMMIT":
		if st.badJump != "" {
			return l.paramError(n, fmt.Sprintf("Chain '%s' does not exist", st.badJump))
		}
		return nil
	case t[0] == '*':
		name := strings.Trim(t[1:], asciiSpace)
		id, ok := ParseTable(name)
		if !ok || id == BRoute && !l.Broute {
			return l.paramError(n, fmt.Sprintf("%s: line %d table name '%s' invalid", l.prog(), n, name))
		}
		if l.NoFlush && st.rs.Tables[id] != nil {
			st.tbl = st.rs.Tables[id]
		} else {
			st.tbl = newTable(id)
			st.rs.Tables[id] = st.tbl
		}
		return nil
	case t[0] == ':':
		if st.tbl == nil {
			return &RestoreError{ExitCode: 1, Line: n, Stderr: fmt.Sprintf("%s: line %d failed: No chain/target/match by that name.\n", l.prog(), n)}
		}
		f := strings.FieldsFunc(t[1:], isASCIISpace)
		if len(f) < 2 {
			return l.paramError(n, fmt.Sprintf("%s: line %d policy invalid", l.prog(), n))
		}
		pol, ok := parseVerdict(f[1])
		c := st.tbl.Chain(f[0])
		if c == nil {
			if !ok || pol == VContinue {
				st.commitBad = true
				return nil
			}
			st.tbl.Chains = append(st.tbl.Chains, &Chain{Name: f[0], Policy: pol})
			return nil
		}
		if !ok || pol == VContinue || c.Builtin && pol == VReturn {
			st.commitBad = true
			return nil
		}
		c.Policy = pol
		c.Made = true
		return nil
	}
	var pc, bc uint64
	hasCounters := false
	if t[0] == '[' {
		// a "[pcnt:bcnt]" prefix: ebtables-restore reads and ignores
		// it; with Loader.Counters it sets the rule's counters
		if i := strings.IndexByte(t, ']'); i >= 0 {
			if p, b, ok := strings.Cut(t[1:i], ":"); ok && l.Counters {
				var e1, e2 error
				pc, e1 = strconv.ParseUint(p, 10, 64)
				bc, e2 = strconv.ParseUint(b, 10, 64)
				hasCounters = e1 == nil && e2 == nil
			}
			t = strings.Trim(t[i+1:], asciiSpace)
		}
	}
	if st.tbl == nil {
		return &RestoreError{ExitCode: 1, Line: n, Stderr: fmt.Sprintf("%s: line %d failed: No chain/target/match by that name.\n", l.prog(), n)}
	}
	if !hasCounters {
		return st.command(n, SplitWords(t))
	}
	st.counters, st.pcnt, st.bcnt = true, pc, bc
	err := st.command(n, SplitWords(t))
	st.counters = false
	return err
}

// command runs one ebtables command of the table being restored.
func (st *loadState) command(n int, w []string) *RestoreError {
	l := st.l
	if len(w) == 0 {
		return nil
	}
	cmd := w[0]
	args := w[1:]
	needChain := func() (string, *RestoreError) {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return "", l.paramError(n, "Unknown argument: '(null)'")
		}
		return args[0], nil
	}
	tbl := st.tbl
	switch cmd {
	case "-A", "--append", "-I", "--insert":
		name, err := needChain()
		if err != nil {
			return err
		}
		rest := args[1:]
		pos := -1
		if (cmd == "-I" || cmd == "--insert") && len(rest) > 0 {
			if v, err := strconv.Atoi(rest[0]); err == nil {
				pos, rest = v, rest[1:]
			}
		}
		c := tbl.Chain(name)
		ci := chainInfo{table: tbl.ID, name: name}
		if c != nil {
			ci.builtin, ci.hook = c.Builtin, c.Hook
		}
		r, p, perr := parseRuleWords(rest, ci, func(s string) bool { return tbl.Chain(s) != nil }, l.NoBridgeMeta)
		if perr != nil {
			switch perr.kind {
			case errKernel:
				if st.kernelErr == nil {
					st.kernelErr = l.kernelError(n, perr.msg, name)
				}
				return nil
			default:
				return l.paramError(n, perr.msg)
			}
		}
		if p.badJump != "" && st.badJump == "" {
			st.badJump = p.badJump
		}
		switch {
		case p.counters:
			r.Hits.Set(p.pcnt, p.bcnt)
		case st.counters:
			r.Hits.Set(st.pcnt, st.bcnt)
		}
		if c == nil {
			st.commitBad = true
			return nil
		}
		c.Made = true
		if pos >= 1 && pos-1 <= len(c.Rules) {
			c.Rules = append(c.Rules[:pos-1], append([]*Rule{r}, c.Rules[pos-1:]...)...)
		} else if pos > len(c.Rules)+1 || pos == 0 {
			st.commitBad = true
		} else if pos == -1 && (cmd == "-I" || cmd == "--insert") {
			c.Rules = append([]*Rule{r}, c.Rules...)
		} else {
			c.Rules = append(c.Rules, r)
		}
	case "-N", "--new-chain":
		name, err := needChain()
		if err != nil {
			return err
		}
		if tbl.Chain(name) != nil {
			st.commitBad = true
			return nil
		}
		tbl.Chains = append(tbl.Chains, &Chain{Name: name, Policy: VAccept})
	case "-X", "--delete-chain":
		if len(args) == 0 {
			var keep []*Chain
			for _, c := range tbl.Chains {
				if c.Builtin {
					keep = append(keep, c)
				}
			}
			tbl.Chains = keep
			return nil
		}
		c := tbl.Chain(args[0])
		if c == nil || c.Builtin || len(c.Rules) > 0 || st.referenced(args[0]) {
			st.commitBad = true
			return nil
		}
		for i, x := range tbl.Chains {
			if x == c {
				tbl.Chains = append(tbl.Chains[:i], tbl.Chains[i+1:]...)
				break
			}
		}
	case "-F", "--flush":
		if len(args) == 0 {
			// ebtables-restore 1.8.9 leaves the table as it is for a
			// bare -F (TestRestoreSeqKernel)
			return nil
		}
		for _, c := range tbl.Chains {
			if len(args) == 0 || c.Name == args[0] {
				c.Rules = nil
			}
		}
		if len(args) > 0 && tbl.Chain(args[0]) == nil {
			st.commitBad = true
		}
	case "-P", "--policy":
		if len(args) < 2 {
			return l.paramError(n, "Unknown argument: '(null)'")
		}
		c := tbl.Chain(args[0])
		pol, ok := parseVerdict(args[1])
		if !ok || pol == VContinue {
			return l.paramError(n, fmt.Sprintf("Wrong policy '%s'", args[1]))
		}
		if c == nil {
			st.commitBad = true
			return nil
		}
		if c.Builtin && pol == VReturn {
			return l.paramError(n, "Policy RETURN only allowed for user defined chains")
		}
		c.Policy = pol
		c.Made = true
	case "-E", "--rename-chain":
		if len(args) < 2 {
			return l.paramError(n, "Unknown argument: '(null)'")
		}
		c := tbl.Chain(args[0])
		if c == nil || c.Builtin || tbl.Chain(args[1]) != nil {
			st.commitBad = true
			return nil
		}
		// jumps follow the chain (nft refers to it by handle); rules are
		// shared with older rule sets, so the jumping ones are copied
		for _, x := range tbl.Chains {
			for i, r := range x.Rules {
				if r.Verdict == VJump && r.Jump == c.Name {
					x.Rules[i] = r.withJump(args[1])
				}
			}
		}
		c.Name = args[1]
	case "-Z", "--zero":
	default:
		return l.paramError(n, fmt.Sprintf("Bad argument : '%s'", cmd))
	}
	return nil
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
	if st.kernelErr != nil {
		return nil, st.kernelErr
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
