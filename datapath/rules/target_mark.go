package rules

import (
	"fmt"
	"strings"
)

// MARK target (iptables 1.8.9 extensions/libxt_MARK.c, revision 2 —
// mark_tg_opts, mark_tg_parse, mark_tg_check, mark_tg_save; kernel
// net/netfilter/xt_mark.c: no table or hook restriction).
//
// This file also holds the libxtables option helpers shared by this
// package's target extensions (libxtables/xtoptions.c, xtables.c).

// tgStrtoul is xtables_strtoul with an end pointer: strtoumax base 0
// (0x.. hex, 0.. octal) over the longest numeric prefix; a leading '-'
// (after blanks) is refused. rest is what follows the number.
func tgStrtoul(s string, min, max uint64) (v uint64, rest string, ok bool) {
	p := strings.TrimLeft(s, " \t\n\v\f\r")
	if p != "" && p[0] == '-' {
		return 0, s, false
	}
	if p != "" && p[0] == '+' {
		p = p[1:]
	}
	base := uint64(10)
	switch {
	case len(p) > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && tgHexDigit(p[2]) >= 0:
		base, p = 16, p[2:]
	case len(p) > 0 && p[0] == '0':
		base = 8
	}
	i := 0
	overflow := false
	for ; i < len(p); i++ {
		d := tgHexDigit(p[i])
		if d < 0 || uint64(d) >= base {
			break
		}
		if v > (^uint64(0)-uint64(d))/base {
			overflow = true
		}
		v = v*base + uint64(d)
	}
	if i == 0 {
		return 0, s, false
	}
	if overflow || v < min || (max != 0 && v > max) {
		return 0, p[i:], false
	}
	return v, p[i:], true
}

func tgHexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// tgParseUint is xtopt_parse_int (XTTYPE_UINT8/16/32 with min/max).
func tgParseUint(ext, opt, arg string, min, max uint64) (uint64, error) {
	v, rest, ok := tgStrtoul(arg, min, max)
	if !ok || rest != "" {
		return 0, Errorf("%s: bad value for option \"--%s\", or out of range (%d-%d).\n", ext, opt, min, max)
	}
	return v, nil
}

// tgParseMarkMask is xtables_parse_mark_mask (XTTYPE_MARKMASK32):
// "value[/mask]", the mask defaulting to 0xffffffff.
func tgParseMarkMask(ext, opt, arg string) (mark, mask uint32, err error) {
	bad := Errorf("%s: bad integer value for option \"--%s\", or out of range.\n", ext, opt)
	v, rest, ok := tgStrtoul(arg, 0, 0xffffffff)
	if !ok {
		return 0, 0, bad
	}
	if rest == "" {
		return uint32(v), 0xffffffff, nil
	}
	if rest[0] != '/' {
		return 0, 0, Errorf("%s: trailing garbage after value for option \"--%s\".\n", ext, opt)
	}
	m, rest, ok := tgStrtoul(rest[1:], 0, 0xffffffff)
	if !ok {
		return 0, 0, bad
	}
	if rest != "" {
		return 0, 0, Errorf("%s: trailing garbage after value for option \"--%s\".\n", ext, opt)
	}
	return uint32(v), uint32(m), nil
}

// tgOpt is the part of an xt_option_entry that xtables_options_fcheck
// looks at.
type tgOpt struct {
	name string
	id   uint
	excl uint32
	mand bool
}

// tgFcheck is xtables_options_fcheck: mandatory options, then mutual
// exclusions, walking the option table in order and the other options
// by id.
func tgFcheck(ext string, table []tgOpt, xflags uint32) error {
	byID := map[uint]*tgOpt{}
	for i := range table {
		byID[table[i].id] = &table[i]
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
			o := byID[i]
			if o == nil || e.excl&(1<<o.id) == 0 {
				continue
			}
			if xflags&(1<<o.id) != 0 {
				return Errorf("%s: option \"--%s\" cannot be used together with \"--%s\".\n", ext, e.name, o.name)
			}
		}
	}
	return nil
}

// option ids of libxt_MARK.c
const (
	markOSetMark = iota
	markOAndMark
	markOOrMark
	markOXorMark
	markOSetXmark
	markFAny = 1<<markOSetMark | 1<<markOAndMark | 1<<markOOrMark | 1<<markOXorMark | 1<<markOSetXmark
)

var markTgOpts = []tgOpt{
	{name: "set-xmark", id: markOSetXmark, excl: markFAny},
	{name: "set-mark", id: markOSetMark, excl: markFAny},
	{name: "and-mark", id: markOAndMark, excl: markFAny},
	{name: "or-mark", id: markOOrMark, excl: markFAny},
	{name: "xor-mark", id: markOXorMark, excl: markFAny},
}

// MarkTarget is "-j MARK": nfmark = (nfmark & ^Mask) ^ Mark
// (struct xt_mark_tginfo2).
type MarkTarget struct {
	Mark, Mask uint32
	xflags     uint32
}

func (t *MarkTarget) Name() string { return "MARK" }

func (t *MarkTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "set-xmark", "set-mark":
		v, m, err := tgParseMarkMask("MARK", o.Name, o.Arg)
		if err != nil {
			return err
		}
		if o.Name == "set-xmark" {
			t.Mark, t.Mask = v, m
			t.xflags |= 1 << markOSetXmark
		} else {
			t.Mark, t.Mask = v, v|m
			t.xflags |= 1 << markOSetMark
		}
	case "and-mark", "or-mark", "xor-mark":
		x, err := tgParseUint("MARK", o.Name, o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		v := uint32(x)
		switch o.Name {
		case "and-mark":
			t.Mark, t.Mask = 0, ^v
			t.xflags |= 1 << markOAndMark
		case "or-mark":
			t.Mark, t.Mask = v, v
			t.xflags |= 1 << markOOrMark
		default:
			t.Mark, t.Mask = v, 0
			t.xflags |= 1 << markOXorMark
		}
	}
	return nil
}

func (t *MarkTarget) Final(r *RuleContext) error {
	if t.xflags == 0 {
		return Errorf("MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required")
	}
	return tgFcheck("MARK", markTgOpts, t.xflags)
}

func (t *MarkTarget) Save(w *SaveWriter) {
	w.Opt("set-xmark", fmt.Sprintf("0x%x/0x%x", t.Mark, t.Mask))
}

func init() {
	RegisterTarget(&TargetSpec{Name: "MARK", Options: []Option{
		{Name: "set-xmark", Arg: RequiredArg},
		{Name: "set-mark", Arg: RequiredArg},
		{Name: "and-mark", Arg: RequiredArg},
		{Name: "or-mark", Arg: RequiredArg},
		{Name: "xor-mark", Arg: RequiredArg},
	}, New: func() Target { return &MarkTarget{} }})
}
