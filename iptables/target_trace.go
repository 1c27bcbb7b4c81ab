package iptables

// TRACE target (iptables 1.8.9 extensions/libxt_TRACE.c: no options).
// iptables-nft 1.8.9 does not use the kernel's xt_TRACE (whose .table is
// "raw"): nft.c add_target emits "meta nftrace set 1" for it and
// nft-shared.c reads that back as TRACE, so it is accepted in every table
// and chain.

// TraceTarget is "-j TRACE".
type TraceTarget struct{}

func (t *TraceTarget) Name() string               { return "TRACE" }
func (t *TraceTarget) Parse(o *OptArg) error      { return nil }
func (t *TraceTarget) Final(r *RuleContext) error { return nil }
func (t *TraceTarget) Save(w *SaveWriter)         {}

// Exec sets skb->nf_trace and continues, as xt_TRACE.c trace_tg and the
// "meta nftrace set 1" iptables-nft emits for it (nft_meta_set_eval) do.
func (t *TraceTarget) Exec(c *Ctx) TVerdict {
	c.Pkt.Trace = true
	return TContinue
}

func init() {
	RegisterTarget(&TargetSpec{Name: "TRACE", New: func() Target { return &TraceTarget{} }})
}
