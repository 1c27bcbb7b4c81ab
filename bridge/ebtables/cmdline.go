package ebtables

import (
	"fmt"
	"strconv"
	"strings"
)

// This file is the ebtables command (ebtables-nft 1.8.9's do_commandeb
// in iptables/xtables-eb.c, run by xtables_eb_main in
// xtables-eb-standalone.c): ParseCommandLine reads the words as getopt
// hands them to do_commandeb, with its checks and messages in the same
// order; Ruleset.Exec then does what the nf_tables batch does at commit
// (nft.c and the kernel), with nft_strerror's messages.

// CmdError is how the ebtables command fails: its stderr and exit
// status.
type CmdError struct {
	Code   int
	Stderr string
	// msg is a parameter problem's message alone (cmdParam), which
	// ebtables-restore prints in its own frame
	msg string
}

func (e *CmdError) Error() string { return strings.TrimRight(e.Stderr, "\n") }

const cmdProg = "ebtables"

// cmdParam is xtables_error(PARAMETER_PROBLEM): exit status 2.
func cmdParam(format string, a ...any) *CmdError {
	msg := fmt.Sprintf(format, a...)
	return &CmdError{Code: 2, msg: msg, Stderr: fmt.Sprintf("%s %s: %s\nTry `%s -h' or '%s --help' for more information.\n",
		cmdProg, version, msg, cmdProg, cmdProg)}
}

// cmdFailed is xtables_eb_main's "ebtables: <nft_strerror>" (exit 1).
func cmdFailed(msg string) *CmdError { return &CmdError{Code: 1, Stderr: cmdProg + ": " + msg + "\n"} }

// cmdKernel is a batch the kernel refused (exit 4).
func cmdKernel(what, errno, object string) *CmdError {
	return &CmdError{Code: 4, Stderr: fmt.Sprintf("%s %s:  %s failed (%s): %s\n", cmdProg, version, what, errno, object)}
}

const (
	msgNoChain  = "No chain/target/match by that name"
	msgBadRule  = "Bad rule (does a matching rule exist in that chain?)"
	msgNFTMaxCh = 256 // NFT_CHAIN_MAXNAMELEN
)

// CommandLine is one parsed `ebtables ARGS`.
type CommandLine struct {
	// Table is the -t table (filter by default).
	Table TableID
	// Op is the command: 'A', 'I', 'D', 'L', 'F', 'Z' (alone), 'N',
	// 'X', 'P', 'E', 'C' (--change-counters), 'K' (--check), 'T'
	// (--init-table), or 'h' when the command only prints (Stdout).
	Op byte
	// Zero: -Z with -L (list, then zero the counters).
	Zero bool
	// Chain is the chain named ("" = all where allowed).
	Chain string
	// NewName is -E's new name.
	NewName string
	// Policy is -P's (also -N CHAIN -P POLICY), with PolicySet.
	Policy    Verdict
	PolicySet bool
	// RuleNum is -I's position; RuleNum..RuleEnd the -D range
	// (ByNum), RuleEnd -1 meaning "to the end" as parse_rule_range
	// keeps it.
	RuleNum, RuleEnd int
	ByNum            bool
	// Counters (--Lc), Numbers (--Ln), Expanded (--Lx), Mac2 (--Lmac2),
	// Verbose (-v).
	Counters, Numbers, Expanded, Mac2, Verbose bool
	// Stdout is what -h or -V print (Op 'h').
	Stdout string
	// Rule is the rule of -A, -I, -D and --check.
	Rule *Rule

	newChains []string // -N, at parse time (nft_cmd_chain_user_add)
	kernelErr *ruleError
	badJump   string
	counters  bool // -c gave the rule's counters
}

