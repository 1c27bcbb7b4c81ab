package conntrack

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// The conntrack(8) command line, as conntrack-tools 1.4.7 parses it
// (src/conntrack.c): its commands, the options each command admits
// (commands_v_options), the protocol options a -p before them enables
// (extensions/libct_proto_*.c), and its messages and exit statuses,
// checked against the real tool.

// Program prefixes conntrack's messages.
const Program = "conntrack v1.4.7 (conntrack-tools)"

// CLIError is a command line conntrack refuses, with its exit status
// (2, PARAMETER_PROBLEM, with the "Try" hint; 1, OTHER_PROBLEM).
type CLIError struct {
	Msg  string
	Code int
}

func (e *CLIError) Error() string { return e.Msg }

// Stderr is what conntrack prints for e.
func (e *CLIError) Stderr() string {
	s := Program + ": " + e.Msg + "\n"
	if e.Code == 2 {
		s += "Try `conntrack -h' or 'conntrack --help' for more information.\n"
	}
	return s
}

func paramErr(msg string) *CLIError { return &CLIError{Msg: msg, Code: 2} }

// Op is a conntrack command.
type Op byte

// Commands.
const (
	OpNone    Op = 0
	OpList    Op = 'L'
	OpGet     Op = 'G'
	OpDelete  Op = 'D'
	OpFlush   Op = 'F'
	OpCount   Op = 'C'
	OpStats   Op = 'S'
	OpEvent   Op = 'E'
	OpCreate  Op = 'I'
	OpUpdate  Op = 'U'
	OpHelp    Op = 'h'
	OpVersion Op = 'V'
)

// Command is a parsed conntrack command line.
type Command struct {
	Op Op
	// Table: "conntrack" (default), "expect", "dying" or "unconfirmed".
	Table  string
	Filter Filter
	Out    Output
	// Events: -e, the event types -E prints (default all).
	Events EventType
}

// option bits, for the commands_v_options check.
type optBit uint32

const (
	oSrc optBit = 1 << iota
	oDst
	oReplySrc
	oReplyDst
	oProto
	oTimeout
	oStatus
	oZone
	oEventMask
	oMaskSrc
	oMaskDst
	oMark
	oFamily
	oSrcNAT
	oDstNAT
	oAnyNAT
	oOutput
	oOrigZone
	oReplyZone
	oLabel
	oZero
	oBuffer
	oID
)

type optDef struct {
	short string // "s"
	long  []string
	bit   optBit
	arg   bool
}

// name is the long name conntrack reports in "Illegal option" (its
// optflags table).
func (o *optDef) name() string { return o.long[0] }

var optDefs = []optDef{
	{"s", []string{"src", "orig-src"}, oSrc, true},
	{"d", []string{"dst", "orig-dst"}, oDst, true},
	{"r", []string{"reply-src"}, oReplySrc, true},
	{"q", []string{"reply-dst"}, oReplyDst, true},
	{"p", []string{"protonum"}, oProto, true},
	{"t", []string{"timeout"}, oTimeout, true},
	{"u", []string{"status"}, oStatus, true},
	{"w", []string{"zone"}, oZone, true},
	{"e", []string{"event-mask"}, oEventMask, true},
	{"", []string{"mask-src"}, oMaskSrc, true},
	{"", []string{"mask-dst"}, oMaskDst, true},
	{"m", []string{"mark"}, oMark, true},
	{"f", []string{"family"}, oFamily, true},
	{"n", []string{"src-nat"}, oSrcNAT, false},
	{"g", []string{"dst-nat"}, oDstNAT, false},
	{"j", []string{"any-nat"}, oAnyNAT, false},
	{"o", []string{"output"}, oOutput, true},
	{"", []string{"orig-zone"}, oOrigZone, true},
	{"", []string{"reply-zone"}, oReplyZone, true},
	{"l", []string{"label"}, oLabel, true},
	{"z", []string{"zero"}, oZero, false},
	{"b", []string{"buffer-size"}, oBuffer, true},
	{"i", []string{"id"}, oID, true},
}

