package fault

import (
	"container/heap"
	"math"
)

// Queue is the time side of a netem qdisc for one delaying fault: the
// queue limit, the reorder head queue, the tfifo (packets by send time;
// equal times in arrival order, as tfifo_enqueue's rb-tree puts an
// equal key to the right), the rate's chaining from the last queued
// packet, and the slots (netem_enqueue's tail, netem_dequeue). It holds
// values of type T (what the runtime needs to send the packet later)
// and is driven by the caller's clock: Enqueue at the packet's time,
// Dequeue at any later time, Next for when to look again. Not safe for
// concurrent use (the runtime locks it).
type Queue[T any] struct {
	f    *Fault
	head []qitem[T] // __qdisc_enqueue_head: sent before anything else
	tf   tfifo[T]
	seq  uint64
	// last is the latest time_to_send among the queued packets (the
	// rate's reference point, netem_enqueue's `last`)
	last    int64
	hasLast bool
	// slots (struct slotstate): the next slot's start and what is left
	// of the current one; slots counts the slots drawn (their draws'
	// index)
	slotNext               int64
	packetsLeft, bytesLeft int64
	// slotOn: slots run (netem: slot_next != 0, which ktime never is;
	// a caller's clock may start at 0)
	slotOn bool
	slots  uint64
}

type qitem[T any] struct {
	t   int64
	seq uint64
	len int
	v   T
}

type tfifo[T any] []qitem[T]

func (h tfifo[T]) Len() int { return len(h) }
func (h tfifo[T]) Less(i, j int) bool {
	return h[i].t < h[j].t || h[i].t == h[j].t && h[i].seq < h[j].seq
}
func (h tfifo[T]) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *tfifo[T]) Push(x any)   { *h = append(*h, x.(qitem[T])) }
func (h *tfifo[T]) Pop() any {
	old := *h
	x := old[len(old)-1]
	var zero qitem[T]
	old[len(old)-1] = zero
	*h = old[:len(old)-1]
	return x
}

// NewQueue makes f's queue; now is when it is created (a slotted
// queue's first slot starts then, as netem_change sets slot_next).
func NewQueue[T any](f *Fault, now int64) *Queue[T] {
	q := &Queue[T]{f: f}
	n := &f.Netem
	if n.HasSlot {
		q.packetsLeft, q.bytesLeft = slotMax(n.SlotPackets), slotMax(n.SlotBytes)
		if n.SlotMin|n.SlotMax|n.SlotJitter != 0 {
			q.slotNext, q.slotOn = now, true
		}
	}
	return q
}

func slotMax(v int32) int64 {
	if v <= 0 {
		return math.MaxInt32
	}
	return int64(v)
}

// Len is the number of packets held (sch->q.qlen).
func (q *Queue[T]) Len() int { return len(q.head) + len(q.tf) }

// Enqueue queues one copy of a packet of length bytes that the fault
// decided o for, at time now; the copy leaves at the returned time
// (netem's time_to_send). false: the queue is at its limit and the copy
// is dropped (NET_XMIT_DROP).
func (q *Queue[T]) Enqueue(now int64, length int, o *One, v T) (int64, bool) {
	n := &q.f.Netem
	limit := n.Limit
	if limit <= 0 {
		limit = 1000
	}
	if q.Len() >= limit {
		q.f.LimitDrops.Add(1)
		return 0, false
	}
	q.seq++
	if o.Reorder {
		// put at the head: time_to_send = now
		q.head = append(q.head, qitem[T]{t: now, seq: q.seq, len: length, v: v})
		q.note(now)
		return now, true
	}
	delay := o.Delay
	t0 := now
	if n.Rate != 0 {
		if q.hasLast {
			// the last packet in the queue is the reference point
			delay -= q.last - now
			delay = max(delay, 0)
			t0 = q.last
		}
		delay += packetTime(n, length)
	}
	t := t0 + delay
	if q.f.Fifo && q.hasLast && t < q.last {
		t = q.last // order = "fifo": no overtaking
	}
	heap.Push(&q.tf, qitem[T]{t: t, seq: q.seq, len: length, v: v})
	q.note(t)
	return t, true
}

func (q *Queue[T]) note(t int64) {
	if !q.hasLast || t > q.last {
		q.last, q.hasLast = t, true
	}
}

// Dequeue returns the next copy due at now, as netem_dequeue picks it:
// the head queue first, then the tfifo's earliest when its time and the
// current slot have come.
func (q *Queue[T]) Dequeue(now int64) (T, bool) {
	var zero T
	if len(q.head) > 0 {
		it := q.head[0]
		q.head[0] = qitem[T]{}
		q.head = q.head[1:]
		q.emptied()
		return it.v, true
	}
	if len(q.tf) == 0 {
		return zero, false
	}
	t := q.tf[0].t
	if q.slotOn && q.slotNext < t {
		q.nextSlot(now)
	}
	if t <= now && q.slotNext <= now {
		it := heap.Pop(&q.tf).(qitem[T])
		if q.slotOn {
			q.packetsLeft--
			q.bytesLeft -= int64(it.len)
			if q.packetsLeft <= 0 || q.bytesLeft <= 0 {
				q.nextSlot(now)
			}
		}
		q.emptied()
		return it.v, true
	}
	return zero, false
}

func (q *Queue[T]) emptied() {
	if q.Len() == 0 {
		q.hasLast = false
		q.head = q.head[:0:0]
	}
}

// Next is when Dequeue may return something: the earliest of the head
// queue (now), the tfifo's first time and the next slot's start;
// math.MaxInt64 when empty.
func (q *Queue[T]) Next(now int64) int64 {
	if len(q.head) > 0 {
		return now
	}
	if len(q.tf) == 0 {
		return math.MaxInt64
	}
	return max(q.tf[0].t, q.slotNext)
}

// nextSlot is get_slot_next: the next slot starts a random delay from
// now (uniform in [min, max), or the slot distribution) with a fresh
// packet and byte allowance.
func (q *Queue[T]) nextSlot(now int64) {
	n := &q.f.Netem
	q.slots++
	rnd := draw(q.f.key, q.slots, laneInit+dupLanes)
	var d int64
	if n.SlotDist == nil {
		d = n.SlotMin + int64((uint64(n.SlotMax-n.SlotMin)*uint64(rnd))>>32)
	} else {
		d = tabledist(n.SlotDelay, int32(n.SlotJitter), rnd, n.SlotDist)
	}
	q.slotNext = now + d
	q.packetsLeft, q.bytesLeft = slotMax(n.SlotPackets), slotMax(n.SlotBytes)
}
