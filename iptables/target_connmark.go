package iptables

import (
	"fmt"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// CONNMARK target, revision 2 (iptables 1.8.9 extensions/libxt_CONNMARK.c
// connmark_tg_opts_v2, connmark_tg_init_v2, connmark_tg_parse_v2,
// connmark_tg_check, connmark_tg_save_v2; kernel net/netfilter/
// xt_connmark.c: any table and hook, shift_bits below 32).

// CONNMARK modes (XT_CONNMARK_* in linux/netfilter/xt_connmark.h).
const (
	ConnmarkSet uint8 = iota
	ConnmarkSave
	ConnmarkRestore
)

// Shift directions (D_SHIFT_* in libxt_CONNMARK.c).
const (
	ConnmarkShiftLeft uint8 = iota
	ConnmarkShiftRight
)

// option ids of libxt_CONNMARK.c
const (
	cmOSetMark = iota
	cmOSaveMark
	cmORestoreMark
	cmOAndMark
	cmOOrMark
	cmOXorMark
	cmOLeftShift
	cmORightShift
	cmOSetXmark
	cmOCtmask
	cmONfmask
	cmOMask
	cmFOpAny = 1<<cmOSetMark | 1<<cmOSaveMark | 1<<cmORestoreMark | 1<<cmOAndMark |
		1<<cmOOrMark | 1<<cmOXorMark | 1<<cmOSetXmark
)

var connmarkTgOpts = []optEntry{
	{name: "set-xmark", id: cmOSetXmark, excl: cmFOpAny},
	{name: "set-mark", id: cmOSetMark, excl: cmFOpAny},
	{name: "and-mark", id: cmOAndMark, excl: cmFOpAny},
	{name: "or-mark", id: cmOOrMark, excl: cmFOpAny},
	{name: "xor-mark", id: cmOXorMark, excl: cmFOpAny},
	{name: "save-mark", id: cmOSaveMark, excl: cmFOpAny},
	{name: "restore-mark", id: cmORestoreMark, excl: cmFOpAny},
	{name: "left-shift-mark", id: cmOLeftShift},
	{name: "right-shift-mark", id: cmORightShift},
	{name: "ctmask", id: cmOCtmask, excl: 1 << cmOMask},
	{name: "nfmask", id: cmONfmask, excl: 1 << cmOMask},
	{name: "mask", id: cmOMask, excl: 1<<cmOCtmask | 1<<cmONfmask},
}

// ConnmarkTarget is "-j CONNMARK" (struct xt_connmark_tginfo2).
type ConnmarkTarget struct {
	Mode                   uint8
	CtMark, CtMask, NfMask uint32
	ShiftDir, ShiftBits    uint8
	xflags                 uint32
}

func (t *ConnmarkTarget) Name() string { return "CONNMARK" }

func (t *ConnmarkTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark":
		v, m, err := parseMarkOp("CONNMARK", o)
		if err != nil {
			return err
		}
		t.Mode, t.CtMark, t.CtMask = ConnmarkSet, v, m
	case "save-mark":
		t.Mode = ConnmarkSave
	case "restore-mark":
		t.Mode = ConnmarkRestore
	case "ctmask", "nfmask", "mask":
		// XTOPT_PUT: ctmask/nfmask land in the struct as they are
		// parsed, whatever the mode (order matters)
		x, err := parseUintOpt("CONNMARK", o.Name, o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		v := uint32(x)
		switch o.Name {
		case "ctmask":
			t.CtMask = v
		case "nfmask":
			t.NfMask = v
		default:
			t.NfMask, t.CtMask = v, v
		}
	case "left-shift-mark", "right-shift-mark":
		v, err := parseUintOpt("CONNMARK", o.Name, o.Arg, 0, 32)
		if err != nil {
			return err
		}
		t.ShiftBits = uint8(v)
		t.ShiftDir = ConnmarkShiftLeft
		if o.Name == "right-shift-mark" {
			t.ShiftDir = ConnmarkShiftRight
		}
	}
	t.xflags |= 1 << optID(connmarkTgOpts, o.Name)
	return nil
}

func (t *ConnmarkTarget) Final(r *RuleContext) error {
	if t.xflags&cmFOpAny == 0 {
		return Errorf("CONNMARK target: No operation specified")
	}
	return fcheck("CONNMARK", connmarkTgOpts, t.xflags)
}

// CheckHooks is connmark_tg_check: the kernel refuses shifts of 32 bits
// or more.
func (t *ConnmarkTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	if t.ShiftBits > 31 {
		return Errorf("CONNMARK: shift of %d bits", t.ShiftBits)
	}
	return nil
}

func (t *ConnmarkTarget) Save(w *SaveWriter) {
	switch t.Mode {
	case ConnmarkSet:
		w.Printf(" --set-xmark 0x%x/0x%x", t.CtMark, t.CtMask)
	case ConnmarkSave:
		w.Printf(" --save-mark --nfmask 0x%x --ctmask 0x%x", t.NfMask, t.CtMask)
	case ConnmarkRestore:
		w.Printf(" --restore-mark --nfmask 0x%x --ctmask 0x%x", t.NfMask, t.CtMask)
	}
	if t.ShiftBits != 0 {
		op := "left-shift-mark"
		if t.ShiftDir == ConnmarkShiftRight {
			op = "right-shift-mark"
		}
		w.Opt(op, fmt.Sprint(t.ShiftBits))
	}
}

// shift applies the revision-2 shift (shift_dir, shift_bits).
func (t *ConnmarkTarget) shift(v uint32) uint32 {
	if t.ShiftDir == ConnmarkShiftRight {
		return v >> t.ShiftBits
	}
	return v << t.ShiftBits
}

// Exec is connmark_tg_shift (net/netfilter/xt_connmark.c), which serves
// revisions 1 and 2 (revision 1 with no shift). Without a conntrack entry
// (invalid or untracked packets) it does nothing. Quirk kept: --set-*
// shifts the whole new ctmark, --save-mark shifts the masked packet mark
// and --restore-mark the masked ctmark. The IPCT_MARK event the kernel
// caches on a change has no listener in uswitch.
func (t *ConnmarkTarget) Exec(c *Ctx) TVerdict {
	ct := c.CT.Conn
	if ct == nil {
		return TContinue
	}
	switch t.Mode {
	case ConnmarkSet:
		nm := t.shift((ct.Mark() &^ t.CtMask) ^ t.CtMark)
		if ct.Mark() != nm {
			ct.SetMark(nm)
		}
	case ConnmarkSave:
		nm := (ct.Mark() &^ t.CtMask) ^ t.shift(c.Pkt.Mark&t.NfMask)
		if ct.Mark() != nm {
			ct.SetMark(nm)
		}
	case ConnmarkRestore:
		c.Pkt.Mark = (c.Pkt.Mark &^ t.NfMask) ^ t.shift(ct.Mark()&t.CtMask)
	}
	return TContinue
}

func init() {
	RegisterTarget(&TargetSpec{Name: "CONNMARK", Options: []Option{
		{Name: "set-xmark", Arg: RequiredArg},
		{Name: "set-mark", Arg: RequiredArg},
		{Name: "and-mark", Arg: RequiredArg},
		{Name: "or-mark", Arg: RequiredArg},
		{Name: "xor-mark", Arg: RequiredArg},
		{Name: "save-mark"},
		{Name: "restore-mark"},
		{Name: "left-shift-mark", Arg: RequiredArg},
		{Name: "right-shift-mark", Arg: RequiredArg},
		{Name: "ctmask", Arg: RequiredArg},
		{Name: "nfmask", Arg: RequiredArg},
		{Name: "mask", Arg: RequiredArg},
	}, New: func() Target {
		// connmark_tg_init: masks default to all ones
		return &ConnmarkTarget{CtMask: 0xffffffff, NfMask: 0xffffffff}
	}})
}