const filterOpts = oSrc | oDst | oReplySrc | oReplyDst | oProto | oStatus | oZone | oMaskSrc | oMaskDst |
	oMark | oFamily | oSrcNAT | oDstNAT | oAnyNAT | oOrigZone | oReplyZone | oLabel

// allowed is what each command admits (conntrack.c's
// commands_v_options, as the real tool answers).
var allowed = map[Op]optBit{
	OpList:   filterOpts | oOutput | oZero | oBuffer,
	OpDelete: filterOpts | oOutput | oBuffer,
	OpGet:    oSrc | oDst | oReplySrc | oReplyDst | oProto | oZone | oOrigZone | oReplyZone | oFamily | oOutput | oID,
	OpEvent:  filterOpts | oOutput | oEventMask | oBuffer,
	OpCreate: filterOpts | oTimeout | oOutput,
	OpUpdate: filterOpts | oTimeout | oOutput,
	OpFlush:  0,
	OpCount:  0,
	OpStats:  0,
}

// protocol options, enabled by a -p before them
type protoOpt struct {
	long string
	set  func(f *Filter, v string) error
}

func portOpt(long string, field func(f *Filter) *PortMatch) protoOpt {
	return protoOpt{long, func(f *Filter, v string) error {
		*field(f) = PortMatch{V: uint16(atoi(v)), Set: true}
		return nil
	}}
}

var portOpts = []protoOpt{
	portOpt("sport", func(f *Filter) *PortMatch { return &f.OrigSPort }),
	portOpt("orig-port-src", func(f *Filter) *PortMatch { return &f.OrigSPort }),
	portOpt("dport", func(f *Filter) *PortMatch { return &f.OrigDPort }),
	portOpt("orig-port-dst", func(f *Filter) *PortMatch { return &f.OrigDPort }),
	portOpt("reply-port-src", func(f *Filter) *PortMatch { return &f.ReplySPort }),
	portOpt("reply-port-dst", func(f *Filter) *PortMatch { return &f.ReplyDPort }),
}

var tcpStateOpt = protoOpt{"state", func(f *Filter, v string) error {
	for s := TCPSynSent; int(s) < len(tcpStateNames); s++ {
		if tcpStateNames[s] == v {
			f.States |= 1 << s
			return nil
		}
	}
	return paramErr("unknown TCP state `" + v + "'")
}}

// sctpStateOpt is --state for -p sctp: conntrack-tools 1.4.7 knows NONE
// to SHUTDOWN_ACK_SENT; it crashes on any other name (HEARTBEAT_SENT
// included), which is refused here with an error instead.
var sctpStateOpt = protoOpt{"state", func(f *Filter, v string) error {
	for s := SCTPNone; s <= SCTPShutdownAckSent; s++ {
		if sctpStateNames[s] == v {
			f.States |= 1 << s
			return nil
		}
	}
	return paramErr("unknown SCTP state `" + v + "'")
}}

var icmpOpts = []protoOpt{
	{"icmp-type", func(f *Filter, v string) error { f.ICMPType = PortMatch{uint16(uint8(atoi(v))), true}; return nil }},
	{"icmp-code", func(f *Filter, v string) error { f.ICMPCode = PortMatch{uint16(uint8(atoi(v))), true}; return nil }},
	{"icmp-id", func(f *Filter, v string) error { f.ICMPID = PortMatch{uint16(atoi(v)), true}; return nil }},
}

func protoOpts(p uint8) []protoOpt {
	switch p {
	case packet.ProtoTCP:
		return append(portOpts[:len(portOpts):len(portOpts)], tcpStateOpt)
	case packet.ProtoSCTP:
		return append(portOpts[:len(portOpts):len(portOpts)], sctpStateOpt)
	case packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoDCCP:
		return portOpts
	case packet.ProtoICMP:
		return icmpOpts
	}
	return nil
}

// atoi is C's atoi: leading digits, 0 when there are none.
func atoi(s string) uint64 {
	var n uint64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + uint64(s[i]-'0')
		if n > 1<<32 {
			break
		}
	}
	return n
}

