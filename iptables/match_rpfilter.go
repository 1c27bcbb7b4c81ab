package iptables

import (
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// rpfilter match (extensions/libxt_rpfilter.c; kernel
// net/ipv4/netfilter/ipt_rpfilter.c: PREROUTING only, raw and mangle).

// rpfilter flags (linux/netfilter/xt_rpfilter.h).
const (
	RPFilterLoose       = 1 << 0
	RPFilterValidMark   = 1 << 1
	RPFilterAcceptLocal = 1 << 2
	RPFilterInvert      = 1 << 3
)

// RPFilterMatch is "-m rpfilter" (xt_rpfilter_info).
type RPFilterMatch struct{ Flags uint8 }

func (m *RPFilterMatch) Name() string { return "rpfilter" }

var rpfilterOpts = []struct {
	name string
	bit  uint8
}{
	{"loose", RPFilterLoose}, {"validmark", RPFilterValidMark},
	{"accept-local", RPFilterAcceptLocal}, {"invert", RPFilterInvert},
}

func (m *RPFilterMatch) Parse(o *OptArg) error {
	for _, x := range rpfilterOpts {
		if x.name == o.Name {
			m.Flags |= x.bit
		}
	}
	return nil
}

func (m *RPFilterMatch) Final(r *RuleContext) error { return nil }

// CheckHooks: the match is registered for NF_INET_PRE_ROUTING only and
// rpfilter_check accepts the raw and mangle tables.
func (m *RPFilterMatch) CheckHooks(t TableID, hooks netfilter.HookMask) error {
	if t != Raw && t != Mangle {
		return Errorf("rpfilter: only valid in 'raw' or 'mangle' table, not '%s'", t)
	}
	if hooks&^netfilter.Hooks(netfilter.PreRouting) != 0 {
		return Errorf("rpfilter: PREROUTING only")
	}
	return nil
}

func (m *RPFilterMatch) Save(w *SaveWriter) {
	for _, x := range rpfilterOpts {
		if m.Flags&x.bit != 0 {
			w.Opt(x.name, "")
		}
	}
}

func init() {
	var opts []Option
	for _, x := range rpfilterOpts {
		opts = append(opts, Option{Name: x.name})
	}
	RegisterMatch(&MatchSpec{Name: "rpfilter", Options: opts, New: func() Match { return &RPFilterMatch{} }})
}

// Eval is rpfilter_mt (net/ipv4/netfilter/ipt_rpfilter.c): looped-back
// packets pass; a 0/8 source to 255.255.255.255 or 224.0.0.0/24 (DHCP
// and friends) passes; otherwise Env.ReversePath answers the reverse
// route lookup (daddr = source, saddr = destination unless it is
// multicast or broadcast, mark only with --validmark, TOS & IPTOS_RT_MASK).
func (m *RPFilterMatch) Eval(c *Ctx) bool {
	p := c.Pkt
	inv := m.Flags&RPFilterInvert != 0
	if p.PktType == packet.PktLoopback || p.InIf == "lo" {
		return !inv
	}
	if p.Src>>24 == 0 && (p.Dst == 0xffffffff || p.Dst&0xffffff00 == 0xe0000000) {
		return !inv
	}
	saddr := p.Dst // rpfilter_get_saddr
	if p.Dst == 0xffffffff || p.Dst>>28 == 0xe {
		saddr = 0
	}
	var mark uint32
	if m.Flags&RPFilterValidMark != 0 {
		mark = p.Mark
	}
	ok := c.Env.ReversePath(p.Src, saddr, p.InIf, mark, p.IP.TOS()&0x1e,
		m.Flags&RPFilterLoose != 0, m.Flags&RPFilterValidMark != 0, m.Flags&RPFilterAcceptLocal != 0)
	return ok != inv
}
