package iptables

import (
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/packet"
)

// The lean walk: Table.run for a packet that nothing traces and the flow
// cache does not record (Ctx.Memo nil), which is every new connection's
// first packet. It is the same traversal as run's, rule for rule (the
// same rules evaluated in the same order, the same counters, targets,
// verdicts and DropChain/DropRule), without the tracer's and the
// recording's bookkeeping, so the loop keeps its state in registers. Two
// things it does not repeat per rule: the fixed part of a rule without
// interfaces or -f is its address and protocol tests, inline; and
// comment matches, which match every packet, are not called (Rule.evals);
// and a rule whose other matches are all of the kinds kube-proxy-shaped
// rule sets are made of (tcp/udp ports and flags, mark, conntrack state)
// has them as typed tests (Rule.lean) run without an interface call.
// TestLeanMatchesTraced runs random rule sets both ways; TestLeanTests
// compares the typed tests with the matches' Eval.

// prepareLean sets the rule's lean view (Ruleset.Compile).
func (r *Rule) prepareLean() {
	r.plainIP = r.IP.In.Name == "" && r.IP.Out.Name == "" && !r.IP.Frag
	ip := &r.IP
	r.anyIP = r.plainIP && ip.Src == 0 && ip.SrcMask == 0 && ip.Dst == 0 && ip.DstMask == 0 && ip.Proto == 0 &&
		ip.Inv&(InvSrc|InvDst|InvProto) == 0
	r.evals = nil
	for _, m := range r.Matches {
		if _, ok := m.(*CommentMatch); ok {
			continue
		}
		r.evals = append(r.evals, m)
	}
	r.lean, r.leanAll = nil, r.plainIP
	for _, m := range r.evals {
		t, ok := leanTestOf(m)
		if !ok {
			r.lean, r.leanAll = nil, false
			break
		}
		r.lean = append(r.lean, t)
	}
	r.prepared = true
}

// leanKind is the kind of a typed test of the lean walk.
type leanKind uint8

const (
	// leanPorts: a tcp or udp match in the form iptables-nft makes
	// of it (nftables payload expressions; TCPMatch.Eval)
	leanPorts leanKind = iota + 1
	// leanXT: a tcp (without --tcp-option) or udp match iptables-nft
	// keeps as an xt match; a fragment or a header shorter than minLen
	// (where tcp_mt and udp_mt drop or fail) is left to Eval
	leanXT
	leanMark  // -m mark
	leanState // -m conntrack --ctstate or -m state, with nothing else
)

// leanTest is one match of a rule as a typed test (prepareLean).
type leanTest struct {
	kind leanKind
	// inv is the inversion of the ports' source range, of the mark
	// and of the state; hasSrc and hasDst say that a port range is
	// not every port (the native form tests only those)
	inv, invDst, invFlags bool
	hasSrc, hasDst        bool
	flagMask, flagCmp     uint8
	minLen                uint8
	src, dst              PortRange
	// mark: mask and value; state: the kernel state bits
	mask, val uint32
}

// leanTestOf is the typed test of a match, if it has one.
func leanTestOf(m Match) (leanTest, bool) {
	switch m := m.(type) {
	case *TCPMatch:
		if m.InvOpt || m.Option != 0 || nftCombinedInv(m.Src, m.Dst, m.InvSrc, m.InvDst) {
			return leanTest{}, false
		}
		t := leanTest{kind: leanPorts, src: m.Src, dst: m.Dst, inv: m.InvSrc, invDst: m.InvDst,
			hasSrc: !m.Src.Any(), hasDst: !m.Dst.Any(), flagMask: m.FlagMask, flagCmp: m.FlagCmp, invFlags: m.InvFlags}
		if !m.nftNative() {
			t.kind, t.minLen = leanXT, 20
		}
		return t, true
	case *UDPMatch:
		if nftCombinedInv(m.Src, m.Dst, m.InvSrc, m.InvDst) {
			return leanTest{}, false
		}
		t := leanTest{kind: leanPorts, src: m.Src, dst: m.Dst, inv: m.InvSrc, invDst: m.InvDst,
			hasSrc: !m.Src.Any(), hasDst: !m.Dst.Any()}
		if !m.nftNative() {
			t.kind, t.minLen = leanXT, 8
		}
		return t, true
	case *MarkMatch:
		return leanTest{kind: leanMark, mask: m.Mask, val: m.Mark, inv: m.Invert}, true
	case *ConntrackMatch:
		if m.MatchFlags != ctFlagState {
			return leanTest{}, false
		}
		return leanTest{kind: leanState, mask: uint32(kernelStateMask(m.StateMask)), inv: m.InvFlags&ctFlagState != 0}, true
	}
	return leanTest{}, false
}