// strtoul is C's strtoul(s, &end, 0): decimal, 0x hex or 0 octal, the
// leading part that parses, and the rest.
func strtoul(s string) (uint64, string) {
	base := uint64(10)
	i := 0
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && isHex(s[2]):
		base, i = 16, 2
	case len(s) > 1 && s[0] == '0':
		base, i = 8, 1
	}
	var n uint64
	for ; i < len(s); i++ {
		d := hexVal(s[i])
		if d >= base {
			break
		}
		n = n*base + d
		if n > 0xffffffff {
			n = 0xffffffff
		}
	}
	return n, s[i:]
}

func isHex(c byte) bool { return hexVal(c) < 16 }

func hexVal(c byte) uint64 {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0')
	case c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return uint64(c-'A') + 10
	}
	return 99
}

// protoNumbers are the names -p takes (getprotobyname as the tool's
// extensions and /etc/protocols know them) and numbers.
var protoNumbers = map[string]uint8{
	"tcp": packet.ProtoTCP, "udp": packet.ProtoUDP, "udplite": packet.ProtoUDPLite,
	"icmp": packet.ProtoICMP, "sctp": packet.ProtoSCTP, "dccp": packet.ProtoDCCP,
	"gre": packet.ProtoGRE, "esp": 50, "ah": 51, "ipv6-icmp": 58, "icmpv6": 58,
}

func parseProto(v string) (uint8, bool) {
	if p, ok := protoNumbers[v]; ok {
		return p, true
	}
	if v == "" {
		return 0, false
	}
	n, rest := strtoul(v)
	if rest != "" || n > 255 {
		return 0, false
	}
	return uint8(n), true
}

// parseAddr is the tool's address argument: an IPv4 address as
// inet_aton reads it, or IPv6 (the family uswitch does not track), with
// an optional /prefix.
func parseAddr(v string) (addr, mask uint32, v6 bool, err error) {
	s, pfx, hasPfx := strings.Cut(v, "/")
	bitsMax := 32
	if a, e := netip.ParseAddr(s); e == nil && a.Is6() {
		v6, bitsMax = true, 128
	} else if a, ok := inetAton(s); ok {
		addr = a
	} else {
		return 0, 0, false, paramErr("Invalid IP address `" + s + "'")
	}
	mask = 0xffffffff
	if hasPfx {
		n, rest := strtoul(pfx)
		if pfx == "" || rest != "" || n > uint64(bitsMax) {
			return 0, 0, false, paramErr("Invalid netmask")
		}
		if !v6 {
			mask = uint32(uint64(0xffffffff) << (32 - n))
		}
	}
	return addr & mask, mask, v6, nil
}

// inetAton parses a.b.c.d, a.b.c (c 16 bits), a.b (b 24 bits) and a,
// each part decimal, 0x hex or 0 octal.
func inetAton(s string) (uint32, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 || s == "" {
		return 0, false
	}
	var v [4]uint64
	for i, p := range parts {
		n, rest := strtoul(p)
		if p == "" || rest != "" {
			return 0, false
		}
		v[i] = n
	}
	last := v[len(parts)-1]
	var a uint64
	for i := 0; i < len(parts)-1; i++ {
		if v[i] > 0xff {
			return 0, false
		}
		a |= v[i] << (24 - 8*i)
	}
	if last >= 1<<(8*(5-len(parts))) && len(parts) > 1 {
		return 0, false
	}
	return uint32(a | last), true
}

var statusNames = map[string]Status{
	"EXPECTED": StatusExpected, "SEEN_REPLY": StatusSeenReply, "ASSURED": StatusAssured,
	"CONFIRMED": StatusConfirmed, "SRC_NAT": StatusSrcNAT, "DST_NAT": StatusDstNAT,
	"SEQ_ADJUST": StatusSeqAdjust, "SRC_NAT_DONE": StatusSrcNATDone, "DST_NAT_DONE": StatusDstNATDone,
	"DYING": StatusDying, "FIXED_TIMEOUT": StatusFixedTimeout, "OFFLOAD": StatusOffload,
}

