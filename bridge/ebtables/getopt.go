package ebtables

import (
	"strings"
	"sync"
)

// The ebtables command line is read by glibc's getopt_long with
// ebtables-nft 1.8.9's option table (iptables/xtables-eb.c:
// ebt_original_options, then every extension's options merged in the
// order ebt_load_match_extensions loads them) and the short options
// EBT_OPTSTRING, "-:A:C:D:E:F::I:L::M:N:P:VX::Z::c:d:i:j:o:p:s:t:hv"
// (iptables/xshared.h). The leading '-' returns words that are not
// options in order (as code 1); the ':' after it reports a missing
// argument as ':' instead of '?'. This file is that scanner.

// Option codes: the short option letters, and the numbers
// ebt_original_options gives the long-only ones.
const (
	codeNonOpt      = 1
	codeLogicalIn   = 2
	codeLogicalOut  = 3
	codeLc          = 4
	codeLn          = 5
	codeLx          = 6
	codeInitTable   = 11
	codeLmac2       = 12
	codeConcurrent  = 13
	codeCheck       = 14
	codeUnknown     = '?'
	codeMissing     = ':'
	codeExtBase     = 1000 // + the index of the extension option
	codeUnsupported = 999  // an option uswitch knows but does not implement
)

// gopt is one long option of the merged table.
type gopt struct {
	name string
	arg  int // 0: no argument, 1: required, 2: optional
	code int
	def  optDef // for rule options: what the rule parser gets
}

// shortArgs is EBT_OPTSTRING as letter -> argument kind (0 none, 1
// required, 2 optional).
var shortArgs = map[byte]int{
	'A': 1, 'C': 1, 'D': 1, 'E': 1, 'F': 2, 'I': 1, 'L': 2, 'M': 1, 'N': 1, 'P': 1, 'V': 0,
	'X': 2, 'Z': 2, 'c': 1, 'd': 1, 'i': 1, 'j': 1, 'o': 1, 'p': 1, 's': 1, 't': 1, 'h': 0, 'v': 0,
}

// baseLong is ebt_original_options (1.8.9), in its order.
var baseLong = []gopt{
	{"append", 1, 'A', optDef{}}, {"insert", 1, 'I', optDef{}}, {"delete", 1, 'D', optDef{}},
	{"list", 2, 'L', optDef{}}, {"Lc", 0, codeLc, optDef{}}, {"Ln", 0, codeLn, optDef{}},
	{"Lx", 0, codeLx, optDef{}}, {"Lmac2", 0, codeLmac2, optDef{}}, {"zero", 2, 'Z', optDef{}},
	{"flush", 2, 'F', optDef{}}, {"policy", 1, 'P', optDef{}},
	{"in-interface", 1, 'i', optDef{}}, {"in-if", 1, 'i', optDef{}},
	{"logical-in", 1, codeLogicalIn, optDef{}}, {"logical-out", 1, codeLogicalOut, optDef{}},
	{"out-interface", 1, 'o', optDef{}}, {"out-if", 1, 'o', optDef{}},
	{"version", 0, 'V', optDef{}}, {"verbose", 0, 'v', optDef{}}, {"help", 0, 'h', optDef{}},
	{"jump", 1, 'j', optDef{}}, {"set-counters", 1, 'c', optDef{}}, {"change-counters", 1, 'C', optDef{}},
	{"proto", 1, 'p', optDef{}}, {"protocol", 1, 'p', optDef{}}, {"db", 1, 'b', optDef{}},
	{"source", 1, 's', optDef{}}, {"src", 1, 's', optDef{}},
	{"destination", 1, 'd', optDef{}}, {"dst", 1, 'd', optDef{}},
	{"table", 1, 't', optDef{}}, {"modprobe", 1, 'M', optDef{}},
	{"new-chain", 1, 'N', optDef{}}, {"rename-chain", 1, 'E', optDef{}},
	{"delete-chain", 2, 'X', optDef{}}, {"init-table", 0, codeInitTable, optDef{}},
	{"concurrent", 0, codeConcurrent, optDef{}}, {"check", 1, codeCheck, optDef{}},
}

// extLoadOrder is ebt_load_match_extensions' order: the matches, the
// watchers, then the targets.
var extLoadOrder = []string{"802_3", "arp", "ip", "ip6", "mark_m", "limit", "pkttype", "vlan", "stp", "among",
	"log", "nflog", "mark", "dnat", "snat", "arpreply", "redirect"}

// optAlias maps an extension option to the one it shares its getopt
// value with (libebt_ip.c, libebt_ip6.c, libebt_arp.c, libebt_mark.c,
// libebt_nat.c): such prefixes are not ambiguous.
var optAlias = map[string]string{
	"ip-src": "ip-source", "ip-dst": "ip-destination", "ip-proto": "ip-protocol",
	"ip-sport": "ip-source-port", "ip-dport": "ip-destination-port",
	"ip6-src": "ip6-source", "ip6-dst": "ip6-destination", "ip6-proto": "ip6-protocol",
	"ip6-sport": "ip6-source-port", "ip6-dport": "ip6-destination-port",
	"arp-op": "arp-opcode", "set-mark": "mark-set", "to-dst": "to-destination", "to-src": "to-source",
}

