package link

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/trace"
)

// Wire faults (package fault): wire:IFACE:ingress faults act right after
// a reader decoded a packet of IFACE, before the engine; wire:IFACE:egress
// faults right before a packet is handed to IFACE's write batch. A fault
// that drops, corrupts or marks does it in place. A fault that holds
// packets (delay, jitter, reorder, rate, slot, duplicate) hands a copy
// to its queue (fault.Queue: netem's limit, tfifo, rate and slots), and
// the runtime's one delay goroutine sends what is due: it sleeps on one
// timer until the earliest queue's next time, or until a new packet is
// queued; no goroutine or timer per packet. A released ingress packet
// goes on with the port's next ingress faults and then through the
// engine on the delay goroutine's own engine worker; a released egress
// packet with the next egress faults and then to the device.
//
//	reader ─ ingress faults ─┬─> workers ─ engine ─ egress faults ─┬─> write
//	                         └─> queue ┐                 queue <───┘
//	                                   └── delay goroutine ──> engine / write
//
// Memory: a queued copy lives in a buffer of the delay goroutine's pool
// from Enqueue until it is written (or dropped); the reader's element
// goes back to its reader at once.

// WithFaults runs the set's wire faults on the datapath's ports (an
// empty set: none yet, SetFaults may add some). The set's epoch is the
// datapath's clock at start (its schedules count from then).
func WithFaults(s *fault.Set) DatapathOption {
	return func(d *Datapath) {
		if s == nil {
			s = &fault.Set{}
		}
		s.SetEpoch(d.Now())
		d.faults = &wireFaults{d: d, kick: make(chan struct{}, 1)}
		d.faults.install(s)
	}
}

// SetFaults replaces the datapath's wire faults with s's (a fault of
// both sets, the same *fault.Fault, keeps its queue and what it holds;
// a removed fault's held packets are dropped, as deleting a netem qdisc
// drops its queue). Make s with the running set's With or Without, so
// its faults count their schedules from the same epoch. The datapath
// must have been made WithFaults.
func (d *Datapath) SetFaults(s *fault.Set) error {
	if d.faults == nil {
		return errors.New("link: the datapath was made without faults (WithFaults)")
	}
	d.faults.mu.Lock()
	defer d.faults.mu.Unlock()
	d.faults.install(s)
	return nil
}

// install publishes s's faults on the ports and their queues (callers
// serialise installs).
func (wf *wireFaults) install(s *fault.Set) {
	old := wf.tab.Load()
	t := &faultTable{set: s, byFault: map[*fault.Fault]*delayQueue{}}
	now := wf.d.Now()
	for _, p := range wf.d.ports {
		pf := &portFaults{ingress: s.Wire(p.name, false), egress: s.Wire(p.name, true)}
		for _, l := range []struct {
			fs     []*fault.Fault
			egress bool
		}{{pf.ingress, false}, {pf.egress, true}} {
			for _, f := range l.fs {
				if !f.Queued() {
					continue
				}
				q := (*delayQueue)(nil)
				if old != nil {
					q = old.byFault[f]
				}
				if q == nil {
					q = &delayQueue{f: f, port: p, egress: l.egress, q: fault.NewQueue[*held](f, now)}
				}
				t.queues = append(t.queues, q)
				t.byFault[f] = q
			}
		}
		p.faults.Store(pf)
	}
	wf.tab.Store(t)
	select {
	case wf.kick <- struct{}{}:
	default:
	}
}

// portFaults are a port's wire faults, in the set's order.
type portFaults struct{ ingress, egress []*fault.Fault }

// faultTable is one installed set: its faults' queues, immutable.
type faultTable struct {
	set     *fault.Set
	queues  []*delayQueue
	byFault map[*fault.Fault]*delayQueue
}

// wireFaults is the datapath's fault state: the installed set and
// queues, and the delay goroutine's wake-up.
type wireFaults struct {
	d    *Datapath
	mu   sync.Mutex // serialises SetFaults
	tab  atomic.Pointer[faultTable]
	kick chan struct{}
	bufs sync.Pool
	// dropped counts packets wire faults dropped (loss, partition,
	// queue limit, a corrupted header)
	dropped atomic.Uint64
}

// delayQueue is one holding fault's queue on one port.
type delayQueue struct {
	mu     sync.Mutex // guards q
	f      *fault.Fault
	port   *port
	egress bool
	q      *fault.Queue[*held]
}

