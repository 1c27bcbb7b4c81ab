package iptables

import (
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// NOTRACK target. iptables 1.8.9 (extensions/libxt_CT.c) registers NOTRACK
// as an alias of CT revision 2 with XT_CT_NOTRACK|XT_CT_NOTRACK_ALIAS and
// no options; ct_save prints nothing for it and ct_print_name_alias names
// it NOTRACK again. The kernel's xt_CT (net/netfilter/xt_CT.c) is
// .table = "raw": xt_check_target refuses it in other tables with EINVAL.

// NoTrackTarget is "-j NOTRACK".
type NoTrackTarget struct{}

func (t *NoTrackTarget) Name() string               { return "NOTRACK" }
func (t *NoTrackTarget) Parse(o *OptArg) error      { return nil }
func (t *NoTrackTarget) Final(r *RuleContext) error { return nil }
func (t *NoTrackTarget) Save(w *SaveWriter)         {}

// CheckHooks is xt_CT's table restriction.
func (t *NoTrackTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return tableOnly(tb, Raw)
}

// Exec is what iptables 1.8.9's NOTRACK becomes, xt_ct_target with
// --notrack (and the kernel's own notrack_tg, net/netfilter/xt_CT.c):
// unless the packet already has a conntrack reference, mark it untracked
// (c.CT = conntrack.Untracked, c.Notrack for the engine); continue.
func (t *NoTrackTarget) Exec(c *Ctx) TVerdict {
	if !ctAttached(c) {
		c.Notrack = true
		c.CT = conntrack.Untracked
	}
	return TContinue
}

func init() {
	RegisterTarget(&TargetSpec{Name: "NOTRACK", New: func() Target { return &NoTrackTarget{} }})
}
