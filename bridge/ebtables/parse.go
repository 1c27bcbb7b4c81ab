package ebtables

import (
	"fmt"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// The rule parser: ebtables-nft 1.8.9's do_commandeb
// (iptables/xtables-eb.c) as getopt_long drives it. Every extension's
// options are always known (ebtables-nft loads all bridge extensions up
// front, so --ip-src needs no -m and --mark-set implies -j mark); long
// options may be abbreviated to a unique prefix; "!" inverts the next
// option, either before it (! -p ARP) or before its value (-p ! ARP).

// errKind says how ebtables-restore reports an error.
type errKind uint8

const (
	// errParam: "ebtables-restore v1.8.9 (nf_tables): MSG", the line,
	// the usage hint; exit status 2 (PARAMETER_PROBLEM).
	errParam errKind = iota
	// errKernel: the kernel refused the rule at commit (nft_compat's
	// checkentry, a missing nft feature): "line N: RULE_APPEND failed
	// (ERRNO): rule in chain C"; exit status 4.
	errKernel
	// errCommit: the batch failed without a rule to blame ("final
	// implicit COMMIT failed"); exit status 1.
	errCommit
	// errNoTable: a command before any *table line; exit status 1.
	errNoTable
)

type ruleError struct {
	kind  errKind
	msg   string // errParam: the message; errKernel: the errno text
	chain string
}

func paramErr(format string, a ...any) *ruleError {
	return &ruleError{kind: errParam, msg: fmt.Sprintf(format, a...)}
}

func (e *ruleError) Error() string { return e.msg }

// optDef is one long or short option.
type optDef struct {
	name   string // without dashes; one letter for short options
	hasArg bool
	ext    string // "" for the base options
}

// extDef describes an extension: its options and how to make it.
type extDef struct {
	name string
	kind extKind
	opts []optDef
	make func() extParser
}

type extKind uint8

const (
	kMatch extKind = iota
	kWatcher
	kTarget
)

// extParser is an extension being parsed: parse gets each of its
// options (opt is the full option name), final the whole rule.
type extParser interface {
	parse(opt, arg string, inv bool) error
	final(p *ruleParser) error
}

var extDefs []*extDef

func register(d *extDef) {
	for i := range d.opts {
		d.opts[i].ext = d.name
	}
	extDefs = append(extDefs, d)
}

func extByName(name string) *extDef {
	for _, d := range extDefs {
		if d.name == name {
			return d
		}
	}
	return nil
}

// chainInfo is what the parser knows of the chain a rule goes to.
type chainInfo struct {
	table   TableID
	name    string
	builtin bool
	hook    Hook
}

// ruleParser parses one rule's words.
type ruleParser struct {
	ch         chainInfo
	r          *Rule
	exts       []extParser // in order of first use
	extNames   []string
	seen       map[string]bool
	target     string // -j value
	badJump    string // a -j to a chain that did not exist
	counters   bool
	pcnt, bcnt uint64
	// NoBridgeMeta: refuse --logical-in/out as this kernel does
	// (CONFIG_NFT_BRIDGE_META unset).
	noBridgeMeta bool
}

// canonical names of the base options, for "Multiple use".
var baseCanon = map[string]string{
	"p": "p", "protocol": "p", "proto": "p",
	"s": "s", "source": "s", "src": "s",
	"d": "d", "destination": "d", "dst": "d",
	"i": "i", "in-interface": "i", "in-if": "i",
	"o": "o", "out-interface": "o", "out-if": "o",
	"logical-in": "logical-in", "logical-out": "logical-out",
	"j": "j", "jump": "j",
}

func (p *ruleParser) option(o optDef, arg string, inv bool) *ruleError {
	key := o.ext + "/" + o.name
	if o.ext == "" {
		key = baseCanon[o.name]
	}
	// "Multiple use of same option not allowed" as ebtables-nft 1.8.9
	// says it: the base options, the targets and the extensions whose
	// parse functions use EBT_CHECK_OPTION (arp, vlan, stp, limit,
	// nflog) refuse a repeated option; ip, ip6, mark_m, among, 802_3,
	// pkttype and log never check, and a repeated option's last value
	// counts (TestCommandKernel)
	check := true
	if o.ext != "" && extByName(o.ext).kind != kTarget {
		if a, ok := optAlias[o.name]; ok {
			key = o.ext + "/" + a
		}
		switch o.ext {
		case "ip", "ip6", "mark_m", "among", "802_3", "pkttype", "log":
			// their parse functions never check
			check = false
		}
	}
	if check {
		if p.seen[key] {
			return paramErr("Multiple use of same option not allowed")
		}
		p.seen[key] = true
	}
	r := p.r
	if o.ext != "" {
		var x extParser
		if p.target != "" && p.target != o.ext && extByName(o.ext).kind == kTarget {
			// another target's option after -j: parsed (its errors
			// stand) and lost with the watcher do_commandeb makes of it
			x = extByName(o.ext).make()
		} else {
			x = p.ext(o.ext)
		}
		if err := x.parse(o.name, arg, inv); err != nil {
			if re, ok := err.(*ruleError); ok {
				return re
			}
			return paramErr("%s", err.Error())
		}
		return nil
	}
	switch key {
	case "p":
		r.ProtoSet, r.ProtoInv = true, inv
		if strings.EqualFold(arg, "length") {
			r.Length = true
			return nil
		}
		v, err := parseHex(arg, 64)
		if err == nil {
			if v < 0x0600 {
				return paramErr("Sorry, protocols have values above or equal to 0x0600")
			}
			if v > 0xffff {
				return paramErr("Problem with the specified protocol")
			}
			r.Proto = uint16(v)
			return nil
		}
		ev, ok := ethertypeByName(arg)
		if !ok {
			return paramErr("Problem with the specified Ethernet protocol '%s', perhaps /etc/ethertypes is missing", arg)
		}
		r.Proto = ev
	case "s", "d":
		m, ok := parseMACMask(arg)
		if !ok {
			which := "source"
			if key == "d" {
				which = "destination"
			}
			return paramErr("Problem with specified %s mac '%s'", which, arg)
		}
		m.Inv = inv
		if key == "s" {
			r.Src = m
		} else {
			r.Dst = m
		}
	case "i", "o", "logical-in", "logical-out":
		if p.ch.builtin {
			h := p.ch.hook
			inOK := h == LocalIn || h == Forward || h == PreRouting || h == BRouting
			outOK := h == LocalOut || h == Forward || h == PostRouting
			switch {
			case key == "i" && !inOK:
				return paramErr("Use -i only in INPUT, FORWARD, PREROUTING and BROUTING chains")
			case key == "logical-in" && !inOK:
				return paramErr("Use --logical-in only in INPUT, FORWARD, PREROUTING and BROUTING chains")
			case key == "o" && !outOK:
				return paramErr("Use -o only in OUTPUT, FORWARD and POSTROUTING chains")
			case key == "logical-out" && !outOK:
				return paramErr("Use --logical-out only in OUTPUT, FORWARD and POSTROUTING chains")
			}
		}
		// xtables_parse_interface, then ebtables_parse_interface
		if len(arg) >= 16 {
			return paramErr("interface name `%s' must be shorter than IFNAMSIZ (15)", arg)
		}
		if k := strings.IndexByte(arg, '+'); k >= 0 && k != len(arg)-1 {
			return paramErr("Spurious characters after '+' wildcard")
		}
		m := IfMatch{Set: true, Inv: inv, Name: arg}
		if strings.HasSuffix(arg, "+") {
			m.Name, m.Wild = arg[:len(arg)-1], true
		}
		switch key {
		case "i":
			r.In = m
		case "o":
			r.Out = m
		case "logical-in":
			r.LogicalIn = m
		case "logical-out":
			r.LogicalOut = m
		}
	case "j":
		p.target = arg
		// -j sets the rule's target anew: a target extension its
		// options made before (do_commandeb adds it as a watcher, which
		// the rule loses) is dropped, and an extension target starts
		// with none of its options set ("--mark-set 1 -j mark": "You
		// must specify some option")
		p.dropTargets()
		if v, ok := parseVerdict(arg); ok {
			r.Verdict = v
			return nil
		}
		if d := extByName(arg); d != nil && d.kind == kTarget {
			p.ext(arg)
			return nil
		}
		// the caller resolves the jump against its table
		r.Verdict, r.Jump = VJump, arg
		p.badJump = arg
	}
	return nil
}

// dropTargets forgets the target extensions the rule's options made,
// with their options' "Multiple use" marks.
func (p *ruleParser) dropTargets() {
	k := 0
	for i, name := range p.extNames {
		if extByName(name).kind == kTarget {
			for key := range p.seen {
				if strings.HasPrefix(key, name+"/") {
					delete(p.seen, key)
				}
			}
			continue
		}
		p.exts[k], p.extNames[k] = p.exts[i], name
		k++
	}
	clear(p.exts[k:])
	p.exts, p.extNames = p.exts[:k], p.extNames[:k]
}

// ext returns the rule's instance of extension name, making it.
func (p *ruleParser) ext(name string) extParser {
	for i, n := range p.extNames {
		if n == name {
			return p.exts[i]
		}
	}
	d := extByName(name)
	x := d.make()
	p.exts = append(p.exts, x)
	p.extNames = append(p.extNames, name)
	return x
}

// finish runs the extensions' final checks and builds the rule.
func (p *ruleParser) finish() *ruleError {
	r := p.r
	if p.noBridgeMeta && (r.LogicalIn.Set || r.LogicalOut.Set) {
		// a bare "+" becomes a zero-length comparison, which nf_tables
		// refuses before it gets to the missing meta key
		for _, m := range []*IfMatch{&r.LogicalIn, &r.LogicalOut} {
			if m.Set && m.Wild && m.Name == "" {
				return &ruleError{kind: errKernel, msg: "Invalid argument"}
			}
		}
		return &ruleError{kind: errKernel, msg: "Operation not supported"}
	}
	// "-i +" matches every device: ebtables-nft drops it.
	for _, m := range []*IfMatch{&r.In, &r.Out, &r.LogicalIn, &r.LogicalOut} {
		// so does an empty name (ebt_dev_check: an empty entry matches),
		// "! ''" too: ebtables-nft adds no match for it and the "!" is
		// lost (checked with the real ebtables); only "! +" stays
		if m.Set && m.Name == "" && (!m.Inv || !m.Wild) {
			*m = IfMatch{}
		}
	}
	// ebtables-nft 1.8.9 keeps only the first and the last of a rule's
	// matches and watchers when it has three or more (the ones between
	// are neither in the kernel's rule nor in ebtables-save's output:
	// "--log --limit 1/s --mark 5" saves as "--log-level notice --mark
	// 0x5"); checked against the real ebtables in TestMultiExtKernel.
	var mw []int
	for i := range p.exts {
		if extByName(p.extNames[i]).kind != kTarget {
			mw = append(mw, i)
		}
	}
	drop := map[int]bool{}
	if len(mw) >= 3 {
		for _, i := range mw[1 : len(mw)-1] {
			drop[i] = true
		}
	}
	for i, x := range p.exts {
		if drop[i] {
			continue
		}
		if err := x.final(p); err != nil {
			if re, ok := err.(*ruleError); ok {
				return re
			}
			return paramErr("%s", err.Error())
		}
		switch extByName(p.extNames[i]).kind {
		case kMatch:
			r.Matches = append(r.Matches, x.(Match))
			r.saveOrder = append(r.saveOrder, x.(Match))
		case kWatcher:
			r.Watchers = append(r.Watchers, x.(Watcher))
			r.saveOrder = append(r.saveOrder, x.(Watcher))
		case kTarget:
			// an extension target (named by -j, or implied by its
			// options) replaces the standard one
			r.Target, r.Verdict, r.Jump = x.(Target), VContinue, ""
			p.badJump = ""
		}
	}
	return nil
}

// kernelCheck is what the kernel refuses at commit with EINVAL: the
// checkentry functions of the matches and targets (ebt_ip.c
// ebt_ip_mt_check, ebt_arp.c, ebt_vlan.c, ebt_dnat.c ...), run as
// nft_compat runs them with the chain's hook mask.
type kernelChecker interface {
	check(p *ruleParser) bool
}

// protoIs says the rule's -p is exactly proto, not inverted.
func (p *ruleParser) protoIs(protos ...uint16) bool {
	r := p.r
	if !r.ProtoSet || r.ProtoInv || r.Length {
		return false
	}
	for _, v := range protos {
		if r.Proto == v {
			return true
		}
	}
	return false
}

// hookMask is the hooks the rule's chain is reachable from: its own
// for a builtin chain, none for a user chain (nft_compat checks a
// non-base chain's rule with an empty hook mask).
func (p *ruleParser) hookIn(hooks ...Hook) bool {
	if !p.ch.builtin {
		return true
	}
	for _, h := range hooks {
		if p.ch.hook == h {
			return true
		}
	}
	return false
}

// parseMACMask reads -s/-d values: a keyword or MAC[/MASK]
// (ebt_get_mac_and_mask in iptables/xtables-eb.c).
func parseMACMask(s string) (MACMatch, bool) {
	all := packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mc := packet.MAC{1}
	switch strings.ToLower(s) {
	case "unicast":
		return MACMatch{Set: true, Mask: mc}, true
	case "multicast":
		return MACMatch{Set: true, Addr: mc, Mask: mc}, true
	case "broadcast":
		return MACMatch{Set: true, Addr: all, Mask: all}, true
	case "bga":
		return MACMatch{Set: true, Addr: packet.MAC{0x01, 0x80, 0xc2}, Mask: all}, true
	}
	a, m, ok := macAndMask(s)
	if !ok {
		return MACMatch{}, false
	}
	return MACMatch{Set: true, Addr: a, Mask: m}, true
}

// macAndMask parses MAC[/MASK] as ebt_get_mac_and_mask does (the mask
// after the last '/', each part read by ether_aton); the address is
// stored masked.
func macAndMask(s string) (packet.MAC, packet.MAC, bool) {
	all := packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	as, m := s, all
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		var ok bool
		if m, ok = etherAton(s[i+1:]); !ok {
			return packet.MAC{}, all, false
		}
		as = s[:i]
	}
	a, ok := etherAton(as)
	if !ok {
		return a, all, false
	}
	for i := range a {
		a[i] &= m[i]
	}
	return a, m, true
}

// etherAton is glibc's ether_aton, which ebtables reads every MAC with:
// six groups of one or two hex digits (either case) joined by ':'; a
// group of one digit ends at the ':' or, the last one, at the string's
// end or a white space; whatever follows the last group is ignored
// ("02:00:00:00:00:01x" is 02:00:00:00:00:01, and so is
// "...:012"; "...:1x" is refused).
func etherAton(s string) (packet.MAC, bool) {
	var m packet.MAC
	hex := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	at := func(i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0 // the C string's end
	}
	i := 0
	for k := range m {
		n, ok := hex(at(i))
		if !ok {
			return packet.MAC{}, false
		}
		i++
		c := at(i)
		if k < 5 && c != ':' || k == 5 && c != 0 && !isCSpace(c) {
			d, ok := hex(c)
			if !ok {
				return packet.MAC{}, false
			}
			n = n<<4 | d
			i++
			if k < 5 && at(i) != ':' {
				return packet.MAC{}, false
			}
		}
		m[k] = n
		i++ // the ':'
	}
	return m, true
}

// isCSpace is C's isspace in the C locale.
func isCSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
