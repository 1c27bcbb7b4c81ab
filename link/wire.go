package link

import (
	"os"
	"sync"
	"sync/atomic"
)

// A wire is an in-process cable between two datapaths: what one end's
// datapath writes, the other end's reads, as a veth pair does between two
// namespaces. A lab joins its nodes with wires: a node's eth0 to a port of
// the switch's bridge (Ethernet frames both ways), or one node's device
// to another's (a routed link). Nothing of it is in the kernel.
//
//	datapath A ── Write ─> [ring a->b] ── Read ─> datapath B
//	           <─ Read ─── [ring b->a] <─ Write ──
//
// Each direction is a ring of WireDepth preallocated slots; a Write
// copies each packet into a free slot and never blocks: a full ring
// drops what does not fit and counts it (a NIC's full queue), so two
// datapaths writing to each other can never deadlock. A Read waits for
// the first packet and copies out what is queued. Closing an end ends
// its reads (os.ErrClosed); what the other end writes to it afterwards
// is dropped, as on an unplugged cable.

// WireDepth is how many packets one direction of a wire holds.
const WireDepth = 1024

// wireRing is one direction of a wire.
type wireRing struct {
	mu   sync.Mutex
	cond *sync.Cond
	// slots[(head+i)%len] for i < n hold the queued packets; a slot's
	// backing array is reused (grown to the largest packet it held)
	slots  [][]byte
	head   int
	n      int
	closed bool // the reading end is closed
	// drops counts packets a full or closed ring did not take
	drops atomic.Uint64
}

func newWireRing() *wireRing {
	r := &wireRing{slots: make([][]byte, WireDepth)}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// WireEnd is one end of a wire: a Device.
type WireEnd struct {
	name string
	rx   *wireRing // what this end reads
	tx   *wireRing // what this end writes (the peer's rx)
	once sync.Once
}

// NewWire makes a wire whose ends are called a and b (each end's name is
// the device name its own datapath knows it by).
func NewWire(a, b string) (*WireEnd, *WireEnd) {
	ab, ba := newWireRing(), newWireRing()
	return &WireEnd{name: a, rx: ba, tx: ab}, &WireEnd{name: b, rx: ab, tx: ba}
}

// Name is the end's device name.
func (w *WireEnd) Name() string { return w.name }

// Read waits for a packet and copies out up to len(bufs) of those queued
// (a packet longer than its buffer is cut to it).
func (w *WireEnd) Read(bufs [][]byte, sizes []int) (int, error) {
	r := w.rx
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.n == 0 && !r.closed {
		r.cond.Wait()
	}
	if r.closed {
		return 0, os.ErrClosed
	}
	n := 0
	for n < len(bufs) && r.n > 0 {
		sizes[n] = copy(bufs[n], r.slots[r.head])
		r.head = (r.head + 1) % len(r.slots)
		r.n--
		n++
	}
	return n, nil
}

// Write copies the packets onto the wire; what a full ring has no room
// for, or a closed peer, is dropped (and counted), but taken.
func (w *WireEnd) Write(pkts [][]byte) (int, error) {
	r := w.tx
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.drops.Add(uint64(len(pkts)))
		return len(pkts), nil
	}
	was := r.n
	for _, p := range pkts {
		if r.n == len(r.slots) {
			r.drops.Add(1)
			continue
		}
		i := (r.head + r.n) % len(r.slots)
		r.slots[i] = append(r.slots[i][:0], p...)
		r.n++
	}
	if was == 0 && r.n > 0 {
		r.cond.Signal()
	}
	r.mu.Unlock()
	return len(pkts), nil
}

// Close ends this end's reads; the peer's writes are dropped from then
// on. Idempotent.
func (w *WireEnd) Close() error {
	w.once.Do(func() {
		r := w.rx
		r.mu.Lock()
		r.closed = true
		r.n = 0
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	return nil
}

// Drops is how many packets written towards this end were dropped (its
// ring full, or this end closed).
func (w *WireEnd) Drops() uint64 { return w.rx.drops.Load() }
