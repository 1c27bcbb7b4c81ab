package iptables

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// This file is the iptables command line (iptables 1.8.9's do_parse in
// iptables/xshared.c and do_commandx in iptables/xtables.c): the words
// of one `iptables ARGS` parsed by the restore line parser (parse.go) in
// its command-line mode, which adds -t, -L, -S, -x, --line-numbers,
// -w/-W, -h and -V and checks options against commands as
// generic_opt_check does; Ruleset.Exec runs a parsed modifying command.

// The commands as do_parse keeps them (CMD_* in iptables/xshared.h), a
// bit each, in cmdflags order.
const (
	cmdInsert = 1 << iota
	cmdDelete
	cmdDeleteNum
	cmdReplace
	cmdAppend
	cmdList
	cmdFlush
	cmdZero
	cmdZeroNum
	cmdNewChain
	cmdDeleteChain
	cmdSetPolicy
	cmdRename
	cmdListRules
	cmdCheck
	numCmds = iota
)

// cmdChars is cmdflags: the option letter of each command bit.
const cmdChars = "IDDRALFZZNXPESC"

var cmdBits = map[byte]int{
	'I': cmdInsert, 'D': cmdDelete, 'R': cmdReplace, 'A': cmdAppend, 'L': cmdList,
	'F': cmdFlush, 'Z': cmdZero, 'N': cmdNewChain, 'X': cmdDeleteChain,
	'P': cmdSetPolicy, 'E': cmdRename, 'S': cmdListRules, 'C': cmdCheck,
}

// cliOpts are the options generic_opt_check knows, in optflags order
// (-n -s -d -p -j -v -x -i -o --line -c -f).
var cliOpts = []int{optNumeric, optSource, optDestination, optProtocol, optJump, optVerbose,
	optExpanded, optVianameIn, optVianameOut, optLineNumbers, optCounters, optFragment}

// commandsVOptions is commands_v_options (iptables/xshared.c): per
// command, per option of cliOpts, 'x' where the option is illegal.
var commandsVOptions = [numCmds]string{
	/*INSERT*/ "x     x  x  ",
	/*DELETE*/ "x     x  xx ",
	/*DELETE_NUM*/ "xxxxx xxxxxx",
	/*REPLACE*/ "x     x  x  ",
	/*APPEND*/ "x     x  x  ",
	/*LIST*/ " xxxx  xx xx",
	/*FLUSH*/ "xxxxx xxxxxx",
	/*ZERO*/ "xxxxx xxxxxx",
	/*ZERO_NUM*/ "xxxxx xxxxxx",
	/*NEW_CHAIN*/ "xxxxx xxxxxx",
	/*DEL_CHAIN*/ "xxxxx xxxxxx",
	/*SET_POLICY*/ "xxxxx xxxx x",
	/*RENAME*/ "xxxxx xxxxxx",
	/*LIST_RULES*/ "xxxxx xxxxxx",
	/*CHECK*/ "x     x  xx ",
}

// CommandLine is one parsed `iptables ARGS`.
type CommandLine struct {
	// Table is the -t table as given ("" = filter).
	Table string
	// Op is the command letter: A C D I R L S F Z N X P E; 'L' with
	// Zero set is -L -Z.
	Op byte
	// Zero: -Z given with -L (list, then zero).
	Zero bool
	// Chain is the chain the command names ("" = all, where allowed).
	Chain string
	// RuleNum is the rule number of -D, -I, -R, -Z, -L and -S (0 = none).
	RuleNum int
	// Numeric, Verbose, Expanded, LineNumbers are -n, -v, -x and
	// --line-numbers.
	Numeric, Verbose, Expanded, LineNumbers bool
	// Help is the text -h prints (the command ends there).
	Help string
	// Version: -V.
	Version bool
	// Rules are the rules of -A -C -D -I -R (one per source and
	// destination address).
	Rules []*Rule

	cmds int
	cmd  command
	// -w and -W given
	waitGiven, waitIntervalGiven bool
}

// Modifies says whether the command changes the rule set.
func (c *CommandLine) Modifies() bool {
	return c.Help == "" && !c.Version && (strings.IndexByte("ADIRFZNXPE", c.Op) >= 0 || c.Zero)
}

// ruleless says the command takes no rule specification.
func (c *CommandLine) ruleless() bool {
	return c.cmds&(cmdAppend|cmdDelete|cmdInsert|cmdReplace|cmdCheck) == 0
}

// errVersion and errHelp end parsing early: -V and -h print and exit.
var (
	errVersion = errors.New("version")
	errHelp    = errors.New("help")
)

// ParseCommandLine parses the arguments of one iptables command. Errors
// are *ParamError or *BadArgError, with iptables' text.
func ParseCommandLine(args []string) (*CommandLine, error) {
	// argv words are C strings: a NUL ends one
	cloned := false
	for i, a := range args {
		if k := strings.IndexByte(a, 0); k >= 0 {
			if !cloned {
				args, cloned = slices.Clone(args), true
			}
			args[i] = a[:k]
		}
	}
	cl := &CommandLine{}
	tid := Filter
	if name := scanTable(args); name != "" {
		if id, ok := ParseTable(name); ok {
			tid = id
		}
	}
	p := &cmdParser{args: args, rc: RuleContext{Table: tid}, cli: true, cl: cl}
	err := p.run()
	switch {
	case errors.Is(err, errVersion):
		return &CommandLine{Version: true}, nil
	case errors.Is(err, errHelp):
		return &CommandLine{Help: cl.Help}, nil
	case err != nil:
		return nil, err
	}
	cl.cmd = p.cmd
	cl.Chain = p.cmd.chain
	cl.RuleNum = p.cmd.rulenum
	cl.Rules = p.cmd.rules
	cl.Numeric = p.options&optNumeric != 0
	cl.Verbose = p.options&optVerbose != 0
	cl.Expanded = p.options&optExpanded != 0
	cl.LineNumbers = p.options&optLineNumbers != 0
	switch {
	case cl.cmds&cmdList != 0:
		cl.Op = 'L'
		cl.Zero = cl.cmds&(cmdZero|cmdZeroNum) != 0
	case cl.cmds&cmdListRules != 0:
		cl.Op = 'S'
		cl.Zero = cl.cmds&(cmdZero|cmdZeroNum) != 0
	default:
		cl.Op = p.cmd.op
	}
	return cl, nil
}

