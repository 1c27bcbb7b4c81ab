package iptables

import "strconv"

// ttl match (extensions/libipt_ttl.c; kernel net/netfilter/xt_hl.c
// ttl_mt, no checkentry).

// TTLMode is the comparison of a ttl match (IPT_TTL_EQ, _NE, _LT, _GT).
type TTLMode uint8

const (
	TTLEq TTLMode = iota
	TTLNe
	TTLLt
	TTLGt
)

// TTLMatch is "-m ttl".
type TTLMatch struct {
	Mode   TTLMode
	Value  uint8
	xflags uint32
}

func (m *TTLMatch) Name() string { return "ttl" }

// option ids of libipt_ttl.c
const (
	ttlOptEq = iota
	ttlOptLt
	ttlOptGt
)

// ttlOpts is ttl_opts in its order; every option excludes all of them.
var ttlOpts = []optEntry{
	{name: "ttl-lt", id: ttlOptLt, excl: 7},
	{name: "ttl-gt", id: ttlOptGt, excl: 7},
	{name: "ttl-eq", id: ttlOptEq, excl: 7},
	{name: "ttl", id: ttlOptEq, excl: 7},
}

func (m *TTLMatch) Parse(o *OptArg) error {
	name := o.Name
	if name == "ttl" {
		// libxtables looks the entry up by id: messages and flags are
		// those of --ttl-eq
		name = "ttl-eq"
	}
	v, err := parseUintOpt("ttl", name, o.Arg, 0, 255)
	if err != nil {
		return err
	}
	m.Value = uint8(v)
	switch name {
	case "ttl-eq":
		m.Mode = TTLEq
		if o.Invert {
			m.Mode = TTLNe
		}
		m.xflags |= 1 << ttlOptEq
	case "ttl-lt":
		m.Mode = TTLLt
		m.xflags |= 1 << ttlOptLt
	case "ttl-gt":
		m.Mode = TTLGt
		m.xflags |= 1 << ttlOptGt
	}
	return nil
}

func (m *TTLMatch) Final(r *RuleContext) error {
	if m.xflags == 0 {
		return Errorf("TTL match: You must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt")
	}
	return fcheck("ttl", ttlOpts, m.xflags)
}

func (m *TTLMatch) Save(w *SaveWriter) {
	switch m.Mode {
	case TTLEq:
		w.WriteString(" --ttl-eq")
	case TTLNe:
		w.WriteString(" ! --ttl-eq")
	case TTLLt:
		w.WriteString(" --ttl-lt")
	case TTLGt:
		w.WriteString(" --ttl-gt")
	}
	w.WriteString(" " + strconv.Itoa(int(m.Value)))
}

func init() {
	RegisterMatch(&MatchSpec{Name: "ttl", Options: []Option{
		{Name: "ttl-lt", Arg: RequiredArg},
		{Name: "ttl-gt", Arg: RequiredArg},
		{Name: "ttl-eq", Arg: RequiredArg, Invert: true},
		// the synonym shares --ttl-eq's entry, "!" included
		{Name: "ttl", Arg: RequiredArg, Invert: true, Alias: "ttl-eq"},
	}, New: func() Match { return &TTLMatch{} }})
}

// Eval is ttl_mt (net/netfilter/xt_hl.c).
func (m *TTLMatch) Eval(c *Ctx) bool {
	ttl := c.Pkt.IP.TTL()
	switch m.Mode {
	case TTLEq:
		return ttl == m.Value
	case TTLNe:
		return ttl != m.Value
	case TTLLt:
		return ttl < m.Value
	case TTLGt:
		return ttl > m.Value
	}
	return false
}
