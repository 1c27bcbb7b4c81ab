package lvs

// The ipvsadm language: one command line as ipvsadm 1.31 reads it from
// its own argv or, one line at a time, from `ipvsadm -R` (ipvsadm.c
// parse_options/process_options, config_stream.c). The option table,
// defaults, checks and error texts follow ipvsadm; the checks the kernel
// makes are the Director's (ip_vs_ctl.c), their errors worded as
// ipvsadm's ipvs_strerror words them.
//
// Deviations: IPv4 only (-6 and IPv6 addresses are refused); host names
// must be numeric (no resolver); service names come from a small
// built-in table instead of /etc/services; the sync daemon commands are
// refused; a rule file may hold blank lines and #-comment lines, but no
// line over 64 KiB and no control characters but tab and CR.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Cmd is an ipvsadm command (ipvsadm.c CMD_*).
type Cmd uint8

// The commands, in ipvsadm's order (the option table's rows).
const (
	CmdNone Cmd = iota
	CmdAdd
	CmdEdit
	CmdDel
	CmdFlush
	CmdList
	CmdAddDest
	CmdDelDest
	CmdEditDest
	CmdTimeout
	CmdStartDaemon
	CmdStopDaemon
	CmdRestore
	CmdSave
	CmdZero
)

var cmdNames = [...]string{"", "add-service", "edit-service", "delete-service", "flush", "list",
	"add-server", "delete-server", "edit-server", "set", "start-daemon", "stop-daemon", "restore",
	"save", "zero"}

// String is ipvsadm's name of the command.
func (c Cmd) String() string {
	if int(c) < len(cmdNames) {
		return cmdNames[c]
	}
	return fmt.Sprintf("cmd(%d)", c)
}

// Option bits (1<<OPTC_* in ipvsadm.c), in the order of the columns of
// the command/option table.
const (
	optNumeric = iota
	optConnection
	optService
	optScheduler
	optPersistent
	optNetmask
	optServer
	optForward
	optWeight
	optUThreshold
	optLThreshold
	optMcast
	optTimeout
	optDaemon
	optStats
	optRate
	optThresholds
	optPersistentConn
	optNoSort
	optSyncID
	optExact
	optOnePacket
	optPE
	optSchedFlags
	optMcastGroup
	optMcastPort
	optMcastTTL
	optSyncMaxlen
	optTunInfo
	optTunType
	optTunPort
	optTunNoCsum
	optTunCsum
	optTunRemCsum
	numOpts
)

var optNames = [numOpts]string{"numeric", "connection", "service-address", "scheduler", "persistent",
	"netmask", "real-server", "forwarding-method", "weight", "u-threshold", "l-threshold",
	"mcast-interface", "timeout", "daemon", "stats", "rate", "thresholds", "persistent-conn", "nosort",
	"syncid", "exact", "ops", "pe", "sched-flags", "mcast-group", "mcast-port", "mcast-ttl",
	"sync-maxlen", "tun-info", "tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"}

// cmdOpts is ipvsadm's commands_v_options table, one string per command
// (CmdAdd first), one column per option: '+' compulsory, 'x' illegal,
// '1' at most one of them, '.' optional.
var cmdOpts = [...]string{
	CmdAdd - 1:         "xx+...xxxxxxxxxxxxxxx...xxxxxxxxxx",
	CmdEdit - 1:        "xx+...xxxxxxxxxxxxxxx...xxxxxxxxxx",
	CmdDel - 1:         "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdFlush - 1:       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdList - 1:        ".11xxxxxxxxx11.......xxxxxxx.xxxxx",
	CmdAddDest - 1:     "xx+xxx+....xxxxxxxxxxxxxxxxxx.....",
	CmdDelDest - 1:     "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdEditDest - 1:    "xx+xxx+....xxxxxxxxxxxxxxxxxx.....",
	CmdTimeout - 1:     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdStartDaemon - 1: "xxxxxxxxxxx.xxxxxxx.xxxx....xxxxxx",
	CmdStopDaemon - 1:  "xxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxx",
	CmdRestore - 1:     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdSave - 1:        ".xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdZero - 1:        "xx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}

// tunOpts is tunnel_types_v_options: for ipip, gue, gre, the columns
// tun-port, tun-nocsum, tun-csum, tun-remcsum.
var (
	tunOptCols = [4]int{optTunPort, optTunNoCsum, optTunCsum, optTunRemCsum}
	tunOpts    = [3]string{"xxxx", "+111", "x11x"}
)

// ListFormat are the printing switches of -L and -S (ipvsadm.c FMT_*).
type ListFormat uint16

const (
	FmtNumeric     ListFormat = 0x0001
	FmtRule        ListFormat = 0x0002 // -S
	FmtStats       ListFormat = 0x0004
	FmtRate        ListFormat = 0x0008
	FmtThresholds  ListFormat = 0x0010
	FmtPersistConn ListFormat = 0x0020
	FmtNoSort      ListFormat = 0x0040
	FmtExact       ListFormat = 0x0080
	FmtTunInfo     ListFormat = 0x0100
)

// MaxTimeout is the largest timeout ipvsadm accepts (31 days).
const MaxTimeout = 86400 * 31

