package datapath

import (
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
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
