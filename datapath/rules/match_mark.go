package rules

import (
	"strconv"
	"strings"
)

// mark and connmark matches (extensions/libxt_mark.c, libxt_connmark.c;
// kernel net/netfilter/xt_mark.c, xt_connmark.c), plus the libxtables
// number and address helpers the matches of this group share
// (libxtables/xtables.c xtables_strtoul, xtables_parse_val_mask;
// libxtables/xtoptions.c generic option types).

// xtStrtoul is xtables_strtoul with an end pointer: strtoumax base 0 on
// the leading part of s (a '-' is refused), the value within
// [min,max] (max 0 = no limit). rest is what follows the number; ok is
// false when nothing was converted, on overflow or out of range.
func xtStrtoul(s string, min, max uint64) (v uint64, rest string, ok bool) {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	if i < len(s) && s[i] == '-' {
		return 0, s, false
	}
	if i < len(s) && s[i] == '+' {
		i++
	}
	base := uint64(10)
	if i < len(s) && s[i] == '0' {
		base = 8
		if i+2 < len(s) && (s[i+1] == 'x' || s[i+1] == 'X') && hexVal(s[i+2]) < 16 {
			base = 16
			i += 2
		}
	}
	j := i
	overflow := false
	for j < len(s) {
		d := hexVal(s[j])
		if d >= base {
			break
		}
		if v > (^uint64(0)-d)/base {
			overflow = true
		}
		v = v*base + d
		j++
	}
	if j == i {
		return 0, s, false
	}
	rest = s[j:]
	if overflow || v < min || (max != 0 && v > max) {
		return 0, rest, false
	}
	return v, rest, true
}

// xtStrtoulFull is xtables_strtoul without an end pointer: the whole
// string must be the number.
func xtStrtoulFull(s string, min, max uint64) (uint64, bool) {
	v, rest, ok := xtStrtoul(s, min, max)
	return v, ok && rest == ""
}

func isCSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

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

// xtAtoi is C atoi (strtol base 10, saturating), as libxt_limit.c and
// libxt_hashlimit.c use it.
func xtAtoi(s string) int64 {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var v int64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if v > (1<<63-1-int64(s[i]-'0'))/10 {
			if neg {
				return -1 << 63
			}
			return 1<<63 - 1
		}
		v = v*10 + int64(s[i]-'0')
	}
	if neg {
		return -v
	}
	return v
}

// hasPrefixFold is strncasecmp(word, name, len(word)) == 0: word is a
// case-insensitive prefix of name (the empty word matches anything).
func hasPrefixFold(name, word string) bool {
	return len(word) <= len(name) && strings.EqualFold(name[:len(word)], word)
}

// parseMarkMask is xtables_parse_mark_mask (XTTYPE_MARKMASK32).
func parseMarkMask(ext, opt, arg string) (mark, mask uint32, err error) {
	badVal := Errorf("%s: bad integer value for option \"--%s\", or out of range.\n", ext, opt)
	garbage := Errorf("%s: trailing garbage after value for option \"--%s\".\n", ext, opt)
	v, rest, ok := xtStrtoul(arg, 0, 0xffffffff)
	if !ok {
		return 0, 0, badVal
	}
	if rest == "" {
		return uint32(v), 0xffffffff, nil
	}
	if rest[0] != '/' {
		return 0, 0, garbage
	}
	m, rest, ok := xtStrtoul(rest[1:], 0, 0xffffffff)
	if !ok {
		return 0, 0, badVal
	}
	if rest != "" {
		return 0, 0, garbage
	}
	return uint32(v), uint32(m), nil
}

// formatMarkMask is xtables_print_mark_mask.
func formatMarkMask(mark, mask uint32) string {
	if mask != 0xffffffff {
		return "0x" + strconv.FormatUint(uint64(mark), 16) + "/0x" + strconv.FormatUint(uint64(mask), 16)
	}
	return "0x" + strconv.FormatUint(uint64(mark), 16)
}