// leanMatch runs the rule's typed tests: 1 when they all pass, 0 when
// one fails, -1 when one cannot tell without its match's Eval (an xt
// tcp or udp match on a fragment or a short header, which may hot-drop:
// the caller runs matchLean, whose matches have no side effect before
// that one, as these tests have none).
func (r *Rule) leanMatch(c *Ctx) int {
	p := c.Pkt
	lean := r.lean
	for i := range lean {
		t := &lean[i]
		th := p.L4
		switch t.kind {
		case leanPorts:
			if !p.HasL4 && !p.L4Truncated {
				return 0
			}
			if t.hasSrc && (len(th) < 2 || t.src.Contains(be16(th, 0)) == t.inv) {
				return 0
			}
			if t.hasDst && (len(th) < 4 || t.dst.Contains(be16(th, 2)) == t.invDst) {
				return 0
			}
			if t.flagMask != 0 && (len(th) < 14 || (th[13]&t.flagMask == t.flagCmp) == t.invFlags) {
				return 0
			}
		case leanXT:
			if p.IP.FragOffset() != 0 || len(th) < int(t.minLen) {
				return -1
			}
			if t.src.Contains(be16(th, 0)) == t.inv || t.dst.Contains(be16(th, 2)) == t.invDst {
				return 0
			}
			// tcp_mt's flags test; a udp test has no flags (and an
			// xt tcp match none either: it would be native)
			if t.flagMask|t.flagCmp != 0 || t.invFlags {
				if (th[13]&t.flagMask == t.flagCmp) == t.invFlags {
					return 0
				}
			}
		case leanMark:
			if (p.Mark&t.mask == t.val) == t.inv {
				return 0
			}
		case leanState:
			if (c.CT.State()&conntrack.StateBits(t.mask) != 0) == t.inv {
				return 0
			}
		}
	}
	return 1
}

// runLean is run with no tracer and no Memo. Its loop carries as little
// as it can in registers (a Go call keeps no register, so each match
// and target makes the loop reload what it carries): the chain, the
// rule index and the stack depth; the current visit's classifier state
// (linear or not, its candidates cbuf[cpos:top], where they start) is
// in s.vis, read where the loop needs it (its frames keep cpos
// absolute, unlike run's).
func (t *Table) runLean(base *Chain, c *Ctx, s *Scratch) TVerdict {
	c.Table = t.ID
	chain := base
	i, sp := 0, 0
	v := &s.vis
	cand := visit(base, c, s.cbuf[:], &s.cls)
	*v = cframe{mode: visitMode(base, cand), top: int32(len(cand))}
	for {
		if m := v.mode; m == visitIndexed {
			// skip to the next rule that can match
			cpos, top := int(v.cpos), int(v.top)
			for cpos < top && int(s.cbuf[cpos]) < i {
				cpos++
			}
			v.cpos = int32(cpos)
			if cpos < top {
				i = int(s.cbuf[cpos])
			} else {
				i = len(chain.Rules)
			}
		} else if m == visitLong && len(chain.Rules)-i >= minIndexed {
			// a long linear visit: the rules that fail on their fixed
			// part in a tight loop
			i = skipPlain(chain.Rules, i, c.Pkt)
		}
		if i >= len(chain.Rules) {
			// the end of the base chain, or of a user chain entered by
			// goto with nothing pushed: the policy
			if chain == base || sp == 0 {
				return base.policy(c)
			}
			// the end of a user chain: back to the rule after the jump
			sp--
			chain, i = s.stack[sp].chain, s.stack[sp].next
			*v = s.cstack[sp]
			continue
		}
		r := chain.Rules[i]
		i++
		// a rule's fixed part without interfaces or -f is tested here,
		// without a call (a linear walk fails most rules on it)
		if r.plainIP && !r.anyIP {
			p, ip := c.Pkt, &r.IP
			if (p.Src&ip.SrcMask != ip.Src) != (ip.Inv&InvSrc != 0) ||
				(p.Dst&ip.DstMask != ip.Dst) != (ip.Inv&InvDst != 0) ||
				ip.Proto != 0 && (p.Proto != ip.Proto) != (ip.Inv&InvProto != 0) {
				continue
			}
		}
		if r.leanAll {
			// the fixed part passed above; the typed tests without a
			// call when there are none
			if len(r.lean) != 0 {
				if m := r.leanMatch(c); m == 0 || m < 0 && !r.matchLean(c) {
					if c.HotDrop {
						return TDrop
					}
					continue
				}
			}
		} else if !r.matchLean(c) {
			if c.HotDrop {
				return TDrop
			}
			continue
		}
		if r.hits != nil {
			if n := len(c.Pkt.IP); n <= 0xffff {
				r.hits.AddShort(uint16(n))
			} else {
				r.hits.Add(n)
			}
		}
		if r.Target != nil {
			tv := r.Target.Exec(c)
			if tv == TDrop {
				c.DropChain, c.DropRule = chain, int32(i)
			}
			if tv != TContinue {
				return tv
			}
			continue
		}
		switch r.Verdict {
		case VerdictNone:
		case VerdictJump, VerdictGoto:
			if r.Verdict == VerdictJump {
				if sp == maxJumpDepth {
					return TDrop
				}
				s.stack[sp] = frame{chain, i}
				s.cstack[sp] = *v
				sp++
				v.vbase = v.top
			}
			// a goto ends the current visit: its candidates' space is
			// reused
			chain, i = r.Jump, 0
			vb := int(v.vbase)
			cand := visit(chain, c, s.cbuf[vb:], &s.cls)
			v.mode, v.cpos, v.top = visitMode(chain, cand), int32(vb), int32(vb+len(cand))
		case VerdictReturn:
			// as the chain's end: the loop's top pops the frame (or
			// takes the policy)
			i = len(chain.Rules)
		default:
			switch r.Verdict {
			case VerdictDrop:
				c.DropChain, c.DropRule = chain, int32(i)
				return TDrop
			case VerdictQueue:
				c.QueueNum, c.QueueBypass = 0, false
				return TQueue
			}
			return TAccept
		}
	}
}