// CmdOptions tune ParseCommandLine to a kernel.
type CmdOptions struct {
	// NoBridgeMeta refuses --logical-in/--logical-out as a kernel
	// without CONFIG_NFT_BRIDGE_META does.
	NoBridgeMeta bool
	// Broute accepts -t broute (ebtables-nft 1.8.9 has no broute table).
	Broute bool
	// restoreProg names ebtables-restore when it runs a line's words
	// (after its own -t TABLE): a second -t is refused in its words
	restoreProg string
}

// Modifies says whether the command changes the rule set.
func (c *CommandLine) Modifies() bool {
	return strings.IndexByte("AIDFZNXPET", c.Op) >= 0 || c.Zero
}

// chainHook is ebt_get_current_chain: the hook a chain name stands for
// (by name only, whatever the table), or -1 for a user chain.
func chainHook(name string) (Hook, bool) {
	switch name {
	case "PREROUTING":
		return PreRouting, true
	case "INPUT":
		return LocalIn, true
	case "FORWARD":
		return Forward, true
	case "OUTPUT":
		return LocalOut, true
	case "POSTROUTING":
		return PostRouting, true
	}
	return 0, false
}

// ParseCommandLine parses the arguments of one ebtables command (without
// "ebtables" itself). A command that only prints (-h, -V) returns Op 'h'
// and its text in Stdout.
func ParseCommandLine(args []string, o CmdOptions) (*CommandLine, *CmdError) {
	for i, a := range args {
		// argv words are C strings
		if k := strings.IndexByte(a, 0); k >= 0 {
			args = append([]string(nil), args...)
			args[i] = a[:k]
		}
	}
	cl := &CommandLine{Table: Filter}
	g := &getopt{args: args}
	const (
		fCommand = 1 << iota
		fZero
		fTable
		fJump
		fLc
		fLn
		fLx
		fLmac2
		fVerbose
	)
	flags := 0
	command := byte('h')
	invert := false
	rp := &ruleParser{ch: chainInfo{}, r: &Rule{Verdict: VContinue}, seen: map[string]bool{}, noBridgeMeta: o.NoBridgeMeta}
	var helpTarget string
	commands := func() bool { return flags&(fCommand|fZero) != 0 }
	// checkInverse is ebt_check_inverse2: a "!" value inverts and the
	// next word is the value.
	checkInverse := func() (bool, *CmdError) {
		if !g.hasArg {
			return invert, nil
		}
		if g.optarg == "!" {
			if invert {
				return false, cmdParam("Double use of '!' not allowed")
			}
			if g.optind >= len(g.args) {
				g.optarg, g.hasArg = "", false
			} else {
				g.optarg = g.args[g.optind]
			}
			g.optind++
			invert = true
			return true, nil
		}
		return invert, nil
	}
	ruleOption := func(def optDef) *CmdError {
		inv, err := checkInverse()
		if err != nil {
			return err
		}
		if !g.hasArg && def.hasArg {
			// "-p !" at the end: ebtables reads a NULL value
			return cmdParam("Unknown argument: '(null)'")
		}
		if e := rp.option(def, g.optarg, inv); e != nil {
			return cmdParam("%s", e.msg)
		}
		return nil
	}
	for {
		c := g.next()
		if c == -1 {
			break
		}
		switch c {
		case 'A', 'D', 'C', 'P', 'I', 'N', 'E', 'X', codeCheck:
			if command == 'N' && c == 'P' {
				command = 'P'
				g.optind--
				if err := parsePolicy(g, cl); err != nil {
					return nil, err
				}
				break
			}
			if commands() {
				return nil, cmdParam("Multiple commands are not allowed")
			}
			command = byte(c)
			if c == codeCheck {
				command = 'K'
			}
			if g.hasArg && (strings.HasPrefix(g.optarg, "-") || g.optarg == "!") {
				return nil, cmdParam("No chain name specified")
			}
			cl.Chain = g.optarg
			if h, ok := chainHook(cl.Chain); ok {
				rp.ch = chainInfo{name: cl.Chain, builtin: true, hook: h}
			} else {
				rp.ch = chainInfo{name: cl.Chain}
			}
			flags |= fCommand
			switch c {
			case 'N':
				cl.newChains = append(cl.newChains, cl.Chain)
			case 'X':
				if !g.hasArg && g.optind < len(g.args) && !strings.HasPrefix(g.args[g.optind], "-") {
					cl.Chain = g.args[g.optind]
					g.optind++
				}
			case 'E':
				switch {
				case g.optind >= len(g.args):
					return nil, cmdParam("No new chain name specified")
				case g.optind < len(g.args)-1:
					return nil, cmdParam("No extra options allowed with -E")
				case len(g.args[g.optind]) >= msgNFTMaxCh:
					return nil, cmdParam("Chain name length can't exceed %d characters", msgNFTMaxCh-1)
				case strings.IndexByte(g.args[g.optind], ' ') >= 0:
					return nil, cmdParam("Use of ' ' not allowed in chain names")
				}
				cl.NewName = g.args[g.optind]
				g.optind++
			case 'D':
				if g.optind < len(g.args) && startsRuleNum(g.args[g.optind]) {
					if g.optind != len(g.args)-1 {
						return nil, cmdParam("No extra options allowed with -D start_nr[:end_nr]")
					}
					s, e, ok := parseRuleRange(g.args[g.optind])
					if !ok {
						return nil, cmdParam("Problem with the specified rule number(s) '%s'", ruleRangeHead(g.args[g.optind]))
					}
					cl.RuleNum, cl.RuleEnd, cl.ByNum = s, e, true
					g.optind++
				}
			case 'C':
				if err := parseChangeCounters(g); err != nil {
					return nil, err
				}
			case 'I':
				if g.optind >= len(g.args) || !startsRuleNum(g.args[g.optind]) {
					cl.RuleNum = 1
				} else {
					n, err := strconv.ParseUint(g.args[g.optind], 0, 64)
					if err != nil || n < 1 || n > 1<<31-1 || !strtouiOK(g.args[g.optind]) {
						return nil, cmdParam("Invalid rule number `%s'", g.args[g.optind])
					}
					cl.RuleNum = int(n)
					g.optind++
				}
			case 'P':
				if err := parsePolicy(g, cl); err != nil {
					return nil, err
				}
			}
		case 'L', 'F', 'Z':
			if c == 'Z' {
				if flags&fZero != 0 || (flags&fCommand != 0 && command != 'L') {
					return nil, cmdParam("Command -Z only allowed together with command -L")
				}
				flags |= fZero
			} else {
				if flags&fCommand != 0 {
					return nil, cmdParam("Multiple commands are not allowed")
				}
				command = byte(c)
				flags |= fCommand
				if flags&fZero != 0 && c != 'L' {
					return nil, cmdParam("Command -Z only allowed together with command -L")
				}
			}
			// an attached value (-LFORWARD, --list=FORWARD) is ignored
			if g.optind < len(g.args) && !strings.HasPrefix(g.args[g.optind], "-") {
				cl.Chain = g.args[g.optind]
				g.optind++
			}
		case 'v':
			flags |= fVerbose
		case 'V':
			if commands() {
				return nil, cmdParam("Multiple commands are not allowed")
			}
			return &CommandLine{Op: 'h', Stdout: "ebtables 1.8.9 (nf_tables)\n"}, nil
		case 'h':
			if commands() {
				return nil, cmdParam("Multiple commands are not allowed")
			}
			command = 'h'
			for g.optind < len(g.args) {
				name := g.args[g.optind]
				if strings.EqualFold(name, "list_extensions") {
					return &CommandLine{Op: 'h', Stdout: listExtensions}, nil
				}
				t := helpTargetName(name)
				if t == "" {
					return nil, cmdParam("Extension '%s' not found", name)
				}
				if flags&fJump != 0 {
					return nil, cmdParam("Sorry, you can only see help for one target extension at a time")
				}
				flags |= fJump
				helpTarget = t
				g.optind++
			}
		case 't':
			if flags&fTable != 0 && o.restoreProg != "" {
				return nil, cmdParam("The -t option cannot be used in %s.", o.restoreProg)
			}
			if flags&fTable != 0 {
				return nil, cmdParam("Multiple use of same option not allowed")
			}
			id, ok := ParseTable(g.optarg)
			if !ok || id == BRoute && !o.Broute {
				return nil, &CmdError{Code: 3, Stderr: fmt.Sprintf("%s %s: table '%s' does not exist\nPerhaps %s or your kernel needs to be upgraded.\n", cmdProg, version, g.optarg, cmdProg)}
			}
			cl.Table = id
			flags |= fTable
		case 'i', codeLogicalIn, 'o', codeLogicalOut, 'j', 'p', 's', 'd', 'c':
			if !commands() {
				return nil, cmdParam("No command specified")
			}
			if command != 'A' && command != 'D' && command != 'I' && command != 'C' && command != 'K' {
				return nil, cmdParam("Command and option do not match")
			}
			var err *CmdError
			switch c {
			case 'c':
				err = parseSetCounters(g, rp)
			case 'j':
				err = ruleOptionNoInverse(rp, g)
			default:
				name := map[int]string{'i': "i", codeLogicalIn: "logical-in", 'o': "o", codeLogicalOut: "logical-out",
					'p': "p", 's': "s", 'd': "d"}[c]
				err = ruleOption(optDef{name: name, hasArg: true})
			}
			if err != nil {
				return nil, err
			}
		case codeLc, codeLn, codeLx, codeLmac2:
			bit := map[int]int{codeLc: fLc, codeLn: fLn, codeLx: fLx, codeLmac2: fLmac2}[c]
			name := map[int]string{codeLc: "--Lc", codeLn: "--Ln", codeLx: "--Lx", codeLmac2: "--Lmac2"}[c]
			if flags&bit != 0 {
				return nil, cmdParam("Multiple use of same option not allowed")
			}
			if command != 'L' {
				return nil, cmdParam("Use %s with -L", name)
			}
			if (c == codeLn && flags&fLx != 0) || (c == codeLx && flags&fLn != 0) {
				return nil, cmdParam("--Lx is not compatible with --Ln")
			}
			flags |= bit
		case codeInitTable:
			// nft_cmd_table_flush, and do_commandeb returns at once:
			// what follows is not read
			cl.Op = 'T'
			return cl, nil
		case codeConcurrent:
		case codeNonOpt:
			if g.optarg != "!" {
				return nil, cmdParam("Bad argument : '%s'", g.optarg)
			}
			if invert {
				return nil, cmdParam("Double use of '!' not allowed")
			}
			invert = true
			continue
		case codeUnsupported:
			return nil, &CmdError{Code: 2, Stderr: fmt.Sprintf("uswitch: ebtables --%s is not implemented\n", g.opt.name)}
		default:
			inv, err := checkInverse()
			if err != nil {
				return nil, err
			}
			if c < codeExtBase || g.opt == nil {
				return nil, cmdParam("Unknown argument: '%s'", g.argAt(g.optind))
			}
			def := g.opt.def
			if def.hasArg && !g.hasArg {
				return nil, cmdParam("Unknown argument: '(null)'")
			}
			if e := rp.option(def, g.optarg, inv); e != nil {
				return nil, cmdParam("%s", e.msg)
			}
			if command != 'A' && command != 'I' && command != 'D' && command != 'C' && command != 'K' {
				return nil, cmdParam("Extensions only for -A, -I, -D and -C")
			}
		}
		invert = false
	}
	cl.Verbose = flags&fVerbose != 0
	cl.Counters, cl.Numbers, cl.Expanded, cl.Mac2 = flags&fLc != 0, flags&fLn != 0, flags&fLx != 0, flags&fLmac2 != 0
	if command == 'h' && flags&fZero == 0 {
		return &CommandLine{Op: 'h', Stdout: helpText(helpTarget)}, nil
	}
	cl.Op = command
	if command == 'h' {
		cl.Op = 'Z'
	} else if flags&fZero != 0 {
		cl.Zero = true
	}
	switch command {
	case 'A', 'I', 'D', 'C', 'K':
		// the kernel checks the rule at commit, in the -t table
		rp.ch.table = cl.Table
		if e := rp.finish(); e != nil {
			if e.kind == errKernel {
				cl.kernelErr = e
			} else {
				return nil, cmdParam("%s", e.msg)
			}
		}
		if rp.counters {
			rp.r.Hits.Set(rp.pcnt, rp.bcnt)
			cl.counters = true
		}
		cl.Rule = rp.r
		cl.badJump = rp.badJump
	}
	if command == 'P' {
		if _, builtin := chainHook(cl.Chain); builtin && cl.Policy == VReturn {
			return nil, cmdParam("Policy RETURN only allowed for user defined chains")
		}
	}
	return cl, nil
}

