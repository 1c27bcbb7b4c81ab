//go:build linux

package nfqueue

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// Faults on the verdict path (placement nfqueue:verdict or
// nfqueue:N:verdict, package fault). They see a queued packet after the
// engine decided to accept it, as it will leave (NAT applied), and act
// on its verdict:
//
//	loss, partition   the verdict is NF_DROP (the engine's state, its
//	                  conntrack entry for one, has seen the packet, as
//	                  with a drop after the hook)
//	corrupt, mangle   the packet goes back rewritten (NFQA_PAYLOAD) or
//	                  remarked (NFQA_MARK)
//	delay, jitter,    the verdict is held in the fault's queue
//	rate, slot,       (fault.Queue: netem's limit, tfifo, rate, slots)
//	reorder           and sent when due: meanwhile the packet waits in
//	                  the kernel's queue, where it counts towards
//	                  queue_maxlen (a full queue drops, or accepts with
//	                  fail-open: __nfqnl_enqueue_packet); a verdict
//	                  the queue limit refuses is NF_DROP
//	duplicate         the copy is sent through the namespace's raw
//	                  socket when due (the kernel routes it and runs
//	                  its OUTPUT and POSTROUTING hooks on it: a second
//	                  packet on the wire, as netem's clone is)
//
// A queue with holding faults gives no batch verdicts (a batch verdict
// accepts every lower id still queued, a held one too). Held verdicts
// are lost with the process: Kill sends none. The match sees the
// packet's devices, mark and headers; the engine's conntrack state is
// not at hand there (-m conntrack sees an untracked packet). One
// goroutine sends what the queues release, sleeping on one timer.

// verdictCtx is a deciding goroutine's reused state for verdict faults.
type verdictCtx struct {
	c   iptables.Ctx
	env fault.NoRouteEnv
	d   fault.Decision
	pk  packet.Packet
}

// heldVerdict is a verdict (or a duplicate) a fault holds.
type heldVerdict struct {
	q       *queue
	id      uint32
	verdict netfilter.Verdict
	setMark bool
	mark    uint32
	// payload: the packet's new bytes (nil: unchanged); for dup, the
	// copy to send
	payload []byte
	dup     bool
}

// verdictQueue is one holding fault's queue (shared by the queues the
// fault is on).
type verdictQueue struct {
	mu sync.Mutex
	f  *fault.Fault
	q  *fault.Queue[*heldVerdict]
}

// verdictFaults is the server's verdict-path state.
type verdictFaults struct {
	byFault map[*fault.Fault]*verdictQueue
	queues  []*verdictQueue
	kick    chan struct{}
	// held: verdicts sent late; dups: duplicates sent; dropped:
	// verdicts the faults turned into NF_DROP (loss, limit)
	held, dups, dropped, dupErrs atomic.Uint64
}

// verdictFaultsOf gives queue q its verdict faults of set (before its
// goroutines start), making the server's verdict-path state at the
// first.
func (s *Server) verdictFaultsOf(q *queue, set *fault.Set) {
	q.vf = set.Verdict(q.num)
	if len(q.vf) == 0 {
		q.vf = nil
		return
	}
	q.fwrite = q.writer()
	if s.vf == nil {
		s.vf = &verdictFaults{byFault: map[*fault.Fault]*verdictQueue{}, kick: make(chan struct{}, 1)}
	}
	for _, f := range q.vf {
		if !f.Queued() {
			continue
		}
		q.holds = true
		if s.vf.byFault[f] == nil {
			vq := &verdictQueue{f: f, q: fault.NewQueue[*heldVerdict](f, s.now())}
			s.vf.byFault[f] = vq
			s.vf.queues = append(s.vf.queues, vq)
		}
	}
}

// verdictFault runs q's verdict faults on an accepted packet. It
// reports whether a fault holds the verdict (it leaves later); else dec
// says what leaves now (a drop, a rewrite, a new mark).
func (s *Server) verdictFault(q *queue, vc *verdictCtx, it *Queued, dec *Decision) bool {
	data := dec.Payload
	if data == nil {
		data = it.Payload
	}
	pk := &vc.pk
	*pk = packet.Packet{Data: data}
	if pk.Decode() != nil {
		return false
	}
	if it.InDev != 0 {
		pk.InIf = s.name(int(it.InDev))
	}
	if it.OutDev != 0 {
		pk.OutIf = s.name(int(it.OutDev))
	}
	pk.Mark = dec.Mark
	now := s.now()
	for _, f := range q.vf {
		vc.env.At = now
		vc.c = iptables.Ctx{Pkt: pk, Hook: it.Hook, Env: &vc.env, State: s.eng.State}
		if !f.Decide(&vc.c, now, &vc.d) || !vc.d.Acted {
			continue
		}
		d := &vc.d
		if d.Orig.Drop {
			s.faultDrop(dec, f)
			return false
		}
		if f.Queued() {
			if vq := s.vf.byFault[f]; vq != nil && s.hold(q, vq, d, it, dec, pk, now) {
				return true
			}
			s.faultDrop(dec, f) // the queue's limit
			return false
		}
		f.Apply(d, &d.Orig, pk.IP, pk)
		dec.Payload = pk.IP
		if pk.Mark != it.Mark {
			dec.Mark, dec.SetMark = pk.Mark, true
		}
		if d.Orig.Corrupt && pk.Decode() != nil {
			// the header no longer decodes: the kernel gets the bytes,
			// later faults see nothing
			return false
		}
	}
	return false
}

