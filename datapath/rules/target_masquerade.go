package rules

// MASQUERADE target (iptables 1.8.9 extensions/libxt_NAT.c
// MASQUERADE_opts, NAT_parse, MASQUERADE_save; kernel
// net/netfilter/xt_MASQUERADE.c: table nat, hook POSTROUTING only).

// MasqueradeTarget is "-j MASQUERADE": only ports and flags of the range
// are used.
type MasqueradeTarget struct {
	Range NATRange
}

func (t *MasqueradeTarget) Name() string { return "MASQUERADE" }

func (t *MasqueradeTarget) Parse(o *OptArg) error { return t.Range.parseOpt(o) }

func (t *MasqueradeTarget) Final(r *RuleContext) error {
	t.Range.compat()
	return nil
}

func (t *MasqueradeTarget) CheckHooks(tb TableID, hooks HookMask) error {
	return checkTableHooks("MASQUERADE", tb, Nat, hooks, Hooks(PostRouting))
}

func (t *MasqueradeTarget) Save(w *SaveWriter) { t.Range.save(w, "to-ports", true) }

func init() {
	RegisterTarget(&TargetSpec{Name: "MASQUERADE", Options: []Option{
		{Name: "to-ports", Arg: RequiredArg},
		{Name: "random"},
		{Name: "random-fully"},
	}, New: func() Target { return &MasqueradeTarget{} }})
}
