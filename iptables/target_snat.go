package iptables

import "github.com/uswitch-lab/uswitch/netfilter"

// SNAT target, revision 0 (iptables 1.8.9 extensions/libxt_NAT.c
// SNAT_opts, NAT_parse, SNAT_fcheck, SNAT_save; kernel
// net/netfilter/xt_nat.c: table nat, hooks POSTROUTING and INPUT).

// SNATTarget is "-j SNAT" (struct nf_nat_ipv4_multi_range_compat with
// one range).
type SNATTarget struct {
	Range NATRange
	given bool
	// req is the binding request Exec hands out, built by Final.
	req NATRequest
}

func (t *SNATTarget) Name() string { return "SNAT" }

func (t *SNATTarget) Parse(o *OptArg) error {
	if o.Name == "to-source" {
		t.given = true
	}
	return t.Range.parseOpt(o)
}

func (t *SNATTarget) Final(r *RuleContext) error {
	if !t.given {
		return mustBeSpecified("SNAT", "to-source")
	}
	t.Range.compat()
	t.req = NATRequest{Manip: ManipSrc, Range: t.Range}
	return nil
}

// Exec is xt_snat_target_v0 (net/netfilter/xt_nat.c): the range converted
// from the revision-0 compat struct (no base port) goes to
// nf_nat_setup_info with NF_NAT_MANIP_SRC, which answers NF_ACCEPT. Here
// the request is left in c.NAT for the engine's NAT stage, which makes
// the binding on the packet's entry.
func (t *SNATTarget) Exec(c *Ctx) TVerdict {
	c.NAT = &t.req
	return TAccept
}

func (t *SNATTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return checkTableHooks("SNAT", tb, Nat, hooks, netfilter.Hooks(netfilter.PostRouting, netfilter.LocalIn))
}

func (t *SNATTarget) Save(w *SaveWriter) { t.Range.save(w, "to-source", false) }

func init() {
	RegisterTarget(&TargetSpec{Name: "SNAT", Options: []Option{
		{Name: "to-source", Arg: RequiredArg},
		{Name: "random"},
		{Name: "random-fully"},
		{Name: "persistent"},
	}, New: func() Target { return &SNATTarget{} }})
}
