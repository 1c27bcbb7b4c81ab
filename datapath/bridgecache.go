package datapath

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// The bridged flow cache: the routed flow cache's idea (flowcache.go)
// for a frame br_netfilter runs through the IPv4 hooks on its way
// across a bridge. A frame of a confirmed TCP or UDP connection that was
// bridged to one port, whose traversal after conntrack depended only on
// what every frame of its flow and direction shares, is recorded: the
// bridge's forwarding decision (an fdb.Path: the entries learning and
// the lookup touched), the ebtables rules that matched in filter FORWARD
// and nat POSTROUTING, and the iptables counters of PREROUTING after
// conntrack, FORWARD and POSTROUTING. The recording is a frame class
// (bclass, shared by the flows that take the same way between the same
// two MAC addresses), and the connection's memo slot of that direction
// names it. The next frame of the flow and direction that finds a class
// of this configuration, for its input port, MAC addresses, pkt_type,
// mark, TOS, ctinfo and conntrack status, whose path is still valid
// (no entry aged out, moved or replaced; no port flag, ageing or
// bridge address change), skips the ebtables walks, the FDB lookups and
// the table runs: it replays the counters and the entries' times and
// leaves by the recorded port. Everything else runs as always: ebtables
// nat PREROUTING (before conntrack: its verdict is part of the key's
// making; its own cache, at the end of this file, replays a memoizable
// chain by the frame's L2, IPv4 and port fields), raw, the conntrack
// lookup, NAT's established rewrite, confirmation, and the frame's way
// out.
//
// What can be recorded: an iptables traversal as for the routed cache,
// with -m physdev, -m mac and -m pkttype trusted too (iptables.Memo.L2:
// the key has the ports, addresses and pkt_type); an ebtables chain (and
// the user chains it reaches) whose rules have no watcher (log,
// nflog), no target but the standard ones and mark, no --limit, and
// whose other matches read only fields the key fixes (ebtMemoizable).
// Not recorded: floods, frames also passed up, VLAN-tagged frames,
// fragments and reassembled datagrams, bridged DNAT, traced frames,
// anything while IPVS has services or a hook has a fault stage.

// memoBridged marks a memo slot that holds a bridged recording (W[0]):
// the routed cache never reads one, the bridged cache only those.
//
// Layout of a bridged recording (the sequence lock of flowcache.go):
//
//	W[0] gen<<32 | seq<<8 | memoBridged | memoValid | memoLocked
//	W[1] mark | status<<32 | pkt_type<<48
//	W[2] tos | ctinfo<<8 | class slot<<16 | class serial<<32
const memoBridged = 4

// bclassSlots is the size of a bridge's class table: a class takes the
// slot its hash names, replacing what was there (whose flows then miss
// once and record again).
const bclassSlots = 4096

// maxEbtHits bounds the ebtables rules a recorded frame may match.
const maxEbtHits = 16

// bclass is one recorded way across a bridge. Immutable once published.
type bclass struct {
	gen      uint32
	serial   uint32
	src, dst packet.MAC
	path     fdb.Path
	out      string
	nebt     int
	ebt      [maxEbtHits]*ebtables.Rule
	nipt     int
	ipt      [iptables.MaxMemoHits]uint32
	hash     uint64
}

func (a *bclass) same(b *bclass) bool {
	return a.gen == b.gen && a.src == b.src && a.dst == b.dst && a.path.Same(&b.path) && a.out == b.out &&
		a.nebt == b.nebt && a.ebt == b.ebt && a.nipt == b.nipt && a.ipt == b.ipt
}

// bclassTable is a bridge's classes; it survives swaps with the FDB
// (a class names the configuration generation it was made in).
type bclassTable struct {
	slots  [bclassSlots]atomic.Pointer[bclass]
	serial atomic.Uint32
}

