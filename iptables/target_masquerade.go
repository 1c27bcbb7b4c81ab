package iptables

import "github.com/uswitch-lab/uswitch/netfilter"

// MASQUERADE target (iptables 1.8.9 extensions/libxt_NAT.c
// MASQUERADE_opts, NAT_parse, MASQUERADE_save; kernel
// net/netfilter/xt_MASQUERADE.c: table nat, hook POSTROUTING only).

// MasqueradeTarget is "-j MASQUERADE": only ports and flags of the range
// are used.
type MasqueradeTarget struct {
	Range NATRange
	// req is the binding request Exec hands out, built by Final.
	req NATRequest
}

func (t *MasqueradeTarget) Name() string { return "MASQUERADE" }

func (t *MasqueradeTarget) Parse(o *OptArg) error { return t.Range.parseOpt(o) }

func (t *MasqueradeTarget) Final(r *RuleContext) error {
	t.Range.compat()
	// masquerade_tg copies only the flags and the port range
	t.req = NATRequest{Manip: ManipSrc, Masquerade: true, Range: NATRange{
		Flags: t.Range.Flags, MinPort: t.Range.MinPort, MaxPort: t.Range.MaxPort}}
	return nil
}

// Exec is masquerade_tg (net/netfilter/xt_MASQUERADE.c): flags and ports
// of the range go to nf_nat_masquerade_ipv4 with the output device. The
// rest — no masquerading of source 0.0.0.0, the source address chosen
// from the packet's route (NF_DROP when the device has none), the
// masq_index bookkeeping — is nf_nat_masquerade.c's, done by the
// engine's NAT stage from c.NAT.
func (t *MasqueradeTarget) Exec(c *Ctx) TVerdict {
	c.NAT = &t.req
	return TAccept
}

func (t *MasqueradeTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return checkTableHooks("MASQUERADE", tb, Nat, hooks, netfilter.Hooks(netfilter.PostRouting))
}

func (t *MasqueradeTarget) Save(w *SaveWriter) { t.Range.save(w, "to-ports", true) }

func init() {
	RegisterTarget(&TargetSpec{Name: "MASQUERADE", Options: []Option{
		{Name: "to-ports", Arg: RequiredArg},
		{Name: "random"},
		{Name: "random-fully"},
	}, New: func() Target { return &MasqueradeTarget{} }})
}