// ParseCommand parses conntrack's arguments (without the program
// name). A line the tool refuses is a *CLIError.
func ParseCommand(args []string) (*Command, error) {
	c := &Command{Table: "conntrack", Events: EventAll}
	if len(args) == 0 {
		c.Op = OpHelp
		return c, nil
	}
	var seen optBit
	var seenNames []string
	var proto *uint8
	var maskSrc, maskDst *uint32
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			if c.Op == OpNone {
				return nil, paramErr("no command specified")
			}
			return nil, paramErr("unknown type `" + a + "'")
		}
		// commands
		if op, ok := commandOf(a); ok {
			if op == OpHelp || op == OpVersion {
				return &Command{Op: op}, nil
			}
			if c.Op != OpNone {
				return nil, paramErr("Invalid commands combination")
			}
			c.Op = op
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && op != OpStats {
				switch t := args[i+1]; t {
				case "conntrack", "expect", "dying", "unconfirmed":
					c.Table = t
					i++
				default:
					return nil, paramErr("unknown type `" + t + "'")
				}
			}
			continue
		}
		name, val, hasVal := a, "", false
		long := strings.HasPrefix(a, "--")
		if long {
			name, val, hasVal = strings.Cut(a[2:], "=")
		} else {
			name, val = a[1:2], a[2:]
			hasVal = val != ""
		}
		var def *optDef
		for k := range optDefs {
			d := &optDefs[k]
			if !long && d.short == name {
				def = d
			}
			if long {
				for _, l := range d.long {
					if l == name {
						def = d
					}
				}
			}
		}
		var po *protoOpt
		if def == nil && long && proto != nil {
			for _, o := range protoOpts(*proto) {
				if o.long == name {
					po = &o
					break
				}
			}
		}
		if def == nil && po == nil {
			return nil, paramErr("unknown option `" + a + "'")
		}
		needArg := po != nil || def.arg
		if needArg && !hasVal {
			if i+1 >= len(args) {
				return nil, paramErr("option `" + a + "' requires an argument")
			}
			i++
			val = args[i]
		}
		if po != nil {
			if err := po.set(&c.Filter, val); err != nil {
				return nil, err
			}
			continue
		}
		if seen&def.bit == 0 {
			seenNames = append(seenNames, def.name())
		}
		seen |= def.bit
		f := &c.Filter
		switch def.bit {
		case oSrc, oDst, oReplySrc, oReplyDst:
			addr, mask, v6, err := parseAddr(val)
			if err != nil {
				return nil, err
			}
			if v6 {
				f.NoMatch = true
			}
			m := AddrMatch{Addr: addr, Mask: mask, Set: !v6}
			switch def.bit {
			case oSrc:
				f.OrigSrc = m
			case oDst:
				f.OrigDst = m
			case oReplySrc:
				f.ReplySrc = m
			default:
				f.ReplyDst = m
			}
		case oMaskSrc, oMaskDst:
			m, _, v6, err := parseAddr(val)
			if err != nil {
				return nil, err
			}
			if v6 {
				f.NoMatch = true
			}
			if def.bit == oMaskSrc {
				maskSrc = &m
			} else {
				maskDst = &m
			}
		case oProto:
			p, ok := parseProto(val)
			if !ok {
				return nil, paramErr("`" + val + "' unsupported protocol")
			}
			if p == 58 {
				f.NoMatch = true
			}
			f.Proto, f.HasProto = p, true
			proto = &f.Proto
		case oFamily:
			switch val {
			case "ipv4":
			case "ipv6":
				f.NoMatch = true
			default:
				return nil, paramErr("`" + val + "' unsupported protocol")
			}
		case oStatus:
			for _, s := range strings.Split(val, ",") {
				if s == "UNREPLIED" {
					f.Unreplied = true
					continue
				}
				b, ok := statusNames[s]
				if !ok {
					return nil, paramErr("Bad parameter `" + s + "'")
				}
				f.Status |= b
			}
		case oMark:
			v, rest := strtoul(val)
			f.Mark, f.MarkMask, f.HasMark = uint32(v), 0xffffffff, true
			if strings.HasPrefix(rest, "/") {
				m, _ := strtoul(rest[1:])
				f.MarkMask = uint32(m)
			}
		case oZone, oOrigZone, oReplyZone:
			v, _ := strtoul(val)
			f.Zone, f.HasZone = uint16(v), true
		case oEventMask:
			c.Events = 0
			for _, s := range strings.Split(val, ",") {
				switch strings.ToUpper(s) {
				case "NEW":
					c.Events |= EventNew
				case "UPDATE":
					c.Events |= EventUpdate
				case "DESTROY":
					c.Events |= EventDestroy
				case "ALL":
					c.Events |= EventAll
				default:
					return nil, paramErr("Bad parameter `" + s + "'")
				}
			}
		case oOutput:
			for _, s := range strings.Split(val, ",") {
				switch s {
				case "xml":
					c.Out |= OutXML
				case "extended":
					c.Out |= OutExtended
				case "id":
					c.Out |= OutID
				case "timestamp":
					c.Out |= OutTimestamp
				case "ktimestamp", "labels", "userspace", "save":
					// nothing to show here: no timestamps or labels
					// on entries; save is not done (a documented gap)
				default:
					return nil, paramErr("Bad parameter `" + s + "'")
				}
			}
		case oSrcNAT, oDstNAT, oAnyNAT:
			natFilter(f, def.bit)
		case oLabel:
			f.NoMatch = true // no entry has labels
		}
	}
	if c.Op == OpNone {
		return nil, paramErr("no command specified")
	}
	ok := allowed[c.Op]
	for _, n := range seenNames {
		for k := range optDefs {
			if optDefs[k].name() == n && optDefs[k].bit&ok == 0 {
				return nil, paramErr("Illegal option `--" + n + "' with this command")
			}
		}
	}
	if maskSrc != nil {
		if !c.Filter.OrigSrc.Set {
			return nil, paramErr("Can't use --mask-src without --src")
		}
		c.Filter.OrigSrc.Mask = *maskSrc
		c.Filter.OrigSrc.Addr &= *maskSrc
	}
	if maskDst != nil {
		if !c.Filter.OrigDst.Set {
			return nil, paramErr("Can't use --mask-dst without --dst")
		}
		c.Filter.OrigDst.Mask = *maskDst
		c.Filter.OrigDst.Addr &= *maskDst
	}
	switch c.Op {
	case OpGet:
		f := &c.Filter
		if !f.HasProto {
			return nil, paramErr("You need to supply the `--protonum' option for this command")
		}
		if !(f.OrigSrc.Set && f.OrigDst.Set) && !(f.ReplySrc.Set && f.ReplyDst.Set) {
			return nil, paramErr("you have to specify `--src' and `--dst'")
		}
		switch {
		case hasPorts(f.Proto) && !(f.OrigSPort.Set && f.OrigDPort.Set) && !(f.ReplySPort.Set && f.ReplyDPort.Set):
			return nil, paramErr("you have to specify `--sport' and `--dport'")
		case f.Proto == packet.ProtoICMP && !(f.ICMPType.Set && f.ICMPCode.Set && f.ICMPID.Set):
			return nil, paramErr("missing ICMP type, code or id: --icmp-type, --icmp-code and --icmp-id")
		}
	case OpCreate, OpUpdate:
		if seen&oTimeout == 0 {
			return nil, paramErr("You need to supply the `--timeout' option for this command")
		}
	}
	return c, nil
}

