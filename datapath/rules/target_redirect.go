package rules

// REDIRECT target (iptables 1.8.9 extensions/libxt_NAT.c REDIRECT_opts,
// NAT_parse, DNAT_fcheck, REDIRECT_save; kernel net/netfilter/
// xt_REDIRECT.c: table nat, hooks PREROUTING and OUTPUT).

// RedirectTarget is "-j REDIRECT": only ports and flags of the range are
// used.
type RedirectTarget struct {
	Range NATRange
}

func (t *RedirectTarget) Name() string { return "REDIRECT" }

func (t *RedirectTarget) Parse(o *OptArg) error { return t.Range.parseOpt(o) }

// Final is DNAT_fcheck: revision 0 has no base port.
func (t *RedirectTarget) Final(r *RuleContext) error {
	if t.Range.Flags&NATProtoOffset != 0 {
		return Errorf("Shifted portmap ranges not supported with this kernel")
	}
	return nil
}

func (t *RedirectTarget) CheckHooks(tb TableID, hooks HookMask) error {
	return checkTableHooks("REDIRECT", tb, Nat, hooks, Hooks(PreRouting, LocalOut))
}

func (t *RedirectTarget) Save(w *SaveWriter) { t.Range.save(w, "to-ports", true) }

func init() {
	RegisterTarget(&TargetSpec{Name: "REDIRECT", Options: []Option{
		{Name: "to-ports", Arg: RequiredArg},
		{Name: "random"},
	}, New: func() Target { return &RedirectTarget{} }})
}
