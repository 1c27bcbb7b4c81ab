package iptables

import (
	"math/bits"
	"strconv"

	"github.com/uswitch-lab/uswitch/internal/kernhash"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// NFQUEUE target, revision 3 (iptables 1.8.9 extensions/libxt_NFQUEUE.c;
// kernel net/netfilter/xt_NFQUEUE.c nfqueue_tg_check). It has no table or
// hook restriction. 1.8.9 knows no --fail-open (that is nft's queue
// flag), so it is an unknown option here as there.

// NFQUEUE flag bits (linux/netfilter/xt_NFQUEUE.h NFQ_FLAG_*).
const (
	NFQBypass    = 0x01
	NFQCPUFanout = 0x02
)

// NFQueueTarget is "-j NFQUEUE".
type NFQueueTarget struct {
	QueueNum uint16
	// QueuesTotal is the number of queues balanced over, from
	// QueueNum; 1 without --queue-balance. A balance over all 65536
	// queues wraps to 0, which the kernel refuses.
	QueuesTotal uint16
	Flags       uint16 // NFQ* bits

	given uint32
}

const (
	nfqNum = iota
	nfqBalance
	nfqBypass
	nfqFanout
)

var nfqEntries = []optEntry{
	{name: "queue-num", id: nfqNum, excl: 1 << nfqBalance},
	{name: "queue-balance", id: nfqBalance, excl: 1 << nfqNum},
	{name: "queue-bypass", id: nfqBypass},
	{name: "queue-cpu-fanout", id: nfqFanout, also: 1 << nfqBalance},
}

func (t *NFQueueTarget) Name() string { return "NFQUEUE" }

func (t *NFQueueTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "queue-num":
		v, err := parseUintOpt("NFQUEUE", o.Name, o.Arg, 0, 0xffff)
		if err != nil {
			return err
		}
		t.QueueNum = uint16(v)
		t.given |= 1 << nfqNum
	case "queue-balance":
		// XTTYPE_UINT16RC: 1.8.9's xtopt_parse_mint bounds it by
		// UINT16_MAX, not the entry's UINT16_MAX-1
		r, err := parseMint("NFQUEUE", o.Name, o.Arg, 0xffff, 2)
		if err != nil {
			return err
		}
		if len(r) != 2 {
			return Errorf("Bad range \"%s\"", o.Arg)
		}
		if r[0] >= r[1] {
			return Errorf("%d should be less than %d", r[0], r[1])
		}
		t.QueueNum = uint16(r[0])
		t.QueuesTotal = uint16(r[1] - r[0] + 1)
		t.given |= 1 << nfqBalance
	case "queue-bypass":
		t.Flags |= NFQBypass
		t.given |= 1 << nfqBypass
	case "queue-cpu-fanout":
		t.Flags |= NFQCPUFanout
		t.given |= 1 << nfqFanout
	}
	return nil
}

func (t *NFQueueTarget) Final(r *RuleContext) error {
	return fcheck("NFQUEUE", nfqEntries, t.given)
}

// CheckHooks is nfqueue_tg_check: no queue (a wrapped total) is EINVAL.
// The last queue cannot pass 65535, so its ERANGE case cannot happen.
func (t *NFQueueTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	if t.QueuesTotal == 0 {
		return Errorf("number of total queues is 0")
	}
	return nil
}

// Save is NFQUEUE_save_v3.
func (t *NFQueueTarget) Save(w *SaveWriter) {
	if t.QueuesTotal > 1 {
		last := uint32(t.QueueNum) + uint32(t.QueuesTotal) - 1
		w.Opt("queue-balance", strconv.Itoa(int(t.QueueNum))+":"+strconv.FormatUint(uint64(last), 10))
	} else {
		w.Opt("queue-num", strconv.Itoa(int(t.QueueNum)))
	}
	if t.Flags&NFQBypass != 0 {
		w.Opt("queue-bypass", "")
	}
	if t.Flags&NFQCPUFanout != 0 {
		w.Opt("queue-cpu-fanout", "")
	}
}