// natFilter is --src-nat / --dst-nat / --any-nat without an address:
// entries whose tuples NAT changed.
func natFilter(f *Filter, b optBit) {
	switch b {
	case oSrcNAT:
		f.Status |= StatusSrcNAT
	case oDstNAT:
		f.Status |= StatusDstNAT
	default:
		// either: no status bit filter can say "one of"; keep the
		// entries with both, the closest a bit mask gets
		f.Status |= StatusSrcNAT | StatusDstNAT
	}
}

func commandOf(a string) (Op, bool) {
	switch a {
	case "--dump":
		return OpList, true
	case "--get":
		return OpGet, true
	case "--delete":
		return OpDelete, true
	case "--flush":
		return OpFlush, true
	case "--count":
		return OpCount, true
	case "--stats":
		return OpStats, true
	case "--event":
		return OpEvent, true
	case "--create":
		return OpCreate, true
	case "--update":
		return OpUpdate, true
	case "--help":
		return OpHelp, true
	case "--version":
		return OpVersion, true
	}
	if len(a) >= 2 && a[0] == '-' && a[1] != '-' {
		switch op := Op(a[1]); op {
		case OpList, OpGet, OpDelete, OpFlush, OpCount, OpStats, OpEvent, OpCreate, OpUpdate, OpHelp, OpVersion:
			// "-Lexpect": getopt's optional argument, which conntrack
			// does not read as the table (it looks at the next word)
			return op, true
		}
	}
	return 0, false
}

