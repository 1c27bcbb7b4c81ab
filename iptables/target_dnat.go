package iptables

import "github.com/uswitch-lab/uswitch/netfilter"

// DNAT target, revision 2 (iptables 1.8.9 extensions/libxt_NAT.c
// DNAT_opts, DNAT_parse_v2, DNATv2_save; kernel net/netfilter/xt_nat.c:
// table nat, hooks PREROUTING and OUTPUT).

// DNATTarget is "-j DNAT" (struct nf_nat_range2).
type DNATTarget struct {
	Range NATRange
	given bool
	// req is the binding request Exec hands out, built by Final.
	req NATRequest
}

func (t *DNATTarget) Name() string { return "DNAT" }

func (t *DNATTarget) Parse(o *OptArg) error {
	if o.Name == "to-destination" {
		t.given = true
	}
	return t.Range.parseOpt(o)
}

func (t *DNATTarget) Final(r *RuleContext) error {
	if !t.given {
		return mustBeSpecified("DNAT", "to-destination")
	}
	t.req = NATRequest{Manip: ManipDst, Range: t.Range}
	return nil
}

// Exec is xt_dnat_target_v2 (net/netfilter/xt_nat.c): the nf_nat_range2
// as given (base port included) goes to nf_nat_setup_info with
// NF_NAT_MANIP_DST; here it is left in c.NAT for the engine's NAT stage.
func (t *DNATTarget) Exec(c *Ctx) TVerdict {
	c.NAT = &t.req
	return TAccept
}

func (t *DNATTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return checkTableHooks("DNAT", tb, Nat, hooks, netfilter.Hooks(netfilter.PreRouting, netfilter.LocalOut))
}

func (t *DNATTarget) Save(w *SaveWriter) { t.Range.save(w, "to-destination", false) }

func init() {
	RegisterTarget(&TargetSpec{Name: "DNAT", Options: []Option{
		{Name: "to-destination", Arg: RequiredArg},
		{Name: "random"},
		{Name: "persistent"},
	}, New: func() Target { return &DNATTarget{} }})
}