// Exec is nfqueue_tg_v3 (net/netfilter/xt_NFQUEUE.c): the queue is
// --queue-num, or with --queue-balance one of QueuesTotal queues from
// QueueNum chosen by nfqueue_hash (include/net/netfilter/nf_queue.h) —
// a hash of the address pair and protocol, the same for both directions
// — or with --queue-cpu-fanout by the processing CPU (queuenum + cpu %
// total). uswitch has no CPUs in its model but workers sharded by flow,
// so the fanout "CPU" is a symmetric flow hash over addresses, protocol
// and ports (fanoutHash): every packet of a flow, either way, lands in
// the same queue, as it would with flow-steered CPUs. --queue-bypass
// sets QueueBypass (NF_VERDICT_FLAG_QUEUE_BYPASS).
func (t *NFQueueTarget) Exec(c *Ctx) TVerdict {
	q := t.QueueNum
	if t.QueuesTotal > 1 {
		init := nfqHashInitval(c.State, c.Env)
		var h uint32
		if t.Flags&NFQCPUFanout != 0 {
			h = fanoutHash(c.Pkt, init) % uint32(t.QueuesTotal)
		} else {
			h = reciprocalScale(nfqHashV4(c.Pkt, init), uint32(t.QueuesTotal))
		}
		q += uint16(h)
	}
	c.QueueNum = q
	c.QueueBypass = t.Flags&NFQBypass != 0
	return TQueue
}

// nfqHashInitval is xt_NFQUEUE.c's jhash_initval: drawn once, non-zero,
// when first needed (init_hashrandom), here from Env.Rand32 so seeded
// runs repeat. Shared by every NFQUEUE rule of an engine (it lives in its
// State, which survives swaps), as the module's is by a kernel's; each
// engine draws its own, so tests with many engines do not depend on
// their order. Without a State, a fixed value.
func nfqHashInitval(st *State, env Env) uint32 {
	if st == nil {
		return kernhash.JhashInitval
	}
	if v := st.nfqHashInit.Load(); v != 0 {
		return v
	}
	var v uint32
	for i := 0; v == 0 && env != nil && i < 8; i++ {
		v = env.Rand32()
	}
	if v == 0 {
		v = kernhash.JhashInitval // no Env (or one that only says 0): any fixed non-zero value
	}
	st.nfqHashInit.CompareAndSwap(0, v)
	return st.nfqHashInit.Load()
}

// nfqHashV4 is hash_v4 (include/net/netfilter/nf_queue.h): jhash_3words
// of the smaller address, the larger one and the protocol. The kernel
// hashes and compares the addresses as stored (network byte order read as
// a native u32); they are byte-swapped here to give what a little-endian
// machine computes.
func nfqHashV4(p *packet.Packet, initval uint32) uint32 {
	s, d := bits.ReverseBytes32(p.Src), bits.ReverseBytes32(p.Dst)
	if s < d {
		return kernhash.Jhash3Words(s, d, uint32(p.Proto), initval)
	}
	return kernhash.Jhash3Words(d, s, uint32(p.Proto), initval)
}

// fanoutHash stands in for the CPU of --queue-cpu-fanout: jhash_3words of
// the ordered address pair and the ordered port pair mixed with the
// protocol, so both directions of a flow agree.
func fanoutHash(p *packet.Packet, initval uint32) uint32 {
	a, b := p.Src, p.Dst
	pa, pb := p.SrcPort, p.DstPort
	if a > b || (a == b && pa > pb) {
		a, b, pa, pb = b, a, pb, pa
	}
	return kernhash.Jhash3Words(a, b, (uint32(pa)<<16|uint32(pb))^uint32(p.Proto), initval)
}

// reciprocalScale is reciprocal_scale (include/linux/math.h): val scaled
// into [0, n) by a multiply instead of a modulo.
func reciprocalScale(val, n uint32) uint32 {
	return uint32(uint64(val) * uint64(n) >> 32)
}

func init() {
	RegisterTarget(&TargetSpec{Name: "NFQUEUE", Options: []Option{
		{Name: "queue-num", Arg: RequiredArg},
		{Name: "queue-balance", Arg: RequiredArg},
		{Name: "queue-bypass"},
		{Name: "queue-cpu-fanout"},
	}, New: func() Target { return &NFQueueTarget{QueuesTotal: 1} }})
}