func (s *Server) faultDrop(dec *Decision, f *fault.Fault) {
	dec.Verdict = netfilter.Drop
	dec.Payload, dec.SetMark = nil, false
	dec.Fate.Kind = datapath.Dropped
	dec.Fate.Reason, dec.Fate.Arg = datapath.DropFault, f.Name
	s.vf.dropped.Add(1)
}

// hold queues the verdict (and the duplicate, first, as netem enqueues
// it) at now; false: the limit refused the original.
func (s *Server) hold(q *queue, vq *verdictQueue, d *fault.Decision, it *Queued, dec *Decision, pk *packet.Packet, now int64) bool {
	var dup *heldVerdict
	if d.HasDup && !d.Dup.Drop {
		dup = &heldVerdict{q: q, dup: true, payload: append([]byte(nil), pk.IP...)}
		vq.f.Apply(d, &d.Dup, dup.payload, nil)
	}
	h := &heldVerdict{q: q, id: it.ID, verdict: dec.Verdict, setMark: dec.SetMark, mark: dec.Mark}
	if dec.Payload != nil || d.Orig.Corrupt || d.Orig.ECN || d.Mangled {
		h.payload = append([]byte(nil), pk.IP...)
		vq.f.Apply(d, &d.Orig, h.payload, nil)
		if d.Mangled && vq.f.SetMark {
			h.mark = h.mark&^vq.f.MarkMask | vq.f.Mark
			h.setMark = h.mark != it.Mark
		}
	}
	vq.mu.Lock()
	_, ok := vq.q.Enqueue(now, len(pk.IP), &d.Orig, h)
	if ok && dup != nil {
		vq.q.Enqueue(now, len(pk.IP), &d.Dup, dup)
	}
	vq.mu.Unlock()
	if ok {
		select {
		case s.vf.kick <- struct{}{}:
		default:
		}
	}
	return ok
}

// runVerdictFaults is the goroutine that sends the held verdicts and
// duplicates when due.
func (s *Server) runVerdictFaults(done <-chan struct{}) {
	defer s.wg.Done()
	vf := s.vf
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*heldVerdict
	for {
		now := s.now()
		next := int64(math.MaxInt64)
		for _, vq := range vf.queues {
			vq.mu.Lock()
			for {
				h, ok := vq.q.Dequeue(now)
				if !ok {
					break
				}
				due = append(due, h)
			}
			next = min(next, vq.q.Next(now))
			vq.mu.Unlock()
		}
		for i, h := range due {
			s.release(h)
			due[i] = nil
		}
		due = due[:0]
		if next != math.MaxInt64 && next <= s.now() {
			continue
		}
		var tc <-chan time.Time
		if next != math.MaxInt64 {
			timer.Reset(time.Duration(next - s.now()))
			tc = timer.C
		}
		select {
		case <-done:
			return
		case <-vf.kick:
		case <-tc:
		}
		if tc != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// release sends a held verdict, or a duplicate through the raw socket;
// nothing once the datapath was killed (the kernel dropped the packet
// when the socket went).
func (s *Server) release(h *heldVerdict) {
	if s.killed.Load() {
		return
	}
	if h.dup {
		if len(h.payload) < packet.IPv4MinHeaderLen || s.raw < 0 {
			return
		}
		var dst unix.SockaddrInet4
		copy(dst.Addr[:], h.payload[16:20])
		if err := unix.Sendto(s.raw, h.payload, 0, &dst); err != nil {
			s.vf.dupErrs.Add(1)
			return
		}
		s.vf.dups.Add(1)
		return
	}
	s.vf.held.Add(1)
	s.send(h.q, h.q.fwrite, appendVerdict(nil, h.q.num, h.id, h.verdict, false, h.setMark, h.mark, h.payload), 1)
}

// VerdictFaultStats are the verdict path's counts: verdicts held and
// sent late, duplicates sent (and failed), verdicts turned into drops.
type VerdictFaultStats struct {
	Held, Duplicates, DuplicateErrors, Dropped uint64
}

// VerdictFaults returns the verdict path's counts (zero without
// verdict faults).
func (s *Server) VerdictFaults() VerdictFaultStats {
	if s.vf == nil {
		return VerdictFaultStats{}
	}
	return VerdictFaultStats{Held: s.vf.held.Load(), Duplicates: s.vf.dups.Load(), DuplicateErrors: s.vf.dupErrs.Load(), Dropped: s.vf.dropped.Load()}
}