// Usage is conntrack's help, in uswitch's words.
const Usage = `Command line interface for the connection tracking system (uswitch, as conntrack-tools 1.4.7).
Usage: conntrack [commands] [options]

Commands:
  -L [conntrack|expect]   list the table
  -G parameters           get one entry by its tuple
  -D [parameters]         delete the entries the filter selects
  -E [options]            print events (-e NEW,UPDATE,DESTROY)
  -F                      flush the table
  -C                      print the number of entries
  -S                      print the statistics

Filters: -s/-d/-r/-q ADDR[/PREFIX], -p PROTO, --sport/--dport, --reply-port-src/-dst,
  --state (tcp, sctp), --icmp-type/-code/-id, -m MARK[/MASK], -w ZONE, -u STATUS, -f ipv4
Output: -o extended,xml,id,timestamp
`

// Result is what a command prints and its exit status.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Exec runs a command other than -E (a stream: see AppendEvent and
// Subscribe) against t at now; portid names the requester in the
// DESTROY events of -D and -F.
func (c *Command) Exec(t *Table, now int64, portid uint32) Result {
	switch c.Op {
	case OpHelp:
		return Result{Stdout: Usage}
	case OpVersion:
		return Result{Stdout: Program + "\n"}
	case OpCount:
		n := t.Count()
		if c.Table != "conntrack" {
			n = 0
		}
		return Result{Stdout: strconv.Itoa(n) + "\n"}
	case OpStats:
		return Result{Stdout: string(t.AppendStats(nil))}
	case OpCreate, OpUpdate:
		return Result{Stderr: Program + ": Operation failed: Operation not supported\n", Code: 1}
	case OpEvent:
		return Result{Stderr: Program + ": events stream only over the control socket\n", Code: 1}
	}
	if c.Table == "expect" {
		switch c.Op {
		case OpFlush:
			t.FlushExpectations()
			return Result{Stderr: Program + ": expectation table has been emptied.\n"}
		case OpGet:
			return Result{Stderr: Program + ": Operation failed: such conntrack doesn't exist\n", Code: 1}
		case OpDelete:
			return Result{Stderr: Program + ": 0 expectations have been deleted.\n", Code: 1}
		}
		var b []byte
		ex := t.Expectations(now)
		for i := range ex {
			b = AppendExpect(b, &ex[i], now)
			b = append(b, '\n')
		}
		return Result{Stdout: string(b), Stderr: Program + ": " + strconv.Itoa(len(ex)) + " expectations have been shown.\n"}
	}
	var b []byte
	n := 0
	out := c.Out
	if c.Op == OpGet {
		out |= outGet
	}
	appendOne := func(e *Conn) {
		if c.Out&OutXML != 0 && n == 0 {
			b = append(b, XMLHeader...)
		}
		b = e.AppendEntry(b, now, out)
		b = append(b, '\n')
		n++
	}
	finish := func() {
		if c.Out&OutXML != 0 && n > 0 {
			b = append(b, XMLFooter...)
		}
	}
	other := c.Table != "conntrack" // dying, unconfirmed: none kept
	switch c.Op {
	case OpList:
		if !other {
			t.Range(now, func(e *Conn) bool {
				if c.Filter.Match(e) {
					appendOne(e)
				}
				return true
			})
		}
		finish()
		return Result{Stdout: string(b), Stderr: Program + ": " + strconv.Itoa(n) + " flow entries have been shown.\n"}
	case OpGet:
		e := c.get(t, now)
		if e == nil || other {
			return Result{Stderr: Program + ": Operation failed: such conntrack doesn't exist\n", Code: 1}
		}
		appendOne(e)
		finish()
		return Result{Stdout: string(b), Stderr: Program + ": 1 flow entries have been shown.\n"}
	case OpDelete:
		var victims []*Conn
		if !other {
			t.Range(now, func(e *Conn) bool {
				if c.Filter.Match(e) {
					victims = append(victims, e)
				}
				return true
			})
		}
		for _, e := range victims {
			// printed as the dump saw it, then deleted
			if t.Kill(e, now, portid) {
				appendOne(e)
			}
		}
		finish()
		code := 0
		if n == 0 {
			code = 1
		}
		return Result{Stdout: string(b), Stderr: Program + ": " + strconv.Itoa(n) + " flow entries have been deleted.\n", Code: code}
	case OpFlush:
		if !other {
			t.Flush(now, portid)
		}
		return Result{Stderr: Program + ": connection tracking table has been emptied.\n"}
	}
	return Result{Stderr: Program + ": unsupported command\n", Code: 1}
}