// visitMode is the kind of the lean walk's visit of ch whose
// candidates visit returned.
func visitMode(ch *Chain, cand []int32) uint8 {
	if cand != nil {
		return visitIndexed
	}
	if len(ch.Rules) >= minIndexed {
		return visitLong
	}
	return visitShort
}

// skipPlain is the index of the first rule from i on that the packet p
// does not fail on its fixed part's address and protocol tests (a rule
// with interfaces or -f stops it): a linear walk's tight loop over the
// rules that cannot match.
func skipPlain(rules []*Rule, i int, p *packet.Packet) int {
	src, dst, proto := p.Src, p.Dst, p.Proto
	for ; i < len(rules); i++ {
		r := rules[i]
		if !r.plainIP {
			return i
		}
		ip := &r.IP
		if (src&ip.SrcMask != ip.Src) != (ip.Inv&InvSrc != 0) ||
			(dst&ip.DstMask != ip.Dst) != (ip.Inv&InvDst != 0) ||
			ip.Proto != 0 && (proto != ip.Proto) != (ip.Inv&InvProto != 0) {
			continue
		}
		return i
	}
	return i
}

// matchLean is whether the packet of c matches the rule: its fixed part
// (unless plainIP: runLean tested it) and its matches; false when a
// match set c.HotDrop.
func (r *Rule) matchLean(c *Ctx) bool {
	ms := r.Matches
	if r.plainIP {
		// the fixed part passed in runLean
		ms = r.evals
	} else {
		if !r.IP.matchIP(c) {
			return false
		}
		if r.prepared {
			ms = r.evals
		}
	}
	for _, m := range ms {
		if !m.Eval(c) {
			return false
		}
	}
	// a hot drop ends the walk whatever the match said (ipt_do_table's
	// loop condition); every match that sets it fails too, but say so
	return !c.HotDrop
}

// policy is a base chain's policy for a packet of c that reached it,
// counted.
func (base *Chain) policy(c *Ctx) TVerdict {
	if base.hits != nil {
		if n := len(c.Pkt.IP); n <= 0xffff {
			base.hits.AddShort(uint16(n))
		} else {
			base.hits.Add(n)
		}
	}
	if base.Policy == VerdictDrop {
		c.DropChain, c.DropRule = base, 0
		return TDrop
	}
	return TAccept
}