// bframe is what the bridged cache knows of a frame br_netfilter runs
// through: its bridge, input port, frame and pkt_type as the port
// classed it (after ebtables nat PREROUTING).
type bframe struct {
	b       *bridgeState
	in      int
	fr      *packet.Frame
	p0      *packet.Packet
	pktType uint8
	// noRec: the frame cannot be recorded (reassembled, DNATed)
	noRec bool
	// cls is the class replayed (nil: none); key is the recording's
	// key when recording
	cls *bclass
	key memoKey
	// ebt records the ebtables rules that match while recording
	ebt ebtRec
	// ctPre: bridgeFast looked the frame up in conntrack (ctRef, ctV:
	// what InTemplate returned) and let it take the usual way, whose
	// conntrack stage takes this result instead of looking it up again
	ctPre bool
	ctV   conntrack.Verdict
	ctRef conntrack.Ref
}

// ebtRec is an ebtables.Tracer that records the rules that matched.
type ebtRec struct {
	on   bool
	bad  bool
	n    int
	hits [maxEbtHits]*ebtables.Rule
	hash uint64
	rs   *ebtables.Ruleset
}

func (r *ebtRec) Rule(t ebtables.TableID, chain string, rule int, v ebtables.Verdict, jump string) {
	if r.bad {
		return
	}
	var ch *ebtables.Chain
	if tb := r.rs.Tables[t]; tb != nil {
		ch = tb.Chain(chain)
	}
	if ch == nil || rule < 1 || rule > len(ch.Rules) || r.n == maxEbtHits {
		r.bad = true
		return
	}
	r.hits[r.n] = ch.Rules[rule-1]
	r.n++
	h := r.hash ^ uint64(t)<<56 ^ uint64(rule)
	for i := 0; i < len(chain); i++ {
		h = (h ^ uint64(chain[i])) * 0x100000001b3
	}
	r.hash = h * 0x9e3779b97f4a7c15
}

func (r *ebtRec) Policy(t ebtables.TableID, chain string, v ebtables.Verdict) {}
func (r *ebtRec) Return(t ebtables.TableID, chain string)                     {}

// ebtMemoizable says whether every rule the base chain of table t at
// hook h can reach gives the same answer, and does the same, for every
// untagged IPv4 TCP or UDP frame of a flow with the same ports, MAC
// addresses, pkt_type, mark and TOS (no chain there: true).
func ebtMemoizable(rs *ebtables.Ruleset, t ebtables.TableID, h ebtables.Hook) bool {
	if rs == nil || rs.Tables[t] == nil {
		return true
	}
	tb := rs.Tables[t]
	var base *ebtables.Chain
	for _, c := range tb.Chains {
		if c.Builtin && c.Hook == h {
			base = c
		}
	}
	if base == nil {
		return true
	}
	seen := map[*ebtables.Chain]bool{}
	var walk func(c *ebtables.Chain) bool
	walk = func(c *ebtables.Chain) bool {
		if seen[c] {
			return true
		}
		seen[c] = true
		for _, r := range c.Rules {
			if !ebtRuleMemoizable(r) {
				return false
			}
			if r.Verdict == ebtables.VJump && r.Target == nil {
				u := tb.Chain(r.Jump)
				if u == nil || !walk(u) {
					return false
				}
			}
		}
		return true
	}
	return walk(base)
}

