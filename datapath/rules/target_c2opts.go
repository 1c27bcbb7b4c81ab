package rules

import "strings"

// Option-value helpers shared by the LOG, NFLOG, TRACE, NOTRACK, CT, TTL,
// TOS, DSCP, CHECKSUM, TCPMSS and NFQUEUE targets. They reproduce the
// libxtables option types these extensions declare (iptables 1.8.9
// libxtables/xtoptions.c and xtables.c); the names carry a c2 prefix so
// they stay apart from other extension files of the package.

// c2StrtoulPrefix is xtables_strtoul with an end pointer: strtoumax with
// base 0 over the longest valid prefix of s (leading white space and a
// '+' allowed, a '-' refused). ok is false when no digit was read or the
// value overflows 64 bits; rest is what follows the number.
func c2StrtoulPrefix(s string) (v uint64, rest string, ok bool) {
	p := strings.TrimLeft(s, " \t\n\v\f\r")
	if p != "" && p[0] == '-' {
		return 0, s, false
	}
	if p != "" && p[0] == '+' {
		p = p[1:]
	}
	base := uint64(10)
	switch {
	case len(p) > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && c2Digit(p[2], 16) >= 0:
		base, p = 16, p[2:]
	case len(p) > 0 && p[0] == '0':
		base = 8
	}
	i := 0
	overflow := false
	for ; i < len(p); i++ {
		d := c2Digit(p[i], base)
		if d < 0 {
			break
		}
		if v > (^uint64(0)-uint64(d))/base {
			overflow = true
		}
		v = v*base + uint64(d)
	}
	if i == 0 || overflow {
		return 0, s, false
	}
	return v, p[i:], true
}

func c2Digit(c byte, base uint64) int {
	var d int
	switch {
	case c >= '0' && c <= '9':
		d = int(c - '0')
	case c >= 'a' && c <= 'z':
		d = int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		d = int(c-'A') + 10
	default:
		return -1
	}
	if uint64(d) >= base {
		return -1
	}
	return d
}

// c2Strtoul is xtables_strtoul without an end pointer: the whole string
// must be a number within [min, max].
func c2Strtoul(s string, min, max uint64) (uint64, bool) {
	v, rest, ok := c2StrtoulPrefix(s)
	if !ok || rest != "" || v < min || v > max {
		return 0, false
	}
	return v, true
}

// c2Int is xtopt_parse_int: XTTYPE_UINT8/16/32 with the entry's min/max.
func c2Int(ext, opt, arg string, min, max uint64) (uint64, error) {
	v, ok := c2Strtoul(arg, min, max)
	if !ok {
		return 0, Errorf("%s: bad value for option \"--%s\", or out of range (%d-%d).\n", ext, opt, min, max)
	}
	return v, nil
}

// c2String is xtopt_parse_string for an XTOPT_PUT string of a fixed-size
// kernel field: the minimum length is checked, a longer value is cut to
// size-1 bytes without a word.
func c2String(arg string, min, size int) (string, error) {
	if min != 0 && len(arg) < min {
		return "", Errorf("Argument must have a minimum length of %d characters\n", min)
	}
	if len(arg) >= size {
		arg = arg[:size-1]
	}
	return arg, nil
}

// c2Range is xtopt_parse_mint for a two-component XTTYPE_UINT*RC value
// ("a:b", ":b", "a:", "a"); lmax is the type's maximum, which 1.8.9 uses
// for missing components and the range check whatever the entry's max.
func c2Range(ext, opt, arg string, lmax uint64) (vals []uint64, err error) {
	const maxiter = 2
	s := arg
	for {
		if len(vals) == maxiter {
			return nil, Errorf("%s: Too many components for option \"--%s\" (max: %d)\n", ext, opt, maxiter)
		}
		var v uint64
		rest := s
		if s == "" || s[0] == ':' {
			if len(vals) == 1 {
				v = lmax
			}
		} else {
			var ok bool
			v, rest, ok = c2StrtoulPrefix(s)
			if !ok || v > lmax {
				return nil, Errorf("%s: bad value for option \"--%s\" near \"%s\", or out of range (0-%d).\n", ext, opt, s, lmax)
			}
			if rest != "" && rest[0] != ':' {
				return nil, Errorf("%s: Argument to \"--%s\" has unexpected characters near \"%s\".\n", ext, opt, rest)
			}
		}
		vals = append(vals, v)
		if rest == "" {
			return vals, nil
		}
		s = rest[1:]
	}
}

// c2Entry is the part of an xt_option_entry xtables_options_fcheck uses.
type c2Entry struct {
	name       string
	id         uint
	excl, also uint32
	mand       bool
}

// c2Fcheck is xtables_options_fcheck: mandatory options, then for every
// option given (in table order) the options it needs and excludes (in id
// order).
func c2Fcheck(ext string, given uint32, table []c2Entry) error {
	byID := func(id uint) *c2Entry {
		for i := range table {
			if table[i].id == id {
				return &table[i]
			}
		}
		return nil
	}
	for _, e := range table {
		if e.mand && given&(1<<e.id) == 0 {
			return Errorf("%s: option \"--%s\" must be specified\n", ext, e.name)
		}
		if given&(1<<e.id) == 0 {
			continue
		}
		for i := uint(0); i < 32; i++ {
			if i == e.id {
				continue
			}
			o := byID(i)
			if o == nil {
				continue
			}
			of := uint32(1) << i
			if e.also&of != 0 && given&of == 0 {
				return Errorf("%s: option \"--%s\" also requires \"--%s\".\n", ext, e.name, o.name)
			}
			if e.excl&of != 0 && given&of != 0 {
				return Errorf("%s: option \"--%s\" cannot be used together with \"--%s\".\n", ext, e.name, o.name)
			}
		}
	}
	return nil
}

// c2TableOnly is xt_check_target's table test (x_tables.c): a target
// declaring .table is refused in any other table with EINVAL when the
// rule is added (nft_compat passes the nft table's name, which is the
// iptables table's).
func c2TableOnly(t, want TableID) error {
	if t != want {
		return Errorf("only valid in %s table, not %s", want, t)
	}
	return nil
}