// get finds -G's entry: the original tuple from -s/-d/-p and the ports
// (or the reply tuple from -r/-q), as ctnetlink_get_conntrack looks it
// up.
func (c *Command) get(t *Table, now int64) *Conn {
	f := &c.Filter
	tu := Tuple{Proto: f.Proto, Zone: f.Zone}
	if f.OrigSrc.Set && f.OrigDst.Set {
		tu.Src, tu.Dst = f.OrigSrc.Addr, f.OrigDst.Addr
		tu.SrcPort, tu.DstPort = f.OrigSPort.V, f.OrigDPort.V
	} else {
		tu.Src, tu.Dst = f.ReplySrc.Addr, f.ReplyDst.Addr
		tu.SrcPort, tu.DstPort = f.ReplySPort.V, f.ReplyDPort.V
	}
	if tu.Proto == packet.ProtoICMP {
		tu.SrcPort = f.ICMPID.V
		tu.DstPort = f.ICMPType.V<<8 | f.ICMPCode.V
	} else if !hasPorts(tu.Proto) {
		tu.SrcPort, tu.DstPort = 0, 0
	}
	e, _, ok := t.Lookup(tu, now)
	if !ok || f.NoMatch {
		return nil
	}
	return e
}

// Flush deletes every entry (conntrack -F, ctnetlink_flush_conntrack)
// at the request of portid, and returns how many it deleted.
func (t *Table) Flush(now int64, portid uint32) int {
	var all []*Conn
	t.Range(now, func(e *Conn) bool { all = append(all, e); return true })
	n := 0
	for _, e := range all {
		if t.Kill(e, now, portid) {
			n++
		}
	}
	return n
}

// WantEvent reports whether -E prints e: its type is in -e's mask and
// its entry passes the filter.
func (c *Command) WantEvent(e *Event) bool {
	return c.Events&e.Type != 0 && c.Filter.Match(e.Conn)
}

// EventsTrailer is what conntrack -E prints when it is interrupted
// after n events: the XML footer (if any event was printed as XML) and
// the count on stderr.
func EventsTrailer(out Output, n int) (stdout, stderr string) {
	if out&OutXML != 0 && n > 0 {
		stdout = XMLFooter
	}
	return stdout, Program + ": " + strconv.Itoa(n) + " flow events have been shown.\n"
}
