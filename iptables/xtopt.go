package iptables

import (
	"math"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// The libxtables helpers every match and target extension of this package
// shares, as iptables 1.8.9 has them:
//
//   - number parsing of libxtables/xtables.c (xtables_strtoul and the C
//     library calls it rests on), and C's atoi for the old-style parsers;
//   - the generic option types of libxtables/xtoptions.c (xtopt_parse_int,
//     _mint, _string, _markmask, _tosmask, _host, _plen, _plenmask,
//     _hostmask, _port, _mport) with their exact messages;
//   - xtables_options_fcheck and the messages of its checks;
//   - the kernel's xt_check_match/xt_check_target table and hook tests.
//
// Host names are never resolved (a rule set for uswitch must be
// numeric), except "localhost", which every /etc/hosts has.

// isCSpace is C isspace in the "C" locale.
func isCSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}

// digitVal is the value of c as a digit of base up to 36, or 99 when c
// is no digit at all.
func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	}
	return 99
}

// skipSpaceSign is the start of C's strto* functions: it skips white
// space and an optional sign, returning where the digits start and
// whether the sign was '-'.
func skipSpaceSign(s string) (i int, neg bool) {
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	return i, neg
}

// strtoumax behaves like C strtoumax(s, &end, base) for base 0 or 2-36:
// leading white space, an optional sign, a "0x" prefix for base 16 or 0
// (only when a hex digit follows it), octal for a leading 0 with base 0.
// It returns the value, the number of bytes consumed (0 when no digit was
// read) and whether the value overflowed (ERANGE, the value is then
// UINTMAX_MAX). A '-' negates the value modulo 2^64, as C does.
func strtoumax(s string, base int) (v uint64, n int, overflow bool) {
	i, neg := skipSpaceSign(s)
	hexPrefix := i+2 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') && digitVal(s[i+2]) < 16
	switch {
	case (base == 0 || base == 16) && hexPrefix:
		base = 16
		i += 2
	case base == 0 && i < len(s) && s[i] == '0':
		base = 8
	case base == 0:
		base = 10
	}
	start := i
	for ; i < len(s); i++ {
		d := digitVal(s[i])
		if d >= base {
			break
		}
		if !overflow {
			if v > (math.MaxUint64-uint64(d))/uint64(base) {
				overflow = true
			} else {
				v = v*uint64(base) + uint64(d)
			}
		}
	}
	if i == start {
		return 0, 0, false
	}
	if overflow {
		return math.MaxUint64, i, true
	}
	if neg {
		v = -v
	}
	return v, i, false
}

// strtoulPrefix is xtables_strtoul with an end pointer: strtoumax base 0
// over the leading number of s, a '-' (after white space) refused, the
// value within [min, max] (max 0: no upper limit). rest is what follows
// the number (s itself when no digit was read); ok is false when nothing
// was converted, on overflow or when out of range.
func strtoulPrefix(s string, min, max uint64) (v uint64, rest string, ok bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	if t != "" && t[0] == '-' {
		return 0, s, false
	}
	v, n, overflow := strtoumax(s, 0)
	if n == 0 {
		return 0, s, false
	}
	rest = s[n:]
	if overflow || v < min || (max != 0 && v > max) {
		return 0, rest, false
	}
	return v, rest, true
}

// strtoul is xtables_strtoul without an end pointer (and
// xtables_strtoui): the whole of s must be the number.
func strtoul(s string, min, max uint64) (uint64, bool) {
	v, rest, ok := strtoulPrefix(s, min, max)
	return v, ok && rest == ""
}

// atoi is C atoi (strtol base 10, saturating), as the old-style parsers
// of libxt_limit.c and libxt_hashlimit.c use it.
func atoi(s string) int64 {
	i, neg := skipSpaceSign(s)
	var v int64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if v > (math.MaxInt64-int64(s[i]-'0'))/10 {
			if neg {
				return math.MinInt64
			}
			return math.MaxInt64
		}
		v = v*10 + int64(s[i]-'0')
	}
	if neg {
		return -v
	}
	return v
}

// hasPrefixFold is strncasecmp(word, name, strlen(word)) == 0: word is a
// case-insensitive prefix of name (the empty word is a prefix of any
// name), the abbreviation test of many extensions' name tables.
func hasPrefixFold(name, word string) bool {
	return len(word) <= len(name) && strings.EqualFold(name[:len(word)], word)
}

// parseUintOpt is xtopt_parse_int (XTTYPE_UINT8/16/32/64): the whole
// argument a number within the entry's [min, max].
func parseUintOpt(ext, opt, arg string, min, max uint64) (uint64, error) {
	v, ok := strtoul(arg, min, max)
	if !ok {
		return 0, Errorf("%s: bad value for option \"--%s\", or out of range (%d-%d).\n", ext, opt, min, max)
	}
	return v, nil
}

