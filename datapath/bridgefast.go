package datapath

import (
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// The bridged flow cache's short way. A frame br_netfilter runs through
// the IPv4 hooks goes through a pkt and every stage of every hook, even
// when the bridged flow cache replays its class (bridgecache.go). When
// the configuration's hooks hold nothing but what a replayed frame of
// an established connection passes through without effect, bridgeFast
// does that directly, with no pkt: PREROUTING's defragmentation (not a
// fragment: nothing), conntrack (the lookup, InTemplate), the flow
// cache (the class the connection's memo names, its counters), the
// tables after conntrack (replayed), NAT (a connection without a NAT
// manip and not masqueraded: nothing); the class's forwarding decision;
// FORWARD (its tables replayed); POSTROUTING (tables replayed, NAT
// nothing, conntrack's confirmation of a confirmed entry: its cached
// events); and the way out. A frame that does not qualify once conntrack
// has seen it takes the usual way with the lookup's result (bframe.ctPre),
// so conntrack sees every frame once. TestBridgeFlowCacheMatchesReference
// compares both ways with the engine without the cache, frame by frame.

// brFastHooks reports whether hook lists l (without IPVS) hold only what
// bridgeFast does: PREROUTING defragmentation, conntrack, the flow cache,
// NAT and tables after conntrack; FORWARD tables; POSTROUTING tables, NAT
// and confirmation. A table before conntrack (raw), a fault stage or
// anything else keeps every frame on the usual way.
func brFastHooks(l *[netfilter.NumHooks][]stage, tablesOnly *[netfilter.NumHooks]bool) bool {
	for _, s := range l[netfilter.PreRouting] {
		switch s.op {
		case opDefrag, opConntrack, opFlowCache, opNAT:
		case opTable:
			if s.prio <= netfilter.PriConntrack {
				return false
			}
		default:
			return false
		}
	}
	for _, s := range l[netfilter.PostRouting] {
		switch s.op {
		case opTable, opNAT, opConfirm:
		default:
			return false
		}
	}
	return tablesOnly[netfilter.Forward]
}

// bridgeFast takes the frame bc.fr0, entering port in of bridge b and
// decoded into bc.p0 (mark and pkt_type set as the bridge PREROUTING
// hooks left them; pktType is the port's class before
// setup_pre_routing), when it is an untagged, unfragmented TCP or UDP
// frame of an established, confirmed connection (not helped, without a
// NAT manip, not masqueraded) whose memo names a valid class of
// configuration c. It reports whether it did, and the frame's entry.
func (e *Engine) bridgeFast(bc *bridgeCall, c *compiled, b *bridgeState, in int, pktType uint8, pe *preEntry, ff *FrameFate, now int64) (bool, *conntrack.Conn) {
	fr, p := &bc.fr0, &bc.p0
	if fr.VLAN || !p.HasL4 || (p.Proto != packet.ProtoTCP && p.Proto != packet.ProtoUDP) || p.IP.IsFragment() ||
		(e.LVS != nil && !e.LVS.Empty()) {
		return false, nil
	}
	// the ebtables nat PREROUTING walk's entry replayed (pe) names the
	// entry of its flow's last frame (a hint conntrack checks)
	var ref conntrack.Ref
	var v conntrack.Verdict
	if pe != nil {
		ref, v = e.CT.InHint(p, pe.conn.Load(), netfilter.PreRouting, now)
	} else {
		ref, v = e.CT.InTemplate(p, 0, nil, netfilter.PreRouting, now)
	}
	conn := ref.Conn
	var cls *bclass
	if v == conntrack.Accept && conn != nil && conn.Confirmed() && pe != nil && pe.conn.Load() != conn {
		pe.conn.Store(conn)
	}
	if v == conntrack.Accept && conn != nil && (ref.Info == conntrack.CtEstablished || ref.Info == conntrack.CtEstablishedReply) {
		st := conn.Status()
		if st&conntrack.StatusConfirmed != 0 && st&conntrack.StatusNATMask == 0 && conn.NAT.MasqIndex == 0 && !conn.Helped() {
			key := bclassKey(p.Mark, st, pktType, p.IP.TOS(), ref.Info)
			cls = bclassFor(&conn.Memo[ref.Info.Dir()], key, c.gen, b, in, fr)
		}
	}
	if cls == nil {
		bf := &bc.bf
		bf.ctPre, bf.ctRef, bf.ctV = true, ref, v
		return false, nil
	}
	replayClass(cls, c.Rules, bc.hits(), len(p.IP), fr)
	out, data, ok := b.replayedWay(cls, fr, len(p.L2), len(p.IP), ff, now)
	if !ok {
		return true, conn
	}
	// POSTROUTING's confirmation: a confirmed entry's cached events
	// (Confirm accepts a confirmed entry)
	e.CT.Confirm(ref, now)
	ff.addOut(out, data)
	if bc.w != nil {
		bc.w.bridgeFast++
	}
	return true, conn
}
