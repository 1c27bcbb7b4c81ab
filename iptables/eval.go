package iptables

import (
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// Evaluation of the compiled rules: the traversal of one table's chains
// for one packet at one hook, as ipt_do_table (net/ipv4/netfilter/
// ip_tables.c) and nft_do_chain (net/netfilter/nf_tables_core.c, which
// iptables-nft rules run in) do it, with the trace events nft emits.
//
//	base chain ──rule──rule──rule── policy
//	                  │ -j X (push)      ▲
//	                  ▼                  │ pop (RETURN / end of X)
//	             chain X ──rule── end ───┘
//	                  │ -g Y (no push): Y's end returns to the last push,
//	                  ▼                 or to the base chain's policy
//
// Per-packet code reads the immutable IR and the Ctx only; it builds no
// strings and allocates nothing.

// TVerdict is what a target returns (the xt target's return value). It
// is not a netfilter.Verdict: it adds XT_CONTINUE and XT_RETURN, which
// never leave the table (ipt_do_table turns them into the next rule or
// the caller's), and its numbering is its own.
type TVerdict uint8

const (
	TContinue TVerdict = iota // XT_CONTINUE: go on with the next rule
	TAccept                   // NF_ACCEPT
	TDrop                     // NF_DROP
	TQueue                    // NF_QUEUE: Ctx.QueueNum, Ctx.QueueBypass
	TStolen                   // NF_STOLEN: the target took the packet
	TReturn                   // XT_RETURN (standard RETURN)
)

var tverdictNames = [...]string{"CONTINUE", "ACCEPT", "DROP", "QUEUE", "STOLEN", "RETURN"}

func (v TVerdict) String() string { return tverdictNames[v] }

// Env is what the host answers for matches that ask about it.
type Env interface {
	// AddrType is the route type (RTN_*) of addr, optionally only counted
	// when the route's device is dev (xt_addrtype --limit-iface-*).
	AddrType(addr uint32, dev string) uint8
	// Now is the packet's time, in nanoseconds on a monotonic clock.
	Now() int64
	// Rand32 is a pseudo-random number (statistic, NFQUEUE balance);
	// seeded so runs repeat.
	Rand32() uint32
	// ReversePath answers -m rpfilter: would a route lookup of the
	// packet's source (as destination, from its destination, with the
	// packet's mark and TOS; oif = the input interface when strict) leave
	// through the input interface? (net/ipv4/netfilter/ipt_rpfilter.c)
	ReversePath(src, dst uint32, inIf string, mark uint32, tos uint8, loose, validMark, acceptLocal bool) bool
}

// Ctx is the state one packet is evaluated with (the kernel's
// xt_action_param plus the sk_buff fields rules read and write).
type Ctx struct {
	Pkt   *packet.Packet
	Hook  netfilter.Hook
	Table TableID
	// CT is the packet's connection (skb->_nfct); CT.Conn is nil for
	// invalid and untracked packets.
	CT  conntrack.Ref
	Env Env

	// Linear walks every chain rule by rule, without the compiled
	// classifier (the reference the classifier is tested against).
	Linear bool
	// Memo, when set, records the traversal for the flow cache (memo.go).
	Memo *Memo
	// Probe: a what-if walk (the datapath's probes of an offloaded
	// flow's later packets) that counts no hits; it takes the traced
	// walk's way, not the lean one.
	Probe bool

	// HotDrop is set by a match that wants the packet dropped at once
	// (xt's par->hotdrop, e.g. a truncated TCP header).
	HotDrop bool
	// DropChain and DropRule are where a run that ended in TDrop was
	// dropped: the chain and the rule's number in it (0: the base
	// chain's policy), as a tracer's Rule and Policy events report them;
	// nil for a hot drop or the jump depth limit. Set only on a drop.
	DropChain *Chain
	DropRule  int32
	// Set by targets for the engine to act on:
	NAT         *NATRequest // DNAT/SNAT/MASQUERADE/REDIRECT/NETMAP binding to make
	Reject      *RejectRequest
	QueueNum    uint16
	QueueBypass bool
	// Notrack asks the engine to untrack the packet (NOTRACK, CT --notrack);
	// CTZone/CTTemplate carry CT --zone etc.
	Notrack bool
	CTZone  uint16
	HasZone bool
	// CTTemplate is the -j CT rule whose template the packet carries
	// (skb->_nfct = the template, IP_CT_NEW): its helper, timeout policy,
	// event masks and zone direction/mark flags, for the engine's
	// conntrack lookup. nil = none.
	CTTemplate *CTTarget
	// State is the match state that outlives rule-set swaps (recent
	// lists, hashlimit buckets), shared by every packet. The engine always
	// passes its State (one per network namespace); nil falls back to one
	// package-wide State, for tools and tests that run rules without an
	// engine, never to fresh state per packet.
	State *State
	// Logger receives the packets LOG and NFLOG rules hand to the
	// kernel's loggers (nf_log_packet); nil: they are only counted.
	Logger Logger
	// Scratch is the traversal stack Run uses; nil: one on Run's own
	// stack, cleared by every call (~6 KiB). An engine hands each packet
	// one it reuses, so its table runs clear nothing. Run writes before
	// it reads every part of it; one Scratch serves one Run at a time.
	Scratch *Scratch
}

// Scratch is the state of one traversal: the jump stack (the kernel's
// per-cpu jumpstack of ipt_do_table) and the classifier's candidate lists
// of the visits on it. It holds no pointer into itself, so a Scratch
// declared by a caller stays on that caller's stack.
type Scratch struct {
	stack [maxJumpDepth]frame
	// the classifier state of the stacked visits, kept apart from the
	// chain pointers: whether the visit walks linearly, how far its
	// candidates were used, where they start (vbase) and the first
	// free entry above them (top); a non-linear visit's candidates are
	// cbuf[vbase:top]
	cstack [maxJumpDepth]cframe
	// vis is the lean walk's current visit (runLean)
	vis cframe
	// candidate lists of the chain visits on the stack, bump-allocated
	cbuf [maxCand]int32
	// cls is the classifier's scratch space for one visit's lookups
	cls [2]candLists
}

type frame struct {
	chain *Chain
	next  int
}

type cframe struct {
	linear bool
	// mode is the lean walk's form of linear (runLean): visitShort,
	// visitLong or visitIndexed
	mode             uint8
	cpos, vbase, top int32
}

// The lean walk's kinds of visit: a linear one of a chain shorter than
// minIndexed, a linear one of a longer chain (which skips the rules
// failing on their fixed part in skipPlain's loop), one of the
// classifier's candidates.
const (
	visitShort uint8 = iota
	visitLong
	visitIndexed
)

// NATRequest is the binding a NAT target asks the NAT core to make: the
// manip type and the range (struct nf_nat_range2).
type NATRequest struct {
	Manip NATManip
	Range NATRange
	// Masquerade asks for the source address of the output interface;
	// Redirect for the incoming interface's (or 127.0.0.1 in OUTPUT);
	// Netmap maps the prefix keeping the host part (NetmapMask).
	Masquerade, Redirect, Netmap bool
	NetmapMask                   uint32
}

// NATManip is the manip type (HOOK2MANIP).
type NATManip uint8

const (
	ManipSrc NATManip = iota
	ManipDst
)

// RejectRequest is what -j REJECT sends back.
type RejectRequest struct {
	// TCPReset sends a RST; otherwise an ICMP error of Type/Code.
	TCPReset   bool
	Type, Code uint8
}

// Evaluator is implemented by matches: does the packet match?
type Evaluator interface {
	Eval(c *Ctx) bool
}

// Logger is what LOG and NFLOG rules log through: nf_log's syslog
// logger (nf_log_syslog.c) and nfnetlink_log. Each is called as the
// target runs, with the packet as the target sees it (Ctx.Pkt, its
// InIf and OutIf the hook's devices).
type Logger interface {
	Log(c *Ctx, t *LogTarget)
	NFLog(c *Ctx, t *NFLogTarget)
}

// Executor is implemented by targets: act on the packet, return a verdict.
type Executor interface {
	Exec(c *Ctx) TVerdict
}

// Tracer receives the trace events of a traversal (nft_trace_packet).
// handle identifies the rule (its nft handle).
type Tracer interface {
	// Rule: a rule matched; verdict is CONTINUE/ACCEPT/DROP/QUEUE/STOLEN,
	// or jump/goto to target.
	Rule(t *Table, c *Chain, r *Rule, v TVerdict, jump *Chain, gotoFlag bool)
	// Return: leaving a user chain (explicit RETURN or its end).
	Return(t *Table, c *Chain, r *Rule)
	// Policy: a base chain's policy applies.
	Policy(t *Table, c *Chain, v TVerdict)
}

// TargetTracer is a Tracer that also sees a matched rule with an
// extension target before the target runs, with the packet as the target
// finds it: iptables-legacy logs a traced packet there (ip_tables.c
// ipt_do_table calls trace_packet before the target), where the nft
// trace reports the rule with its verdict, after it.
type TargetTracer interface {
	Tracer
	Target(t *Table, c *Chain, r *Rule)
}

// matchIP is the rule's fixed part (ip_packet_match in ip_tables.c).
func (ip *IPHeader) matchIP(c *Ctx) bool {
	p := c.Pkt
	if (p.Src&ip.SrcMask != ip.Src) != (ip.Inv&InvSrc != 0) {
		return false
	}
	if (p.Dst&ip.DstMask != ip.Dst) != (ip.Inv&InvDst != 0) {
		return false
	}
	if ip.In.Name != "" && !ip.In.Match(p.InIf) != (ip.Inv&InvIn != 0) {
		return false
	}
	if ip.Out.Name != "" && !ip.Out.Match(p.OutIf) != (ip.Inv&InvOut != 0) {
		return false
	}
	if ip.Proto != 0 && (p.Proto != ip.Proto) != (ip.Inv&InvProto != 0) {
		return false
	}
	if ip.Frag {
		// -f matches non-first fragments (IPT_F_FRAG && !fragoff: no match)
		if (p.IP.FragOffset() == 0) != (ip.Inv&InvFrag != 0) {
			return false
		}
	}
	return true
}

// visit sets up the classifier for a visit of ch from its first rule:
// the candidate rules, in buf, or nil to walk it linearly.
func visit(ch *Chain, c *Ctx, buf []int32, cls *[2]candLists) []int32 {
	if ch.index == nil || c.Linear {
		return nil
	}
	got, _ := ch.index.candidates(c, buf, cls)
	return got
}

// maxJumpDepth bounds the jump stack like the kernel's per-table stack.
const maxJumpDepth = 64

// Run evaluates the table's chain for hook h and returns the verdict
// (TAccept, TDrop, TQueue or TStolen). A table without that builtin
// chain accepts. tr may be nil.
func (t *Table) Run(c *Ctx, tr Tracer) TVerdict {
	return t.RunBase(t.Builtin(c.Hook), c, tr)
}

// RunBase is Run from base, which must be t.Builtin(c.Hook) (nil: accept);
// an engine that resolved the builtin chains of a rule set once passes
// them here and saves the lookup by name.
func (t *Table) RunBase(base *Chain, c *Ctx, tr Tracer) TVerdict {
	if base == nil {
		return TAccept
	}
	if c.Scratch != nil {
		return t.run(base, c, tr, c.Scratch)
	}
	var s Scratch
	return t.run(base, c, tr, &s)
}

func (t *Table) run(base *Chain, c *Ctx, tr Tracer, s *Scratch) TVerdict {
	if tr == nil && c.Memo == nil && !c.Probe {
		return t.runLean(base, c, s)
	}
	c.Table = t.ID
	pre, _ := tr.(TargetTracer) // nil without a tracer
	stack, cstack, cbuf := &s.stack, &s.cstack, s.cbuf[:]
	// top is the first free entry of cbuf; vbase is where the current
	// visit's candidates start
	top, vbase := 0, 0
	sp := 0
	chain, i := base, 0
	var cand []int32
	cpos := 0
	cand = visit(base, c, cbuf, &s.cls)
	top = len(cand)
	// pop returns to the visit on top of the stack
	pop := func() {
		sp--
		chain, i = stack[sp].chain, stack[sp].next
		cf := cstack[sp]
		cpos, vbase, top = int(cf.cpos), int(cf.vbase), int(cf.top)
		cand = nil
		if !cf.linear {
			cand = cbuf[vbase:top:top]
		}
	}
	for {
		if cand != nil {
			// skip to the next rule that can match
			for cpos < len(cand) && int(cand[cpos]) < i {
				cpos++
			}
			if cpos < len(cand) {
				i = int(cand[cpos])
			} else {
				i = len(chain.Rules)
			}
		}
		if i >= len(chain.Rules) {
			if chain == base {
				v := TAccept
				if chain.Policy == VerdictDrop {
					v = TDrop
				}
				if chain.hits != nil && !c.Probe {
					chain.hits.Add(len(c.Pkt.IP))
				}
				if c.Memo != nil {
					c.Memo.hit(chain.hitID)
				}
				if v == TDrop {
					c.DropChain, c.DropRule = chain, 0
				}
				if tr != nil {
					tr.Policy(t, chain, v)
				}
				return v
			}
			// falling off a user chain: implicit RETURN; with nothing
			// pushed (entered by goto) the base chain's policy applies.
			// nft reports no return event then (nft_do_chain), legacy
			// ip_tables traces the chain's tail entry before the
			// underflow: the Return event, which each tracer prints or
			// not
			if sp == 0 {
				if tr != nil {
					tr.Return(t, chain, nil)
				}
				chain, i = base, len(base.Rules)
				cand = nil
				continue
			}
			if tr != nil {
				tr.Return(t, chain, nil)
			}
			pop()
			continue
		}
		r := chain.Rules[i]
		i++
		if !r.IP.matchIP(c) {
			if c.Memo != nil {
				c.Memo.eval(r, -1)
			}
			continue
		}
		matched, last := true, len(r.Matches)-1
		for j, m := range r.Matches {
			if !m.Eval(c) {
				matched, last = false, j
				break
			}
		}
		if c.Memo != nil {
			c.Memo.eval(r, last)
		}
		if c.HotDrop {
			return TDrop
		}
		if !matched {
			continue
		}
		// the rule's counter, before its target (ipt_do_table's
		// ADD_COUNTER; iptables-nft's counter expression before the
		// verdict)
		if r.hits != nil && !c.Probe {
			r.hits.Add(len(c.Pkt.IP))
		}
		if c.Memo != nil {
			c.Memo.hit(r.hitID)
			if r.Target != nil || r.Verdict == VerdictQueue {
				c.Memo.Tainted = true
			}
		}
		switch {
		case r.Target != nil:
			if pre != nil {
				pre.Target(t, chain, r)
			}
			v := r.Target.Exec(c)
			if v == TDrop {
				c.DropChain, c.DropRule = chain, int32(i)
			}
			if tr != nil {
				tr.Rule(t, chain, r, v, nil, false)
			}
			if v != TContinue {
				return v
			}
		case r.Verdict == VerdictJump || r.Verdict == VerdictGoto:
			if tr != nil {
				tr.Rule(t, chain, r, TContinue, r.Jump, r.Verdict == VerdictGoto)
			}
			if r.Verdict == VerdictJump {
				if sp == maxJumpDepth {
					return TDrop
				}
				stack[sp] = frame{chain, i}
				cstack[sp] = cframe{linear: cand == nil, cpos: int32(cpos), vbase: int32(vbase), top: int32(top)}
				sp++
				vbase = top
			}
			// a goto ends the current visit: its candidates' space is
			// reused
			chain, i = r.Jump, 0
			cand, cpos = visit(chain, c, cbuf[vbase:], &s.cls), 0
			top = vbase + len(cand)
		case r.Verdict == VerdictReturn:
			// a rule event with the RETURN verdict, then (when something
			// was pushed) the return event
			if tr != nil {
				tr.Rule(t, chain, r, TReturn, nil, false)
			}
			if chain == base || sp == 0 {
				chain, i = base, len(base.Rules)
				cand = nil
				continue
			}
			if tr != nil {
				tr.Return(t, chain, r)
			}
			pop()
		case r.Verdict == VerdictNone:
			if tr != nil {
				tr.Rule(t, chain, r, TContinue, nil, false)
			}
		default:
			v := TAccept
			switch r.Verdict {
			case VerdictDrop:
				v = TDrop
				c.DropChain, c.DropRule = chain, int32(i)
			case VerdictQueue:
				v = TQueue
				c.QueueNum, c.QueueBypass = 0, false
			}
			if tr != nil {
				tr.Rule(t, chain, r, v, nil, false)
			}
			return v
		}
	}
}

// RunEmpty is Run for a builtin chain without rules when nothing traces
// the packet: the policy applies (and is counted) without setting up a
// traversal. ok is false when the chain has rules (or does not exist).
func (t *Table) RunEmpty(h netfilter.Hook, bytes int) (v TVerdict, ok bool) {
	return t.Builtin(h).RunEmpty(bytes)
}

// RunEmpty is Table.RunEmpty for a builtin chain already looked up (nil:
// ok is false).
func (base *Chain) RunEmpty(bytes int) (v TVerdict, ok bool) {
	if base == nil || len(base.Rules) != 0 {
		return 0, false
	}
	if base.hits != nil {
		base.hits.Add(bytes)
	}
	if base.Policy == VerdictDrop {
		return TDrop, true
	}
	return TAccept, true
}