// parseMint is xtopt_parse_mint (XTTYPE_UINT*RC): up to maxiter
// ':'-separated numbers within [0, lmax], lmax being the type's maximum
// (1.8.9 ignores the entry's max here). An empty first component is 0,
// an empty second one lmax.
func parseMint(ext, opt, arg string, lmax uint64, maxiter int) ([]uint64, error) {
	var vals []uint64
	for {
		if len(vals) == maxiter {
			return nil, Errorf("%s: Too many components for option \"--%s\" (max: %d)\n", ext, opt, maxiter)
		}
		var v uint64
		end := arg
		if arg == "" || arg[0] == ':' {
			if len(vals) == 1 {
				v = lmax
			}
		} else {
			var ok bool
			v, end, ok = strtoulPrefix(arg, 0, lmax)
			if !ok {
				return nil, Errorf("%s: bad value for option \"--%s\" near \"%s\", or out of range (0-%d).\n", ext, opt, arg, lmax)
			}
			if end != "" && end[0] != ':' {
				return nil, Errorf("%s: Argument to \"--%s\" has unexpected characters near \"%s\".\n", ext, opt, end)
			}
		}
		vals = append(vals, v)
		if end == "" {
			return vals, nil
		}
		arg = end[1:]
	}
}

// parseStringOpt is xtopt_parse_string for an XTOPT_PUT string stored in
// a char[size] field: the entry's minimum length is checked (min 0: none),
// a longer value is silently cut to size-1 bytes.
func parseStringOpt(arg string, min, size int) (string, error) {
	if min != 0 && len(arg) < min {
		return "", Errorf("Argument must have a minimum length of %d characters\n", min)
	}
	return truncString(arg, size), nil
}

// truncString is the strncpy of xtopt_parse_string: s cut to fit a
// NUL-terminated char[size].
func truncString(s string, size int) string {
	if len(s) >= size {
		return s[:size-1]
	}
	return s
}

// parseMarkMask is xtopt_parse_markmask (XTTYPE_MARKMASK32), that is
// xtables_parse_val_mask without a name map: "value[/mask]", the mask
// defaulting to 0xffffffff.
func parseMarkMask(ext, opt, arg string) (mark, mask uint32, err error) {
	badVal := Errorf("%s: bad integer value for option \"--%s\", or out of range.\n", ext, opt)
	garbage := Errorf("%s: trailing garbage after value for option \"--%s\".\n", ext, opt)
	v, rest, ok := strtoulPrefix(arg, 0, math.MaxUint32)
	if !ok {
		return 0, 0, badVal
	}
	if rest == "" {
		return uint32(v), math.MaxUint32, nil
	}
	if rest[0] != '/' {
		return 0, 0, garbage
	}
	m, rest, ok := strtoulPrefix(rest[1:], 0, math.MaxUint32)
	if !ok {
		return 0, 0, badVal
	}
	if rest != "" {
		return 0, 0, garbage
	}
	return uint32(v), uint32(m), nil
}

// formatMarkMask is xtables_print_mark_mask: "0xVAL" or "0xVAL/0xMASK".
func formatMarkMask(mark, mask uint32) string {
	if mask != math.MaxUint32 {
		return "0x" + strconv.FormatUint(uint64(mark), 16) + "/0x" + strconv.FormatUint(uint64(mask), 16)
	}
	return "0x" + strconv.FormatUint(uint64(mark), 16)
}

// tosSymbols is xtoptions.c tos_symbol_names.
var tosSymbols = []struct {
	name  string
	value uint8
}{
	{"Minimize-Delay", 0x10},
	{"Maximize-Throughput", 0x08},
	{"Maximize-Reliability", 0x04},
	{"Minimize-Cost", 0x02},
	{"Normal-Service", 0x00},
}

// parseTOSMask is xtopt_parse_tosmask (XTTYPE_TOSMASK): value[/mask]
// (mask 0xff when left out), or a symbolic name with symMask.
func parseTOSMask(arg string, symMask uint8) (value, mask uint8, err error) {
	if v, rest, ok := strtoulPrefix(arg, 0, 255); ok {
		// tos_parse_numeric
		value, mask = uint8(v), 0xff
		if rest != "" && rest[0] == '/' {
			mv, r2, ok := strtoulPrefix(rest[1:], 0, 255)
			if !ok {
				return 0, 0, Errorf("Illegal value: \"%s\"", arg)
			}
			mask, rest = uint8(mv), r2
		}
		if rest != "" {
			return 0, 0, Errorf("Illegal value: \"%s\"", arg)
		}
		return value, mask, nil
	}
	for _, s := range tosSymbols {
		if strings.EqualFold(arg, s.name) {
			return s.value, symMask, nil
		}
	}
	return 0, 0, Errorf("Symbolic name \"%s\" is unknown", arg)
}

