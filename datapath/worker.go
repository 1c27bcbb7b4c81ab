package datapath

import (
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/packet"
)

// Random draws. The kernel draws from per-CPU state (get_random_u32,
// prandom_u32_state in the xt_statistic and IPVS schedulers); uswitch
// draws from a seeded xorshift64* generator per worker, so a seeded run
// with one worker repeats exactly and workers share no lock. Each source
// has two streams: the rules' (statistic, NFQUEUE balance, IPVS
// schedulers, tunnel IP ids) and the ICMP limiter's
// (icmp_global_consume), so the rules' draws do not depend on ICMP
// traffic.

// xorshift is one xorshift64* stream (Vigna, "An experimental
// exploration of Marsaglia's xorshift generators, scrambled", 2016). Its
// state is never zero. Not safe for concurrent use.
type xorshift struct{ s uint64 }

func step(x uint64) uint64 {
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	return x
}

func scramble(x uint64) uint32 { return uint32((x * 0x2545F4914F6CDD1D) >> 32) }

func (r *xorshift) uint32() uint32 {
	r.s = step(r.s)
	return scramble(r.s)
}

// sharedXorshift is xorshift for concurrent callers: the same sequence,
// each draw one compare-and-swap (no lock; concurrent draws take
// distinct steps).
type sharedXorshift struct{ s atomic.Uint64 }

func (r *sharedXorshift) uint32() uint32 {
	for {
		old := r.s.Load()
		x := step(old)
		if r.s.CompareAndSwap(old, x) {
			return scramble(x)
		}
	}
}

// splitmix64 spreads a seed over the 64 bits (Steele, Lea and Flood,
// "Fast splittable pseudorandom number generators", 2014).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// seeds are the initial states of worker index's two streams. Worker 0's
// are the engine's own (Engine.Receive and Send draw from them too).
func seeds(seed uint64, index int) (rules, icmp uint64) {
	if index == 0 {
		return seed | 1, seed*0x9e3779b97f4a7c15 | 1
	}
	m := splitmix64(seed ^ splitmix64(uint64(index)))
	return m | 1, splitmix64(m) | 1
}

// Worker is one goroutine's way into an Engine: the same pipeline with
// its own random source, so goroutines that run packets at once take no
// shared lock or cache line for random draws (statistic, NFQUEUE
// balance, IPVS, ICMP limits). Front ends with a fixed set of workers
// give each its own; Engine.Receive and Send serve callers without one.
// A Worker is not safe for concurrent use.
type Worker struct {
	e          *Engine
	rules, icm xorshift
	// randFn is rules.uint32 as a func value made once (the IPVS
	// schedulers take one; a method value made per packet would
	// allocate)
	randFn func() uint32
	// k is the packet state the worker's packets reuse, without the
	// engine's pool; busy while one runs (a packet run inside another
	// on the same worker takes one from the pool)
	k    *pkt
	busy bool
	// hits are the recordings the worker's bridged frames replayed and
	// what they counted, added to the rule counters at FlushHits
	// (hits.go)
	hits hitBatch
	// bc is the worker's per-frame state of ReceiveFrameInto (the
	// engine's calls take one from a pool)
	bc *bridgeCall
	// bridgeFast counts the frames bridgeFast took (for tests)
	bridgeFast uint64
	// portSet, portName and portRef are the last bridge port a frame
	// of the worker's came in by, in bridge set portSet
	portSet  *bridgeSet
	portName string
	portRef  portRef
}

// NewWorker returns worker index's handle on the engine. Its random
// draws are seeded from the engine's seed and index, so a run repeats
// with the same seed and the same assignment of packets to workers;
// worker 0 draws the same sequence as the engine's own source, so one
// worker repeats a run through Engine.Receive and Send exactly.
func (e *Engine) NewWorker(index int) *Worker {
	r, i := seeds(e.seed, index)
	w := &Worker{e: e, rules: xorshift{r}, icm: xorshift{i}}
	w.randFn = w.rules.uint32
	return w
}

