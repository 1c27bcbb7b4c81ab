package fault

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// Kind is what a fault does.
type Kind uint8

const (
	// KindNetem: netem's actions (loss, delay, duplicate, corrupt,
	// reorder, rate, slot, limit) with netem's semantics.
	KindNetem Kind = iota
	// KindPartition: packets from group A to group B (or back, or both)
	// are dropped or rejected.
	KindPartition
	// KindMangle: TTL, TOS or mark set.
	KindMangle
	// KindConntrackFull: while active, the conntrack table's
	// nf_conntrack_max is Max (state.go).
	KindConntrackFull
	// KindNATExhaust: while active, source NAT port pools are cut to
	// Ports ports (state.go).
	KindNATExhaust
	// The state faults of actions.go: at scheduled instants (or for
	// the windows of the schedule) on the engine's state.
	KindConntrackEvict
	KindConntrackExpire
	KindRulesSwap
	KindSysctl
	KindFDB
	KindDatapathKill
	KindDatapathStall
	// KindConntrackClash: a matching NEW packet's entry races a twin
	// to confirm (actions.go); a packet fault at a hook before confirm.
	KindConntrackClash
	// KindLink: the link is down (or flapping) while active: its wire
	// placements see no packet (link.go).
	KindLink
)

var kindNames = [...]string{"netem", "partition", "mangle", "conntrack-full", "nat-exhaust",
	"conntrack-evict", "conntrack-expire", "rules-swap", "sysctl", "fdb", "datapath-kill", "datapath-stall",
	"conntrack-clash", "link"}

// stateKind: a fault on the engine's state, not on packets.
func (k Kind) stateKind() bool {
	return k == KindConntrackFull || k == KindNATExhaust || (k >= KindConntrackEvict && k <= KindDatapathStall)
}

func (k Kind) String() string { return kindNames[k] }

// Direction of a partition.
type Direction uint8

const (
	AToB Direction = iota
	BToA
	Both
)

// Fault is one compiled fault. Its parameters are immutable; its
// per-flow state and counters change under its own locks, so one Fault
// serves every worker at once.
type Fault struct {
	// qProto: the protocol the match requires (its -p, not inverted),
	// 0 for any, for packet faults only: a packet of another protocol
	// is turned away before the schedule and the match are looked at,
	// the common case of a fault that matches nothing (first in the
	// struct: the cache line a packet reads)
	qProto uint8
	// qPorts: with qProto TCP or UDP, the destination ports the match
	// requires (its --dport, not inverted; qPorts false: any)
	qPorts     bool
	qDLo, qDHi uint16
	Name       string
	At         Placement
	// Spec is what the fault was compiled from (for listing).
	Spec Spec
	// EbtMatch is the ebtables match text at a bridge placement;
	// ebtMatch its parsed form (bridge.go)
	EbtMatch string
	ebtMatch ebtMatcher
	// Match is the iptables match text ("" matches every packet);
	// match its parsed rule.
	Match string
	match *iptables.Rule
	Kind  Kind
	Netem Netem
	// Fifo: delayed packets keep their order (order = "fifo"); else
	// they leave by time, as netem's tfifo sends them, so jitter
	// reorders.
	Fifo bool
	// ScopeFault: one state for all packets (netem's own: decisions
	// then depend on how flows interleave); default per flow.
	ScopeFault bool

	// Deterministic selection, per flow (or per fault with ScopeFault),
	// on k = n − Skip, the packet's index after the skipped ones:
	// Skip packets pass first; Every acts on k ≡ Offset (mod Every)
	// (Offset 0: the Every-th, 2·Every-th...); Nth on the listed k;
	// Times caps the packets acted on.
	Skip, Every, Offset, Times uint64
	Nth                        []uint64

	// Start and Stop bound when the fault acts, in ns from the set's
	// epoch (Stop 0: never stops); with Period, it acts only in the
	// first For of every Period from Start.
	Start, Stop int64
	Period, For int64
	// paused: a live pause (uswitch fault pause); the fault sees no
	// packet until resumed
	paused atomic.Bool

	// Partition: the groups, the direction; Reject answers (ICMP port
	// unreachable, or a TCP RST with RejectTCP) instead of dropping.
	A, B      []netip.Prefix
	Dir       Direction
	Reject    bool
	RejectTCP bool

	// Mangle
	SetTTL, SetTOS, SetMark bool
	TTL, TOS                uint8
	Mark, MarkMask          uint32
	// SeqAdd is added to a TCP segment's sequence number (tcp_seq:
	// a segment conntrack finds outside the window), the checksum
	// updated as RFC 1624 does
	SeqAdd uint32

	// conntrack-full and nat-exhaust (state.go)
	Max, Ports int
	state      stateFault

	// the state faults of actions.go, conntrack-clash and link
	act actionParams
	// sched: instants, a trigger, phases (schedule.go)
	sched schedule

	key uint64
	// epoch is when the schedules start (Set.SetEpoch), on the
	// callers' clock
	epoch int64
	// observe, when set (Set.Observe, offline tools), sees every
	// decision
	observe func(Decision)
	flows   [flowShards]flowShard

	// counters
	Matched, Acted, Dropped, Duplicated, Corrupted, Delayed, Reordered, Marked, Mangled, LimitDrops atomic.Uint64
}

