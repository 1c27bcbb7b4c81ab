package fault

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// Faults at bridge placements (hook:bridge:HOOK[@PRIORITY]): stages of
// the engine's bridge level (datapath.BridgeFaultStage), at the bridge
// hook's priority: before the ebtables chain of the hook when below its
// priority (nat PREROUTING -300, filter FORWARD and INPUT -200, nat
// POSTROUTING 300), after it otherwise, and before br_netfilter's IPv4
// hooks. BROUTING faults run first on a frame, before PREROUTING.
//
// Targeting: `match` (the iptables language) applies to IPv4 frames,
// with -i/-o the bridge and --physdev-in/--physdev-out the ports, as
// br_netfilter shows them; a frame that is not IPv4 does not match it.
// `ebt_match` (the ebtables language: -p ARP, -s MAC, --arp-ip-dst,
// --ip-proto, --vlan-id...) applies to every frame, with -i/-o the
// ports. Given both, a frame matches both. A frame's flow is its IPv4
// flow, or for another frame its MACs and EtherType. Frames are dropped,
// corrupted (IPv4 only) or marked in place; delays need a wire
// placement.

// ebtMatcher is an ebt_match parsed as an ebtables rule's matches.
type ebtMatcher = *ebtables.Rule

// compileEbtMatch parses the spec's ebt_match for the fault's bridge hook.
func (f *Fault) compileEbtMatch(s *Spec, _ iptables.SetLookup) error {
	if f.At.Kind == HookBridge && f.At.Hook == netfilter.LocalOut {
		return errors.New("hook:bridge:OUTPUT: bridge faults run at BROUTING, PREROUTING, INPUT, FORWARD and POSTROUTING (not OUTPUT yet)")
	}
	if s.EbtMatch == "" {
		return nil
	}
	f.EbtMatch = strings.TrimSpace(s.EbtMatch)
	if f.At.Kind != HookBridge {
		return nil // check refuses it
	}
	table, chain := ebtables.Filter, bridgeHookNames[f.At.Hook]
	switch f.At.Hook {
	case netfilter.PreRouting, netfilter.PostRouting:
		table = ebtables.NAT
	case BridgeBRouting:
		table = ebtables.BRoute
	}
	w, err := splitWords(f.EbtMatch)
	if err != nil {
		return fmt.Errorf("ebt_match %q: %v", f.EbtMatch, err)
	}
	for _, x := range w {
		if x == "-j" || x == "--jump" {
			return fmt.Errorf("ebt_match %q: a match only (the fault's action is its target)", f.EbtMatch)
		}
	}
	r, rerr := ebtables.ParseRule(table, chain, w)
	if rerr != nil {
		return fmt.Errorf("ebt_match %q: %s", f.EbtMatch, strings.TrimSpace(rerr.Stderr))
	}
	f.ebtMatch = r
	return nil
}

// frameCtx is a bridge fault's scratch for one frame, pooled (the
// engine calls ActFrame through an interface, so a context on the stack
// would move to the heap).
type frameCtx struct {
	ipt  iptables.Ctx
	ebt  ebtables.Ctx
	none packet.Packet
}

var frameCtxs = sync.Pool{New: func() any { return new(frameCtx) }}

// BridgeHook is the fault's bridge hook and priority (a bridge
// placement's).
func (f *Fault) BridgeHook() (netfilter.Hook, netfilter.Priority) { return f.At.Hook, f.At.Prio }

// ActFrame is the fault as a bridge stage (datapath.BridgeFaultStage):
// it decides for the frame fr (p: its IPv4 packet, nil when it has
// none) between ports in and out ("" for none) of bridge br at now and
// applies the decision in place; as Act: matched, drop and (traced)
// what it did.
func (f *Fault) ActFrame(fr *packet.Frame, p *packet.Packet, in, out, br string, now int64, traced bool) (matched, drop bool, text string) {
	if !f.active(now) && f.sched.trig == trigNone {
		return false, false, ""
	}
	x := frameCtxs.Get().(*frameCtx)
	defer frameCtxs.Put(x)
	if f.ebtMatch != nil {
		e := &x.ebt
		*e = ebtables.Ctx{Frame: fr, In: in, Out: out, Now: now}
		if in != "" {
			e.LogicalIn = br
		}
		if out != "" {
			e.LogicalOut = br
		}
		if !f.ebtMatch.Match(e) {
			return false, false, ""
		}
	}
	c := &x.ipt
	if p == nil {
		if f.match != nil || f.Kind == KindPartition || f.Kind == KindMangle {
			return false, false, "" // the iptables language sees IPv4 only
		}
		x.none = packet.Packet{}
		*c = iptables.Ctx{Pkt: &x.none}
	} else {
		i0, o0, pi0, po0 := p.InIf, p.OutIf, p.PhysIn, p.PhysOut
		defer func() { p.InIf, p.OutIf, p.PhysIn, p.PhysOut = i0, o0, pi0, po0 }()
		p.InIf, p.OutIf = "", ""
		if in != "" {
			p.InIf, p.PhysIn = br, in
		}
		if out != "" {
			p.OutIf, p.PhysOut = br, out
		}
		*c = iptables.Ctx{Pkt: p, Hook: f.At.matchHook()}
	}
	if !f.Sees(c, now) {
		return false, false, ""
	}
	var d Decision
	if p == nil {
		f.decideFlow(c, frameFlow(fr), now, &d)
	} else {
		f.decide(c, now, &d)
	}
	if traced {
		text = d.Text()
	}
	if !d.Acted {
		return true, false, text
	}
	if d.Orig.Drop {
		return true, true, text
	}
	if p != nil {
		f.Apply(&d, &d.Orig, p.IP, p)
		if d.Orig.Corrupt && p.Decode() != nil {
			return true, true, text
		}
	}
	return true, false, text
}

// frameFlow is a frame's flow when it is not IPv4: its MACs and
// EtherType.
func frameFlow(fr *packet.Frame) Flow {
	m := func(a packet.MAC) uint32 {
		return uint32(mix(uint64(a[0])<<40|uint64(a[1])<<32|uint64(a[2])<<24|uint64(a[3])<<16|uint64(a[4])<<8|uint64(a[5])) >> 32)
	}
	return Flow{Src: m(fr.Src), Dst: m(fr.Dst), DPort: fr.InnerProto, Proto: 0xff}
}
