package iptables

import (
	"strconv"
	"strings"
)

// multiport match, revision 1 (extensions/libxt_multiport.c; kernel
// net/netfilter/xt_multiport.c).

// MultiportMode says which ports a multiport match looks at
// (XT_MULTIPORT_SOURCE, _DESTINATION, _EITHER).
type MultiportMode uint8

const (
	MultiportSource MultiportMode = iota
	MultiportDestination
	MultiportEither
)

// multiportMax is XT_MULTI_PORTS: slots in the kernel struct; a range
// takes two.
const multiportMax = 15

// MultiportMatch is "-m multiport".
type MultiportMatch struct {
	Mode MultiportMode
	// Ports are single ports (Lo == Hi) and ranges (Lo < Hi).
	Ports  []PortRange
	Invert bool

	xflags uint32
}

func (m *MultiportMatch) Name() string { return "multiport" }

// multiportProto is check_proto + proto_to_name.
func multiportProto(r *RuleContext) (string, error) {
	if r.ProtoInvert {
		return "", Errorf("multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP")
	}
	switch r.Proto {
	case 6:
		return "tcp", nil
	case 17:
		return "udp", nil
	case 136:
		return "udplite", nil
	case 132:
		return "sctp", nil
	case 33:
		return "dccp", nil
	case 0:
		return "", Errorf("multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'")
	}
	return "", Errorf("multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP")
}

// parseMultiports is parse_multi_ports_v1.
func parseMultiports(s, proto string) ([]PortRange, error) {
	var out []PortRange
	slots := 0
	rest, more := s, true
	for more && slots < multiportMax {
		var cp string
		cp, rest, more = strings.Cut(rest, ",")
		lo, hi, isRange := strings.Cut(cp, ":")
		if isRange && slots == multiportMax-1 {
			return nil, Errorf("too many ports specified")
		}
		a, err := ParsePort(lo, proto)
		if err != nil {
			return nil, err
		}
		if !isRange {
			out = append(out, PortRange{a, a})
			slots++
			continue
		}
		b, err := ParsePort(hi, proto)
		if err != nil {
			return nil, err
		}
		if a >= b {
			return nil, Errorf("invalid portrange specified")
		}
		out = append(out, PortRange{a, b})
		slots += 2
	}
	if more {
		return nil, Errorf("too many ports specified")
	}
	return out, nil
}

func (m *MultiportMatch) Parse(o *OptArg) error {
	proto, err := multiportProto(o.Rule)
	if err != nil {
		return err
	}
	ports, err := parseMultiports(o.Arg, proto)
	if err != nil {
		return err
	}
	m.Ports = ports
	switch o.Name {
	case "source-ports", "sports":
		m.Mode = MultiportSource
		m.xflags |= 1 << 0
	case "destination-ports", "dports":
		m.Mode = MultiportDestination
		m.xflags |= 1 << 1
	case "ports":
		m.Mode = MultiportEither
		m.xflags |= 1 << 2
	}
	if o.Invert {
		m.Invert = true
	}
	return nil
}

var multiportOpts = []optEntry{
	{name: "source-ports", id: 0, excl: 7},
	{name: "sports", id: 0, excl: 7},
	{name: "destination-ports", id: 1, excl: 7},
	{name: "dports", id: 1, excl: 7},
	{name: "ports", id: 2, excl: 7},
}

func (m *MultiportMatch) Final(r *RuleContext) error {
	if m.xflags == 0 {
		return Errorf("multiport expection an option")
	}
	return fcheck("multiport", multiportOpts, m.xflags)
}

func (m *MultiportMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.WriteString(" !")
	}
	switch m.Mode {
	case MultiportSource:
		w.WriteString(" --sports ")
	case MultiportDestination:
		w.WriteString(" --dports ")
	case MultiportEither:
		w.WriteString(" --ports ")
	}
	for i, p := range m.Ports {
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString(strconv.Itoa(int(p.Lo)))
		if p.Lo != p.Hi {
			w.WriteString(":" + strconv.Itoa(int(p.Hi)))
		}
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "multiport", Options: []Option{
		{Name: "source-ports", Arg: RequiredArg, Invert: true},
		{Name: "sports", Arg: RequiredArg, Invert: true, Alias: "source-ports"},
		{Name: "destination-ports", Arg: RequiredArg, Invert: true},
		{Name: "dports", Arg: RequiredArg, Invert: true, Alias: "destination-ports"},
		{Name: "ports", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &MultiportMatch{} }})
}

// Eval is multiport_mt with ports_match_v1 (net/netfilter/xt_multiport.c):
// the first four bytes of the transport header are the ports (the rule's
// -p guarantees a protocol that has them); a non-first fragment never
// matches and a shorter first fragment is hotdropped.
func (m *MultiportMatch) Eval(c *Ctx) bool {
	p := c.Pkt
	if p.IP.FragOffset() != 0 {
		return false
	}
	if len(p.L4) < 4 {
		c.HotDrop = true
		return false
	}
	src, dst := be16(p.L4, 0), be16(p.L4, 2)
	for _, r := range m.Ports {
		var hit bool
		switch m.Mode {
		case MultiportSource:
			hit = r.Contains(src)
		case MultiportDestination:
			hit = r.Contains(dst)
		default:
			hit = r.Contains(src) || r.Contains(dst)
		}
		if hit {
			return !m.Invert
		}
	}
	return m.Invert
}