// Command is one parsed ipvsadm command line.
type Command struct {
	Cmd Cmd
	// Service is the virtual service of -A/-E/-D/-a/-e/-d/-Z and of -L
	// with a service (Options has optService).
	Service ServiceConfig
	// Dest is the real server of -a/-e/-d.
	Dest DestConfig
	// Timeouts are the values of --set.
	Timeouts Timeouts
	// Format are the -L/-S switches.
	Format  ListFormat
	options uint64
}

// Has reports whether the option named as ipvsadm names it in its
// messages ("service-address", "connection", "timeout", ...) was given.
func (c *Command) Has(name string) bool {
	for i, n := range optNames {
		if n == name {
			return c.options&(1<<i) != 0
		}
	}
	return false
}

// CommandError is a command ipvsadm refuses, with ipvsadm's message.
type CommandError struct{ Msg string }

func (e *CommandError) Error() string { return e.Msg }

func failf(format string, a ...any) error { return &CommandError{fmt.Sprintf(format, a...)} }

// errTryHelp is what ipvsadm prints when the first option is not a
// command (tryhelp_exit).
var errTryHelp = &CommandError{"Try `ipvsadm -h' or 'ipvsadm --help' for more information."}

type argKind uint8

const (
	argNone argKind = iota
	argRequired
	argOptional
)

type optDef struct {
	long  string
	short byte
	arg   argKind
	tag   string // the option's identity below
}

// optTable is ipvsadm's popt option table (long name, short name,
// argument).
var optTable = []optDef{
	{"add-service", 'A', argNone, "A"}, {"edit-service", 'E', argNone, "E"},
	{"delete-service", 'D', argNone, "D"}, {"clear", 'C', argNone, "C"},
	{"list", 'L', argNone, "L"}, {"", 'l', argNone, "L"}, {"zero", 'Z', argNone, "Z"},
	{"add-server", 'a', argNone, "a"}, {"edit-server", 'e', argNone, "e"},
	{"delete-server", 'd', argNone, "d"}, {"set", 0, argNone, "set"},
	{"help", 'h', argNone, "h"}, {"version", 'v', argNone, "v"},
	{"restore", 'R', argNone, "R"}, {"save", 'S', argNone, "S"},
	{"start-daemon", 0, argRequired, "start-daemon"}, {"stop-daemon", 0, argRequired, "stop-daemon"},
	{"tcp-service", 't', argRequired, "t"}, {"udp-service", 'u', argRequired, "u"},
	{"sctp-service", 0, argRequired, "sctp"}, {"fwmark-service", 'f', argRequired, "f"},
	{"scheduler", 's', argRequired, "s"}, {"persistent", 'p', argOptional, "p"},
	{"netmask", 'M', argRequired, "M"}, {"real-server", 'r', argRequired, "r"},
	{"masquerading", 'm', argNone, "m"}, {"ipip", 'i', argNone, "i"}, {"gatewaying", 'g', argNone, "g"},
	{"weight", 'w', argRequired, "w"}, {"u-threshold", 'x', argRequired, "x"},
	{"l-threshold", 'y', argRequired, "y"}, {"numeric", 'n', argNone, "n"},
	{"connection", 'c', argNone, "c"}, {"mcast-interface", 0, argRequired, "mcast-interface"},
	{"syncid", 0, argRequired, "syncid"}, {"timeout", 0, argNone, "timeout"},
	{"daemon", 0, argNone, "daemon"}, {"stats", 0, argNone, "stats"}, {"rate", 0, argNone, "rate"},
	{"thresholds", 0, argNone, "thresholds"}, {"persistent-conn", 0, argNone, "persistent-conn"},
	{"nosort", 0, argNone, "nosort"}, {"sort", 0, argNone, "sort"}, {"exact", 'X', argNone, "X"},
	{"ipv6", '6', argNone, "6"}, {"ops", 'o', argNone, "o"}, {"pe", 0, argRequired, "pe"},
	{"sched-flags", 'b', argRequired, "b"}, {"mcast-group", 0, argRequired, "mcast-group"},
	{"mcast-port", 0, argRequired, "mcast-port"}, {"mcast-ttl", 0, argRequired, "mcast-ttl"},
	{"sync-maxlen", 0, argRequired, "sync-maxlen"}, {"tun-info", 0, argNone, "tun-info"},
	{"tun-type", 0, argRequired, "tun-type"}, {"tun-port", 0, argRequired, "tun-port"},
	{"tun-nocsum", 0, argNone, "tun-nocsum"}, {"tun-csum", 0, argNone, "tun-csum"},
	{"tun-remcsum", 0, argNone, "tun-remcsum"},
}

// poptItem is one option found in argv: its definition, the text as
// typed (for messages) and its argument.
type poptItem struct {
	def   *optDef
	typed string
	arg   string
	has   bool // arg present (for -p)
	err   string
}

