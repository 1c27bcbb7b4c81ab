package datapath

import (
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/trace"
)

// Fault stages. A fault placed at hook:ipv4:HOOK@PRIORITY (package
// fault) is one more stage in the hook's list, at its priority, after
// the engine's own stages of the same priority; a trace shows what it
// did as a line of its own, in the xtables-monitor shape with "fault"
// as the table:
//
//	TRACE: 2 3cb9dd69 fault:PREROUTING:rule:0x0:DROP  -4 -t fault -A PREROUTING lossy n=7 drop
//
// The engine knows faults only through FaultStage, so it imports
// nothing of package fault (which sits beside it, on the same layer).

// FaultStage is a fault on an IPv4 hook.
type FaultStage interface {
	// FaultHook is where the stage sits.
	FaultHook() (netfilter.Hook, netfilter.Priority)
	// FaultName names the fault (drop reasons, traces).
	FaultName() string
	// Act decides for the packet of c (Pkt, Hook, CT, Env and State
	// set; the engine reuses c) at time now and applies the decision
	// to the packet in place. matched: the fault saw the packet, and
	// text says what it did when traced is set; drop: the packet is
	// gone, answered when Act set c.Reject.
	Act(c *iptables.Ctx, now int64, traced bool) (matched, drop bool, text string)
}

// addFaultStages appends the stages of the configuration's faults on
// hook h to l.
func (c *compiled) addFaultStages(h netfilter.Hook, l []stage) []stage {
	for i, f := range c.Faults {
		if fh, prio := f.FaultHook(); fh == h {
			l = append(l, stage{prio: prio, op: opFault, fault: int32(i)})
		}
	}
	return l
}

// fault runs fault stage s.
func (k *pkt) fault(s *stage, st *hookState) bool {
	f := k.cfg.Faults[s.fault]
	k.p.InIf, k.p.OutIf = st.in, st.out
	// only what a match reads and Act sets: the rest of the reused
	// context is a table run's, which sets it all before it reads it
	k.cold = true
	c := &k.ctx
	c.Pkt, c.Hook, c.CT, c.Env, c.State = k.p, st.hook, k.ct, &k.env, k.e.State
	c.Reject, c.HotDrop = nil, false
	traced := k.tr != nil && (k.tr.All || k.p.Trace)
	matched, drop, text := f.Act(c, k.env.now, traced)
	if matched && traced {
		v := "ACCEPT"
		if drop {
			v = "DROP"
		}
		k.tr.Lines = append(k.tr.Lines, trace.RuleLine(k.trace, "fault", st.hook.String(), 0, v, " "+text))
	}
	if !drop {
		if matched && k.rec {
			// a fault's decision is per packet: the flow cache must
			// not replay this flow's traversal
			k.memo.Tainted = true
		}
		return true
	}
	k.drop(DropFault, 0, f.FaultName())
	k.fate.Kind = Dropped
	if c.Reject != nil {
		k.reject(c.Reject)
	}
	return false
}

// Bridge fault stages. A fault placed at hook:bridge:HOOK@PRIORITY is a
// stage of the bridge level's hook: before the hook's ebtables chain
// when its priority is below the chain's (nat PREROUTING -300, filter
// FORWARD and INPUT -200, nat POSTROUTING 300), after it otherwise;
// at PREROUTING those at NF_BR_PRI_BRNF (0) and above after
// br_netfilter's IPv4 PREROUTING (bridge.go: lateFaults), elsewhere
// before br_netfilter's IPv4 hooks; the BROUTING ones first on a frame. A trace shows each decision as a line of its own,
// with "fault" as the table and the bridge hook as the chain.

// BridgeFaultStage is a fault on a bridge hook.
type BridgeFaultStage interface {
	// BridgeHook is where the stage sits: the bridge hook (numbered
	// as package ebtables numbers them: BROUTING is 5) and priority.
	BridgeHook() (netfilter.Hook, netfilter.Priority)
	FaultName() string
	// ActFrame decides for the frame fr (p: its IPv4 packet, nil when
	// it has none) between ports in and out ("" for none) of bridge br
	// at now and applies the decision in place: matched, drop, and
	// what it did when traced.
	ActFrame(fr *packet.Frame, p *packet.Packet, in, out, br string, now int64, traced bool) (matched, drop bool, text string)
}

// brFaultNames are the bridge hooks as a trace names them.
var brFaultNames = [...]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "BROUTING"}

// bridgeFaults runs the bridge fault stages of hook h with priority in
// [lo, hi] on the frame (p its IPv4 packet or nil); false: one dropped
// it (ff.Drop says which).
func (e *Engine) bridgeFaults(c *compiled, h netfilter.Hook, lo, hi netfilter.Priority, fr *packet.Frame, p *packet.Packet,
	in, out, br string, now int64, tr *Tracer, tid uint32, ff *FrameFate) bool {
	for _, f := range c.BridgeFaults {
		fh, prio := f.BridgeHook()
		if fh != h || prio < lo || prio > hi {
			continue
		}
		traced := tr != nil && (tr.All || tid != 0)
		matched, drop, text := f.ActFrame(fr, p, in, out, br, now, traced)
		if matched && traced {
			v := "ACCEPT"
			if drop {
				v = "DROP"
			}
			tr.Lines = append(tr.Lines, trace.RuleLine(tid, "fault", brFaultNames[h], 0, v, " "+text))
		}
		if drop {
			ff.Drop = "fault: " + f.FaultName() + " (bridge " + brFaultNames[h] + ")"
			return false
		}
	}
	return true
}

// brFaultPkt is the frame's IPv4 packet for bridge faults' iptables
// matches, decoded into pf (nil: the frame is not IPv4, or the packet
// does not decode). Its bytes are the frame's: a corruption lands in
// the frame.
func brFaultPkt(pf *packet.Packet, fr *packet.Frame) *packet.Packet {
	if fr.InnerProto != packet.EtherTypeIPv4 || fr.VLAN {
		return nil
	}
	*pf = packet.Packet{Data: fr.Payload, L2: fr.Data[:fr.HeaderLen()]}
	if pf.Decode() != nil {
		return nil
	}
	return pf
}

// brFaultsAround runs the bridge faults of hook h below prio (before
// the hook's ebtables chain) when before, else those at prio and above.
func (e *Engine) brFaultsAround(c *compiled, h netfilter.Hook, prio netfilter.Priority, before bool, fr *packet.Frame, p *packet.Packet,
	in, out, br string, now int64, tr *Tracer, tid uint32, ff *FrameFate) bool {
	if len(c.BridgeFaults) == 0 {
		return true
	}
	if before {
		return e.bridgeFaults(c, h, netfilter.PriFirst, prio-1, fr, p, in, out, br, now, tr, tid, ff)
	}
	return e.bridgeFaults(c, h, prio, netfilter.PriLast, fr, p, in, out, br, now, tr, tid, ff)
}