// ebtRuleMemoizable: see ebtMemoizable. The extensions that read
// headers other than IPv4's (ip6, arp, vlan, 802_3, stp) need a -p
// that no IPv4 frame passes: ebtables asks for one, and the basic
// match fails before they look.
func ebtRuleMemoizable(r *ebtables.Rule) bool {
	if len(r.Watchers) > 0 {
		return false
	}
	switch r.Target.(type) {
	case nil, *ebtables.MarkTarget:
	default:
		return false
	}
	notIPv4 := r.ProtoSet && !r.ProtoInv && (r.Length || r.Proto != packet.EtherTypeIPv4)
	for _, m := range r.Matches {
		switch m.(type) {
		case *ebtables.IPMatch, *ebtables.MarkMatch, *ebtables.PktTypeMatch, *ebtables.AmongMatch:
		case *ebtables.IP6Match, *ebtables.ARPMatch, *ebtables.VLANMatch, *ebtables.Match8023, *ebtables.STPMatch:
			if !notIPv4 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// bmemoStart consults the bridged cache after the PREROUTING conntrack
// hook: on a hit the frame replays its class (k.replay, bf.cls set); on
// a miss it records (k.rec) if it can.
func (k *pkt) bmemoStart() {
	bf := k.bf
	c := k.ct.Conn
	p := k.p
	if !k.cfg.bmemoOn || c == nil || k.tr != nil || bf.noRec || bf.fr.VLAN || p != bf.p0 || !p.HasL4 ||
		(p.Proto != packet.ProtoTCP && p.Proto != packet.ProtoUDP) || p.IP.IsFragment() ||
		(k.e.LVS != nil && !k.e.LVS.Empty()) {
		return
	}
	st := c.Status()
	if st&conntrack.StatusConfirmed == 0 || c.Helped() {
		return
	}
	key := bclassKey(p.Mark, st, bf.pktType, p.IP.TOS(), k.ct.Info)
	m := &c.Memo[k.ct.Info.Dir()]
	if k.bmemoLoad(m, key) {
		return
	}
	k.rec, bf.key, k.cold = true, key, true
	k.memo.Reset()
	k.memo.L2 = true
	bf.ebt = ebtRec{on: k.cfg.ebt != nil}
	if k.cfg.ebt != nil {
		bf.ebt.rs = k.cfg.ebt.Ruleset()
	}
}

// bclassKey is a bridged recording's key (W[1], W[2]'s low bits): the
// frame's mark, its entry's status, pkt_type, TOS and ctinfo.
func bclassKey(mark uint32, st conntrack.Status, pktType, tos uint8, info conntrack.CtInfo) memoKey {
	return memoKey{
		w1: uint64(mark) | uint64(uint16(st))<<32 | uint64(pktType)<<48,
		w2: uint64(tos) | uint64(info)<<8,
	}
}

// bmemoLoad replays m if it names a class of this generation for the
// frame's key, whose path is valid.
func (k *pkt) bmemoLoad(m *conntrack.Memo, key memoKey) bool {
	bf := k.bf
	cls := bclassFor(m, key, k.cfg.gen, bf.b, bf.in, bf.fr)
	if cls == nil {
		return false
	}
	replayClass(cls, k.cfg.Rules, k.hits, len(k.p.IP), bf.fr)
	k.replay, bf.cls = true, cls
	return true
}

// bclassFor returns the class m names for key in configuration gen, if
// it was made for frames of fr's addresses entering port in of b and its
// path is still valid; nil otherwise.
func bclassFor(m *conntrack.Memo, key memoKey, gen uint32, b *bridgeState, in int, fr *packet.Frame) *bclass {
	w0 := m.W[0].Load()
	if w0&(memoValid|memoLocked|memoBridged) != memoValid|memoBridged || uint32(w0>>32) != gen {
		return nil
	}
	w1, w2 := m.W[1].Load(), m.W[2].Load()
	if m.W[0].Load() != w0 || w1 != key.w1 || w2&0xffff != key.w2 {
		return nil
	}
	cls := b.classes.slots[(w2>>16)&(bclassSlots-1)].Load()
	if cls == nil || cls.serial != uint32(w2>>32) || cls.gen != gen || cls.path.In != in ||
		cls.src != fr.Src || cls.dst != fr.Dst || !b.fdb.Valid(&cls.path) {
		return nil
	}
	return cls
}

// replayClass counts a frame (its IPv4 packet ipBytes long) that
// replays cls in the rules it records, of rule set rs, through the
// worker's batch hb when there is one. The ebtables counters count
// skb->len at the bridge hooks: the frame without its MAC header
// (ebtables.Program.Run); iptables's the IP packet.
func replayClass(cls *bclass, rs *iptables.Ruleset, hb *hitBatch, ipBytes int, fr *packet.Frame) {
	eb := max(len(fr.Data)-fr.HeaderLen(), 0)
	if hb != nil {
		hb.addClass(cls, rs, ipBytes, eb)
		return
	}
	for _, id := range cls.ipt[:cls.nipt] {
		rs.Replay(id, ipBytes)
	}
	for _, r := range cls.ebt[:cls.nebt] {
		r.Hits.Add(eb)
	}
}

// bmemoStore keeps the recording of a frame bridged to one port by
// path: its class (an existing one with the same content, or a new one
// in its slot) and the connection's memo slot naming it.
func (k *pkt) bmemoStore(path *fdb.Path, out string) {
	bf := k.bf
	if k.memo.Tainted || bf.ebt.bad || bf.noRec || k.ct.Conn == nil || k.fate.Kind == Dropped || k.fragMax != 0 {
		return
	}
	tab := bf.b.classes
	cls := bclass{gen: k.cfg.gen, src: bf.fr.Src, dst: bf.fr.Dst, path: *path, out: out,
		nebt: bf.ebt.n, ebt: bf.ebt.hits, nipt: k.memo.N, ipt: k.memo.Hits}
	h := uint64(cls.gen)*0x9e3779b97f4a7c15 ^ bf.ebt.hash
	h = (h ^ uint64(path.In)<<20 ^ uint64(path.Out)) * 0x100000001b3
	for i := range 6 {
		h = (h ^ uint64(cls.src[i])<<8 ^ uint64(cls.dst[i])) * 0x100000001b3
	}
	for _, id := range cls.ipt[:cls.nipt] {
		h = (h ^ uint64(id)) * 0x100000001b3
	}
	h ^= h >> 29
	slot := h & (bclassSlots - 1)
	cls.hash = h
	cur := tab.slots[slot].Load()
	if cur == nil || !cur.same(&cls) {
		cls.serial = tab.serial.Add(1)
		n := new(bclass)
		*n = cls
		tab.slots[slot].Store(n)
		cur = n
	}
	m := &k.ct.Conn.Memo[k.ct.Info.Dir()]
	w0 := m.W[0].Load()
	if w0&memoLocked != 0 || !m.W[0].CompareAndSwap(w0, w0|memoLocked) {
		return
	}
	m.W[1].Store(bf.key.w1)
	m.W[2].Store(bf.key.w2 | slot<<16 | uint64(cur.serial)<<32)
	seq := (w0 >> 8) + 1
	m.W[0].Store(uint64(k.cfg.gen)<<32 | (seq&0xffffff)<<8 | memoBridged | memoValid)
}

// The ebtables nat PREROUTING cache. Bridge PREROUTING's ebtables walk
// comes before conntrack (its mark is part of the bridged flow cache's
// key), so that cache cannot replay it; this one can, for a chain that
// ebtMemoizable allows (no watcher, only the mark target, matches on
// fields of the key): its verdict, the mark it leaves and its counters
// are a function of the input port, the MAC addresses, pkt_type, the
// IPv4 header's addresses, TOS and protocol and the TCP or UDP ports
// (the mark it starts from is always 0: a frame enters the bridge
// without one). A bridge keeps the walks that accepted frames of
// confirmed connections (so that a new flow's first frame allocates
// nothing), one per slot of a table indexed by the key's hash, for the
// configuration they were made in; an untagged, unfragmented IPv4 TCP
// or UDP frame with the same key replays its slot's counters and mark
// instead of walking the chain.

// preSlots is the size of a bridge's PREROUTING cache (slot uses the
// hash's top 12 bits).
const preSlots = 1 << 12

// preKey is what a memoizable PREROUTING chain can read of a frame,
// packed in four words:
//
//	[0] source MAC<<16 | input port
//	[1] destination MAC<<16 | pkt_type<<8 | TOS
//	[2] source address<<32 | destination address
//	[3] source port<<32 | destination port<<16 | protocol
type preKey [4]uint64

// preEntry is one recorded walk. Immutable once published, but for
// conn.
type preEntry struct {
	gen  uint32
	key  preKey
	mark uint32
	n    int
	hits [maxEbtHits]*ebtables.Rule
	// conn is the confirmed conntrack entry the last frame of the key
	// that bridgeFast saw belonged to (the key holds the flow's
	// addresses, ports and protocol): a hint for conntrack's lookup
	// (conntrack.Table.InHint checks it)
	conn atomic.Pointer[conntrack.Conn]
}

type preTable struct {
	slots [preSlots]atomic.Pointer[preEntry]
}

// preKeyOf sets k to the key of an untagged frame on port in with
// pkt_type pktType, when it is an unfragmented IPv4 TCP or UDP packet
// whose ports are in the frame (what ebt_ip reads: the header at the
// network offset, the ports after its IHL). The key is written in place,
// word by word, and read so (slot, lookup): a [4]uint64 returned by value
// is copied 16 bytes at a time from 8-byte stores, and the copy waits
// for them to retire.
func preKeyOf(k *preKey, fr *packet.Frame, in int, pktType uint8) bool {
	h := fr.Payload
	if fr.VLAN || fr.InnerProto != packet.EtherTypeIPv4 || len(h) < 20 || h[0]>>4 != 4 || uint(in) > 0xffff {
		return false
	}
	ihl := int(h[0]&0xf) * 4
	proto := h[9]
	if ihl < 20 || len(h) < ihl+4 || binary.BigEndian.Uint16(h[6:])&0x3fff != 0 ||
		(proto != packet.ProtoTCP && proto != packet.ProtoUDP) {
		return false
	}
	d := fr.Data
	k[0] = binary.BigEndian.Uint64(d[6:14])&^0xffff | uint64(in)
	k[1] = binary.BigEndian.Uint64(d[0:8])&^0xffff | uint64(pktType)<<8 | uint64(h[1])
	k[2] = binary.BigEndian.Uint64(h[12:20])
	k[3] = uint64(binary.BigEndian.Uint32(h[ihl:]))<<16 | uint64(proto)
	return true
}

func (k *preKey) slot() uint64 {
	h := (k[0]^k[2])*0x9e3779b97f4a7c15 + (k[1]^k[3])*0xbf58476d1ce4e5b9
	return (h ^ h>>29) >> (64 - 12) & (preSlots - 1)
}

// lookup returns the walk recorded for k in configuration gen, or nil.
func (t *preTable) lookup(k *preKey, gen uint32) *preEntry {
	e := t.slots[k.slot()].Load()
	// word by word (see preKeyOf)
	if e == nil || e.gen != gen || e.key[0] != k[0] || e.key[1] != k[1] || e.key[2] != k[2] || e.key[3] != k[3] {
		return nil
	}
	return e
}

// replay counts the frame in the rules the recorded walk matched (the
// bytes as ebtables.Program.Run counts them), through the worker's
// batch hb when there is one.
func (e *preEntry) replay(fr *packet.Frame, hb *hitBatch) {
	bytes := max(len(fr.Data)-fr.HeaderLen(), 0)
	if hb != nil {
		hb.addPre(e, bytes)
		return
	}
	for _, r := range e.hits[:e.n] {
		r.Hits.Add(bytes)
	}
}

// store keeps the walk r recorded for k in configuration gen, which
// accepted the frame with mark.
func (t *preTable) store(k *preKey, gen, mark uint32, r *ebtRec) *preEntry {
	if r.bad {
		return nil
	}
	e := &preEntry{gen: gen, key: *k, mark: mark, n: r.n, hits: r.hits}
	t.slots[k.slot()].Store(e)
	return e
}