// longOpts is the merged table, made on first use (the extensions
// register in init functions, after package variables are set).
var longOpts = sync.OnceValue(func() []gopt {
	out := append([]gopt(nil), baseLong...)
	codes := map[string]int{}
	for _, name := range extLoadOrder {
		d := extByName(name)
		if d == nil {
			continue
		}
		for _, o := range d.opts {
			canon := o.name
			if a, ok := optAlias[o.name]; ok {
				canon = a
			}
			key := d.name + "/" + canon
			code, ok := codes[key]
			if !ok {
				code = codeExtBase + len(codes)
				codes[key] = code
			}
			arg := 0
			if o.hasArg {
				arg = 1
			}
			out = append(out, gopt{o.name, arg, code, o})
		}
		if name == "among" {
			// libebt_among.c's file options, which uswitch does not
			// read: known to getopt (they make prefixes ambiguous)
			out = append(out, gopt{"among-dst-file", 1, codeUnsupported, optDef{}},
				gopt{"among-src-file", 1, codeUnsupported + 0, optDef{}})
		}
	}
	return out
})

// getopt is glibc's getopt_long over args (argv without argv[0]) in
// RETURN_IN_ORDER mode with missing arguments reported as ':'.
type getopt struct {
	args     []string
	optind   int
	nextchar string // the rest of a cluster of short options
	optarg   string
	hasArg   bool  // optarg is set (optarg may be "")
	opt      *gopt // the long option found, or nil
	optopt   byte
	// dupExt is the target extension -j loaded: ebtables-nft merges its
	// options into getopt's table a second time, with other values, so
	// from then on a prefix of one of them is ambiguous (only the exact
	// name is found)
	dupExt string
}

// next returns the next option's code, or -1 at the end.
func (g *getopt) next() int {
	g.optarg, g.hasArg, g.opt, g.optopt = "", false, nil, 0
	if g.nextchar == "" {
		if g.optind >= len(g.args) {
			return -1
		}
		a := g.args[g.optind]
		if a == "--" {
			g.optind = len(g.args)
			return -1
		}
		if len(a) < 2 || a[0] != '-' {
			g.optind++
			g.optarg, g.hasArg = a, true
			return codeNonOpt
		}
		if a[1] == '-' {
			return g.long(a[2:])
		}
		g.nextchar = a[1:]
	}
	c := g.nextchar[0]
	g.nextchar = g.nextchar[1:]
	if g.nextchar == "" {
		g.optind++
	}
	kind, ok := shortArgs[c]
	if !ok {
		g.optopt = c
		return codeUnknown
	}
	switch kind {
	case 1:
		switch {
		case g.nextchar != "":
			g.optarg, g.hasArg = g.nextchar, true
			g.optind++
		case g.optind >= len(g.args):
			g.optopt = c
			g.nextchar = ""
			return codeMissing
		default:
			g.optarg, g.hasArg = g.args[g.optind], true
			g.optind++
		}
		g.nextchar = ""
	case 2:
		if g.nextchar != "" {
			g.optarg, g.hasArg = g.nextchar, true
			g.optind++
		}
		g.nextchar = ""
	}
	return int(c)
}

// long handles "--name[=value]" (process_long_option): an exact name
// wins; otherwise a unique prefix, where options with the same code and
// argument kind count as one.
func (g *getopt) long(s string) int {
	name, val, hasVal := strings.Cut(s, "=")
	var found *gopt
	ambig := false
	opts := longOpts()
	for i := range opts {
		o := &opts[i]
		if o.name == name {
			found, ambig = o, false
			break
		}
		if strings.HasPrefix(o.name, name) {
			if g.dupExt != "" && o.def.ext == g.dupExt {
				ambig = true
			}
			if found == nil {
				found = o
			} else if found.arg != o.arg || found.code != o.code {
				ambig = true
			}
		}
	}
	g.optind++
	if found == nil || ambig {
		return codeUnknown
	}
	g.opt = found
	if hasVal {
		if found.arg == 0 {
			return codeUnknown
		}
		g.optarg, g.hasArg = val, true
	} else if found.arg == 1 {
		if g.optind >= len(g.args) {
			return codeMissing
		}
		g.optarg, g.hasArg = g.args[g.optind], true
		g.optind++
	}
	return found.code
}

// argAt is argv[i] as printf("%s") shows it: "(null)" past the end.
func (g *getopt) argAt(i int) string {
	if i >= 0 && i < len(g.args) {
		return g.args[i]
	}
	return "(null)"
}