const flowShards = 64

type flowShard struct {
	mu sync.Mutex
	m  map[Flow]*flowState
	// sweepAt is the size at which the shard next drops its idle
	// flows (then twice what is left, at least minSweep)
	sweepAt int
}

// FlowIdle is how long a flow may be silent before a fault forgets it:
// its next packet starts it again at index 1 with fresh state, whether
// or not its entry was swept yet, so forgetting depends only on the
// flow's own timing (the same live and offline) and memory stays
// bounded by the flows of the last FlowIdle.
const FlowIdle = int64(600e9)

const minSweep = 4096

// flowState is what netem keeps per qdisc, kept per flow here.
type flowState struct {
	n     uint64 // packets seen (matched while active)
	acted uint64
	last  int64 // the time of the last (from the epoch)
	// correlated streams
	dup, loss, corrupt, reorder, delay crnd
	clg                                uint8  // loss model state
	counter                            uint32 // reorder gap counter (q->counter)
}

// One is what happens to one copy of a packet.
type One struct {
	Drop, Reject bool
	ECN          bool // marked CE instead of dropped
	Corrupt      bool
	CorruptOff   int
	CorruptBit   uint8
	// Reorder: sent at once, at the queue's head (netem's gap rule);
	// else Delay (ns, before rate) when the fault delays.
	Reorder bool
	Delay   int64
}

// Decision is a fault's decision for one packet.
type Decision struct {
	Fault *Fault
	Flow  Flow
	// N is the packet's index in its flow for this fault (1, 2, ...).
	N uint64
	// Acted: the selection (skip/every/nth/times) let the fault act.
	Acted bool
	Orig  One
	// HasDup: a duplicate leaves too, with its own fate Dup.
	HasDup bool
	Dup    One
	// Mangled: the packet's TTL, TOS or mark were set.
	Mangled bool
	// Raced: a twin confirmed first (conntrack-clash).
	Raced bool
}

// Queued reports whether the packet goes through the fault's queue (a
// delaying fault at a wire placement).
func (f *Fault) Queued() bool {
	return f.Kind == KindNetem && (f.Netem.delays() || f.Netem.Duplicate != 0)
}

// Key is the fault's stream key.
func (f *Fault) Key() uint64 { return f.key }

// Decide decides for the packet of c at time now (on the clock of
// Set.SetEpoch; the schedule counts from the epoch). c carries the packet and what the match may read (Hook, CT,
// Env, State); the caller owns c and reuses it, so nothing escapes per
// packet. It reports false when the fault is not active or does not
// match (d is then untouched). It changes nothing in the packet: Apply
// does.
func (f *Fault) Decide(c *iptables.Ctx, now int64, d *Decision) bool {
	if !f.Sees(c, now) {
		return false
	}
	f.decide(c, now, d)
	return true
}

// Sees reports whether the fault is active at now and the packet of c
// matches it: Decide's first half, for callers that avoid preparing a
// Decision for the packets no fault sees.
func (f *Fault) Sees(c *iptables.Ctx, now int64) bool {
	if f.quickReject(c.Pkt) {
		return false
	}
	if f.sched.trig != trigNone && f.sched.fired.Load() == 0 {
		f.trigger(c, now)
		return false
	}
	if !f.active(now) {
		return false
	}
	if f.Kind == KindConntrackClash {
		if r := c.CT; r.Conn == nil || r.Conn.Confirmed() || r.Info != conntrack.CtNew {
			return false
		}
	}
	if f.Kind == KindPartition && !f.partitioned(c.Pkt) {
		return false
	}
	if f.match != nil {
		c.HotDrop = false
		if !f.match.Match(c) {
			return false
		}
	}
	return true
}

// quickReject: the packet cannot match (its protocol, or its
// destination port, is not the one the match requires).
func (f *Fault) quickReject(p *packet.Packet) bool {
	if q := f.qProto; q != 0 {
		if p.Proto != q {
			return true
		}
		return f.qPorts && p.HasL4 && (p.DstPort < f.qDLo || p.DstPort > f.qDHi)
	}
	return false
}

