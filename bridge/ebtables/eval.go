package ebtables

import (
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// Program is a loaded rule set compiled for evaluation: jumps resolved
// to chain indexes. It is immutable (only rule counters and --limit
// buckets move); the datapath publishes it through an atomic.Pointer
// and swaps it whole.
type Program struct {
	rs     *Ruleset
	tables [NumTables]*ctable
}

type ctable struct {
	id     TableID
	chains []cchain
	base   [NumHooks]int // chain index of each hook's builtin chain, -1 if none
}

// cchain is a chain with its jumps resolved. Rules are shared with the
// Ruleset (and, after a --noflush load, with the rule sets before it),
// so everything the compiled form adds lives here, not in Rule.
type cchain struct {
	name   string
	policy Verdict
	rules  []crule
	index  *chainIndex // the classifier's (classify.go); nil: walked linearly
}

type crule struct {
	*Rule
	jump int // VJump: the user chain's index
}

// maxDepth bounds nested jumps (loops are refused at load).
const maxDepth = 64

// Compile resolves a rule set for Run and builds the classifier's index
// of every chain of 16 rules or more (classify.go).
func Compile(rs *Ruleset) *Program {
	p := &Program{rs: rs}
	for i, t := range rs.Tables {
		if t == nil {
			continue
		}
		ct := &ctable{id: TableID(i)}
		for h := range ct.base {
			ct.base[h] = -1
		}
		index := map[string]int{}
		for ci, c := range t.Chains {
			index[c.Name] = ci
			if c.Builtin {
				ct.base[c.Hook] = ci
			}
		}
		for _, c := range t.Chains {
			cc := cchain{name: c.Name, policy: c.Policy, index: buildIndex(c)}
			for _, r := range c.Rules {
				j := -1
				if r.Verdict == VJump && r.Target == nil {
					if v, ok := index[r.Jump]; ok {
						j = v
					}
				}
				cc.rules = append(cc.rules, crule{r, j})
			}
			ct.chains = append(ct.chains, cc)
		}
		p.tables[i] = ct
	}
	return p
}

// Ruleset is the rule set the program was compiled from (for Save with
// counters).
func (p *Program) Ruleset() *Ruleset { return p.rs }

// Has says whether table t is loaded with a chain at hook h.
func (p *Program) Has(t TableID, h Hook) bool {
	ct := p.tables[t]
	return ct != nil && ct.base[h] >= 0
}

// devCheck is ebt_dev_check: does name fail the interface test? A
// missing device fails it.
func devCheck(m *IfMatch, name string) bool {
	if name == "" {
		return true
	}
	if m.Wild {
		return len(name) < len(m.Name) || name[:len(m.Name)] != m.Name
	}
	return name != m.Name
}

// basicMatch is ebt_basic_match (net/bridge/netfilter/ebtables.c): -p,
// -i, -o, --logical-in/out, -s, -d.
func basicMatch(r *Rule, c *Ctx) bool {
	f := c.Frame
	if r.ProtoSet {
		if r.Length {
			if (f.Proto < packet.EtherTypeMin) == r.ProtoInv {
				return false
			}
		} else if (f.Proto == r.Proto) == r.ProtoInv {
			return false
		}
	}
	if r.In.Set && devCheck(&r.In, c.In) != r.In.Inv {
		return false
	}
	if r.Out.Set && devCheck(&r.Out, c.Out) != r.Out.Inv {
		return false
	}
	if r.LogicalIn.Set && devCheck(&r.LogicalIn, c.LogicalIn) != r.LogicalIn.Inv {
		return false
	}
	if r.LogicalOut.Set && devCheck(&r.LogicalOut, c.LogicalOut) != r.LogicalOut.Inv {
		return false
	}
	if r.Src.Set && maskedEq(f.Src, r.Src.Addr, r.Src.Mask) == r.Src.Inv {
		return false
	}
	if r.Dst.Set && maskedEq(f.Dst, r.Dst.Addr, r.Dst.Mask) == r.Dst.Inv {
		return false
	}
	return true
}

type frameRet struct {
	chain, rule int32
}

// Run is ebt_do_table for one frame at table t's builtin chain h: rules
// in order; a rule whose basic part and matches hold is counted
// (1 packet, the frame's length after the MAC header and VLAN tag,
// skb->len at the bridge hooks), its watchers run, then its target:
// ACCEPT and DROP end the traversal, CONTINUE goes on, RETURN pops to
// the calling chain, a user chain is entered. A chain's end applies its policy (RETURN: back to the
// caller). RETURN on a base chain applies the chain's policy, as
// ebtables-nft's rules do. The result is the kernel's NF verdict.
//
// For the broute table (h = BRouting) a DROP means "route the frame":
// Run sets c.Route and returns Accept, and a frame to the bridge's MAC
// that is not the port's is made PACKET_OTHERHOST
// (ebtable_broute.c, ebt_broute). The caller runs broute only for ports
// in forwarding state.
//
// A table or hook not loaded accepts. Run allocates nothing.
func (p *Program) Run(t TableID, h Hook, c *Ctx) netfilter.Verdict {
	ct := p.tables[t]
	if ct == nil || ct.base[h] < 0 {
		return netfilter.Accept
	}
	c.hook = h
	v := p.walk(ct, ct.base[h], c)
	if h == BRouting && v == netfilter.Drop {
		c.Route = true
		if c.PktType == PacketHost && c.Env != nil {
			pm, ok1 := c.Env.PortMAC(c.In)
			bm, ok2 := c.Env.BridgeMAC(c.In)
			if ok1 && ok2 && c.Frame.Dst != pm && c.Frame.Dst == bm {
				c.PktType = PacketOtherHost
			}
		}
		return netfilter.Accept
	}
	return v
}

func (p *Program) walk(ct *ctable, start int, c *Ctx) netfilter.Verdict {
	// the jump stack lives in the caller's Ctx: written before read,
	// so a reused Ctx needs no clearing
	stack := &c.stack
	sp := 0
	ci, i := start, 0
	bytes := uint64(0)
	// skb->len at the bridge hooks: without the MAC header, and
	// without an 802.1Q tag, which the receive path has moved into
	// skb->vlan_tci (skb_vlan_untag)
	if n := len(c.Frame.Data) - c.Frame.HeaderLen(); n > 0 {
		bytes = uint64(n)
	}
	// the classifier's candidates of the current chain visit, worked
	// out again wherever the frame may have changed since
	var cur cursor
	cur.set(ct.chains[ci].index, c)
	for {
		chain := &ct.chains[ci]
		if cur.x != nil {
			i = cur.next(i, len(chain.rules))
		}
		if i >= len(chain.rules) {
			if c.Tracer != nil {
				if chain.policy == VAccept || chain.policy == VDrop {
					c.Tracer.Policy(ct.id, chain.name, chain.policy)
				} else {
					c.Tracer.Return(ct.id, chain.name)
				}
			}
			switch chain.policy {
			case VAccept:
				return netfilter.Accept
			case VDrop:
				return netfilter.Drop
			}
			// RETURN policy of a user chain
			if sp == 0 {
				return netfilter.Accept
			}
			sp--
			ci, i = int(stack[sp].chain), int(stack[sp].rule)+1
			cur.set(ct.chains[ci].index, c)
			continue
		}
		cr := &chain.rules[i]
		r := cr.Rule
		if !basicMatch(r, c) || !matchAll(r, c) {
			i++
			continue
		}
		r.Hits.Add(int(bytes))
		for _, w := range r.Watchers {
			w.watch(c, r)
		}
		v := r.Verdict
		if r.Target != nil {
			v = r.Target.target(c, c.hook)
			if v == VContinue {
				// mark, dnat, snat and redirect may have changed what
				// the index reads
				cur.set(chain.index, c)
			}
		}
		if c.Tracer != nil {
			jump := ""
			if v >= 0 && cr.jump >= 0 {
				jump = ct.chains[cr.jump].name
			}
			c.Tracer.Rule(ct.id, chain.name, i+1, v, jump)
		}
		switch v {
		case VAccept:
			return netfilter.Accept
		case VDrop:
			return netfilter.Drop
		case VContinue:
			i++
		case VReturn:
			if sp == 0 {
				// RETURN on a base chain: ebtables-nft makes it nft's
				// "return", which ends the base chain with its policy
				// (legacy ebt_do_table treated it as CONTINUE);
				// checked in TestEvalKernelNAT
				if chain.policy == VDrop {
					return netfilter.Drop
				}
				return netfilter.Accept
			}
			sp--
			ci, i = int(stack[sp].chain), int(stack[sp].rule)+1
			cur.set(ct.chains[ci].index, c)
		default:
			if cr.jump < 0 || sp >= maxDepth {
				return netfilter.Drop
			}
			stack[sp] = frameRet{int32(ci), int32(i)}
			sp++
			ci, i = cr.jump, 0
			cur.set(ct.chains[ci].index, c)
		}
	}
}

func matchAll(r *Rule, c *Ctx) bool {
	for _, m := range r.Matches {
		if !m.match(c) {
			return false
		}
	}
	return true
}

// Match reports whether the frame of c matches r's matches (its basic
// options and extensions; not its target): a fault's ebt_match at a
// bridge placement. c.Frame is set; In, Out and their bridges as the
// hook has them.
func (r *Rule) Match(c *Ctx) bool { return basicMatch(r, c) && matchAll(r, c) }