// ruleOptionNoInverse is -j: no "!" handling.
func ruleOptionNoInverse(rp *ruleParser, g *getopt) *CmdError {
	// command_jump's xt_parse_target, for all but CONTINUE
	switch a := g.optarg; {
	case a == "":
		// `-j ''` (checked with ebtables 1.8.9: exit 2)
		return cmdParam("Invalid target name (too short)")
	case a == "CONTINUE":
	case len(a) >= 29:
		return cmdParam("Invalid target name `%s' (28 chars max)", a)
	case strings.ContainsAny(a, " \t\n\v\f\r"):
		return cmdParam("Invalid target name `%s'", a)
	}
	if e := rp.option(optDef{name: "j", hasArg: true}, g.optarg, false); e != nil {
		return cmdParam("%s", e.msg)
	}
	if d := extByName(g.optarg); d != nil && d.kind == kTarget {
		g.dupExt = d.name
	}
	return nil
}

// startsRuleNum is do_commandeb's test for a rule number after -D or
// -I: a word not starting with '-', or '-' and a digit.
func startsRuleNum(s string) bool {
	return !strings.HasPrefix(s, "-") || len(s) > 1 && s[1] >= '0' && s[1] <= '9'
}

// strtouiOK is xtables_strtoui's syntax: optional blanks, an optional
// '+', digits in base 0 (0x hex, 0 octal), nothing after.
func strtouiOK(s string) bool {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	t = strings.TrimPrefix(t, "+")
	if t == "" || t[0] == '-' {
		return false
	}
	_, err := strconv.ParseUint(t, 0, 64)
	return err == nil
}

