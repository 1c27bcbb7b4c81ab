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

// hitBatch is a worker's replayed recordings and what they counted.
// Not safe for concurrent use; the zero value is empty.
type hitBatch struct {
	n int
	e [hitSlots]hitEntry
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
	for i := 0; i < b.n; i++ {
		if e := &b.e[i]; e.cls == cls && e.rs == rs {
			e.pkts++
			e.ipBytes += uint64(ipBytes)
			e.ebtBytes += uint64(ebtBytes)
			if e.pkts == hitMaxPkts {
				b.flush()
			}
			return
		}
	}
	if b.n == hitSlots {
		b.flush()
	}
	b.e[b.n] = hitEntry{cls: cls, rs: rs, pkts: 1, ipBytes: uint64(ipBytes), ebtBytes: uint64(ebtBytes)}
	b.n++
}

// addPre counts a frame that replayed the nat PREROUTING walk pe.
func (b *hitBatch) addPre(pe *preEntry, ebtBytes int) {
	for i := 0; i < b.n; i++ {
		if e := &b.e[i]; e.pre == pe {
			e.pkts++
			e.ebtBytes += uint64(ebtBytes)
			if e.pkts == hitMaxPkts {
				b.flush()
			}
			return
		}
	}
	if b.n == hitSlots {
		b.flush()
	}
	b.e[b.n] = hitEntry{pre: pe, pkts: 1, ebtBytes: uint64(ebtBytes)}
	b.n++
}

// flush adds what the batch counted to the recordings' counters and
// empties it.
func (b *hitBatch) flush() {
	for i := 0; i < b.n; i++ {
		e := &b.e[i]
		if c := e.cls; c != nil {
			for _, id := range c.ipt[:c.nipt] {
				e.rs.ReplayN(id, e.pkts, e.ipBytes)
			}
			for _, r := range c.ebt[:c.nebt] {
				r.Hits.AddN(e.pkts, e.ebtBytes)
			}
		} else if pe := e.pre; pe != nil {
			for _, r := range pe.hits[:pe.n] {
				r.Hits.AddN(e.pkts, e.ebtBytes)
			}
		}
		*e = hitEntry{}
	}
	b.n = 0
}

// pending is the frames the batch holds.
func (b *hitBatch) pending() (n uint64) {
	for i := 0; i < b.n; i++ {
		n += b.e[i].pkts
	}
	return n
}
