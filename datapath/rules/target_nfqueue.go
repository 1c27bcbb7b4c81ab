package rules

import "strconv"

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
func (t *NFQueueTarget) CheckHooks(tb TableID, hooks HookMask) error {
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

func init() {
	RegisterTarget(&TargetSpec{Name: "NFQUEUE", Options: []Option{
		{Name: "queue-num", Arg: RequiredArg},
		{Name: "queue-balance", Arg: RequiredArg},
		{Name: "queue-bypass"},
		{Name: "queue-cpu-fanout"},
	}, New: func() Target { return &NFQueueTarget{QueuesTotal: 1} }})
}
