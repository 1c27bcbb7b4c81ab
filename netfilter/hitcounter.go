package netfilter

import (
	"runtime"
	"sync/atomic"
)

// HitCounter counts the packets and bytes that matched a rule (xt and
// ebtables counters). A hit is one atomic add, not two: acc holds the
// packets and bytes counted since the last fold, packets in its top 24
// bits and bytes in the low 40, and the add that takes either field past
// half its room folds acc into the 64-bit totals. A fold happens every
// 4 M packets or 512 GiB at most; seq, odd while one runs, lets a reader
// retry rather than see a fold half done (the kernel's readers of its
// per-CPU counters retry on a seqcount likewise, get_counters).
type HitCounter struct {
	acc         atomic.Uint64
	seq         atomic.Uint32
	pkts, bytes atomic.Uint64
}

const (
	accShift = 40
	accBytes = 1<<accShift - 1
	// a fold when the packets reach 1<<22 of their 1<<24 or the bytes
	// 1<<39 of their 1<<40: the adds racing past the mark before the
	// fold (each at most 1<<24 bytes) cannot fill the other half
	foldPkts  = 1 << 22
	foldBytes = 1 << 39
	// foldMarks are the bits one of which is set exactly when a field
	// is at its mark or past it (packets: the field's top two bits)
	foldMarks = 3<<(accShift+22) | foldBytes
	// bigHit is a length too big for acc's arithmetic above; such a
	// hit goes to the totals directly
	bigHit = 1 << 24
)

// Add counts one packet of n bytes.
func (h *HitCounter) Add(n int) {
	if uint(n) >= bigHit {
		h.pkts.Add(1)
		h.bytes.Add(uint64(n))
		return
	}
	if h.acc.Add(1<<accShift|uint64(n))&foldMarks != 0 {
		h.fold()
	}
}

// AddN counts pkts packets of bytes bytes in all (a worker's batch of
// hits on the counter, flushed at once: see datapath.Worker.FlushHits):
// one atomic add, as Add, while they fit acc's arithmetic. The kernel
// keeps per-CPU counters and sums them on read (xt_counters,
// get_counters); a worker's batch is summed into the counter instead,
// once per batch of packets.
func (h *HitCounter) AddN(pkts, bytes uint64) {
	if pkts == 0 {
		return
	}
	if pkts >= bigBatchPkts || bytes >= bigHit {
		h.pkts.Add(pkts)
		h.bytes.Add(bytes)
		return
	}
	if h.acc.Add(pkts<<accShift|bytes)&foldMarks != 0 {
		h.fold()
	}
}

// bigBatchPkts bounds the packets one AddN puts in acc: the adds racing
// past the fold mark (a few goroutines, each under this many packets and
// bigHit bytes) still cannot fill the field's other half
const bigBatchPkts = 1 << 16

// AddShort is Add for a hit of at most 65,535 bytes (an IPv4 packet),
// which needs no test for a big hit: small enough to be inlined into
// the rule walks.
func (h *HitCounter) AddShort(n uint16) {
	if h.acc.Add(1<<accShift|uint64(n))&foldMarks != 0 {
		h.fold()
	}
}

// fold moves acc into the totals, unless another fold is running
// (which takes these hits with it).
func (h *HitCounter) fold() {
	s := h.seq.Load()
	if s&1 != 0 || !h.seq.CompareAndSwap(s, s+1) {
		return
	}
	v := h.acc.Swap(0)
	h.pkts.Add(v >> accShift)
	h.bytes.Add(v & accBytes)
	h.seq.Store(s + 2)
}

// Load returns the packets and bytes counted (0, 0 for nil).
func (h *HitCounter) Load() (pkts, bytes uint64) {
	if h == nil {
		return 0, 0
	}
	for {
		s := h.seq.Load()
		if s&1 == 0 {
			p, b, v := h.pkts.Load(), h.bytes.Load(), h.acc.Load()
			if h.seq.Load() == s {
				return p + v>>accShift, b + v&accBytes
			}
		}
		runtime.Gosched()
	}
}

// Set makes the counts pkts and bytes (a restore's [pkts:bytes], a
// zeroing); a hit counted at the same moment may be lost, as with the
// kernel's own counter replacement.
func (h *HitCounter) Set(pkts, bytes uint64) {
	h.acc.Store(0)
	h.pkts.Store(pkts)
	h.bytes.Store(bytes)
}