// strtol10 is strtol(s, &end, 10) with *end == '\0' required: its value
// and whether the whole word was a number.
func strtol10(s string) (int, bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if t != "" && (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-'
		t = t[1:]
	}
	if t == "" {
		return 0, s == ""
	}
	v := 0
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return 0, false
		}
		if v < 1<<31 {
			v = v*10 + int(t[i]-'0')
		}
	}
	if neg {
		v = -v
	}
	return v, true
}

// parseRuleRange is parse_rule_range: N, N:M, :M or N: (M = -1: to the
// last rule).
func parseRuleRange(s string) (start, end int, ok bool) {
	head, tail, colon := strings.Cut(s, ":")
	if colon {
		if tail == "" {
			end = -1
		} else {
			v, ok := strtol10(tail)
			if !ok || v == 0 {
				return 0, 0, false
			}
			end = v
		}
	}
	if colon && head == "" {
		start = 1
	} else {
		v, ok := strtol10(head)
		if !ok || v == 0 {
			return 0, 0, false
		}
		start = v
	}
	if !colon {
		end = start
	}
	return start, end, true
}

// ruleRangeHead is what the error prints: parse_rule_range cuts the
// word at its ':' in place.
func ruleRangeHead(s string) string {
	h, _, _ := strings.Cut(s, ":")
	return h
}

