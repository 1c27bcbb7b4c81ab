package rules

import (
	"math"
	"strings"
)

// Shared helpers of the icmp, multiport, iprange, mac, length, ttl, tos,
// dscp, pkttype, helper, owner, physdev and addrtype matches: the generic
// option types of libxtables/xtoptions.c and the number parsing of
// libxtables/xtables.c (xtables_strtoul) they rely on.

// maStrtoul behaves like C strtoumax(s, &end, base): leading white space,
// an optional sign, a "0x" prefix for base 16 or 0, octal for a leading 0
// with base 0. It returns the value, the number of bytes consumed (0 when
// no digits were read) and whether the value overflowed (ERANGE).
func maStrtoul(s string, base int) (v uint64, n int, overflow bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] >= '\t' && s[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	hexPrefix := i+1 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X')
	switch {
	case (base == 0 || base == 16) && hexPrefix && i+2 < len(s) && maDigit(s[i+2]) < 16:
		base = 16
		i += 2
	case base == 0 && i < len(s) && s[i] == '0':
		base = 8
	case base == 0:
		base = 10
	}
	start := i
	for i < len(s) {
		d := maDigit(s[i])
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
		i++
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

func maDigit(c byte) int {
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

// maStrtoulEnd is xtables_strtoul with an end pointer: a leading '-' is
// refused, the number need not use the whole string; rest is what
// follows it. max 0 means no upper limit, as in libxtables.
func maStrtoulEnd(s string, min, max uint64) (v uint64, rest string, ok bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	if t != "" && t[0] == '-' {
		return 0, s, false
	}
	v, n, of := maStrtoul(s, 0)
	if n == 0 {
		return 0, s, false
	}
	rest = s[n:]
	if of || v < min || (max != 0 && v > max) {
		return 0, rest, false
	}
	return v, rest, true
}

// maStrtoulAll is xtables_strtoul without an end pointer: the whole
// string must be the number.
func maStrtoulAll(s string, min, max uint64) (uint64, bool) {
	v, rest, ok := maStrtoulEnd(s, min, max)
	return v, ok && rest == ""
}

// maParseInt is xtopt_parse_int (XTTYPE_UINT8/16/32): the value must lie
// in [min, max].
func maParseInt(ext, opt, arg string, min, max uint64) (uint64, error) {
	v, ok := maStrtoulAll(arg, min, max)
	if !ok {
		return 0, Errorf("%s: bad value for option \"--%s\", or out of range (%d-%d).\n", ext, opt, min, max)
	}
	return v, nil
}

// maParseMint is xtopt_parse_mint (XTTYPE_UINT*RC): up to maxiter
// ':'-separated numbers, an empty first field meaning 0 and an empty
// second one lmax.
func maParseMint(ext, opt, arg string, lmax uint64, maxiter int) ([]uint64, error) {
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
			v, end, ok = maStrtoulEnd(arg, 0, lmax)
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

// maBadValue is xtables_param_act(XTF_BAD_VALUE, ...).
func maBadValue(ext, opt, val string) error {
	return Errorf("%s: Bad value for \"%s\" option: \"%s\"", ext, opt, val)
}

// maOpt is the part of an xt_option_entry the final checks use; tables
// list every entry in the extension's order, synonyms included.
type maOpt struct {
	name string
	id   uint
	excl uint32 // F_* bits of the options this one excludes
	mand bool   // XTOPT_MAND
}

// maFcheck is xtables_options_fcheck: mandatory options, then options
// given together although one excludes the other.
func maFcheck(ext string, table []maOpt, xflags uint32) error {
	byID := func(id uint) *maOpt {
		for i := range table {
			if table[i].id == id {
				return &table[i]
			}
		}
		return nil
	}
	for _, e := range table {
		if e.mand && xflags&(1<<e.id) == 0 {
			return Errorf("%s: option \"--%s\" must be specified\n", ext, e.name)
		}
		if xflags&(1<<e.id) == 0 {
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
			of := uint32(1) << o.id
			if e.excl&of != 0 && xflags&of != 0 {
				return Errorf("%s: option \"--%s\" cannot be used together with \"--%s\".\n", ext, e.name, o.name)
			}
		}
	}
	return nil
}

// maHooksOutside reports whether hooks holds a hook outside allowed: the
// xt_match .hooks restriction nft_compat's validate enforces for every
// base chain the rule can be reached from (nft_match_validate).
func maHooksOutside(hooks, allowed HookMask) error {
	if hooks&^allowed != 0 {
		return Errorf("match not valid in this hook")
	}
	return nil
}