// held is a queued copy: its bytes (a pool buffer) and, for egress, the
// next hop.
type held struct {
	buf []byte
	nh  uint32
}

// after is the index after f in fs (len(fs) when f is not there any
// more: a released packet of a deleted fault skips the rest).
func after(fs []*fault.Fault, f *fault.Fault) int {
	for i, x := range fs {
		if x == f {
			return i + 1
		}
	}
	return len(fs)
}

func (wf *wireFaults) copyOf(b []byte) *held {
	h, _ := wf.bufs.Get().(*held)
	if h == nil {
		h = &held{}
	}
	h.buf = append(h.buf[:0], b...)
	return h
}

func (wf *wireFaults) put(h *held) {
	h.nh = 0
	wf.bufs.Put(h)
}

// enqueue queues the copies d decided (the duplicate first, as netem
// enqueues it at the root before the original's delay) and wakes the
// delay goroutine. It applies each copy's corruption and mark to its
// own bytes.
func (wf *wireFaults) enqueue(q *delayQueue, d *fault.Decision, b []byte, nh uint32, now int64) {
	var hd *held
	if d.HasDup && !d.Dup.Drop {
		hd = wf.copyOf(b)
		hd.nh = nh
	}
	h := wf.copyOf(b)
	h.nh = nh
	q.f.Apply(d, &d.Orig, h.buf, nil)
	q.mu.Lock()
	if _, ok := q.q.Enqueue(now, len(b), &d.Orig, h); !ok {
		wf.put(h)
		wf.dropped.Add(1)
		if hd != nil {
			// the limit drops the duplicate with the original
			wf.put(hd)
			hd = nil
		}
	}
	if hd != nil {
		q.f.Apply(d, &d.Dup, hd.buf, nil)
		if _, ok := q.q.Enqueue(now, len(b), &d.Dup, hd); !ok {
			wf.put(hd)
			wf.dropped.Add(1)
		}
	}
	q.mu.Unlock()
	select {
	case wf.kick <- struct{}{}:
	default:
	}
}

// publish sends a wire fault's decision to the live trace listeners: a
// line in the trace format with "fault" as the table and the placement
// as the chain (the packet has no trace id at the wire: 0).
func (wf *wireFaults) publish(d *fault.Decision) {
	v := "ACCEPT"
	if d.Orig.Drop {
		v = "DROP"
	} else if d.Fault.Queued() {
		v = "QUEUE"
	}
	wf.d.publishTrace([]string{trace.RuleLine(0, "fault", d.Fault.At.String(), 0, v, " "+d.Text())})
}

// faultCtx is a goroutine's reused match context for wire faults.
type faultCtx struct {
	c   iptables.Ctx
	env fault.NoRouteEnv
	d   fault.Decision
}

// ingress runs p's ingress faults from index from on the packet of
// buffer b (decoded as pk). It reports whether the packet goes on to
// the engine now; false: it was dropped or queued (b is no longer
// needed: a queued packet was copied).
func (wf *wireFaults) ingress(fc *faultCtx, p *port, pf *portFaults, pk *packet.Packet, from int, now int64) bool {
	for i := from; i < len(pf.ingress); i++ {
		f := pf.ingress[i]
		fc.env.At = now
		fc.c = iptables.Ctx{Pkt: pk, Hook: netfilter.PreRouting, Env: &fc.env, State: wf.d.eng.State}
		if !f.Decide(&fc.c, now, &fc.d) || !fc.d.Acted {
			continue
		}
		d := &fc.d
		if wf.d.tracing.Load() > 0 {
			wf.publish(d)
		}
		if d.Orig.Drop {
			wf.dropped.Add(1)
			return false
		}
		if f.Queued() {
			if q := wf.tab.Load().byFault[f]; q != nil {
				wf.enqueue(q, d, pk.IP, 0, now)
			}
			return false
		}
		f.Apply(d, &d.Orig, pk.IP, pk)
		if d.Orig.Corrupt && pk.Decode() != nil {
			wf.dropped.Add(1)
			return false
		}
	}
	return true
}

