package iptables

import (
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// addrtype match, revision 1 (extensions/libxt_addrtype.c; kernel
// net/netfilter/xt_addrtype.c addrtype_mt_checkentry_v1).

// addrTypeNames are the route types (RTN_* in linux/rtnetlink.h); bit i
// of a type mask stands for addrTypeNames[i].
var addrTypeNames = []string{
	"UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST",
	"BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE",
}

// Addrtype flags (XT_ADDRTYPE_* in linux/netfilter/xt_addrtype.h).
const (
	AddrtypeInvertSource = 0x1
	AddrtypeInvertDest   = 0x2
	AddrtypeLimitIn      = 0x4
	AddrtypeLimitOut     = 0x8
)

// AddrtypeMatch is "-m addrtype".
type AddrtypeMatch struct {
	Source, Dest uint16 // masks of route types, 0 = not tested
	Flags        uint8  // Addrtype* bits
	xflags       uint32
}

func (m *AddrtypeMatch) Name() string { return "addrtype" }

// addrtypeOne is parse_type: the first type the word abbreviates.
func addrtypeOne(word string) (uint16, bool) {
	for i, n := range addrTypeNames {
		if hasPrefixFold(n, word) {
			return 1 << i, true
		}
	}
	return 0, false
}

// parseAddrtypes is parse_types: a comma-separated list.
func parseAddrtypes(arg string) (uint16, error) {
	var mask uint16
	for {
		i := strings.IndexByte(arg, ',')
		if i < 0 {
			break
		}
		b, ok := addrtypeOne(arg[:i])
		if i == 0 || !ok {
			return 0, Errorf("addrtype: bad type `%s'", arg)
		}
		mask |= b
		arg = arg[i+1:]
	}
	b, ok := addrtypeOne(arg)
	if arg == "" || !ok {
		return 0, Errorf("addrtype: bad type \"%s\"", arg)
	}
	return mask | b, nil
}

// option ids of libxt_addrtype.c
const (
	addrtypeOptSrc = iota
	addrtypeOptDst
	addrtypeOptLimitIn
	addrtypeOptLimitOut
)

var addrtypeOpts = []optEntry{
	{name: "src-type", id: addrtypeOptSrc},
	{name: "dst-type", id: addrtypeOptDst},
	{name: "limit-iface-in", id: addrtypeOptLimitIn, excl: 1 << addrtypeOptLimitOut},
	{name: "limit-iface-out", id: addrtypeOptLimitOut, excl: 1 << addrtypeOptLimitIn},
}

func (m *AddrtypeMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "src-type", "dst-type":
		v, err := parseAddrtypes(o.Arg)
		if err != nil {
			return err
		}
		types, inv, id := &m.Source, uint8(AddrtypeInvertSource), addrtypeOptSrc
		if o.Name == "dst-type" {
			types, inv, id = &m.Dest, AddrtypeInvertDest, addrtypeOptDst
		}
		*types |= v
		if o.Invert {
			m.Flags |= inv
		}
		m.xflags |= 1 << id
	case "limit-iface-in":
		m.Flags |= AddrtypeLimitIn
		m.xflags |= 1 << addrtypeOptLimitIn
	case "limit-iface-out":
		m.Flags |= AddrtypeLimitOut
		m.xflags |= 1 << addrtypeOptLimitOut
	}
	return nil
}

func (m *AddrtypeMatch) Final(r *RuleContext) error {
	if m.xflags&(1<<addrtypeOptSrc|1<<addrtypeOptDst) == 0 {
		return Errorf("addrtype: you must specify --src-type or --dst-type")
	}
	return fcheck("addrtype", addrtypeOpts, m.xflags)
}

// CheckEntry is addrtype_mt_checkentry_v1: the output interface is not
// known in PREROUTING and INPUT, the input one not in OUTPUT and
// POSTROUTING.
func (m *AddrtypeMatch) CheckEntry(t TableID, hooks netfilter.HookMask) error {
	if m.Flags&AddrtypeLimitIn != 0 && m.Flags&AddrtypeLimitOut != 0 {
		return Errorf("both incoming and outgoing interface limitation cannot be selected")
	}
	if m.Flags&AddrtypeLimitOut != 0 && hooks&netfilter.Hooks(netfilter.PreRouting, netfilter.LocalIn) != 0 {
		return Errorf("output interface limitation not valid in PREROUTING and INPUT")
	}
	if m.Flags&AddrtypeLimitIn != 0 && hooks&netfilter.Hooks(netfilter.PostRouting, netfilter.LocalOut) != 0 {
		return Errorf("input interface limitation not valid in POSTROUTING and OUTPUT")
	}
	return nil
}

func addrtypeString(mask uint16) string {
	var parts []string
	for i, n := range addrTypeNames {
		if mask&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, ",")
}

func (m *AddrtypeMatch) Save(w *SaveWriter) {
	if m.Source != 0 {
		w.InvOpt(m.Flags&AddrtypeInvertSource != 0, "src-type", addrtypeString(m.Source))
	}
	if m.Dest != 0 {
		w.InvOpt(m.Flags&AddrtypeInvertDest != 0, "dst-type", addrtypeString(m.Dest))
	}
	if m.Flags&AddrtypeLimitIn != 0 {
		w.Opt("limit-iface-in", "")
	}
	if m.Flags&AddrtypeLimitOut != 0 {
		w.Opt("limit-iface-out", "")
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "addrtype", Options: []Option{
		{Name: "src-type", Arg: RequiredArg, Invert: true},
		{Name: "dst-type", Arg: RequiredArg, Invert: true},
		{Name: "limit-iface-in"},
		{Name: "limit-iface-out"},
	}, New: func() Match { return &AddrtypeMatch{} }})
}

// Eval is addrtype_mt_v1 (net/netfilter/xt_addrtype.c): each given type
// mask must contain the route type of the address (Env.AddrType, which
// classes 0/8, 255.255.255.255 and 224/4 before the local-table lookup,
// as inet_dev_addr_type does), limited to the input or output device
// with --limit-iface-in/-out; source is tested first, both must hold.
func (m *AddrtypeMatch) Eval(c *Ctx) bool {
	dev := ""
	switch {
	case m.Flags&AddrtypeLimitIn != 0:
		dev = c.Pkt.InIf
	case m.Flags&AddrtypeLimitOut != 0:
		dev = c.Pkt.OutIf
	}
	if m.Source != 0 {
		t := c.Env.AddrType(c.Pkt.Src, dev)
		if (t < 16 && m.Source&(1<<t) != 0) == (m.Flags&AddrtypeInvertSource != 0) {
			return false
		}
	}
	if m.Dest != 0 {
		t := c.Env.AddrType(c.Pkt.Dst, dev)
		if (t < 16 && m.Dest&(1<<t) != 0) == (m.Flags&AddrtypeInvertDest != 0) {
			return false
		}
	}
	return true
}