// parsePolicy reads -P's policy word.
func parsePolicy(g *getopt, cl *CommandLine) *CmdError {
	if g.optind >= len(g.args) {
		return cmdParam("No policy specified")
	}
	w := g.args[g.optind]
	v, ok := parseVerdict(w)
	if !ok {
		return cmdParam("Unknown policy '%s'", w)
	}
	if v == VContinue {
		return cmdParam("Wrong policy '%s'", w)
	}
	cl.Policy, cl.PolicySet = v, true
	g.optind++
	return nil
}

// strtoull10 is strtoull(s, &end, 10) with *end == '\0' required.
func strtoull10(s string) (uint64, bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if t != "" && (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-'
		t = t[1:]
	}
	if t == "" {
		return 0, s == ""
	}
	var v uint64
	over := false
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return 0, false
		}
		d := uint64(t[i] - '0')
		if v > (^uint64(0)-d)/10 {
			over = true
		}
		v = v*10 + d
	}
	if over {
		return ^uint64(0), true
	}
	if neg {
		v = -v
	}
	return v, true
}

// parseSetCounters is -c PCNT BCNT.
func parseSetCounters(g *getopt, rp *ruleParser) *CmdError {
	if g.optarg == "!" {
		return cmdParam("Unexpected '!' after -c")
	}
	if g.optind >= len(g.args) || strings.HasPrefix(g.optarg, "-") || strings.HasPrefix(g.args[g.optind], "-") {
		return cmdParam("Option -c needs 2 arguments")
	}
	if rp.seen["c"] {
		return cmdParam("Multiple use of same option not allowed")
	}
	rp.seen["c"] = true
	p, ok := strtoull10(g.optarg)
	if !ok {
		return cmdParam("Packet counter '%s' invalid", g.optarg)
	}
	b, ok := strtoull10(g.args[g.optind])
	if !ok {
		return cmdParam("Packet counter '%s' invalid", g.args[g.optind])
	}
	g.optind++
	rp.counters, rp.pcnt, rp.bcnt = true, p, b
	return nil
}

