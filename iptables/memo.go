package iptables

// The flow cache's side of a traversal. A traversal whose outcome
// depends only on what every packet of a flow (in one direction) has in
// common — addresses, protocol, ports, interfaces, the mark and TOS it
// enters with, its conntrack state and status — does the same for the
// flow's next packet as long as the rule set is the same. The engine
// records such traversals (Ctx.Memo) and replays them: the verdict it
// saw, and the counters the traversal added to, in order.
//
// Whether a traversal qualifies is decided while it runs, from what it
// evaluated, not from what the chains contain: a rule whose source
// address test fails never gets to its -m statistic, so it does not
// taint the traversal; a -m limit that is evaluated does. Targets other
// than the standard verdicts (ACCEPT, DROP, RETURN, jumps and gotos)
// taint a traversal when they fire: they change the packet or the state
// (MARK, LOG, NAT, REJECT...). QUEUE taints too.

// MaxMemoHits is the number of counters a recorded traversal may add to.
const MaxMemoHits = 9

// Memo is a recording of the traversals of one packet.
type Memo struct {
	// Tainted: something evaluated depends on more than the flow
	// (or a target with an effect fired); the recording is unusable.
	Tainted bool
	N       int
	// Hits are the counter ids (Ruleset.Replay) in the order they were
	// added to.
	Hits [MaxMemoHits]uint32
	// L2: the recording is a bridged frame's (br_netfilter), kept for
	// its input port, MAC addresses and pkt_type and replayed only
	// towards the same output port: -m physdev, -m mac and -m pkttype
	// give the same answer for all its packets too.
	L2 bool
}

// Reset empties the recording.
func (m *Memo) Reset() { m.Tainted, m.N, m.L2 = false, 0, false }

func (m *Memo) hit(id uint32) {
	if id == 0 || m.N == MaxMemoHits {
		m.Tainted = true
		return
	}
	m.Hits[m.N] = id
	m.N++
}

// Policy records that a base chain's policy applied without a
// traversal (Chain.RunEmpty).
func (m *Memo) Policy(c *Chain) { m.hit(c.hitID) }

// Replay adds a packet of bytes to the counter id (from a Memo made on
// this rule set).
func (rs *Ruleset) Replay(id uint32, bytes int) {
	if id > 0 && int(id) <= len(rs.counters) {
		rs.counters[id-1].Add(bytes)
	}
}

// ReplayN adds pkts packets of bytes bytes in all to the counter id (a
// worker's batch of replays, netfilter.HitCounter.AddN).
func (rs *Ruleset) ReplayN(id uint32, pkts, bytes uint64) {
	if id > 0 && int(id) <= len(rs.counters) {
		rs.counters[id-1].AddN(pkts, bytes)
	}
}

// Memoizable is whether the rule set was analysed for the flow cache
// (Loader does it; a Ruleset assembled by hand is not, and its
// traversals are never recorded).
func (rs *Ruleset) Memoizable() bool { return rs.memoReady }

// prepareMemo numbers the counters of every rule and builtin chain and
// finds, per rule, the first part whose result can differ between the
// packets of one flow.
func (rs *Ruleset) prepareMemo() {
	n := 0
	for _, t := range rs.Tables {
		if t != nil {
			for _, c := range t.Chains {
				n += 1 + len(c.Rules)
			}
		}
	}
	rs.counters = make([]*hitCounter, 0, n)
	number := func(h *hitCounter) uint32 {
		if h == nil {
			return 0
		}
		rs.counters = append(rs.counters, h)
		return uint32(len(rs.counters))
	}
	for _, t := range rs.Tables {
		if t == nil {
			continue
		}
		for _, c := range t.Chains {
			c.hitID = number(c.hits)
			for _, r := range c.Rules {
				r.hitID = number(r.hits)
				r.firstImpure = int16(len(r.Matches))
				r.firstImpureL2 = r.firstImpure
				if r.IP.Frag {
					r.firstImpure, r.firstImpureL2 = -1, -1
					continue
				}
				for i, m := range r.Matches {
					if !flowInvariant(m) {
						r.firstImpure = int16(i)
						break
					}
				}
				for i, m := range r.Matches {
					if !flowInvariant(m) && !frameInvariant(m) {
						r.firstImpureL2 = int16(i)
						break
					}
				}
			}
		}
	}
	rs.memoReady = true
}

// flowInvariant is whether a match gives the same answer for every packet
// of a flow that enters with the same mark, TOS, conntrack state and
// status, while the rule set and routes stay the same.
func flowInvariant(m Match) bool {
	switch m := m.(type) {
	case *TCPMatch:
		// ports only: flags and options differ per segment
		return m.given&(tcpGivenFlags|tcpGivenOpt) == 0
	case *UDPMatch, *MultiportMatch, *IPRangeMatch, *CommentMatch,
		*MarkMatch, *AddrtypeMatch, *RPFilterMatch, *TOSMatch, *DSCPMatch:
		// addrtype and rpfilter ask the routing tables (part of the
		// engine's configuration); mark and TOS are part of the key
		return true
	case *ConntrackMatch:
		// state, direction and status come from the ctinfo and the
		// status word (both keyed); tuples are fixed once confirmed
		// (and the status says whether NAT changed them); the
		// remaining lifetime is not
		return m.MatchFlags&ctFlagExpires == 0
	}
	// statistic, limit, hashlimit, recent, connlimit, quota, set (its
	// contents change), connmark, length, ttl, icmp, sctp, mac,
	// pkttype, physdev, owner, helper...
	return false
}

// frameInvariant is whether a match gives the same answer for every
// bridged frame of a flow with the same input port, MAC addresses and
// pkt_type that leaves by the same port (a Memo with L2 set).
func frameInvariant(m Match) bool {
	switch m.(type) {
	case *PhysdevMatch, *MACMatch, *PktTypeMatch:
		return true
	}
	return false
}

// eval records that a recording traversal evaluated rule r up to match
// number last (-1: only the fixed IP part; len(r.Matches)-1 when all
// matched).
func (m *Memo) eval(r *Rule, last int) {
	fi := r.firstImpure
	if m.L2 {
		fi = r.firstImpureL2
	}
	if int(fi) <= last {
		m.Tainted = true
	}
}
