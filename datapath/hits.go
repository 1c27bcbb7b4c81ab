package datapath

import (
	"github.com/uswitch-lab/uswitch/iptables"
)

// A worker's batch of replayed counters. A frame the bridged flow
// caches replay (bridgecache.go) adds one packet to every counter of
// its recordings: the class's iptables and ebtables rules, the nat
// PREROUTING walk's rules. One atomic add per counter and frame is most
// of a replay's cost when the counters' cache lines are shared between
// workers, and a lock-prefixed add each even when they are not. A
// Worker instead counts, per recording, the frames that replayed it and
// their bytes (hitBatch, the worker's own memory, no atomics), and adds
// them to the recording's counters at FlushHits, one
// netfilter.HitCounter.AddN per counter: the kernel's per-CPU counters
// summed, here once per batch of frames rather than at each read
// (xt_counters, get_counters in net/ipv4/netfilter/ip_tables.c). A
// front end flushes at the end of each batch it runs (link's workers
// before they write the batch out), so the counters show every frame
// of a batch once it is done; a batch also flushes itself when a
// recording's count or the recordings it holds reach their bounds.
//
// A recording is immutable and names the counters of the configuration
// it was made in, so a flush after a swap counts the frames where they
// were replayed, as a frame running through the old configuration
// during a swap would.

// hitSlots is the recordings a batch holds before it flushes.
const hitSlots = 8

// hitMaxPkts is the frames one recording gathers before the batch
// flushes (its bytes then stay within AddN's one-add arithmetic for
// frames of up to 4 KiB).
const hitMaxPkts = 1 << 12

// hitBatch is a worker's replayed recordings and what they counted:
// the bridged classes and the nat PREROUTING walks apart, each list
// most recent first to find (a flow's frames find theirs at index 0).
// Not safe for concurrent use; the zero value is empty.
type hitBatch struct {
	ncls, npre int
	cls        [hitSlots]hitEntry
	pre        [hitSlots]hitEntry
}

// hitEntry is one recording's frames: a bridged class (cls, whose
// iptables ids are rs's) or a nat PREROUTING walk (pre); ipBytes are the
// bytes as the iptables counters count them (the IP packet), ebtBytes
// as the ebtables counters do (the frame without its MAC header).
type hitEntry struct {
	cls               *bclass
	rs                *iptables.Ruleset
	pre               *preEntry
	pkts              uint64
	ipBytes, ebtBytes uint64
}

// addClass counts a frame that replayed cls (on rule set rs).
func (b *hitBatch) addClass(cls *bclass, rs *iptables.Ruleset, ipBytes, ebtBytes int) {
	if e := &b.cls[0]; b.ncls > 0 && e.cls == cls && e.rs == rs && e.pkts < hitMaxPkts {
		e.pkts++
		e.ipBytes += uint64(ipBytes)
		e.ebtBytes += uint64(ebtBytes)
		return
	}
	b.addClassSlow(cls, rs, ipBytes, ebtBytes)
}

func (b *hitBatch) addClassSlow(cls *bclass, rs *iptables.Ruleset, ipBytes, ebtBytes int) {
	i := 0
	for i < b.ncls && (b.cls[i].cls != cls || b.cls[i].rs != rs) {
		i++
	}
	if i < b.ncls && b.cls[i].pkts >= hitMaxPkts || i == b.ncls && b.ncls == hitSlots {
		b.flush()
		i = 0
	}
	if i == b.ncls {
		b.cls[i] = hitEntry{cls: cls, rs: rs}
		b.ncls++
	}
	// to the front
	e := b.cls[i]
	copy(b.cls[1:i+1], b.cls[:i])
	e.pkts++
	e.ipBytes += uint64(ipBytes)
	e.ebtBytes += uint64(ebtBytes)
	b.cls[0] = e
}

// addPre counts a frame that replayed the nat PREROUTING walk pe.
func (b *hitBatch) addPre(pe *preEntry, ebtBytes int) {
	if e := &b.pre[0]; b.npre > 0 && e.pre == pe && e.pkts < hitMaxPkts {
		e.pkts++
		e.ebtBytes += uint64(ebtBytes)
		return
	}
	b.addPreSlow(pe, ebtBytes)
}

func (b *hitBatch) addPreSlow(pe *preEntry, ebtBytes int) {
	i := 0
	for i < b.npre && b.pre[i].pre != pe {
		i++
	}
	if i < b.npre && b.pre[i].pkts >= hitMaxPkts || i == b.npre && b.npre == hitSlots {
		b.flush()
		i = 0
	}
	if i == b.npre {
		b.pre[i] = hitEntry{pre: pe}
		b.npre++
	}
	e := b.pre[i]
	copy(b.pre[1:i+1], b.pre[:i])
	e.pkts++
	e.ebtBytes += uint64(ebtBytes)
	b.pre[0] = e
}

// flush adds what the batch counted to the recordings' counters and
// empties it.
func (b *hitBatch) flush() {
	for i := 0; i < b.ncls; i++ {
		e := &b.cls[i]
		c := e.cls
		for _, id := range c.ipt[:c.nipt] {
			e.rs.ReplayN(id, e.pkts, e.ipBytes)
		}
		for _, r := range c.ebt[:c.nebt] {
			r.Hits.AddN(e.pkts, e.ebtBytes)
		}
		*e = hitEntry{}
	}
	for i := 0; i < b.npre; i++ {
		e := &b.pre[i]
		for _, r := range e.pre.hits[:e.pre.n] {
			r.Hits.AddN(e.pkts, e.ebtBytes)
		}
		*e = hitEntry{}
	}
	b.ncls, b.npre = 0, 0
}

// pending is the frames the batch holds.
func (b *hitBatch) pending() (n uint64) {
	for i := 0; i < b.ncls; i++ {
		n += b.cls[i].pkts
	}
	for i := 0; i < b.npre; i++ {
		n += b.pre[i].pkts
	}
	return n
}
