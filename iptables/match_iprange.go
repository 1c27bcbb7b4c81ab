package iptables

import "strings"

// iprange match, revision 1 (extensions/libxt_iprange.c; kernel
// net/netfilter/xt_iprange.c, which has no checkentry).

// IPv4Range is an inclusive range of host-order IPv4 addresses.
type IPv4Range struct{ Lo, Hi uint32 }

// Contains reports whether a is in the range.
func (r IPv4Range) Contains(a uint32) bool { return a >= r.Lo && a <= r.Hi }

// IPRangeMatch is "-m iprange".
type IPRangeMatch struct {
	Src, Dst       IPv4Range
	HasSrc, HasDst bool
	InvSrc, InvDst bool
}

func (m *IPRangeMatch) Name() string { return "iprange" }

// parseIPv4Range is iprange_parse_range: "a" or "a-b", numeric dotted
// addresses (xtables_numeric_to_ipaddr). A reversed range is accepted
// (iptables only warns: it never matches).
func parseIPv4Range(arg, opt string) (IPv4Range, error) {
	from, to, ok := strings.Cut(arg, "-")
	if !ok {
		to = from
	}
	lo, ok := ParseAddr(from)
	if !ok {
		return IPv4Range{}, badValue("iprange", opt, from)
	}
	hi, ok := ParseAddr(to)
	if !ok {
		return IPv4Range{}, badValue("iprange", opt, to)
	}
	return IPv4Range{lo, hi}, nil
}

func (m *IPRangeMatch) Parse(o *OptArg) error {
	r, err := parseIPv4Range(o.Arg, "--"+o.Name)
	if err != nil {
		return err
	}
	if o.Name == "src-range" {
		m.Src, m.HasSrc = r, true
		m.InvSrc = m.InvSrc || o.Invert
	} else {
		m.Dst, m.HasDst = r, true
		m.InvDst = m.InvDst || o.Invert
	}
	return nil
}

func (m *IPRangeMatch) Final(r *RuleContext) error {
	if !m.HasSrc && !m.HasDst {
		return Errorf("iprange match: You must specify `--src-range' or `--dst-range'")
	}
	return nil
}

func (m *IPRangeMatch) Save(w *SaveWriter) {
	if m.HasSrc {
		w.InvOpt(m.InvSrc, "src-range", FormatAddr(m.Src.Lo)+"-"+FormatAddr(m.Src.Hi))
	}
	if m.HasDst {
		w.InvOpt(m.InvDst, "dst-range", FormatAddr(m.Dst.Lo)+"-"+FormatAddr(m.Dst.Hi))
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "iprange", Options: []Option{
		{Name: "src-range", Arg: RequiredArg, Invert: true},
		{Name: "dst-range", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &IPRangeMatch{} }})
}

// Eval is iprange_mt4 (net/netfilter/xt_iprange.c): a reversed range
// contains nothing.
func (m *IPRangeMatch) Eval(c *Ctx) bool {
	if m.HasSrc && m.Src.Contains(c.Pkt.Src) == m.InvSrc {
		return false
	}
	if m.HasDst && m.Dst.Contains(c.Pkt.Dst) == m.InvDst {
		return false
	}
	return true
}
