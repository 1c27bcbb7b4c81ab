package iptables

import (
	"strconv"
	"strings"
)

// This file parses one iptables command (the words of one
// iptables-restore line) the way iptables' do_parse (iptables/xshared.c)
// does with getopt_long: short and long options, unique-prefix
// abbreviations of long options, "!" as a word of its own, extension
// options merged in as -m and -j load them (the latest loaded first), and
// the implicit load of the protocol match (-p tcp --dport 22).

// BadArgError is do_parse's "Bad argument `X'" for a stray word; it is
// printed without the program prefix.
type BadArgError struct{ Arg string }

func (e *BadArgError) Error() string { return "Bad argument `" + e.Arg + "'" }

// option flags of the rule's fixed part (OPT_* in xshared.h).
const (
	optSource = 1 << iota
	optDestination
	optProtocol
	optJump
	optVianameIn
	optVianameOut
	optFragment
	optCounters
	optNumeric
	optVerbose
	optExpanded    // -x (command line only)
	optLineNumbers // --line-numbers (command line only)
)

// optChars is opt2char (iptables 1.8.9 xshared.c optflags).
var optChars = map[int]byte{
	optSource:      's',
	optDestination: 'd',
	optProtocol:    'p',
	optJump:        'j',
	optVianameIn:   'i',
	optVianameOut:  'o',
	optFragment:    'f',
	optCounters:    'c',
	optNumeric:     'n',
	optVerbose:     'v',
	optExpanded:    'x',
	optLineNumbers: '0',
}

var optInv = map[int]uint8{
	optSource:      InvSrc,
	optDestination: InvDst,
	optProtocol:    InvProto,
	optVianameIn:   InvIn,
	optVianameOut:  InvOut,
	optFragment:    InvFrag,
}

// baseOpt is an entry of iptables' original_opts (iptables/iptables.c).
type baseOpt struct {
	name  string
	arg   uint8 // 0 none, 1 required, 2 optional
	short byte
}

var baseOpts = []baseOpt{
	{"append", 1, 'A'}, {"delete", 1, 'D'}, {"check", 1, 'C'}, {"insert", 1, 'I'},
	{"replace", 1, 'R'}, {"list", 2, 'L'}, {"list-rules", 2, 'S'}, {"flush", 2, 'F'},
	{"zero", 2, 'Z'}, {"new-chain", 1, 'N'}, {"delete-chain", 2, 'X'},
	{"rename-chain", 1, 'E'}, {"policy", 1, 'P'}, {"source", 1, 's'},
	{"destination", 1, 'd'}, {"src", 1, 's'}, {"dst", 1, 'd'}, {"protocol", 1, 'p'},
	{"in-interface", 1, 'i'}, {"jump", 1, 'j'}, {"table", 1, 't'}, {"match", 1, 'm'},
	{"numeric", 0, 'n'}, {"out-interface", 1, 'o'}, {"verbose", 0, 'v'},
	{"wait", 2, 'w'}, {"wait-interval", 2, 'W'}, {"exact", 0, 'x'},
	{"fragments", 0, 'f'}, {"version", 0, 'V'}, {"help", 2, 'h'},
	{"line-numbers", 0, '0'}, {"modprobe", 1, 'M'}, {"set-counters", 1, 'c'},
	{"goto", 1, 'g'}, {"ipv4", 0, '4'}, {"ipv6", 0, '6'},
}

// shortArgs is IPT_OPTSTRING: 0 none, 1 required, 2 optional (attached).
var shortArgs = map[byte]uint8{
	'A': 1, 'C': 1, 'D': 1, 'E': 1, 'F': 2, 'I': 1, 'L': 2, 'M': 1, 'N': 1,
	'P': 1, 'R': 1, 'S': 2, 'V': 0, 'X': 2, 'Z': 2, 'c': 1, 'd': 1, 'i': 1,
	'j': 1, 'o': 1, 'p': 1, 's': 1, 't': 1, 'v': 0, 'W': 2, '4': 0, '6': 0,
	'f': 0, 'g': 1, 'h': 2, 'm': 1, 'n': 0, 'w': 2, 'x': 0,
}

// extInst is one loaded extension of the rule being parsed.
type extInst struct {
	name      string
	opts      []Option
	ext       Ext
	target    bool
	used      uint64 // bit per option index: given already
	completed bool   // a later instance of the same match was loaded
}

