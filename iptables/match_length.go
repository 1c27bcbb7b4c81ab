package iptables

import "strconv"

// length match (extensions/libxt_length.c, an XTTYPE_UINT16RC option;
// kernel net/netfilter/xt_length.c, which has no checkentry: a range with
// min > max is accepted and never matches).

// LengthMatch is "-m length".
type LengthMatch struct {
	Min, Max uint16
	Invert   bool
	given    bool
}

func (m *LengthMatch) Name() string { return "length" }

func (m *LengthMatch) Parse(o *OptArg) error {
	v, err := parseMint("length", "length", o.Arg, 0xffff, 2)
	if err != nil {
		return err
	}
	m.Min, m.Max = uint16(v[0]), uint16(v[0])
	if len(v) >= 2 {
		m.Max = uint16(v[1])
	}
	m.given = true
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *LengthMatch) Final(r *RuleContext) error {
	if !m.given {
		return mustBeSpecified("length", "length")
	}
	return nil
}

func (m *LengthMatch) Save(w *SaveWriter) {
	v := strconv.Itoa(int(m.Min))
	if m.Min != m.Max {
		v += ":" + strconv.Itoa(int(m.Max))
	}
	w.InvOpt(m.Invert, "length", v)
}

func init() {
	RegisterMatch(&MatchSpec{Name: "length", Options: []Option{
		{Name: "length", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &LengthMatch{} }})
}

// Eval is length_mt (net/netfilter/xt_length.c): the IPv4 total length.
func (m *LengthMatch) Eval(c *Ctx) bool {
	l := c.Pkt.IP.TotalLen()
	return (l >= m.Min && l <= m.Max) != m.Invert
}