// popt splits argv as popt does: long options with "--name[=value]",
// clustered short options with attached or separate arguments, an
// optional argument taken from the next word unless it starts with '-',
// "--" ending the options, other words left over as arguments.
func popt(args []string) (items []poptItem, rest []string) {
	find := func(long string, short byte) *optDef {
		for i := range optTable {
			d := &optTable[i]
			if (long != "" && d.long == long) || (long == "" && short != 0 && d.short == short) {
				return d
			}
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			return
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			d := find(name, 0)
			if d == nil {
				items = append(items, poptItem{typed: a, err: "unknown option"})
				return
			}
			it := poptItem{def: d, typed: a}
			switch d.arg {
			case argNone:
				if hasVal {
					items = append(items, poptItem{typed: a, err: "option does not take an argument"})
					return
				}
			case argRequired:
				if hasVal {
					it.arg, it.has = val, true
				} else if i+1 < len(args) {
					i++
					it.arg, it.has = args[i], true
				} else {
					items = append(items, poptItem{typed: a, err: "missing argument"})
					return
				}
			case argOptional:
				if hasVal {
					it.arg, it.has = val, true
				} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					i++
					it.arg, it.has = args[i], true
				}
			}
			items = append(items, it)
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				d := find("", a[j])
				if d == nil {
					items = append(items, poptItem{typed: a, err: "unknown option"})
					return
				}
				it := poptItem{def: d, typed: "-" + string(a[j])}
				if d.arg != argNone {
					attached := a[j+1:]
					attached = strings.TrimPrefix(attached, "=")
					switch {
					case attached != "":
						it.arg, it.has = attached, true
					case d.arg == argRequired && i+1 < len(args):
						i++
						it.arg, it.has = args[i], true
					case d.arg == argRequired:
						items = append(items, poptItem{typed: it.typed, err: "missing argument"})
						return
					case i+1 < len(args) && !strings.HasPrefix(args[i+1], "-"):
						i++
						it.arg, it.has = args[i], true
					}
					items = append(items, it)
					break
				}
				items = append(items, it)
			}
		default:
			rest = append(rest, a)
		}
	}
	return
}

// fmtArgs are the options that are -L/-S switches, by tag: the option
// and the format bit it sets.
var fmtArgs = map[string]struct {
	opt int
	bit ListFormat
}{
	"n": {optNumeric, FmtNumeric}, "stats": {optStats, FmtStats}, "rate": {optRate, FmtRate},
	"thresholds": {optThresholds, FmtThresholds}, "persistent-conn": {optPersistentConn, FmtPersistConn},
	"nosort": {optNoSort, FmtNoSort}, "X": {optExact, FmtExact}, "tun-info": {optTunInfo, FmtTunInfo},
}

// numArg is an option whose argument is a number within [min, max]
// (ipvsadm.c parse_options: string_to_number, and fail(2, "illegal
// <what> specified") when it is not one), and keep stores it (nil for
// the sync daemon's, which are checked and not kept).
type numArg struct {
	opt      int
	min, max int64
	what     string
	keep     func(c *Command, n int64)
}

// numArgs are the options ParseCommand reads as numbers, by tag.
var numArgs = map[string]numArg{
	"w":           {optWeight, 0, 65535, "weight", func(c *Command, n int64) { c.Dest.Weight = int32(n) }},
	"x":           {optUThreshold, 0, math.MaxInt32, "u_threshold", func(c *Command, n int64) { c.Dest.UThreshold = uint32(n) }},
	"y":           {optLThreshold, 0, math.MaxInt32, "l_threshold", func(c *Command, n int64) { c.Dest.LThreshold = uint32(n) }},
	"tun-port":    {optTunPort, 1, 65535, "tunnel port", func(c *Command, n int64) { c.Dest.TunPort = uint16(n) }},
	"syncid":      {optSyncID, 0, 255, "syncid", nil},
	"mcast-port":  {optMcastPort, 1, 65535, "mcast-port", nil},
	"mcast-ttl":   {optMcastTTL, 1, 255, "mcast-ttl", nil},
	"sync-maxlen": {optSyncMaxlen, 1, 65535 - 20 - 8, "sync-maxlen", nil}, // 65535 - IP and UDP headers
}