// command is one parsed iptables command.
type command struct {
	op        byte // A C D I R N X F Z P E
	chain     string
	rulenum   int // -I/-R/-Z position, -D number
	deleteNum bool
	newName   string
	policy    string
	rules     []*Rule // -A/-I/-D/-R/-C: one per source x destination
	jumpName  string  // chain name for -j/-g when not a target extension
	gotoFlag  bool
}

type cmdParser struct {
	args []string
	i    int
	oa   OptArg

	rc      RuleContext
	cmd     command
	options int
	inv     uint8
	ip      IPHeader
	srcArg  string
	dstArg  string
	proto   string
	protoOK bool // load_proto already tried

	exts   []*extInst
	target *extInst
	stdV   Verdict // standard verdict of -j ACCEPT etc.
	ctrs   Counters
	hasCtr bool

	// cli is set when parsing an iptables command line rather than a
	// restore line (cmdline.go); cl collects what only it has
	cli bool
	cl  *CommandLine
}

// parseCommand parses the words of one restore line for table t.
func parseCommand(words []string, t TableID, line int, sets SetLookup) (*command, error) {
	return new(cmdParser).parse(words, t, line, sets)
}

// parse is parseCommand on a parser that may have parsed another line
// before (its buffers are reused).
func (p *cmdParser) parse(words []string, t TableID, line int, sets SetLookup) (*command, error) {
	exts := p.exts[:0]
	clear(p.exts)
	*p = cmdParser{args: words, rc: RuleContext{Table: t, Line: line, Sets: sets}, exts: exts}
	if err := p.run(); err != nil {
		return nil, err
	}
	cmd := p.cmd
	return &cmd, nil
}