// inetAton is glibc's inet_aton_exact, which getaddrinfo uses for numeric
// IPv4 hosts: "a", "a.b", "a.b.c" or "a.b.c.d", each part C-style
// decimal, octal or hex, the last part filling the remaining bytes.
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
		v, rest, ok := xtStrtoul(p, 0, 0xffffffff)
		if !ok || rest != "" {
			return 0, false
		}
		vals = append(vals, v)
	}
	n := len(vals)
	lastMax := uint64(0xffffffff) >> (8 * uint(n-1))
	if vals[n-1] > lastMax {
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

// parseHostXT is XTTYPE_HOST for IPv4 (xtopt_parse_host): getaddrinfo
// of a numeric address; host names are not resolved, except the
// loopback name every /etc/hosts has.
func parseHostXT(arg string) (uint32, error) {
	if a, ok := inetAton(arg); ok {
		return a, nil
	}
	if arg == "localhost" {
		return 0x7f000001, nil
	}
	return 0, Errorf("getaddrinfo: Name or service not known\n")
}

// parsePlenXT is XTTYPE_PLEN for IPv4 (xtopt_parse_plen): a prefix length
// 0-32 or a dotted mask; a non-contiguous mask yields length -1 as
// xtables_ipmask_to_cidr does (stored as 255 in a u8).
func parsePlenXT(ext, opt, arg string) (int, error) {
	if v, ok := xtStrtoulFull(arg, 0, 32); ok {
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
		return 0xffffffff << (32 - uint(l))
	}
	return 0xffffffff
}

// parseHostMaskXT is XTTYPE_HOSTMASK for IPv4 (xtopt_parse_hostmask): the
// address is kept unmasked.
func parseHostMaskXT(ext, opt, arg string) (addr, mask uint32, err error) {
	host, plen, has := strings.Cut(arg, "/")
	if addr, err = parseHostXT(host); err != nil {
		return 0, 0, err
	}
	if !has {
		return addr, 0xffffffff, nil
	}
	l, err := parsePlenXT(ext, opt, plen)
	if err != nil {
		return 0, 0, err
	}
	return addr, plenToMask(l), nil
}

// xtUintOpt is XTTYPE_UINT* parsing (xtopt_parse_int) with its message.
func xtUintOpt(ext, opt, arg string, min, max uint64) (uint64, error) {
	v, ok := xtStrtoulFull(arg, min, max)
	if !ok {
		return 0, Errorf("%s: bad value for option \"--%s\", or out of range (%d-%d).\n", ext, opt, min, max)
	}
	return v, nil
}

// xtMustGiven is the XTOPT_MAND check of xtables_options_fcheck.
func xtMustGiven(ext, opt string) error {
	return Errorf("%s: option \"--%s\" must be specified\n", ext, opt)
}

// MarkMatch is "-m mark" (revision 1, xt_mark_mtinfo1). iptables-nft
// 1.8.9 turns it into meta mark expressions (nft.c add_nft_mark) and
// rebuilds an identical match (nft-shared.c parse_meta_mark).
type MarkMatch struct {
	Mark, Mask uint32
	Invert     bool
	given      bool
}

func (m *MarkMatch) Name() string { return "mark" }

func (m *MarkMatch) Parse(o *OptArg) error {
	v, mask, err := parseMarkMask("mark", "mark", o.Arg)
	if err != nil {
		return err
	}
	m.Mark, m.Mask, m.given = v, mask, true
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *MarkMatch) Final(r *RuleContext) error {
	if !m.given {
		return xtMustGiven("mark", "mark")
	}
	return nil
}

func (m *MarkMatch) Save(w *SaveWriter) {
	w.InvOpt(m.Invert, "mark", formatMarkMask(m.Mark, m.Mask))
}

// ConnmarkMatch is "-m connmark" (revision 1, xt_connmark_mtinfo1).
type ConnmarkMatch struct {
	Mark, Mask uint32
	Invert     bool
	given      bool
}

func (m *ConnmarkMatch) Name() string { return "connmark" }

func (m *ConnmarkMatch) Parse(o *OptArg) error {
	v, mask, err := parseMarkMask("connmark", "mark", o.Arg)
	if err != nil {
		return err
	}
	m.Mark, m.Mask, m.given = v, mask, true
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *ConnmarkMatch) Final(r *RuleContext) error {
	if !m.given {
		return xtMustGiven("connmark", "mark")
	}
	return nil
}

func (m *ConnmarkMatch) Save(w *SaveWriter) {
	w.InvOpt(m.Invert, "mark", formatMarkMask(m.Mark, m.Mask))
}

func init() {
	RegisterMatch(&MatchSpec{Name: "mark", Options: []Option{
		{Name: "mark", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &MarkMatch{} }})
	RegisterMatch(&MatchSpec{Name: "connmark", Options: []Option{
		{Name: "mark", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &ConnmarkMatch{} }})
}