// ParseCommand parses one ipvsadm command line (without the program
// name) and checks it as ipvsadm does before it talks to the kernel.
func ParseCommand(args []string) (*Command, error) {
	items, rest := popt(args)
	c := &Command{}
	// process_options' defaults
	c.Dest.Weight = 1
	c.Dest.Fwd = Route
	c.Service.Netmask = 0xffffffff
	c.Service.NetmaskSet = true
	if len(items) == 0 || items[0].err != "" {
		return nil, errTryHelp
	}
	switch items[0].def.tag {
	case "A":
		c.Cmd = CmdAdd
	case "E":
		c.Cmd = CmdEdit
	case "D":
		c.Cmd = CmdDel
	case "a":
		c.Cmd = CmdAddDest
	case "e":
		c.Cmd = CmdEditDest
	case "d":
		c.Cmd = CmdDelDest
	case "C":
		c.Cmd = CmdFlush
	case "L":
		c.Cmd = CmdList
	case "Z":
		c.Cmd = CmdZero
	case "set":
		c.Cmd = CmdTimeout
	case "R":
		c.Cmd = CmdRestore
	case "S":
		c.Cmd = CmdSave
	case "start-daemon", "stop-daemon":
		if a := items[0].arg; a != "master" && a != "backup" {
			if items[0].def.tag == "start-daemon" {
				return nil, failf("illegal start-daemon parameter specified")
			}
			return nil, failf("illegal start_daemon specified")
		}
		return nil, failf("the sync daemon is not supported")
	case "h", "v":
		return nil, failf("option %s is not supported here", items[0].typed)
	default:
		return nil, errTryHelp
	}
	var (
		schedFlags string
		proto      uint8
		addr       uint32
		port       uint16
	)
	set := func(o int) error {
		if c.options&(1<<o) != 0 {
			return failf("multiple '%s' options specified", optNames[o])
		}
		c.options |= 1 << o
		return nil
	}
	for _, it := range items[1:] {
		if it.err != "" {
			return nil, failf("%s: %s", it.typed, it.err)
		}
		var err error
		switch it.def.tag {
		case "t", "u", "sctp":
			if err = set(optService); err != nil {
				return nil, err
			}
			proto = map[string]uint8{"t": ProtoTCP, "u": ProtoUDP, "sctp": ProtoSCTP}[it.def.tag]
			a, p, r, perr := parseService(it.arg, proto, port)
			if perr != nil {
				return nil, perr
			}
			if r&svcAddr == 0 {
				return nil, failf("illegal virtual server address[:port] specified")
			}
			addr, port = a, p
		case "f":
			if err = set(optService); err != nil {
				return nil, err
			}
			proto = ProtoTCP
			m, ok := parseFwmark(it.arg)
			if !ok {
				return nil, failf("invalid fwmark value `%s' specified", it.arg)
			}
			c.Service.Key.FwMark = m
		case "s":
			err = set(optScheduler)
			c.Service.SchedName = it.arg
			if len(c.Service.SchedName) > 15 { // IP_VS_SCHEDNAME_MAXLEN - 1
				c.Service.SchedName = c.Service.SchedName[:15]
			}
		case "p":
			err = set(optPersistent)
			c.Service.Flags |= SvcPersistent
			c.Service.Timeout = DefaultPersistTimeout
			if it.has {
				t, ok := parseTimeout(it.arg, 1, MaxTimeout)
				if !ok {
					return nil, failf("invalid timeout value `%s' specified", it.arg)
				}
				c.Service.Timeout = t
			}
		case "M":
			err = set(optNetmask)
			m, ok := inetAton(it.arg)
			if !ok {
				return nil, failf("illegal virtual server persistent mask specified")
			}
			c.Service.Netmask = m
		case "r":
			if err = set(optServer); err != nil {
				return nil, err
			}
			a, p, r, perr := parseService(it.arg, proto, port)
			if perr != nil {
				return nil, perr
			}
			if r&svcAddr == 0 {
				return nil, failf("illegal real server address[:port] specified")
			}
			c.Dest.Addr, c.Dest.Port = a, p
			if r == svcAddr {
				// "copy vport to dport if not specified"
				c.Dest.Port = port
			}
		case "i":
			err = set(optForward)
			c.Dest.Fwd = Tunnel
		case "g":
			err = set(optForward)
			c.Dest.Fwd = Route
		case "m":
			err = set(optForward)
			c.Dest.Fwd = Masq
		case "c":
			err = set(optConnection)
		case "mcast-interface":
			err = set(optMcast)
		case "timeout":
			err = set(optTimeout)
		case "daemon":
			err = set(optDaemon)
		case "sort":
		case "6":
			if c.Service.Key.FwMark == 0 {
				return nil, failf("-6 used before -f")
			}
			return nil, failf("IPv6 services are not supported")
		case "o":
			err = set(optOnePacket)
			c.Service.Flags |= SvcOnePacket
		case "pe":
			err = set(optPE)
			c.Service.PE = it.arg
		case "b":
			err = set(optSchedFlags)
			schedFlags = it.arg
		case "mcast-group":
			err = set(optMcastGroup)
			a, perr := netip.ParseAddr(it.arg)
			if strings.Contains(it.arg, ":") {
				if perr != nil || !a.Is6() || a.Zone() != "" || !a.IsMulticast() {
					return nil, failf("invalid IPv6 mcast-group `%s'", it.arg)
				}
			} else if perr != nil || !a.Is4() || !a.IsMulticast() {
				return nil, failf("invalid IPv4 mcast-group `%s'", it.arg)
			}
		case "tun-type":
			err = set(optTunType)
			switch it.arg {
			case "ipip":
				c.Dest.TunType = TunIPIP
			case "gue":
				c.Dest.TunType = TunGUE
			case "gre":
				c.Dest.TunType = TunGRE
			default:
				return nil, failf("illegal tunnel type specified")
			}
		case "tun-nocsum":
			err = set(optTunNoCsum)
			c.Dest.TunFlags |= TunFlagNoCsum
		case "tun-csum":
			err = set(optTunCsum)
			c.Dest.TunFlags |= TunFlagCsum
		case "tun-remcsum":
			err = set(optTunRemCsum)
			c.Dest.TunFlags |= TunFlagRemCsum
		default:
			if sw, ok := fmtArgs[it.def.tag]; ok {
				err = set(sw.opt)
				c.Format |= sw.bit
				break
			}
			na, ok := numArgs[it.def.tag]
			if !ok {
				// a second command, or -h/-v/-R/... after the command
				return nil, failf("invalid option `%s'", it.typed)
			}
			err = set(na.opt)
			n, ok := stringToNumber(it.arg, na.min, na.max)
			if !ok {
				return nil, failf("illegal %s specified", na.what)
			}
			if na.keep != nil {
				na.keep(c, n)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if c.Cmd == CmdTimeout {
		if len(rest) < 3 {
			return nil, failf("--set option requires 3 timeout values")
		}
		var v [3]uint32
		for i := range v {
			t, ok := parseTimeout(rest[i], 0, MaxTimeout)
			if !ok {
				return nil, failf("invalid timeout value `%s' specified", rest[i])
			}
			v[i] = t
		}
		c.Timeouts = Timeouts{TCP: v[0], TCPFin: v[1], UDP: v[2]}
		rest = rest[3:]
	}
	if len(rest) > 0 {
		return nil, failf("unexpected argument %s", rest[0])
	}
	if c.options&(1<<optSchedFlags) != 0 {
		f, err := parseSchedFlags(c.Service.SchedName, schedFlags)
		if err != nil {
			return nil, err
		}
		c.Service.Flags = c.Service.Flags&^(SvcSched1|SvcSched2|SvcSched3) | f
	}
	if c.Service.Key.FwMark == 0 {
		c.Service.Key.Proto, c.Service.Key.Addr, c.Service.Key.Port = proto, addr, port
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// check is generic_opt_check and the rest of process_options' checks.
func (c *Command) check() error {
	row := cmdOpts[c.Cmd-1]
	last, count := 0, 0
	for j := 0; j < numOpts; j++ {
		given := c.options&(1<<j) != 0
		switch {
		case !given && row[j] == '+':
			return failf("You need to supply the '%s' option for the '%s' command", optNames[j], c.Cmd)
		case given && row[j] == 'x':
			return failf("Illegal '%s' option with the '%s' command", optNames[j], c.Cmd)
		case given && row[j] == '1':
			count++
			if count == 1 {
				last = j
				continue
			}
			return failf("The option '%s' conflicts with the '%s' option in the '%s' command",
				optNames[j], optNames[last], c.Cmd)
		}
	}
	k := &c.Service.Key
	switch c.Cmd {
	case CmdAdd, CmdEdit:
		if k.FwMark == 0 && k.Port == 0 && c.Service.Flags&SvcPersistent == 0 {
			return failf("Zero port specified for non-persistent service")
		}
		if c.Service.Flags&SvcOnePacket != 0 && k.FwMark == 0 && k.Proto != ProtoUDP {
			return failf("One-Packet Scheduling is only for UDP virtual services")
		}
		if c.Service.SchedName == "" {
			c.Service.SchedName = "wlc"
		}
	case CmdAddDest, CmdEditDest:
		// "The destination port must be equal to the service port if
		// the IP_VS_CONN_F_TUNNEL or IP_VS_CONN_F_DROUTE is set."
		if k.FwMark == 0 && (c.Dest.Fwd == Tunnel || c.Dest.Fwd == Route) {
			c.Dest.Port = k.Port
		}
		if c.options&(1<<optTunType|1<<optTunPort|1<<optTunNoCsum|1<<optTunCsum|1<<optTunRemCsum) != 0 &&
			c.Dest.Fwd != Tunnel {
			return failf("Tunnel options conflict with forward method")
		}
		row := tunOpts[c.Dest.TunType]
		last, count := 0, 0
		for j, o := range tunOptCols {
			given := c.options&(1<<o) != 0
			switch {
			case !given && row[j] == '+':
				return failf("You need to supply the '%s' option for the '%s' tunnel type", optNames[o], c.Dest.TunType)
			case given && row[j] == 'x':
				return failf("Illegal '%s' option with the '%s' tunnel type", optNames[o], c.Dest.TunType)
			case given && row[j] == '1':
				count++
				if count == 1 {
					last = o
					continue
				}
				return failf("The option '%s' conflicts with the '%s' option in the '%s' tunnel type",
					optNames[o], optNames[last], c.Dest.TunType)
			}
		}
	case CmdList:
		o := c.options
		if (o&(1<<optConnection|1<<optTimeout|1<<optDaemon) != 0 && o&(1<<optStats|1<<optRate|1<<optThresholds) != 0) ||
			(o&(1<<optTimeout|1<<optDaemon) != 0 && o&(1<<optPersistentConn) != 0) {
			return failf("options conflicts in the list command")
		}
	}
	return nil
}

// Apply runs a configuring command on d (-A -E -D -C -a -e -d -Z
// --set), with the kernel's refusals worded as ipvsadm prints them.
func (c *Command) Apply(d *Director) error {
	k := c.Service.Key
	var err error
	switch c.Cmd {
	case CmdFlush:
		d.Clear()
	case CmdAdd, CmdEdit:
		if c.Service.PE != "" && c.Service.PE != "sip" {
			return failf("Scheduler or persistence engine not found")
		}
		if c.Cmd == CmdAdd {
			err = d.AddService(c.Service)
		} else {
			err = d.EditService(c.Service)
		}
	case CmdDel:
		err = d.DelService(k)
	case CmdZero:
		if c.options&(1<<optService) != 0 {
			err = d.Zero(&k)
		} else {
			err = d.Zero(nil)
		}
	case CmdAddDest:
		err = d.AddDest(k, c.Dest)
	case CmdEditDest:
		err = d.EditDest(k, c.Dest)
	case CmdDelDest:
		err = d.DelDest(k, c.Dest.Addr, c.Dest.Port)
	case CmdTimeout:
		d.SetTimeouts(c.Timeouts)
	default:
		return failf("the '%s' command does not change the configuration", c.Cmd)
	}
	if err == nil {
		return nil
	}
	// ipvs_strerror: the same errno reads differently per call
	dest := c.Cmd == CmdAddDest || c.Cmd == CmdEditDest || c.Cmd == CmdDelDest
	switch {
	case errors.Is(err, ErrNoService) && dest:
		return failf("Service not defined")
	case errors.Is(err, ErrNoService):
		return failf("No such service")
	case errors.Is(err, ErrServiceExists):
		return failf("Service already exists")
	case errors.Is(err, ErrNoScheduler):
		return failf("Scheduler or persistence engine not found")
	case errors.Is(err, ErrDestExists):
		return failf("Destination already exists")
	case errors.Is(err, ErrNoDest):
		return failf("No such destination")
	case errors.Is(err, ErrInvalidArgument):
		return failf("Invalid operation.  Possibly wrong module version, address not unicast, ...")
	}
	return err
}

// Rule is one command line of a rule file.
type Rule struct {
	Line int
	Text string
	*Command
}

// RuleError is a rule file line ipvsadm (or the kernel) refuses: the
// file, the line number and its text.
type RuleError struct {
	File string
	Line int
	Text string
	Err  error
}

func (e *RuleError) Error() string {
	text := e.Text
	if !printable(text) {
		text = strconv.Quote(text)
	}
	return fmt.Sprintf("%s:%d: %s: %s", escaped(e.File), e.Line, escaped(e.Err.Error()), text)
}

// printable says whether s is UTF-8 without control characters (a tab
// is fine), so that it can be shown as it is.
func printable(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			// a real U+FFFD is printable; an invalid byte is not
			if _, w := utf8.DecodeRuneInString(s[i:]); w == 1 {
				return false
			}
		}
		if r != '\t' && !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

// escaped is s, or s with its bad bytes escaped as strconv.Quote
// escapes them (without the quotes) when it is not printable.
func escaped(s string) string {
	if printable(s) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// maxRuleLine bounds a rule file's line (without its newline).
const maxRuleLine = 64 << 10

// badByte is the first byte of a rule file line that has no place in
// one: a NUL or another control character (tab and CR are blanks), and
// its offset, or -1.
func badByte(line string) (byte, int) {
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < 0x20 && c != '\t' && c != '\r') || c == 0x7f {
			return c, i
		}
	}
	return 0, -1
}

// preview is the start of a long line, for an error message.
func preview(line string) string {
	if len(line) <= 64 {
		return line
	}
	return line[:64] + "..."
}

func (e *RuleError) Unwrap() error { return e.Err }

// ParseRules reads a rule file as `ipvsadm -R` does, one command a line
// (words split on blanks, the word "ipvsadm" dropped wherever it is),
// and checks every line. Restore-only commands (-A -E -D -C -a -e -d -Z
// --set) are accepted; anything else is an error naming the line. A
// line over 64 KiB, or with a NUL or another control character (tab and
// CR are blanks), is an error too; an error shows the line's bytes
// escaped as strconv.Quote does when they are not all printable.
func ParseRules(r io.Reader, name string) ([]Rule, error) {
	var out []Rule
	br := bufio.NewReader(r)
	n := 0
	for {
		text, err := readRuleLine(br)
		if err == io.EOF {
			break
		}
		n++
		if err == errLineTooLong {
			return nil, &RuleError{File: name, Line: n, Text: preview(text), Err: failf("line longer than %d bytes", maxRuleLine)}
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if c, i := badByte(text); i >= 0 {
			what := "control character"
			if c == 0 {
				what = "NUL byte"
			}
			return nil, &RuleError{File: name, Line: n, Text: preview(strings.TrimSpace(text)), Err: failf("%s %q at byte %d", what, c, i+1)}
		}
		var words []string
		for _, w := range strings.FieldsFunc(text, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' }) {
			if w != "ipvsadm" {
				words = append(words, w)
			}
		}
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		c, err := ParseCommand(words)
		if err == nil {
			switch c.Cmd {
			case CmdAdd, CmdEdit, CmdDel, CmdFlush, CmdAddDest, CmdEditDest, CmdDelDest, CmdZero, CmdTimeout:
			case CmdRestore:
				err = errTryHelp // restore_table: "avoid infinite loop"
			default:
				err = failf("the '%s' command is not allowed in a rule file", c.Cmd)
			}
		}
		if err != nil {
			return nil, &RuleError{File: name, Line: n, Text: strings.TrimSpace(text), Err: err}
		}
		out = append(out, Rule{Line: n, Text: strings.TrimSpace(text), Command: c})
	}
	return out, nil
}

var errLineTooLong = errors.New("line too long")

// readRuleLine reads one line without its newline: io.EOF at the end,
// errLineTooLong (with the line's start) for a line over maxRuleLine,
// the rest of which is read and dropped.
func readRuleLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(b) <= maxRuleLine {
			b = append(b, frag...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return "", err
		}
		if err == io.EOF && len(b) == 0 {
			return "", io.EOF
		}
		line := strings.TrimSuffix(string(b), "\n")
		if len(line) > maxRuleLine {
			return line, errLineTooLong
		}
		return line, nil
	}
}

// ApplyRules runs the rules on d in order and stops at the first that
// fails; d keeps what ran before it.
func ApplyRules(d *Director, rules []Rule, name string) error {
	for _, r := range rules {
		if err := r.Apply(d); err != nil {
			return &RuleError{File: name, Line: r.Line, Text: r.Text, Err: err}
		}
	}
	return nil
}

// Clone returns a new Director with d's configuration: services (in
// their order), dests, timeouts and sysctls; no connections or counters.
func Clone(d *Director) (*Director, error) {
	n := NewDirector()
	n.SetSysctls(d.Sysctls())
	t := d.Timeouts()
	n.timeouts.Store(&t)
	for _, svc := range d.Services() {
		cfg := ServiceConfig{Key: svc.ServiceKey, SchedName: svc.SchedName, Flags: svc.Flags &^ SvcHashed,
			Timeout: svc.Timeout, Netmask: svc.Netmask, NetmaskSet: true, PE: svc.PE}
		if err := n.AddService(cfg); err != nil {
			return nil, fmt.Errorf("service %v: %w", svc.ServiceKey, err)
		}
		// AddDest puts each dest at the head: add them last to first so
		// the copy's list has the same order.
		for i := len(svc.Dests) - 1; i >= 0; i-- {
			dst := svc.Dests[i]
			dp := dst.P()
			dc := DestConfig{Addr: dst.Addr, Port: dst.Port, Fwd: dp.Fwd, Weight: dst.Weight.Load(),
				UThreshold: dp.UThreshold, LThreshold: dp.LThreshold, TunType: dp.TunType,
				TunPort: dp.TunPort, TunFlags: dp.TunFlags}
			if err := n.AddDest(svc.ServiceKey, dc); err != nil {
				return nil, fmt.Errorf("service %v dest %v: %w", svc.ServiceKey, dst.AddrPort(), err)
			}
		}
	}
	return n, nil
}

// Restore is `ipvsadm -R` reading r (named name in errors), all or
// nothing: the rules are checked, then run on a copy of d's
// configuration, and only when every line succeeded are they run on d.
// On an error d is unchanged. (Unlike ipvsadm, which runs every line and
// carries on after a failing one.)
//
// The rules are run on d under no lock of its own: a concurrent change
// of d between the trial and the real run may still make a line fail
// there, which is reported the same way.
func Restore(d *Director, r io.Reader, name string) error {
	rules, err := ParseRules(r, name)
	if err != nil {
		return err
	}
	scratch, err := Clone(d)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := scratch.Bulk(func() error { return ApplyRules(scratch, rules, name) }); err != nil {
		return err
	}
	// the datapath sees the whole file applied at once
	return d.Bulk(func() error { return ApplyRules(d, rules, name) })
}

// parse_service's result bits.
const (
	svcAddr = 1
	svcPort = 2
)

// parseService is ipvsadm's parse_service for IPv4: "addr[:port]", the
// address numeric (inet_aton), the port a number or a service name of
// proto. defPort is the port kept when none is given.
func parseService(buf string, proto uint8, defPort uint16) (addr uint32, port uint16, res int, err error) {
	port = defPort
	if strDigits(buf) {
		return 0, 0, 0, nil
	}
	if strings.HasPrefix(buf, "[") {
		return 0, 0, 0, failf("IPv6 services are not supported")
	}
	if strings.Contains(buf, ":") {
		if a, e := netip.ParseAddr(buf); e == nil && a.Is6() && a.Zone() == "" {
			return 0, 0, 0, failf("IPv6 services are not supported")
		}
	}
	host, portStr, hasPort := buf, "", false
	if i := strings.LastIndexByte(buf, ':'); i >= 0 {
		host, portStr, hasPort = buf[:i], buf[i+1:], true
	}
	a, ok := inetAton(host)
	if !ok {
		return 0, 0, 0, nil // host names are not resolved
	}
	res = svcAddr
	if hasPort {
		res |= svcPort
		if n, ok := stringToNumber(portStr, 0, 65535); ok {
			port = uint16(n)
		} else if n, ok := ServicePort(portStr, proto); ok {
			port = n
		} else {
			return 0, 0, 0, nil
		}
	}
	return a, port, res, nil
}

// strDigits is str_is_digit: true for "" and all-digit strings.
func strDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// stringToNumber is ipvsadm's string_to_number: strtol base 10 over the
// whole string, within [min, max].
func stringToNumber(s string, min, max int64) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimLeft(s, " \t\n\v\f\r"), 10, 64)
	if err != nil || n < min || n > max {
		return 0, false
	}
	return n, true
}

func parseTimeout(s string, min, max int64) (uint32, bool) {
	n, ok := stringToNumber(s, min, max)
	return uint32(n), ok
}

// parseFwmark is parse_fwmark: a decimal in 1..2^32-1.
func parseFwmark(s string) (uint32, bool) {
	n, ok := stringToNumber(s, math.MinInt64, math.MaxInt64)
	if !ok || n <= 0 || n > math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

// parseSchedFlags is parse_sched_flags: sh-* and mh-* need their
// scheduler (wlc when none is given).
func parseSchedFlags(sched, arg string) (uint32, error) {
	if sched == "" {
		sched = "wlc"
	}
	var flags uint32
	words := strings.FieldsFunc(arg, func(r rune) bool { return r == ',' })
	if len(words) == 0 {
		return 0, failf("invalid scheduler flag `%s'", arg)
	}
	for _, f := range words {
		need := ""
		switch f {
		case "flag-1":
			flags |= SvcSched1
		case "flag-2":
			flags |= SvcSched2
		case "flag-3":
			flags |= SvcSched3
		case "sh-fallback", "mh-fallback":
			flags |= SvcSched1
			need = f[:2]
		case "sh-port", "mh-port":
			flags |= SvcSched2
			need = f[:2]
		default:
			return 0, failf("invalid scheduler flag `%s'", f)
		}
		if need != "" && sched != need {
			return 0, failf("incompatible scheduler flag `%s'", f)
		}
	}
	return flags, nil
}

// inetAton is glibc's inet_aton: one to four parts, each decimal, octal
// (leading 0) or hex (0x); the last part fills the remaining bytes.
func inetAton(s string) (uint32, bool) {
	var parts [4]uint64
	n := 0
	i := 0
	for {
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		base := uint64(10)
		if s[i] == '0' {
			i++
			base = 8
			if i < len(s) && (s[i] == 'x' || s[i] == 'X') {
				base = 16
				i++
			}
		}
		var v uint64
		for ; i < len(s); i++ {
			ch := s[i]
			var dgt uint64
			switch {
			case ch >= '0' && ch <= '9':
				dgt = uint64(ch - '0')
				if base == 8 && dgt > 7 {
					return 0, false
				}
			case base == 16 && ch >= 'a' && ch <= 'f':
				dgt = uint64(ch-'a') + 10
			case base == 16 && ch >= 'A' && ch <= 'F':
				dgt = uint64(ch-'A') + 10
			default:
				goto end
			}
			v = v*base + dgt
			if v > math.MaxUint32 {
				return 0, false
			}
		}
	end:
		if i < len(s) && s[i] == '.' {
			if n > 2 || v > 0xff {
				return 0, false
			}
			parts[n] = v
			n++
			i++
			continue
		}
		if i != len(s) {
			return 0, false
		}
		parts[n] = v
		n++
		break
	}
	var a uint64
	switch n {
	case 1:
		a = parts[0]
	case 2:
		if parts[1] > 0xffffff {
			return 0, false
		}
		a = parts[0]<<24 | parts[1]
	case 3:
		if parts[2] > 0xffff {
			return 0, false
		}
		a = parts[0]<<24 | parts[1]<<16 | parts[2]
	case 4:
		if parts[3] > 0xff {
			return 0, false
		}
		a = parts[0]<<24 | parts[1]<<16 | parts[2]<<8 | parts[3]
	}
	return uint32(a), true
}

// services is a small /etc/services (Debian netbase) for the names
// ipvsadm would look up with getservbyname: name -> port, for TCP and
// UDP alike unless noted.
var services = []struct {
	name  string
	port  uint16
	proto uint8 // 0 = tcp and udp
}{
	{"ftp-data", 20, ProtoTCP}, {"ftp", 21, ProtoTCP}, {"ssh", 22, 0}, {"telnet", 23, ProtoTCP},
	{"smtp", 25, ProtoTCP}, {"domain", 53, 0}, {"tftp", 69, ProtoUDP}, {"http", 80, 0}, {"www", 80, 0},
	{"kerberos", 88, 0}, {"pop3", 110, ProtoTCP}, {"ntp", 123, ProtoUDP}, {"imap2", 143, ProtoTCP},
	{"imap", 143, ProtoTCP}, {"snmp", 161, ProtoUDP}, {"ldap", 389, ProtoTCP}, {"https", 443, 0},
	{"submissions", 465, ProtoTCP}, {"syslog", 514, ProtoUDP}, {"submission", 587, ProtoTCP},
	{"ldaps", 636, ProtoTCP}, {"imaps", 993, ProtoTCP}, {"pop3s", 995, ProtoTCP},
	{"openvpn", 1194, 0}, {"mysql", 3306, ProtoTCP}, {"postgresql", 5432, ProtoTCP},
	{"http-alt", 8080, ProtoTCP}, {"webcache", 8080, ProtoTCP},
}

// ServicePort looks a service name up for the protocol (TCP, UDP; SCTP
// has no names here), as getservbyname(name, "tcp"|"udp").
func ServicePort(name string, proto uint8) (uint16, bool) {
	if proto != ProtoTCP && proto != ProtoUDP {
		return 0, false
	}
	for _, s := range services {
		if s.name == name && (s.proto == 0 || s.proto == proto) {
			return s.port, true
		}
	}
	return 0, false
}