// scanTable finds the table of -t/--table before parsing, as the
// extensions parse with it known (the last one given wins).
func scanTable(args []string) string {
	t := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-t" || (len(a) > 3 && strings.HasPrefix("--table", a)) || a == "--table":
			if i+1 < len(args) {
				t = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--table="):
			t = a[len("--table="):]
		case strings.HasPrefix(a, "-t") && !strings.HasPrefix(a, "--"):
			t = a[2:]
		}
	}
	return t
}

// cliAddCommand is add_command: -L and -Z combine, nothing else does.
func (p *cmdParser) cliAddCommand(op byte) error {
	bit := cmdBits[op]
	other := 0
	switch op {
	case 'L', 'S':
		other = cmdZero | cmdZeroNum
	case 'Z':
		other = cmdList
	}
	if rest := p.cl.cmds &^ other; rest != 0 {
		return Errorf("Cannot use -%c with -%c", op, cmdChar(rest))
	}
	p.cl.cmds |= bit
	if p.cmd.op == 0 || op != 'Z' {
		p.cmd.op = op
	}
	return nil
}

// cmdChar is cmd2char: the letter of the highest command bit.
func cmdChar(cmds int) byte {
	i := 0
	for ; cmds > 1; cmds >>= 1 {
		i++
	}
	return cmdChars[i]
}

// cliList reads -L/-S's optional chain and rule number.
func (p *cmdParser) cliList(c byte, arg string, have bool) error {
	p.optionalChain(arg, have)
	if p.hasArg() {
		n, err := strconv.ParseUint(p.args[p.i], 10, 31)
		if err != nil || n == 0 {
			return Errorf("Invalid rule number `%s'", p.args[p.i])
		}
		p.i++
		p.cmd.rulenum = int(n)
	}
	return nil
}

// cliWait is -w [SECONDS]: accepted (uswitch applies each command
// atomically and never waits for a lock).
func (p *cmdParser) cliWait(arg string, have bool) error {
	if !have && p.hasArg() {
		arg, have = p.args[p.i], true
		p.i++
	}
	if have {
		if _, err := strconv.ParseUint(arg, 10, 32); err != nil {
			return Errorf("wait seconds not numeric")
		}
	}
	p.cl.waitGiven = true
	return nil
}

// cliWaitInterval is -W: deprecated, and an error without -w.
func (p *cmdParser) cliWaitInterval(arg string, have bool) error {
	if !have && p.hasArg() {
		p.i++
	}
	p.cl.waitIntervalGiven = true
	return nil
}

// cliCheck is the end of do_parse for a command line:
// generic_opt_check and the chain name's length.
func (p *cmdParser) cliCheck() error {
	if p.cmd.deleteNum {
		p.cl.cmds = p.cl.cmds&^cmdDelete | cmdDeleteNum
	}
	if p.cl.waitIntervalGiven && !p.cl.waitGiven {
		return Errorf("--wait-interval only makes sense with --wait\n")
	}
	for _, o := range cliOpts {
		legal := 0
		for j := 0; j < numCmds; j++ {
			if p.cl.cmds&(1<<j) == 0 || p.options&o == 0 {
				continue
			}
			col := 0
			for k, x := range cliOpts {
				if x == o {
					col = k
				}
			}
			if commandsVOptions[j][col] != 'x' {
				legal = 1
			} else if legal == 0 {
				legal = -1
			}
		}
		if legal == -1 {
			return Errorf("Illegal option `-%c' with this command", optChars[o])
		}
	}
	if len(p.cmd.chain) >= 29 {
		return Errorf("chain name `%s' too long (must be under %d chars)", p.cmd.chain, 29)
	}
	return nil
}

// cliHelp is -h: iptables' usage and the help of the extensions loaded
// so far (exit_printhelp): targets first, then matches; -p PROTO loads
// the protocol's match when no match was loaded.
func (p *cmdParser) cliHelp() error {
	var b strings.Builder
	b.WriteString(usageText)
	nm := 0
	for _, e := range p.exts {
		if !e.target {
			nm++
		}
	}
	if nm == 0 && p.proto != "" {
		p.loadProto()
	}
	for _, e := range p.exts {
		if e.target {
			b.WriteString("\n" + ExtensionHelp(e.name, true))
		}
	}
	for _, e := range p.exts {
		if !e.target {
			b.WriteString("\n" + ExtensionHelp(e.name, false))
		}
	}
	p.cl.Help = b.String()
	return errHelp
}

// ExtensionHelp is what iptables 1.8.9 prints for an extension's help
// (its ->help, or "NAME does not take any options").
func ExtensionHelp(name string, target bool) string {
	m := matchHelp
	if target {
		m = targetHelp
	}
	if h, ok := m[name]; ok {
		return h
	}
	return name + " does not take any options\n"
}

// UsageText is what `iptables -h` prints.
func UsageText() string { return usageText }