func (p *cmdParser) run() error {
	invert := false
	for p.i < len(p.args) {
		a := p.args[p.i]
		p.i++
		switch {
		case a == "!":
			if invert {
				return Errorf("multiple consecutive ! not allowed")
			}
			invert = true
			continue
		case strings.HasPrefix(a, "--") && len(a) > 2:
			if err := p.long(a, invert); err != nil {
				return err
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			if err := p.shorts(a, invert); err != nil {
				return err
			}
		default:
			return &BadArgError{Arg: a}
		}
		invert = false
	}
	return p.finish(invert)
}

// long handles "--name[=value]".
func (p *cmdParser) long(a string, invert bool) error {
	name, val, hasVal := strings.Cut(a[2:], "=")
	// base options first: they come first in the merged option list
	if b, ok := p.findBase(name); ok {
		var arg string
		var have bool
		switch b.arg {
		case 1:
			if hasVal {
				arg, have = val, true
			} else if p.i < len(p.args) {
				arg, have = p.args[p.i], true
				p.i++
			}
			if !have {
				return p.missingArg(a, invert)
			}
		case 2:
			if hasVal {
				arg, have = val, true
			}
		default:
			if hasVal {
				return p.unknown(a, invert)
			}
		}
		if hasVal && strings.IndexByte("psdjio", b.short) >= 0 {
			// iptables 1.8.9 reads these from argv[optind-1]: the
			// whole word when the value was attached
			arg = a
		}
		return p.base(b.short, arg, have, invert)
	}
	inst, oi, err := p.findExtOpt(name)
	if err != nil {
		return p.unknown(a, invert)
	}
	if inst == nil {
		return p.unknown(a, invert)
	}
	o := inst.opts[oi]
	arg := ""
	if o.Arg == RequiredArg {
		if hasVal {
			arg = val
		} else if p.i < len(p.args) {
			arg = p.args[p.i]
			p.i++
		} else {
			return p.missingArg(a, invert)
		}
	} else if hasVal {
		return p.unknown(a, invert)
	}
	return p.dispatch(inst, oi, arg, invert)
}

func (p *cmdParser) findBase(name string) (baseOpt, bool) {
	for _, b := range baseOpts {
		if b.name == name {
			return b, true
		}
	}
	// unique prefix over base and extension options (getopt_long)
	var found []baseOpt
	for _, b := range baseOpts {
		if strings.HasPrefix(b.name, name) {
			found = append(found, b)
		}
	}
	if len(found) == 0 {
		return baseOpt{}, false
	}
	if p.extPrefixCount(name) > 0 {
		return baseOpt{}, false // ambiguous, or an extension option
	}
	for _, f := range found[1:] {
		if f.short != found[0].short || f.arg != found[0].arg {
			return baseOpt{}, false // ambiguous
		}
	}
	return found[0], true
}

func (p *cmdParser) extPrefixCount(name string) int {
	n := 0
	for _, e := range p.exts {
		for _, o := range e.opts {
			if strings.HasPrefix(o.Name, name) {
				n++
			}
		}
	}
	return n
}

// findExtOpt finds the extension owning option name: exact names first,
// the latest loaded extension first; then a unique prefix.
func (p *cmdParser) findExtOpt(name string) (*extInst, int, error) {
	for k := len(p.exts) - 1; k >= 0; k-- {
		e := p.exts[k]
		if e.completed {
			continue
		}
		for i, o := range e.opts {
			if o.Name == name {
				return e, i, nil
			}
		}
	}
	var inst *extInst
	idx := -1
	for k := len(p.exts) - 1; k >= 0; k-- {
		e := p.exts[k]
		if e.completed {
			continue
		}
		for i, o := range e.opts {
			if strings.HasPrefix(o.Name, name) {
				if inst != nil {
					return nil, 0, Errorf("ambiguous")
				}
				inst, idx = e, i
			}
		}
	}
	return inst, idx, nil
}

func (p *cmdParser) dispatch(inst *extInst, oi int, arg string, invert bool) error {
	o := inst.opts[oi]
	// synonyms share one "given" bit, named after the first entry
	canon := o.Name
	if o.Alias != "" {
		canon = o.Alias
	}
	ci := oi
	for i, x := range inst.opts {
		if x.Name == canon {
			ci = i
			break
		}
	}
	bit := uint64(1) << uint(ci)
	if !o.Multi && inst.used&bit != 0 {
		return Errorf("%s: option \"--%s\" can only be used once.\n", inst.name, canon)
	}
	if invert && !o.Invert {
		return Errorf("%s: option \"--%s\" cannot be inverted.\n", inst.name, canon)
	}
	inst.used |= bit
	// one OptArg per parser, reused: extensions copy what they keep
	p.oa = OptArg{Name: o.Name, Arg: arg, Invert: invert, Rule: &p.rc}
	oa := &p.oa
	if o.TwoArgs {
		if p.hasArg() {
			oa.Arg2 = p.args[p.i]
			p.i++
		} else {
			oa.Arg2Missing = true
		}
	}
	p.syncRC()
	return inst.ext.Parse(oa)
}

// unknown handles an option no loaded extension knows: iptables first
// tries to load the match named after -p (command_default/load_proto).
func (p *cmdParser) unknown(a string, invert bool) error {
	if p.loadProto() {
		p.i-- // rerun this option
		return p.retry(invert)
	}
	return Errorf("unknown option \"%s\"", a)
}

func (p *cmdParser) missingArg(a string, invert bool) error {
	if p.loadProto() {
		p.i--
		return p.retry(invert)
	}
	return Errorf("option \"%s\" requires an argument", a)
}

func (p *cmdParser) retry(invert bool) error {
	a := p.args[p.i]
	p.i++
	return p.long(a, invert)
}

// loadProto loads the match of the -p protocol once, if one exists.
func (p *cmdParser) loadProto() bool {
	if p.proto == "" || p.protoOK {
		return false
	}
	p.protoOK = true
	name := p.proto
	if n, ok := strtoul(name, 0, 255); ok {
		name = protoName(uint8(n))
		if name == "" {
			return false
		}
	}
	if _, ok := matchSpecs[name]; !ok {
		return false
	}
	p.addMatch(name)
	return true
}

// shorts handles "-X", "-Xvalue" and clusters such as "-fv".
func (p *cmdParser) shorts(a string, invert bool) error {
	for j := 1; j < len(a); j++ {
		c := a[j]
		kind, ok := shortArgs[c]
		if !ok {
			if p.loadProto() {
				// getopt would re-scan; only whole words are retried
				p.i--
				return p.shortsRetry(invert)
			}
			return Errorf("unknown option \"-%c\"", c)
		}
		var arg string
		have := false
		switch kind {
		case 1:
			if j+1 < len(a) {
				arg, have = a[j+1:], true
				if strings.IndexByte("psdjio", c) >= 0 {
					arg = a // 1.8.9 uses argv[optind-1], see long()
				}
			} else if p.i < len(p.args) {
				arg, have = p.args[p.i], true
				p.i++
			} else {
				if p.loadProto() {
					p.i--
					return p.shortsRetry(invert)
				}
				return Errorf("option \"%s\" requires an argument", a)
			}
			j = len(a)
		case 2:
			if j+1 < len(a) {
				arg, have = a[j+1:], true
				j = len(a)
			}
		}
		if err := p.base(c, arg, have, invert); err != nil {
			return err
		}
		invert = false
	}
	return nil
}

func (p *cmdParser) shortsRetry(invert bool) error {
	a := p.args[p.i]
	p.i++
	return p.shorts(a, invert)
}

// hasArg is xs_has_arg: the next word exists and is not an option or "!".
func (p *cmdParser) hasArg() bool {
	return p.i < len(p.args) && p.args[p.i] != "" && p.args[p.i][0] != '-' && p.args[p.i][0] != '!'
}

func (p *cmdParser) addCommand(op byte, invert bool) error {
	if invert {
		return Errorf("unexpected '!' flag")
	}
	if p.cli {
		return p.cliAddCommand(op)
	}
	if p.cmd.op != 0 {
		return Errorf("Cannot use -%c with -%c", op, p.cmd.op)
	}
	p.cmd.op = op
	return nil
}

func (p *cmdParser) setOption(opt int, invert bool) error {
	if p.options&opt != 0 {
		return Errorf("multiple -%c flags not allowed", optChars[opt])
	}
	p.options |= opt
	if invert {
		inv, ok := optInv[opt]
		if !ok {
			return Errorf("cannot have ! before -%c", optChars[opt])
		}
		p.inv |= inv
	}
	return nil
}

func (p *cmdParser) optionalChain(arg string, have bool) {
	if have {
		p.cmd.chain = arg
	} else if p.hasArg() {
		p.cmd.chain = p.args[p.i]
		p.i++
	}
}

// base handles one of iptables' own options (do_parse's switch).
func (p *cmdParser) base(c byte, arg string, have, invert bool) error {
	switch c {
	case 'A', 'C':
		if err := p.addCommand(c, invert); err != nil {
			return err
		}
		p.cmd.chain = arg
	case 'D':
		if err := p.addCommand('D', invert); err != nil {
			return err
		}
		p.cmd.chain = arg
		if p.hasArg() {
			n, err := strconv.Atoi(p.args[p.i])
			if err != nil || n <= 0 {
				return Errorf("Invalid rule number `%s'", p.args[p.i])
			}
			p.i++
			p.cmd.rulenum = n
			p.cmd.deleteNum = true
		}
	case 'R', 'I':
		if err := p.addCommand(c, invert); err != nil {
			return err
		}
		p.cmd.chain = arg
		if p.hasArg() {
			n, err := strconv.ParseUint(p.args[p.i], 10, 31)
			if err != nil || n == 0 {
				return Errorf("Invalid rule number `%s'", p.args[p.i])
			}
			p.i++
			p.cmd.rulenum = int(n)
		} else if c == 'R' {
			return Errorf("-R requires a rule number")
		} else {
			p.cmd.rulenum = 1
		}
	case 'L', 'S':
		if p.cli {
			if err := p.addCommand(c, invert); err != nil {
				return err
			}
			return p.cliList(c, arg, have)
		}
		return Errorf("-%c is not supported in iptables-restore input", c)
	case 'F', 'X':
		if err := p.addCommand(c, invert); err != nil {
			return err
		}
		p.optionalChain(arg, have)
	case 'Z':
		if err := p.addCommand('Z', invert); err != nil {
			return err
		}
		p.optionalChain(arg, have)
		if p.hasArg() {
			n, err := strconv.ParseUint(p.args[p.i], 10, 31)
			if err != nil || n == 0 {
				return Errorf("Invalid rule number `%s'", p.args[p.i])
			}
			p.i++
			p.cmd.rulenum = int(n)
			if p.cli {
				p.cl.cmds = cmdZeroNum // replaces -L (do_parse)
			}
		}
	case 'N':
		// parse_chain asks xtables_find_target for the name, and it
		// takes "" for the standard target: iptables 1.8.9 refuses
		// -N '' with the clash error (-E OLD '' it accepts, below)
		if arg == "" {
			return Errorf("chain name may not clash with target name")
		}
		if err := ValidChainName(arg); err != nil {
			return err
		}
		if err := p.addCommand('N', invert); err != nil {
			return err
		}
		p.cmd.chain = arg
	case 'E':
		if err := p.addCommand('E', invert); err != nil {
			return err
		}
		p.cmd.chain = arg
		if !p.hasArg() {
			return Errorf("-E requires old-chain-name and new-chain-name")
		}
		// the new name is not checked (iptables 1.8.9 renames to "a
		// b", "DROP" or 30 characters; TestRestoreRandomAgainstKernel)
		p.cmd.newName = p.args[p.i]
		p.i++
	case 'P':
		if err := p.addCommand('P', invert); err != nil {
			return err
		}
		if !p.hasArg() {
			return Errorf("-P requires a chain and a policy")
		}
		p.cmd.chain = arg
		p.cmd.policy = p.args[p.i]
		p.i++
	case 'h':
		if p.cli {
			return p.cliHelp()
		}
		return Errorf("-h is not supported in iptables-restore input")
	case 'V':
		if p.cli {
			return errVersion
		}
		return Errorf("-V is not supported in iptables-restore input")
	case 'p':
		if err := p.setOption(optProtocol, invert); err != nil {
			return err
		}
		p.proto = strings.ToLower(arg)
		n, err := parseProtocol(p.proto)
		if err != nil {
			return err
		}
		if n == 0 && invert {
			return Errorf("rule would never match protocol")
		}
		p.ip.Proto = n
	case 's':
		if err := p.setOption(optSource, invert); err != nil {
			return err
		}
		p.srcArg = arg
	case 'd':
		if err := p.setOption(optDestination, invert); err != nil {
			return err
		}
		p.dstArg = arg
	case 'g':
		if err := p.setOption(optJump, invert); err != nil {
			return err
		}
		if err := checkTargetName(arg); err != nil {
			return err
		}
		p.cmd.jumpName = arg
		p.cmd.gotoFlag = true
	case 'j':
		if err := p.setOption(optJump, invert); err != nil {
			return err
		}
		if arg == "CONTINUE" {
			return nil
		}
		return p.jump(arg)
	case 'i', 'o':
		if arg == "" {
			return Errorf("Empty interface is likely to be undesired")
		}
		opt := optVianameIn
		if c == 'o' {
			opt = optVianameOut
		}
		if err := p.setOption(opt, invert); err != nil {
			return err
		}
		if len(arg) >= 16 {
			return Errorf("interface name `%s' must be shorter than %d characters", arg, 16)
		}
		f := Iface{Name: arg, Prefix: arg}
		if strings.HasSuffix(arg, "+") {
			f.Wildcard = true
			f.Prefix = arg[:len(arg)-1]
		}
		if c == 'i' {
			p.ip.In = f
		} else {
			p.ip.Out = f
		}
	case 'f':
		if err := p.setOption(optFragment, invert); err != nil {
			return err
		}
		p.ip.Frag = true
	case 'v':
		if p.options&optVerbose == 0 {
			if err := p.setOption(optVerbose, invert); err != nil {
				return err
			}
		}
	case 'm':
		if invert {
			return Errorf("unexpected ! flag before --match")
		}
		if _, ok := matchSpecs[arg]; !ok {
			return Errorf("Couldn't load match `%s':No such file or directory\n", arg)
		}
		p.addMatch(arg)
	case 'n':
		return p.setOption(optNumeric, invert)
	case 't':
		if invert {
			return Errorf("unexpected ! flag before --table")
		}
		if p.cli {
			p.cl.Table = arg
			return nil
		}
		return Errorf("The -t option cannot be used in iptables-restore.\n")
	case 'x', '0':
		if p.cli {
			if c == 'x' {
				return p.setOption(optExpanded, invert)
			}
			return p.setOption(optLineNumbers, invert)
		}
		return Errorf("Illegal option `-%c' with this command", map[byte]byte{'x': 'x', '0': '0'}[c])
	case 'w':
		if p.cli {
			return p.cliWait(arg, have)
		}
		return Errorf("You cannot use `-w' from iptables-restore")
	case 'W':
		if p.cli {
			return p.cliWaitInterval(arg, have)
		}
		return Errorf("You cannot use `-W' from iptables-restore")
	case 'M', '4':
	case '6':
		return Errorf("iptables-restore is IPv4 only: -6 given")
	case 'c':
		if err := p.setOption(optCounters, invert); err != nil {
			return err
		}
		pc, bc, hasB := strings.Cut(arg, ",")
		if !hasB {
			if !p.hasArg() {
				return Errorf("-c requires packet and byte counter")
			}
			bc = p.args[p.i]
			p.i++
		}
		var err error
		if p.ctrs.Packets, err = parseCounter(pc); err != nil {
			return Errorf("-c packet counter not numeric")
		}
		if p.ctrs.Bytes, err = parseCounter(bc); err != nil {
			return Errorf("-c byte counter not numeric")
		}
		p.hasCtr = true
	default:
		return Errorf("unknown option \"-%c\"", c)
	}
	return nil
}

// parseCounter reads a counter as sscanf("%llu") does: leading digits.
func parseCounter(s string) (uint64, error) {
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	return strconv.ParseUint(s[:end], 10, 64)
}

func (p *cmdParser) addMatch(name string) {
	spec := matchSpecs[name]
	for _, e := range p.exts {
		if !e.target && e.name == name {
			e.completed = true
		}
	}
	p.exts = append(p.exts, &extInst{name: name, opts: spec.Options, ext: spec.New()})
}

func checkTargetName(name string) error {
	if name == "" {
		return Errorf("Invalid target name (too short)")
	}
	if len(name) >= 29 {
		return Errorf("Invalid target name `%s' (%d chars max)", name, 28)
	}
	if strings.ContainsAny(name, " \t\n\v\f\r") {
		return Errorf("Invalid target name `%s'", name)
	}
	return nil
}

var standardTargets = map[string]Verdict{
	"ACCEPT": VerdictAccept, "DROP": VerdictDrop, "RETURN": VerdictReturn, "QUEUE": VerdictQueue,
}

// jump is command_jump: a standard verdict, a target extension, or else
// the name of a chain (resolved when the rule is added).
func (p *cmdParser) jump(name string) error {
	if err := checkTargetName(name); err != nil {
		return err
	}
	if v, ok := standardTargets[name]; ok {
		p.stdV = v
		return nil
	}
	spec, ok := targetSpecs[name]
	if !ok {
		p.cmd.jumpName = name
		return nil
	}
	p.target = &extInst{name: name, opts: spec.Options, ext: spec.New(), target: true}
	p.exts = append(p.exts, p.target)
	return nil
}

// ValidChainName is assert_valid_chain_name (xshared.c), which a
// chain line and -N run on a name; -E does not run it on the new name,
// so a renamed chain may print (iptables-save) to a chain line that
// iptables-restore refuses, in the real tool too.
func ValidChainName(name string) error {
	if len(name) >= 29 {
		return Errorf("chain name `%s' too long (must be under %d chars)", name, 29)
	}
	if name != "" && (name[0] == '-' || name[0] == '!') {
		return Errorf("chain name not allowed to start with `%c'", name[0])
	}
	if _, ok := targetSpecs[name]; ok {
		return Errorf("chain name may not clash with target name")
	}
	if _, ok := standardTargets[name]; ok {
		return Errorf("chain name may not clash with target name")
	}
	if strings.ContainsAny(name, " \t\n\v\f\r") {
		return Errorf("Invalid chain name `%s'", name)
	}
	return nil
}

func (p *cmdParser) syncRC() {
	p.rc.Chain = p.cmd.chain
	p.rc.Proto = p.ip.Proto
	p.rc.ProtoInvert = p.inv&InvProto != 0
}

// finish runs the checks after the last word (the tail of do_parse and
// ipv4_post_parse) and builds the rules.
func (p *cmdParser) finish(invert bool) error {
	p.syncRC()
	if p.rc.Table == Nat && (p.cmd.policy == "DROP" || (p.stdV == VerdictDrop && p.target == nil)) {
		return Errorf("\nThe \"nat\" table is not intended for filtering, the use of DROP is therefore inhibited.\n\n")
	}
	for _, e := range p.exts {
		if err := e.ext.Final(&p.rc); err != nil {
			return err
		}
	}
	if invert {
		return Errorf("nothing appropriate following !")
	}
	if p.cmd.op == 0 {
		return Errorf("no command specified")
	}
	if p.cli {
		if err := p.cliCheck(); err != nil || p.cl.ruleless() {
			return err
		}
		return p.buildRules()
	}
	ruleCmd := strings.IndexByte("ACDIR", p.cmd.op) >= 0 && !p.cmd.deleteNum
	if !ruleCmd {
		// options only make sense with rule commands
		if p.options&^(optVerbose|optNumeric) != 0 || len(p.exts) > 0 {
			for _, o := range []int{optSource, optDestination, optProtocol, optJump, optVianameIn, optVianameOut, optFragment, optCounters} {
				if p.options&o != 0 {
					return Errorf("Illegal option `-%c' with this command", optChars[o])
				}
			}
		}
		if p.options&optNumeric != 0 {
			return Errorf("Illegal option `-n' with this command")
		}
		return nil
	}
	if p.options&optNumeric != 0 && !p.cli {
		return Errorf("Illegal option `-n' with this command")
	}
	if p.options&optCounters != 0 && !p.cli && p.cmd.op != 'A' && p.cmd.op != 'I' && p.cmd.op != 'R' {
		return Errorf("Illegal option `-c' with this command")
	}
	if len(p.cmd.chain) >= 29 {
		return Errorf("chain name `%s' too long (must be under %d chars)", p.cmd.chain, 29)
	}
	return p.buildRules()
}

// buildRules checks the rule's chain and addresses (the tail of
// do_parse) and makes one rule per source and destination.
func (p *cmdParser) buildRules() error {
	switch p.cmd.chain {
	case "PREROUTING", "INPUT":
		if p.options&optVianameOut != 0 {
			return Errorf("Can't use -o with %s\n", p.cmd.chain)
		}
	case "POSTROUTING", "OUTPUT":
		if p.options&optVianameIn != 0 {
			return Errorf("Can't use -i with %s\n", p.cmd.chain)
		}
	}
	src := p.srcArg
	if p.options&optSource == 0 {
		src = "0.0.0.0/0"
	}
	dst := p.dstArg
	if p.options&optDestination == 0 {
		dst = "0.0.0.0/0"
	}
	var sbuf, dbuf [1]addrMask
	srcs, err := parseAddrList(src, sbuf[:0])
	if err != nil {
		return err
	}
	dsts, err := parseAddrList(dst, dbuf[:0])
	if err != nil {
		return err
	}
	if (len(srcs) > 1 || len(dsts) > 1) && p.inv&(InvSrc|InvDst) != 0 {
		return Errorf("! not allowed with multiple source or destination IP addresses")
	}
	nm := 0
	for _, e := range p.exts {
		if !e.target {
			nm++
		}
	}
	var matches []Match
	if nm > 0 {
		matches = make([]Match, 0, nm)
	}
	var target Target
	for _, e := range p.exts {
		if e.target {
			target = e.ext.(Target)
		} else {
			matches = append(matches, e.ext.(Match))
		}
	}
	matches = normalizeNFT(matches)
	verdict := p.stdV
	if p.cmd.jumpName != "" {
		verdict = VerdictJump
		if p.cmd.gotoFlag {
			verdict = VerdictGoto
		}
	}
	for _, s := range srcs {
		for _, d := range dsts {
			// the rule and its counter in one allocation
			rc := &struct {
				r Rule
				h hitCounter
			}{}
			r := &rc.r
			*r = Rule{IP: p.ip, Matches: matches, Verdict: verdict, Target: target, Line: p.rc.Line, hits: &rc.h}
			r.IP.Inv = p.inv
			r.IP.Src, r.IP.SrcMask = s.addr, s.mask
			r.IP.Dst, r.IP.DstMask = d.addr, d.mask
			if p.hasCtr {
				r.Counters = p.ctrs
			}
			p.cmd.rules = append(p.cmd.rules, r)
		}
	}
	return nil
}