// inetAton is glibc's inet_aton_exact, which getaddrinfo uses for numeric
// IPv4 hosts: "a", "a.b", "a.b.c" or "a.b.c.d", each part C-style
// decimal, octal or hex, the last part filling the remaining bytes
// ("1.2.3" = 1.2.0.3).
func inetAton(s string) (uint32, bool) {
	if s == "" {
		return 0, false
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return 0, false
	}
	var vals []uint64
	for _, p := range parts {
		if p == "" || p[0] < '0' || p[0] > '9' {
			return 0, false
		}
		v, ok := strtoul(p, 0, math.MaxUint32)
		if !ok {
			return 0, false
		}
		vals = append(vals, v)
	}
	n := len(vals)
	if vals[n-1] > math.MaxUint32>>(8*uint(n-1)) {
		return 0, false
	}
	var a uint32
	for i, v := range vals[:n-1] {
		if v > 255 {
			return 0, false
		}
		a |= uint32(v) << (24 - 8*uint(i))
	}
	return a | uint32(vals[n-1]), true
}

// inetPton4 is inet_pton(AF_INET): exactly four decimal octets, no
// leading zeros.
func inetPton4(s string) (uint32, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return 0, false
	}
	var a uint32
	for _, p := range parts {
		if p == "" || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
			return 0, false
		}
		n := 0
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return 0, false
			}
			n = n*10 + int(p[i]-'0')
		}
		if n > 255 {
			return 0, false
		}
		a = a<<8 | uint32(n)
	}
	return a, true
}

// parseHost is xtopt_parse_host for IPv4 (XTTYPE_HOST): getaddrinfo of a
// numeric address.
func parseHost(arg string) (uint32, error) {
	if a, ok := inetAton(arg); ok {
		return a, nil
	}
	if arg == "localhost" {
		return 0x7f000001, nil
	}
	return 0, Errorf("getaddrinfo: Name or service not known\n")
}

// parsePlen is xtopt_parse_plen for IPv4 (XTTYPE_PLEN): a prefix length
// 0-32 or a dotted mask; a non-contiguous mask yields length -1 as
// xtables_ipmask_to_cidr does (stored as 255 in a u8).
func parsePlen(ext, opt, arg string) (int, error) {
	if v, ok := strtoul(arg, 0, 32); ok {
		return int(v), nil
	}
	if m, ok := inetAton(arg); ok {
		return MaskLen(m), nil
	}
	return 0, Errorf("%s: bad value for option \"--%s\", neither a valid network mask nor valid CIDR (%d-%d).\n", ext, opt, 0, 32)
}

// plenToMask is the mask of xtopt_parse_plenmask: a length outside 0-32
// (a non-contiguous dotted mask) leaves all ones.
func plenToMask(l int) uint32 {
	switch {
	case l == 0:
		return 0
	case l > 0 && l <= 32:
		return math.MaxUint32 << (32 - uint(l))
	}
	return math.MaxUint32
}

// parseHostMask is xtopt_parse_hostmask for IPv4 (XTTYPE_HOSTMASK):
// "host[/len|/mask]"; the address is kept unmasked.
func parseHostMask(ext, opt, arg string) (addr, mask uint32, err error) {
	host, plen, has := strings.Cut(arg, "/")
	if addr, err = parseHost(host); err != nil {
		return 0, 0, err
	}
	if !has {
		return addr, math.MaxUint32, nil
	}
	l, err := parsePlen(ext, opt, plen)
	if err != nil {
		return 0, 0, err
	}
	return addr, plenToMask(l), nil
}

// getPortByName is xtables_getportbyname: getaddrinfo's service lookup. A
// numeric service is read with strtoul base 10 into an int (negative
// refused) and, as glibc does, cut to 16 bits; anything else is a
// service name.
func getPortByName(s string) (uint16, bool) {
	i, neg := skipSpaceSign(s)
	if t := s[i:]; t != "" && strings.Trim(t, "0123456789") == "" {
		v, err := strconv.ParseUint(t, 10, 64)
		if err != nil {
			v = math.MaxUint64 // ERANGE: ULONG_MAX
		} else if neg {
			v = -v
		}
		// glibc keeps the number in an int and refuses a negative one
		n := int32(v)
		if n < 0 {
			return 0, false
		}
		return uint16(n), true
	}
	return lookupService(s, "")
}

// portUnresolved is the message of xtopt_parse_port and _mport.
func portUnresolved(port string) error {
	return Errorf("Port \"%s\" does not resolve to anything.\n", port)
}

