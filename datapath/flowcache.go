package datapath

import (
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// The flow cache. A received packet of a confirmed TCP or UDP connection
// whose way through the hooks after conntrack (PREROUTING mangle, the
// input route, INPUT or FORWARD and POSTROUTING mangle, filter and
// security) depended only on what every packet of its flow and direction
// shares is recorded on the connection (conntrack.Memo): the route and
// the counters the traversals added to. The next packet of the flow and
// direction that finds the recording made by the same configuration,
// with the same input interface, mark, TOS, ctinfo and conntrack status,
// skips those table runs and the route lookup: it replays the counters
// and takes the route. Everything else runs as always: the raw table
// and the conntrack lookup before the cache is consulted, NAT (the
// established rewrite from the connection's tuples), the TTL, redirects,
// confirmation and the local answer.
//
// What makes a traversal recordable is decided while it runs
// (iptables.Memo): no evaluated match that can answer differently for the
// flow's next packet, no target other than a standard verdict, and no
// more than iptables.MaxMemoHits counters. Only packets that went on
// (forwarded or delivered) are recorded. A new configuration (rules,
// routes or sysctls: Swap) has a new generation, so every recording made
// before it is stale at once. Tracing, IPVS (its hooks keep state) and
// looped-back packets bypass the cache.

// Layout of the memo words (conntrack.MemoWords = 7):
//
//	W[0] gen<<32 | seq<<8 | memoValid | memoLocked   (the sequence lock)
//	W[1] mark | status<<32 | iif<<48
//	W[2] tos | ctinfo<<8 | route type<<16 | memoRedirect, memoGateway <<24 | hits<<28 | dev<<32
//	W[3] gateway
//	W[4..6] counter ids, three of 21 bits per word
const (
	memoValid  = 1
	memoLocked = 2

	memoRedirect = 1
	memoGateway  = 2

	memoIDBits = 21
	memoIDMask = 1<<memoIDBits - 1
)

// memoGen hands out configuration generations (0 is never one).
var memoGen atomic.Uint32

func nextMemoGen() uint32 {
	for {
		if g := memoGen.Add(1); g != 0 {
			return g
		}
	}
}

// memoKey is what a recording is valid for besides the configuration.
type memoKey struct {
	w1 uint64 // mark, status, iif
	w2 uint64 // tos and ctinfo (the low 16 bits of W[2])
}

// memoStart consults the flow cache after the PREROUTING conntrack hook
// for a packet that came in on ifindex iif: on a hit the packet replays
// the recording (k.replay, k.rt set); on a miss it records (k.rec) if it
// can.
func (k *pkt) memoStart(iif int) {
	c := k.ct.Conn
	p := k.p
	if !k.cfg.memoOn || c == nil || k.tr != nil || k.hasDst || !p.HasL4 ||
		(p.Proto != packet.ProtoTCP && p.Proto != packet.ProtoUDP) || p.IP.IsFragment() ||
		(k.e.LVS != nil && !k.e.LVS.Empty()) {
		return
	}
	st := c.Status()
	if st&conntrack.StatusConfirmed == 0 || c.Helped() {
		// a helped flow's packets all need the helper stage
		return
	}
	if iif <= 0 || iif > 0xffff {
		return
	}
	key := memoKey{
		w1: uint64(p.Mark) | uint64(uint16(st))<<32 | uint64(iif)<<48,
		w2: uint64(p.IP.TOS()) | uint64(k.ct.Info)<<8,
	}
	m := &c.Memo[k.ct.Info.Dir()]
	if k.memoLoad(m, key) {
		return
	}
	k.rec, k.memoKey, k.cold = true, key, true
	k.memo.Reset()
}

// memoLoad replays m if it holds a recording for key in this generation.
func (k *pkt) memoLoad(m *conntrack.Memo, key memoKey) bool {
	w0 := m.W[0].Load()
	if w0&(memoValid|memoLocked|memoBridged) != memoValid || uint32(w0>>32) != k.cfg.gen {
		return false
	}
	w1, w2, w3 := m.W[1].Load(), m.W[2].Load(), m.W[3].Load()
	h := [3]uint64{m.W[4].Load(), m.W[5].Load(), m.W[6].Load()}
	if m.W[0].Load() != w0 || w1 != key.w1 || w2&0xffff != key.w2 {
		return false
	}
	rt := route.Result{Type: route.Type(w2 >> 16), Dev: int(uint32(w2 >> 32)), Redirect: w2>>24&memoRedirect != 0}
	if forwards(rt.Type) && k.p.IP.TTL() <= 1 {
		// ip_forward drops it before FORWARD: the recording's way is
		// not this packet's
		return false
	}
	if w2>>24&memoGateway != 0 {
		rt.Gateway = addr4(uint32(w3))
	}
	n := int(w2 >> 28 & 0xf)
	rs, bytes := k.cfg.Rules, len(k.p.IP)
	for i := range n {
		rs.Replay(uint32(h[i/3]>>(memoIDBits*(i%3)))&memoIDMask, bytes)
	}
	k.replay, k.rt = true, rt
	k.fate.FlowCached = true
	return true
}

// memoStore keeps the recording of a packet that went on.
func (k *pkt) memoStore() {
	if k.memo.Tainted || (k.fate.Kind != Forwarded && k.fate.Kind != Delivered) || k.ct.Conn == nil {
		return
	}
	rt := &k.rt
	if rt.Err != 0 || rt.Dev <= 0 || rt.Dev > 0xffffffff || k.nh != 0 {
		return
	}
	var flags, gw uint64
	if rt.Redirect {
		flags |= memoRedirect
	}
	if rt.Gateway.IsValid() {
		if !rt.Gateway.Is4() {
			return
		}
		flags |= memoGateway
		gw = uint64(u32(rt.Gateway))
	}
	var h [3]uint64
	for i := 0; i < k.memo.N; i++ {
		id := uint64(k.memo.Hits[i])
		if id > memoIDMask {
			return
		}
		h[i/3] |= id << (memoIDBits * (i % 3))
	}
	// the packet's mark and TOS must be what it entered with: an
	// untainted traversal changes neither, but say so
	if uint32(k.memoKey.w1) != k.p.Mark || uint64(k.p.IP.TOS()) != k.memoKey.w2&0xff {
		return
	}
	m := &k.ct.Conn.Memo[k.ct.Info.Dir()]
	w0 := m.W[0].Load()
	if w0&memoLocked != 0 || !m.W[0].CompareAndSwap(w0, w0|memoLocked) {
		return // another packet of the flow is storing
	}
	m.W[1].Store(k.memoKey.w1)
	m.W[2].Store(k.memoKey.w2 | uint64(rt.Type)<<16 | flags<<24 | uint64(k.memo.N)<<28 | uint64(rt.Dev)<<32)
	m.W[3].Store(gw)
	m.W[4].Store(h[0])
	m.W[5].Store(h[1])
	m.W[6].Store(h[2])
	seq := (w0 >> 8) + 1
	m.W[0].Store(uint64(k.cfg.gen)<<32 | (seq&0xffffff)<<8 | memoValid)
}

// forwards is whether receive forwards a packet with an input route of
// type t (the others are delivered).
func forwards(t route.Type) bool {
	return t != route.Local && t != route.Broadcast && t != route.Multicast
}
