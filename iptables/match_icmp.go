package iptables

import "strconv"

// icmp match (extensions/libipt_icmp.c, libxt_icmp.h; kernel
// net/netfilter/xt_tcpudp.c icmp_mt, registered with .proto IPPROTO_ICMP).

// icmpName is an entry of libxt_icmp.h's icmp_codes table.
type icmpName struct {
	name             string
	typ              uint8
	codeMin, codeMax uint8
}

var icmpNames = []icmpName{
	{"any", 0xFF, 0, 0xFF},
	{"echo-reply", 0, 0, 0xFF},
	{"pong", 0, 0, 0xFF},
	{"destination-unreachable", 3, 0, 0xFF},
	{"network-unreachable", 3, 0, 0},
	{"host-unreachable", 3, 1, 1},
	{"protocol-unreachable", 3, 2, 2},
	{"port-unreachable", 3, 3, 3},
	{"fragmentation-needed", 3, 4, 4},
	{"source-route-failed", 3, 5, 5},
	{"network-unknown", 3, 6, 6},
	{"host-unknown", 3, 7, 7},
	{"network-prohibited", 3, 9, 9},
	{"host-prohibited", 3, 10, 10},
	{"TOS-network-unreachable", 3, 11, 11},
	{"TOS-host-unreachable", 3, 12, 12},
	{"communication-prohibited", 3, 13, 13},
	{"host-precedence-violation", 3, 14, 14},
	{"precedence-cutoff", 3, 15, 15},
	{"source-quench", 4, 0, 0xFF},
	{"redirect", 5, 0, 0xFF},
	{"network-redirect", 5, 0, 0},
	{"host-redirect", 5, 1, 1},
	{"TOS-network-redirect", 5, 2, 2},
	{"TOS-host-redirect", 5, 3, 3},
	{"echo-request", 8, 0, 0xFF},
	{"ping", 8, 0, 0xFF},
	{"router-advertisement", 9, 0, 0xFF},
	{"router-solicitation", 10, 0, 0xFF},
	{"time-exceeded", 11, 0, 0xFF},
	{"ttl-exceeded", 11, 0, 0xFF},
	{"ttl-zero-during-transit", 11, 0, 0},
	{"ttl-zero-during-reassembly", 11, 1, 1},
	{"parameter-problem", 12, 0, 0xFF},
	{"ip-header-bad", 12, 0, 0},
	{"required-option-missing", 12, 1, 1},
	{"timestamp-request", 13, 0, 0xFF},
	{"timestamp-reply", 14, 0, 0xFF},
	{"address-mask-request", 17, 0, 0xFF},
	{"address-mask-reply", 18, 0, 0xFF},
}

// ICMPMatch is "-m icmp": type 0xFF means any type.
type ICMPMatch struct {
	Type             uint8
	CodeMin, CodeMax uint8
	Invert           bool
	given            bool
}

func (m *ICMPMatch) Name() string { return "icmp" }

// icmpParseRange is libxt_icmp.h parse_range: "n" or "n:m", each 0-255;
// it returns what follows.
func icmpParseRange(s string) (lo, hi uint8, rest string, ok bool) {
	v, rest, ok := strtoulPrefix(s, 0, 255)
	if !ok {
		return 0, 0, "", false
	}
	lo, hi = uint8(v), uint8(v)
	if rest != "" && rest[0] == ':' {
		v, rest, ok = strtoulPrefix(rest[1:], 0, 255)
		if !ok {
			return 0, 0, "", false
		}
		hi = uint8(v)
	}
	return lo, hi, rest, true
}

// parseICMPType is __parse_icmp + __ipt_parse_icmp: a (case-insensitive,
// possibly abbreviated) name, or type[/code] with optional ranges.
func parseICMPType(s string) (typ, codeMin, codeMax uint8, err error) {
	match := -1
	for i, n := range icmpNames {
		if !hasPrefixFold(n.name, s) {
			continue
		}
		if match >= 0 {
			return 0, 0, 0, Errorf("Ambiguous ICMP type `%s': `%s' or `%s'?", s, icmpNames[match].name, n.name)
		}
		match = i
	}
	if match >= 0 {
		n := icmpNames[match]
		return n.typ, n.codeMin, n.codeMax, nil
	}
	t0, t1, rest, ok := icmpParseRange(s)
	if !ok {
		return 0, 0, 0, Errorf("Unknown ICMP type `%s'", s)
	}
	codeMin, codeMax = 0, 0xFF
	switch {
	case rest == "":
	case rest[0] == '/':
		codeMin, codeMax, rest, ok = icmpParseRange(rest[1:])
		if !ok {
			return 0, 0, 0, Errorf("Unknown ICMP code `%s'", s)
		}
		if rest != "" {
			return 0, 0, 0, Errorf("unknown character %s", rest[:1])
		}
	default:
		return 0, 0, 0, Errorf("unknown character %s", rest[:1])
	}
	if t0 != t1 {
		return 0, 0, 0, Errorf("ICMP type range not supported")
	}
	return t0, codeMin, codeMax, nil
}

func (m *ICMPMatch) Parse(o *OptArg) error {
	t, lo, hi, err := parseICMPType(o.Arg)
	if err != nil {
		return err
	}
	m.Type, m.CodeMin, m.CodeMax = t, lo, hi
	m.given = true
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *ICMPMatch) Final(r *RuleContext) error {
	if !m.given {
		return mustBeSpecified("icmp", "icmp-type")
	}
	return nil
}

// RequiredProto: xt_tcpudp.c registers icmp for IPPROTO_ICMP, so
// x_tables.c xt_check_match refuses any other -p, or "! -p icmp".
func (m *ICMPMatch) RequiredProto() uint8 { return 1 }

func (m *ICMPMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.WriteString(" !")
	}
	if m.Type == 0xFF {
		w.WriteString(" --icmp-type any")
		return
	}
	w.WriteString(" --icmp-type " + strconv.Itoa(int(m.Type)))
	if m.CodeMin != 0 || m.CodeMax != 0xFF {
		w.WriteString("/" + strconv.Itoa(int(m.CodeMin)))
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "icmp", Options: []Option{
		{Name: "icmp-type", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &ICMPMatch{Type: 0xFF, CodeMax: 0xFF} }})
}

// Eval is icmp_match (net/netfilter/xt_tcpudp.c): type 0xFF is any
// type; a non-first fragment never matches; a first fragment without the
// 8-byte ICMP header is hotdropped.
func (m *ICMPMatch) Eval(c *Ctx) bool {
	p := c.Pkt
	if p.IP.FragOffset() != 0 {
		return false
	}
	if len(p.L4) < 8 {
		c.HotDrop = true
		return false
	}
	t, code := p.L4[0], p.L4[1]
	ok := m.Type == 0xFF || t == m.Type && code >= m.CodeMin && code <= m.CodeMax
	return ok != m.Invert
}
