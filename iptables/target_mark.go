package iptables

import "fmt"

// MARK target (iptables 1.8.9 extensions/libxt_MARK.c, revision 2 —
// mark_tg_opts, mark_tg_parse, mark_tg_check, mark_tg_save; kernel
// net/netfilter/xt_mark.c: no table or hook restriction).

// option ids of libxt_MARK.c
const (
	markOSetMark = iota
	markOAndMark
	markOOrMark
	markOXorMark
	markOSetXmark
	markFAny = 1<<markOSetMark | 1<<markOAndMark | 1<<markOOrMark | 1<<markOXorMark | 1<<markOSetXmark
)

var markTgOpts = []optEntry{
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

// parseMarkOp is the arithmetic mark_tg_parse and connmark_tg_parse share:
// the value and mask (new = (old & ^mask) ^ value) of --set-xmark,
// --set-mark (value[/mask], XTTYPE_MARKMASK32) and --and-mark, --or-mark,
// --xor-mark (XTTYPE_UINT32).
func parseMarkOp(ext string, o *OptArg) (mark, mask uint32, err error) {
	switch o.Name {
	case "set-xmark":
		return parseMarkMask(ext, o.Name, o.Arg)
	case "set-mark":
		v, m, err := parseMarkMask(ext, o.Name, o.Arg)
		return v, v | m, err
	}
	x, err := parseUintOpt(ext, o.Name, o.Arg, 0, 0xffffffff)
	if err != nil {
		return 0, 0, err
	}
	v := uint32(x)
	switch o.Name {
	case "and-mark":
		return 0, ^v, nil
	case "or-mark":
		return v, v, nil
	}
	return v, 0, nil // xor-mark
}

func (t *MarkTarget) Parse(o *OptArg) error {
	v, m, err := parseMarkOp("MARK", o)
	if err != nil {
		return err
	}
	t.Mark, t.Mask = v, m
	t.xflags |= 1 << optID(markTgOpts, o.Name)
	return nil
}

func (t *MarkTarget) Final(r *RuleContext) error {
	if t.xflags == 0 {
		return Errorf("MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required")
	}
	return fcheck("MARK", markTgOpts, t.xflags)
}

func (t *MarkTarget) Save(w *SaveWriter) {
	w.Opt("set-xmark", fmt.Sprintf("0x%x/0x%x", t.Mark, t.Mask))
}

// Exec is mark_tg (net/netfilter/xt_mark.c): skb->mark = (skb->mark &
// ~mask) ^ mark, then XT_CONTINUE.
func (t *MarkTarget) Exec(c *Ctx) TVerdict {
	c.Pkt.Mark = (c.Pkt.Mark &^ t.Mask) ^ t.Mark
	return TContinue
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