// parsePortOpt is xtopt_parse_port (XTTYPE_PORT).
func parsePortOpt(arg string) (uint16, error) {
	p, ok := getPortByName(arg)
	if !ok {
		return 0, portUnresolved(arg)
	}
	return p, nil
}

// parsePortRangeOpt is xtopt_parse_mport with two components
// (XTTYPE_PORTRC): empty parts keep 0 and 65535, a single port is a
// range of one.
func parsePortRangeOpt(ext, opt, arg string) ([2]uint16, error) {
	r := [2]uint16{0, math.MaxUint16}
	n := 0
	for _, p := range strings.Split(arg, ":") {
		if n == 2 {
			return r, Errorf("%s: Too many components for option \"--%s\" (max: %d)\n", ext, opt, 2)
		}
		if p == "" {
			n++
			continue
		}
		v, ok := getPortByName(p)
		if !ok {
			return r, portUnresolved(p)
		}
		r[n] = v
		n++
	}
	if n == 1 {
		r[1] = r[0]
	}
	return r, nil
}

// badValue is xtables_param_act(XTF_BAD_VALUE, ext, opt, val); opt
// carries its dashes.
func badValue(ext, opt, val string) error {
	return Errorf("%s: Bad value for \"%s\" option: \"%s\"", ext, opt, val)
}

// mustBeSpecified is xtables_options_fcheck's message for a missing
// XTOPT_MAND option.
func mustBeSpecified(ext, opt string) error {
	return Errorf("%s: option \"--%s\" must be specified\n", ext, opt)
}

// cannotCombine is xtables_option_fcheck2's message for two options one
// of which excludes the other.
func cannotCombine(ext, opt, other string) error {
	return Errorf("%s: option \"--%s\" cannot be used together with \"--%s\".\n", ext, opt, other)
}

// alsoRequires is xtables_option_fcheck2's message for an option given
// without one its entry's also field names.
func alsoRequires(ext, opt, other string) error {
	return Errorf("%s: option \"--%s\" also requires \"--%s\".\n", ext, opt, other)
}

// optEntry is the part of an xt_option_entry xtables_options_fcheck
// uses. A table lists every entry in the extension's order, synonyms
// included (they share the id).
type optEntry struct {
	name       string
	id         uint
	excl, also uint32 // bits (1 << id) of the options this one excludes / needs
	mand       bool   // XTOPT_MAND
}

// optID is the id of the entry named name (xtables_option_parse finds
// the entry by name and records 1 << id in the flags).
func optID(table []optEntry, name string) uint {
	for _, e := range table {
		if e.name == name {
			return e.id
		}
	}
	panic("rules: option " + name + " not in its table")
}

// fcheck is xtables_options_fcheck: walking the table in order, a missing
// mandatory option, then for every option given the options it needs and
// excludes, the others looked up by id (the first entry with that id,
// as xtables_option_lookup does).
func fcheck(ext string, table []optEntry, given uint32) error {
	lookup := func(id uint) *optEntry {
		for i := range table {
			if table[i].id == id {
				return &table[i]
			}
		}
		return nil
	}
	for _, e := range table {
		if e.mand && given&(1<<e.id) == 0 {
			return mustBeSpecified(ext, e.name)
		}
		if given&(1<<e.id) == 0 {
			continue
		}
		for i := uint(0); i < 32; i++ {
			if i == e.id {
				continue
			}
			o := lookup(i)
			if o == nil {
				continue
			}
			of := uint32(1) << i
			if e.also&of != 0 && given&of == 0 {
				return alsoRequires(ext, e.name, o.name)
			}
			if e.excl&of != 0 && given&of != 0 {
				return cannotCombine(ext, e.name, o.name)
			}
		}
	}
	return nil
}

// tableOnly is xt_check_target's table test (x_tables.c): a target
// declaring .table is refused in any other table with EINVAL when the
// rule is added (nft_compat passes the nft table's name, which is the
// iptables table's).
func tableOnly(t, want TableID) error {
	if t != want {
		return Errorf("only valid in %s table, not %s", want, t)
	}
	return nil
}

// checkTableHooks is xt_check_target's table and hook tests for a target
// the kernel registers with .table = want and the hooks allowed.
func checkTableHooks(name string, t, want TableID, hooks, allowed netfilter.HookMask) error {
	if t != want {
		return Errorf("%s: only valid in %s table, not %s", name, want, t)
	}
	if hooks&^allowed != 0 {
		return Errorf("%s: bad hook mask", name)
	}
	return nil
}

// hooksOutside is the xt_match .hooks restriction nft_compat's validate
// enforces for every base chain the rule can be reached from
// (nft_match_validate): hooks must lie within allowed.
func hooksOutside(hooks, allowed netfilter.HookMask) error {
	if hooks&^allowed != 0 {
		return Errorf("match not valid in this hook")
	}
	return nil
}