// parseChangeCounters checks -C's words (parse_change_counters_rule);
// ebtables-nft 1.8.9 then does nothing with them.
func parseChangeCounters(g *getopt) *CmdError {
	a := g.args
	i := g.optind
	if i+1 >= len(a) || strings.HasPrefix(a[i], "-") || strings.HasPrefix(a[i+1], "-") {
		return cmdParam("The command -C needs at least 2 arguments")
	}
	if i+2 < len(a) && startsRuleNum(a[i+2]) {
		if i+3 != len(a) {
			return cmdParam("No extra options allowed with -C start_nr[:end_nr] pcnt bcnt")
		}
		if _, _, ok := parseRuleRange(a[i]); !ok {
			return cmdParam("Something is wrong with the rule number specification '%s'", ruleRangeHead(a[i]))
		}
		i++
	}
	for k := 0; k < 2; k++ {
		w := a[i]
		if strings.HasPrefix(w, "+") || strings.HasPrefix(w, "-") {
			w = w[1:]
		}
		if _, ok := strtoull10(w); !ok || w == "" && a[i] == "" {
			return cmdParam("Packet counter '%s' invalid", a[i])
		}
		i++
	}
	g.optind = i
	return nil
}

// helpTargetName is xtables_find_target for -h's words: the bridge
// targets and watchers, the standard verdicts meaning "standard".
func helpTargetName(name string) string {
	switch name {
	case "ACCEPT", "DROP", "RETURN", "QUEUE", "", "standard":
		return "standard"
	}
	if _, ok := targetHelp[name]; ok {
		return name
	}
	return ""
}
