package iptables

import "github.com/uswitch-lab/uswitch/netfilter"

// REDIRECT target (iptables 1.8.9 extensions/libxt_NAT.c REDIRECT_opts,
// NAT_parse, DNAT_fcheck, REDIRECT_save; kernel net/netfilter/
// xt_REDIRECT.c: table nat, hooks PREROUTING and OUTPUT).

// RedirectTarget is "-j REDIRECT": only ports and flags of the range are
// used.
type RedirectTarget struct {
	Range NATRange
	// req is the binding request Exec hands out, built by Final.
	req NATRequest
}

func (t *RedirectTarget) Name() string { return "REDIRECT" }

func (t *RedirectTarget) Parse(o *OptArg) error { return t.Range.parseOpt(o) }

// Final is DNAT_fcheck: revision 0 has no base port.
func (t *RedirectTarget) Final(r *RuleContext) error {
	if t.Range.Flags&NATProtoOffset != 0 {
		return Errorf("Shifted portmap ranges not supported with this kernel")
	}
	// redirect_tg4 copies only the flags and the port range
	t.req = NATRequest{Manip: ManipDst, Redirect: true, Range: NATRange{
		Flags: t.Range.Flags, MinPort: t.Range.MinPort, MaxPort: t.Range.MaxPort}}
	return nil
}

// Exec is redirect_tg4 (net/netfilter/xt_REDIRECT.c): flags and ports go
// to nf_nat_redirect_ipv4, which picks 127.0.0.1 in OUTPUT and the input
// device's first address in PREROUTING (NF_DROP when it has none) and
// sets up a DST binding to it (net/netfilter/nf_nat_redirect.c); the
// engine's NAT stage does that from c.NAT.
func (t *RedirectTarget) Exec(c *Ctx) TVerdict {
	c.NAT = &t.req
	return TAccept
}

func (t *RedirectTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return checkTableHooks("REDIRECT", tb, Nat, hooks, netfilter.Hooks(netfilter.PreRouting, netfilter.LocalOut))
}

func (t *RedirectTarget) Save(w *SaveWriter) { t.Range.save(w, "to-ports", true) }

func init() {
	RegisterTarget(&TargetSpec{Name: "REDIRECT", Options: []Option{
		{Name: "to-ports", Arg: RequiredArg},
		{Name: "random"},
	}, New: func() Target { return &RedirectTarget{} }})
}
