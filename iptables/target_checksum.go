package iptables

import "github.com/uswitch-lab/uswitch/netfilter"

// CHECKSUM target (iptables 1.8.9 extensions/libxt_CHECKSUM.c: the one
// option is XTOPT_MAND; kernel net/netfilter/xt_CHECKSUM.c, .table =
// "mangle").

// ChecksumTarget is "-j CHECKSUM".
type ChecksumTarget struct {
	Fill bool // XT_CHECKSUM_OP_FILL
}

func (t *ChecksumTarget) Name() string { return "CHECKSUM" }

func (t *ChecksumTarget) Parse(o *OptArg) error {
	t.Fill = true
	return nil
}

func (t *ChecksumTarget) Final(r *RuleContext) error {
	var given uint32
	if t.Fill {
		given = 1
	}
	return fcheck("CHECKSUM", []optEntry{{name: "checksum-fill", mand: true}}, given)
}

func (t *ChecksumTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return tableOnly(tb, Mangle)
}

func (t *ChecksumTarget) Save(w *SaveWriter) {
	if t.Fill {
		w.Opt("checksum-fill", "")
	}
}

// Exec is checksum_tg (net/netfilter/xt_CHECKSUM.c): it completes a
// checksum only when skb->ip_summed == CHECKSUM_PARTIAL (an offloaded
// checksum not yet computed) and the packet is not GSO. uswitch has no
// such state: every packet it carries has its transport checksum
// complete (devices are opened without checksum offload, and every
// rewrite updates checksums in place), so skb_checksum_help never runs
// and the target only continues. Were a "checksum pending" flag ever
// added to packet.Meta, this is where it would be filled.
func (t *ChecksumTarget) Exec(c *Ctx) TVerdict { return TContinue }

func init() {
	RegisterTarget(&TargetSpec{Name: "CHECKSUM", Options: []Option{{Name: "checksum-fill"}},
		New: func() Target { return &ChecksumTarget{} }})
}