// egress runs p's egress faults from index from on packet b leaving
// through p. It reports whether b goes on to the device now.
func (wf *wireFaults) egress(fc *faultCtx, pk *packet.Packet, p *port, pf *portFaults, b []byte, nh uint32, from int, now int64) bool {
	decoded := false
	for i := from; i < len(pf.egress); i++ {
		f := pf.egress[i]
		if !decoded {
			*pk = packet.Packet{Data: b}
			if pk.Decode() != nil {
				return true // not ours to judge: the device gets it
			}
			pk.OutIf = p.name
			decoded = true
		}
		fc.env.At = now
		fc.c = iptables.Ctx{Pkt: pk, Hook: netfilter.PostRouting, Env: &fc.env, State: wf.d.eng.State}
		if !f.Decide(&fc.c, now, &fc.d) || !fc.d.Acted {
			continue
		}
		d := &fc.d
		if wf.d.tracing.Load() > 0 {
			wf.publish(d)
		}
		if d.Orig.Drop {
			wf.dropped.Add(1)
			return false
		}
		if f.Queued() {
			if q := wf.tab.Load().byFault[f]; q != nil {
				wf.enqueue(q, d, b, nh, now)
			}
			return false
		}
		f.Apply(d, &d.Orig, b, pk)
	}
	return true
}

// run is the delay goroutine: it sends what the queues release, then
// sleeps until the earliest next time or a kick.
func (wf *wireFaults) run() {
	d := wf.d
	defer d.workers.Done()
	w := d.newWorker(0)
	var fc faultCtx
	var pk packet.Packet
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	type out struct {
		q *delayQueue
		h *held
	}
	var due []out
	var done []*held
	for {
		now := d.Now()
		next := int64(math.MaxInt64)
		for _, q := range wf.tab.Load().queues {
			q.mu.Lock()
			for {
				h, ok := q.q.Dequeue(now)
				if !ok {
					break
				}
				due = append(due, out{q, h})
			}
			next = min(next, q.q.Next(now))
			q.mu.Unlock()
		}
		w.now = now
		for _, o := range due {
			p := o.q.port
			pf := p.faults.Load()
			if o.q.egress {
				if wf.egress(&fc, &pk, p, pf, o.h.buf, o.h.nh, after(pf.egress, o.q.f), now) {
					w.emit(p, o.h.buf, o.h.nh, nil)
				}
			} else {
				pk = packet.Packet{Data: o.h.buf}
				if pk.Decode() == nil {
					pk.InIf, pk.InIndex = p.name, p.ifindex
					if wf.ingress(&fc, p, pf, &pk, after(pf.ingress, o.q.f), now) {
						w.runDelayed(&pk)
					}
				} else {
					d.malformed.Add(1)
				}
			}
			done = append(done, o.h)
		}
		if len(due) > 0 {
			w.flush()
			for i, h := range done {
				wf.put(h)
				done[i] = nil
			}
			done = done[:0]
			clear(due)
			due = due[:0]
		}
		if next != math.MaxInt64 && next <= d.Now() {
			continue
		}
		var tc <-chan time.Time
		if next != math.MaxInt64 {
			timer.Reset(time.Duration(next - d.Now()))
			tc = timer.C
		}
		select {
		case <-d.done:
			return
		case <-wf.kick:
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

// runDelayed runs a released ingress packet through the engine and
// sends what leaves, as worker.run does for a read packet.
func (w *worker) runDelayed(p *packet.Packet) {
	d := w.d
	f := w.ew.Receive(p, w.now, nil)
	w.mark = p.Mark
	switch f.Kind {
	case datapath.Forwarded, datapath.Sent:
		b := p.IP
		if f.Datagram != nil {
			b = f.Datagram.IP
		}
		if w.sendFate(&f, b, nil) {
			d.fwd.Add(1)
		}
	case datapath.Delivered:
		d.delivered.Add(1)
	case datapath.Dropped:
		d.dropped.Add(1)
		d.drops.Add(&f)
	case datapath.Held:
		d.held.Add(1)
	default:
		d.other.Add(1)
	}
	w.sendAnswers(f.Answers)
}

// Received is the number of packets read from the devices so far (a
// global packet number: the experiment's timeline stamps fault events
// with it).
func (d *Datapath) Received() uint64 { return d.rx.Load() }

// FaultDrops is the number of packets the wire faults dropped.
func (d *Datapath) FaultDrops() uint64 {
	if d.faults == nil {
		return 0
	}
	return d.faults.dropped.Load()
}

// Faults is the datapath's fault set (nil: none).
func (d *Datapath) Faults() *fault.Set {
	if d.faults == nil {
		return nil
	}
	return d.faults.tab.Load().set
}
