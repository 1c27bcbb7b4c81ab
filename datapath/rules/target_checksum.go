package rules

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

func (t *ChecksumTarget) CheckHooks(tb TableID, hooks HookMask) error { return tableOnly(tb, Mangle) }

func (t *ChecksumTarget) Save(w *SaveWriter) {
	if t.Fill {
		w.Opt("checksum-fill", "")
	}
}

func init() {
	RegisterTarget(&TargetSpec{Name: "CHECKSUM", Options: []Option{{Name: "checksum-fill"}},
		New: func() Target { return &ChecksumTarget{} }})
}