// Receive is Engine.Receive on the worker.
func (w *Worker) Receive(p *packet.Packet, now int64, tr *Tracer) Fate {
	k := w.getPkt(p, now, tr)
	k.receiveTop()
	f := k.fate
	w.putPkt(k)
	return f
}

// Send is Engine.Send on the worker.
func (w *Worker) Send(p *packet.Packet, now int64, tr *Tracer) Fate {
	k := w.getPkt(p, now, tr)
	k.sendTop()
	f := k.fate
	w.putPkt(k)
	return f
}

// getPkt is Engine.newPkt with the worker's own pkt when it is free.
func (w *Worker) getPkt(p *packet.Packet, now int64, tr *Tracer) *pkt {
	if w.busy {
		return w.e.newPkt(p, now, tr, w)
	}
	if w.k == nil {
		w.k = new(pkt)
	}
	w.busy = true
	w.e.initPkt(w.k, w.e.cfg.Load(), p, now, tr, w)
	return w.k
}

// putPkt is Engine.putPkt for a pkt from getPkt.
func (w *Worker) putPkt(k *pkt) {
	if k != w.k {
		w.e.putPkt(k)
		return
	}
	k.reset()
	w.busy = false
}

// ReceiveFrameInto is Engine.ReceiveFrameInto on the worker: the
// frame's per-call state is the worker's own (no pool), its random
// draws are the worker's, and the rule counters that the bridged flow
// caches replay for it gather in the worker's batch: they reach the
// counters (iptables -L -v, ebtables -L --Lc, the saves, metrics) at
// FlushHits, which the worker's owner calls at the end of each batch of
// frames (a batch also flushes itself when full).
func (w *Worker) ReceiveFrameInto(ff *FrameFate, data []byte, port string, now int64, tr *Tracer) {
	w.ReceiveFrameCsum(ff, data, false, port, now, tr)
}

// ReceiveFrameCsum is ReceiveFrameInto for a frame whose device says
// whether it vouched for the IPv4 packet's transport checksum
// (csumValid: a TAP's virtio_net_hdr with DATA_VALID or NEEDS_CSUM, an
// skb CHECKSUM_UNNECESSARY or CHECKSUM_PARTIAL). br_netfilter runs the
// frame through PREROUTING, where conntrack verifies a TCP or UDP
// checksum (udp_error, tcp_error with nf_conntrack_checksum) through
// nf_ip_checksum, which checks only a CHECKSUM_NONE or
// CHECKSUM_COMPLETE skb (net/netfilter/utils.c): a vouched frame is not
// verified (packet.Meta.CsumValid), an unvouched one is, as
// ReceiveFrameInto does.
func (w *Worker) ReceiveFrameCsum(ff *FrameFate, data []byte, csumValid bool, port string, now int64, tr *Tracer) {
	bc := w.bc
	if bc == nil {
		bc = &bridgeCall{w: w}
		w.bc = bc
	}
	bc.csumValid = csumValid
	if tr == nil {
		// receiveFrameCall without a tracer, one call less
		*ff = FrameFate{Out: ff.Out[:0]}
		w.e.receiveFrame(bc, ff, data, port, now, nil)
		bc.reset()
		return
	}
	w.e.receiveFrameCall(bc, ff, data, port, now, tr)
}

// FlushHits adds the rule counters' hits the worker gathered to the
// counters. Call it at the end of each batch of ReceiveFrameInto calls
// (and before reading counters that must show the batch's frames).
func (w *Worker) FlushHits() { w.hits.flush() }

// rand32 is a draw of the rules' stream of the packet's worker.
func (k *pkt) rand32() uint32 {
	if k.w != nil {
		return k.w.rules.uint32()
	}
	return k.e.rules.uint32()
}

// randFunc is rand32 as a func value (made once per worker).
func (k *pkt) randFunc() func() uint32 {
	if k.w != nil {
		return k.w.randFn
	}
	return k.e.randFn
}

// icmpRand32 is a draw of the ICMP limiter's stream.
func (k *pkt) icmpRand32() uint32 {
	if k.w != nil {
		return k.w.icm.uint32()
	}
	return k.e.icm.uint32()
}