// decide is Decide for a packet the fault sees.
func (f *Fault) decide(c *iptables.Ctx, now int64, d *Decision) {
	var fl Flow
	if !f.ScopeFault {
		fl = FlowOf(c.Pkt)
	}
	f.decideFlow(c, fl, now, d)
}

// decideFlow is decide for a packet of flow fl (the zero Flow with
// scope "fault").
func (f *Fault) decideFlow(c *iptables.Ctx, fl Flow, now int64, d *Decision) {
	if f.ScopeFault {
		fl = Flow{}
	}
	nm := f.netemAt(now)
	now -= f.epoch
	p := c.Pkt
	f.Matched.Add(1)
	fk := f.key ^ fl.hash()
	sh := &f.flows[fk%flowShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[fl]
	switch {
	case st == nil:
		if len(sh.m) >= sh.sweepAt {
			sh.sweep(now)
		}
		st = f.newState(fk)
		if sh.m == nil {
			sh.m = map[Flow]*flowState{}
		}
		sh.m[fl] = st
	case now-st.last > FlowIdle:
		*st = *f.newState(fk) // a new flow of the same tuple
	}
	st.last = now
	st.n++
	*d = Decision{Fault: f, Flow: fl, N: st.n}
	if !f.selected(st) {
		f.seen(d)
		return
	}
	st.acted++
	d.Acted = true
	f.Acted.Add(1)
	switch f.Kind {
	case KindPartition:
		d.Orig.Drop, d.Orig.Reject = true, f.Reject
		f.Dropped.Add(1)
	case KindMangle:
		d.Mangled = true
		f.Mangled.Add(1)
	case KindNetem:
		if nm != &f.Netem {
			st.phase(nm)
		}
		f.netem(st, fk, p, d, nm)
	case KindConntrackClash:
		f.clash(c, now+f.epoch, d)
	case KindLink:
		d.Orig.Drop = true
		f.Dropped.Add(1)
	}
	f.seen(d)
}

// seen hands the decision to the observer (a copy: d stays the
// caller's).
func (f *Fault) seen(d *Decision) {
	if f.observe != nil {
		f.observe(*d)
	}
}

// sweep drops the flows idle longer than FlowIdle.
func (sh *flowShard) sweep(now int64) {
	for k, st := range sh.m {
		if now-st.last > FlowIdle {
			delete(sh.m, k)
		}
	}
	sh.sweepAt = max(minSweep, 2*len(sh.m))
}

// active reports whether the schedule (and no pause) lets the fault act
// at now (the callers' clock).
func (f *Fault) active(now int64) bool {
	now -= f.epoch
	if f.sched.trig != trigNone {
		// the schedule counts from the trigger
		t0 := f.sched.fired.Load()
		if t0 == 0 {
			return false
		}
		now -= t0 - 1
	}
	if now < f.Start || (f.Stop > 0 && now >= f.Stop) || f.paused.Load() {
		return false
	}
	if f.Period == 0 {
		return true
	}
	return (now-f.Start)%f.Period < f.For
}

// Pause stops the fault from acting until Resume (its state stays).
func (f *Fault) Pause() { f.paused.Store(true) }

// Resume undoes Pause.
func (f *Fault) Resume() { f.paused.Store(false) }

// Paused reports whether the fault is paused.
func (f *Fault) Paused() bool { return f.paused.Load() }

func (f *Fault) newState(fk uint64) *flowState {
	n := &f.Netem
	st := &flowState{
		dup:     crnd{rho: uint32(n.DupCorr), last: draw(fk, 0, laneInit+laneDup)},
		loss:    crnd{rho: uint32(n.LossCorr), last: draw(fk, 0, laneInit+laneLoss)},
		corrupt: crnd{rho: uint32(n.CorruptCorr), last: draw(fk, 0, laneInit+laneCorrupt)},
		reorder: crnd{rho: uint32(n.ReorderCorr), last: draw(fk, 0, laneInit+laneReorder)},
		delay:   crnd{rho: uint32(n.DelayCorr), last: draw(fk, 0, laneInit+laneDelay)},
	}
	switch n.Model {
	case Loss4State:
		st.clg = txInGap
	case LossGE:
		st.clg = goodState
	}
	return st
}

// selected applies skip, every/offset, nth and times to the packet
// just counted.
func (f *Fault) selected(st *flowState) bool {
	if st.n <= f.Skip {
		return false
	}
	k := st.n - f.Skip
	if f.Every > 0 && k%f.Every != f.Offset%f.Every {
		return false
	}
	if len(f.Nth) > 0 {
		found := false
		for _, x := range f.Nth {
			if x == k {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return f.Times == 0 || st.acted < f.Times
}

// netem is netem_enqueue's decisions for one packet (the order of
// sch_netem.c): duplicate, loss (or ECN), corrupt; the duplicate goes
// through the same steps (never duplicated again: tc_depth) before the
// original's reorder/delay decision. The queue limit, the rate's
// chaining and the slots are the queue's (queue.go), which needs the
// time.
func (f *Fault) netem(st *flowState, fk uint64, p *packet.Packet, d *Decision, n *Netem) {
	count := 1
	if n.Duplicate != 0 && uint32(n.Duplicate) >= st.dup.next(draw(fk, d.N, laneDup)) {
		count++
	}
	if f.lossEvent(n, st, fk, d.N, 0) {
		if n.ECN && ect(p) {
			d.Orig.ECN = true
			f.Marked.Add(1)
		} else {
			count--
		}
	}
	if count == 0 {
		d.Orig.Drop = true
		f.Dropped.Add(1)
		return
	}
	f.corrupt(n, st, fk, d.N, 0, len(p.IP), &d.Orig)
	if count > 1 {
		d.HasDup = true
		f.Duplicated.Add(1)
		// the clone is enqueued at the root again: loss, corrupt and
		// its own reorder/delay, before the original's
		if f.lossEvent(n, st, fk, d.N, dupLanes) {
			if n.ECN && ect(p) {
				d.Dup.ECN = true
			} else {
				d.Dup.Drop = true
			}
		}
		if !d.Dup.Drop {
			f.corrupt(n, st, fk, d.N, dupLanes, len(p.IP), &d.Dup)
			f.delay(n, st, fk, d.N, dupLanes, &d.Dup)
		}
	}
	f.delay(n, st, fk, d.N, 0, &d.Orig)
}

func (f *Fault) lossEvent(n *Netem, st *flowState, fk, nIdx uint64, lanes int) bool {
	switch n.Model {
	case LossRandom:
		return n.Loss != 0 && uint32(n.Loss) >= st.loss.next(draw(fk, nIdx, lanes+laneLoss))
	case Loss4State:
		return loss4State(n, &st.clg, draw(fk, nIdx, lanes+laneLoss))
	case LossGE:
		return lossGE(n, &st.clg, draw(fk, nIdx, lanes+laneLoss), draw(fk, nIdx, lanes+laneLoss2))
	}
	return false
}

func (f *Fault) corrupt(n *Netem, st *flowState, fk, nIdx uint64, lanes, length int, o *One) {
	if n.Corrupt == 0 || uint32(n.Corrupt) < st.corrupt.next(draw(fk, nIdx, lanes+laneCorrupt)) || length == 0 {
		return
	}
	// one random bit of one random byte of the linear data; netem
	// takes both from get_random_u32_below, uswitch from the draws
	o.Corrupt = true
	o.CorruptOff = int(uint64(draw(fk, nIdx, lanes+laneCorruptPos)) * uint64(length) >> 32)
	o.CorruptBit = uint8(draw(fk, nIdx, lanes+laneCorruptBit) >> 29)
	f.Corrupted.Add(1)
}

// delay is the gap rule and tabledist: while the gap counter is below
// gap−1 the packet is delayed (counter++); otherwise with probability
// Reorder it is sent at once and the counter resets.
func (f *Fault) delay(n *Netem, st *flowState, fk, nIdx uint64, lanes int, o *One) {
	if n.Gap == 0 || st.counter < n.Gap-1 || uint32(n.Reorder) < st.reorder.next(draw(fk, nIdx, lanes+laneReorder)) {
		var rnd uint32
		if n.Jitter != 0 {
			rnd = st.delay.next(draw(fk, nIdx, lanes+laneDelay))
		}
		o.Delay = tabledist(n.Latency, int32(n.Jitter), rnd, n.Dist)
		st.counter++
		if n.delays() {
			f.Delayed.Add(1)
		}
		return
	}
	o.Reorder = true
	st.counter = 0
	f.Reordered.Add(1)
}

// ect: the packet is ECN-capable (INET_ECN_set_ce marks only those).
func ect(p *packet.Packet) bool { return len(p.IP) > 1 && p.IP.TOS()&3 != 0 }

func (f *Fault) partitioned(p *packet.Packet) bool {
	src, dst := packet.AddrOf(p.Src), packet.AddrOf(p.Dst)
	in := func(set []netip.Prefix, a netip.Addr) bool {
		for _, q := range set {
			if q.Contains(a) {
				return true
			}
		}
		return false
	}
	ab := in(f.A, src) && in(f.B, dst)
	ba := in(f.B, src) && in(f.A, dst)
	switch f.Dir {
	case AToB:
		return ab
	case BToA:
		return ba
	}
	return ab || ba
}

// Apply does to the packet what d decided for copy o (the original's
// or the duplicate's): corruption, the CE mark, the mangle. data is the
// copy's bytes (the IPv4 packet); p, when not nil, is its decoded view,
// whose fields a mangle keeps in step.
func (f *Fault) Apply(d *Decision, o *One, data []byte, p *packet.Packet) {
	if o.ECN && len(data) >= packet.IPv4MinHeaderLen {
		ip := packet.IPv4(data)
		ip.SetTOS(ip.TOS() | 3)
	}
	if d.Mangled {
		ip := packet.IPv4(data)
		if f.SetTTL {
			ip.SetTTL(f.TTL)
		}
		if f.SetTOS {
			ip.SetTOS(f.TOS)
		}
		if f.SetMark && p != nil {
			p.Mark = p.Mark&^f.MarkMask | f.Mark
		}
		if f.SeqAdd != 0 {
			addTCPSeq(data, f.SeqAdd)
		}
	}
	if o.Corrupt && o.CorruptOff < len(data) {
		data[o.CorruptOff] ^= 1 << o.CorruptBit
	}
}

// addTCPSeq adds n to the sequence number of the TCP segment in data
// (an IPv4 packet; anything else, a fragment or a short header is left
// alone) and updates its checksum incrementally (RFC 1624, eqn. 3), so
// a segment whose checksum was right stays right.
func addTCPSeq(data []byte, n uint32) {
	if len(data) < packet.IPv4MinHeaderLen {
		return
	}
	ip := packet.IPv4(data)
	hl := ip.HeaderLen()
	if ip.Protocol() != packet.ProtoTCP || ip.FragOffset() != 0 || hl < packet.IPv4MinHeaderLen || len(data) < hl+packet.TCPMinHeaderLen {
		return
	}
	t := data[hl:]
	old := binary.BigEndian.Uint32(t[4:])
	nw := old + n
	binary.BigEndian.PutUint32(t[4:], nw)
	sum := uint32(^binary.BigEndian.Uint16(t[16:]))
	sum += uint32(^uint16(old>>16)) + uint32(^uint16(old))
	sum += nw>>16 + nw&0xffff
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(t[16:], ^uint16(sum))
}

// Text is the decision as one line for traces: the fault, the packet's
// index in its flow and what happened.
func (d *Decision) Text() string {
	var b strings.Builder
	b.WriteString(d.Fault.Name)
	b.WriteString(" n=")
	b.WriteString(strconv.FormatUint(d.N, 10))
	b.WriteByte(' ')
	b.WriteString(d.Action())
	return b.String()
}

// Action is what happened, in words: "pass" (matched, not selected),
// "drop", "reject", "ecn", "corrupt byte 12 bit 3", "delay 41.2ms",
// "reorder", "duplicate (...)", "mangle", "accept".
func (d *Decision) Action() string {
	if !d.Acted {
		return "pass"
	}
	if d.Mangled {
		return "mangle"
	}
	switch d.Fault.Kind {
	case KindConntrackClash:
		if d.Raced {
			return "race: a twin of the flow confirmed first"
		}
		return "race: no twin (its tuples are taken)"
	case KindLink:
		return "drop (link down)"
	}
	s := oneText(&d.Orig, d.Fault.Queued())
	if d.HasDup {
		s += "; duplicate: " + oneText(&d.Dup, d.Fault.Queued())
	}
	return s
}

func oneText(o *One, queued bool) string {
	if o.Reject {
		return "reject"
	}
	if o.Drop {
		return "drop"
	}
	var parts []string
	if o.ECN {
		parts = append(parts, "ecn-ce")
	}
	if o.Corrupt {
		parts = append(parts, "corrupt byte "+strconv.Itoa(o.CorruptOff)+" bit "+strconv.Itoa(int(o.CorruptBit)))
	}
	switch {
	case o.Reorder:
		parts = append(parts, "reorder (sent at once)")
	case queued && o.Delay != 0:
		parts = append(parts, "delay "+fmtDur(o.Delay))
	}
	if len(parts) == 0 {
		return "accept"
	}
	return strings.Join(parts, ", ")
}

func fmtDur(ns int64) string {
	return strconv.FormatFloat(float64(ns)/1e6, 'f', 3, 64) + "ms"
}
