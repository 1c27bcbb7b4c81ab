package iptables

import (
	"fmt"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// TOS target, revision 1 (iptables 1.8.9 extensions/libxt_TOS.c,
// libxtables/xtoptions.c xtopt_parse_tosmask; kernel net/netfilter/xt_DSCP.c
// tos_tg, .table = "mangle"). Every form is stored as value/mask: the new
// TOS is (old & ^mask) ^ value.

// TOSTarget is "-j TOS".
type TOSTarget struct {
	Value, Mask uint8

	given uint32
}

var tosEntries = []optEntry{
	{name: "set-tos", id: 0, excl: 15},
	{name: "and-tos", id: 1, excl: 15},
	{name: "or-tos", id: 2, excl: 15},
	{name: "xor-tos", id: 3, excl: 15},
}

func (t *TOSTarget) Name() string { return "TOS" }

func (t *TOSTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "set-tos":
		// XTTYPE_TOSMASK with the revision-1 symbolic mask 0x3f
		// (parseTOSMask, as the tos match)
		v, m, err := parseTOSMask(o.Arg, 0x3f)
		if err != nil {
			return err
		}
		t.Value, t.Mask = v, m
		t.given |= 1 << 0
		return nil
	}
	b, err := parseUintOpt("TOS", o.Name, o.Arg, 0, 255)
	if err != nil {
		return err
	}
	switch o.Name {
	case "and-tos":
		t.Value, t.Mask = 0, ^uint8(b)
		t.given |= 1 << 1
	case "or-tos":
		t.Value, t.Mask = uint8(b), uint8(b)
		t.given |= 1 << 2
	case "xor-tos":
		t.Value, t.Mask = uint8(b), 0
		t.given |= 1 << 3
	}
	return nil
}

// Final is tos_tg_check, then the options' mutual exclusion.
func (t *TOSTarget) Final(r *RuleContext) error {
	if t.given == 0 {
		return Errorf("TOS: An action is required")
	}
	return fcheck("TOS", tosEntries, t.given)
}

func (t *TOSTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return tableOnly(tb, Mangle)
}

// Save is tos_tg_save.
func (t *TOSTarget) Save(w *SaveWriter) {
	w.Opt("set-tos", fmt.Sprintf("0x%02x/0x%02x", t.Value, t.Mask))
}

// Exec is tos_tg (net/netfilter/xt_DSCP.c): new TOS = (old & ~mask) ^
// value, written with ipv4_change_dsfield's checksum update only when it
// differs.
func (t *TOSTarget) Exec(c *Ctx) TVerdict {
	h := c.Pkt.IP
	orig := h.TOS()
	if nv := (orig &^ t.Mask) ^ t.Value; nv != orig {
		changeDSField(h, 0, nv)
	}
	return TContinue
}

func init() {
	RegisterTarget(&TargetSpec{Name: "TOS", Options: []Option{
		{Name: "set-tos", Arg: RequiredArg},
		{Name: "and-tos", Arg: RequiredArg},
		{Name: "or-tos", Arg: RequiredArg},
		{Name: "xor-tos", Arg: RequiredArg},
	}, New: func() Target { return &TOSTarget{} }})
}
