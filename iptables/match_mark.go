package iptables

// mark and connmark matches (extensions/libxt_mark.c, libxt_connmark.c;
// kernel net/netfilter/xt_mark.c, xt_connmark.c).

// markMatch is what the two matches share: one mandatory "--mark
// value[/mask]" option (XTTYPE_MARKMASK32, "!" allowed), printed back
// with xtables_print_mark_mask.
type markMatch struct {
	Mark, Mask uint32
	Invert     bool
	given      bool
}

func (m *markMatch) parse(ext string, o *OptArg) error {
	v, mask, err := parseMarkMask(ext, "mark", o.Arg)
	if err != nil {
		return err
	}
	m.Mark, m.Mask, m.given = v, mask, true
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *markMatch) final(ext string) error {
	if !m.given {
		return mustBeSpecified(ext, "mark")
	}
	return nil
}

func (m *markMatch) Save(w *SaveWriter) {
	w.InvOpt(m.Invert, "mark", formatMarkMask(m.Mark, m.Mask))
}

// MarkMatch is "-m mark" (revision 1, xt_mark_mtinfo1). iptables-nft
// 1.8.9 turns it into meta mark expressions (nft.c add_nft_mark) and
// rebuilds an identical match (nft-shared.c parse_meta_mark).
type MarkMatch struct{ markMatch }

func (m *MarkMatch) Name() string               { return "mark" }
func (m *MarkMatch) Parse(o *OptArg) error      { return m.parse("mark", o) }
func (m *MarkMatch) Final(r *RuleContext) error { return m.final("mark") }

// ConnmarkMatch is "-m connmark" (revision 1, xt_connmark_mtinfo1).
type ConnmarkMatch struct{ markMatch }

func (m *ConnmarkMatch) Name() string               { return "connmark" }
func (m *ConnmarkMatch) Parse(o *OptArg) error      { return m.parse("connmark", o) }
func (m *ConnmarkMatch) Final(r *RuleContext) error { return m.final("connmark") }

func init() {
	opts := []Option{{Name: "mark", Arg: RequiredArg, Invert: true}}
	RegisterMatch(&MatchSpec{Name: "mark", Options: opts, New: func() Match { return &MarkMatch{} }})
	RegisterMatch(&MatchSpec{Name: "connmark", Options: opts, New: func() Match { return &ConnmarkMatch{} }})
}

// Eval is mark_mt (net/netfilter/xt_mark.c): (mark & mask) == value.
func (m *MarkMatch) Eval(c *Ctx) bool {
	return (c.Pkt.Mark&m.Mask == m.Mark) != m.Invert
}

// Eval is connmark_mt (net/netfilter/xt_connmark.c): the same test on the
// connection's mark; without a connection (invalid or untracked) the
// match fails, "!" or not.
func (m *ConnmarkMatch) Eval(c *Ctx) bool {
	ct := c.CT.Conn
	if ct == nil {
		return false
	}
	return (ct.Mark()&m.Mask == m.Mark) != m.Invert
}
