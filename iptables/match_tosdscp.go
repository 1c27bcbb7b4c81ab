package iptables

import "fmt"

// tos match, revision 1 (extensions/libxt_tos.c with the XTTYPE_TOSMASK
// parser of libxtables/xtoptions.c) and dscp match
// (extensions/libxt_dscp.c, dscp_helper.c); kernel
// net/netfilter/xt_dscp.c, where neither has a check beyond the dscp range
// userspace enforces already.

// TOSMatch is "-m tos": (tos & Mask) == Value.
type TOSMatch struct {
	Value, Mask uint8
	Invert      bool
	given       bool
}

func (m *TOSMatch) Name() string { return "tos" }

func (m *TOSMatch) Parse(o *OptArg) error {
	v, mask, err := parseTOSMask(o.Arg, 0x3f)
	if err != nil {
		return err
	}
	m.Value, m.Mask, m.given = v, mask, true
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *TOSMatch) Final(r *RuleContext) error {
	if !m.given {
		return mustBeSpecified("tos", "tos")
	}
	return nil
}

func (m *TOSMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.WriteString(" !")
	}
	fmt.Fprintf(w, " --tos 0x%02x/0x%02x", m.Value, m.Mask)
}

// DSCPMatch is "-m dscp": the DSCP field (tos >> 2) equals DSCP.
type DSCPMatch struct {
	DSCP   uint8
	Invert bool
	xflags uint32
}

func (m *DSCPMatch) Name() string { return "dscp" }

// dscpClasses is dscp_helper.c ds_classes.
var dscpClasses = []struct {
	name string
	dscp uint8
}{
	{"CS0", 0x00}, {"CS1", 0x08}, {"CS2", 0x10}, {"CS3", 0x18}, {"CS4", 0x20},
	{"CS5", 0x28}, {"CS6", 0x30}, {"CS7", 0x38}, {"BE", 0x00},
	{"AF11", 0x0a}, {"AF12", 0x0c}, {"AF13", 0x0e}, {"AF21", 0x12},
	{"AF22", 0x14}, {"AF23", 0x16}, {"AF31", 0x1a}, {"AF32", 0x1c},
	{"AF33", 0x1e}, {"AF41", 0x22}, {"AF42", 0x24}, {"AF43", 0x26},
	{"EF", 0x2e},
}

// classToDSCP is class_to_dscp: the first class name the argument starts
// with (case-insensitively).
func classToDSCP(name string) (uint8, error) {
	for _, c := range dscpClasses {
		if hasPrefixFold(name, c.name) {
			return c.dscp, nil
		}
	}
	return 0, Errorf("Invalid DSCP value `%s'", name)
}

var dscpOpts = []optEntry{
	{name: "dscp", id: 0, excl: 1 << 1},
	{name: "dscp-class", id: 1, excl: 1 << 0},
}

func (m *DSCPMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "dscp":
		v, err := parseUintOpt("dscp", "dscp", o.Arg, 0, 0x3f)
		if err != nil {
			return err
		}
		m.DSCP = uint8(v)
		m.xflags |= 1 << 0
	case "dscp-class":
		v, err := classToDSCP(o.Arg)
		if err != nil {
			return err
		}
		m.DSCP = v
		m.xflags |= 1 << 1
	}
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *DSCPMatch) Final(r *RuleContext) error {
	if m.xflags == 0 {
		return Errorf("DSCP match: Parameter --dscp is required")
	}
	return fcheck("dscp", dscpOpts, m.xflags)
}

func (m *DSCPMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.WriteString(" !")
	}
	fmt.Fprintf(w, " --dscp 0x%02x", m.DSCP)
}

func init() {
	RegisterMatch(&MatchSpec{Name: "tos", Options: []Option{
		{Name: "tos", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &TOSMatch{} }})
	RegisterMatch(&MatchSpec{Name: "dscp", Options: []Option{
		{Name: "dscp", Arg: RequiredArg, Invert: true},
		{Name: "dscp-class", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &DSCPMatch{} }})
}

// Eval is tos_mt (net/netfilter/xt_dscp.c): (tos & mask) == value.
func (m *TOSMatch) Eval(c *Ctx) bool {
	return (c.Pkt.IP.TOS()&m.Mask == m.Value) != m.Invert
}

// Eval is dscp_mt (net/netfilter/xt_dscp.c): the upper six TOS bits.
func (m *DSCPMatch) Eval(c *Ctx) bool {
	return (c.Pkt.IP.TOS()>>2 == m.DSCP) != m.Invert
}
