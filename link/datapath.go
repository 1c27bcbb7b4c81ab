package link

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/encap"
	"github.com/uswitch-lab/uswitch/internal/prom"
	"github.com/uswitch-lab/uswitch/packet"
)

// The live datapath: a fixed goroutine topology, nothing per packet.
//
//	TUN a ─ reader a ─┐                      ┌─ worker 0 ─ Engine.Receive ─┐
//	TUN b ─ reader b ─┼─ by flow hash ───────┼─ worker 1 ─ Engine.Receive ─┼─ write to the TUN of
//	  ...             │  (bounded queues of  │   ...                       │  Fate.OutIf (and of
//	TUN n ─ reader n ─┘   batches)           └─ worker W ─ Engine.Receive ─┘  each Answer's OutIf)
//
// A reader reads a batch of packets into buffers it preallocated, decodes
// each once, and appends it to the batch of the worker its flow hashes
// to, so the packets of one flow direction are handled in order by one
// worker. A worker runs the engine on each packet and writes what leaves
// in one batched write per output device.
//
// A TUN may have several queues (IFF_MULTI_QUEUE, tun_linux.go): each
// is a Device of the port's name with a reader of its own; the kernel
// keeps a flow on one queue. Worker w writes to queue w mod the port's
// queues. With inline (run to completion), there are no workers: each
// reader runs the engine on its batch itself and writes to the queues
// of its own index, so a flow stays on one queue index on every TUN
// (the kernel steers a flow's packets to the queue its replies were
// written on: tun_flow_update), one goroutine per queue:
//
//	TUN a queue i ─ reader a/i ─ Engine.Receive ─ write to queue i of Fate.OutIf
//
// Memory ownership: each reader owns a fixed set of elements (a buffer of
// the device's MTU plus ethHeaderLen of headroom, and a packet.Packet). A
// TUN's packet is read after the headroom; a TAP's frame is read from
// the start, its Ethernet header filling the headroom; so every packet
// has room for an Ethernet header in front (tap.go). An element goes reader -> one
// worker -> back to its reader's free list after the worker has written
// it; nothing retains it after that. Answers are packets the engine made
// and are dropped after being written. A device with offloads may
// rewrite the headers of a packet it is given to write (coalescing,
// offload.go) before it returns; nothing reads them after.

const (
	// batchSize is how many packets one read and one worker batch hold.
	batchSize = 64
	// elemsPerPort bounds the packets a reader has in flight.
	elemsPerPort = 512
	// queueDepth is the capacity, in batches, of each worker's queue.
	queueDepth = 64
	// DefaultMTU is a TUN's MTU when the config gives none.
	DefaultMTU = 1500
)

// Device is a batch packet device: a TUN, or a fake in tests.
type Device interface {
	Name() string
	// Read reads up to len(bufs) packets, waiting for the first;
	// sizes[i] is the length of packet i; the n packets are valid even
	// when err is not nil.
	Read(bufs [][]byte, sizes []int) (n int, err error)
	// Write writes the packets, returning how many were taken.
	Write(pkts [][]byte) (int, error)
	Close() error
}

// validReader is a Device that says which packets it read came with
// their transport checksum vouched for (Queue.ReadValid).
type validReader interface {
	ReadValid(bufs [][]byte, sizes []int, valid []bool) (int, error)
}

type elem struct {
	buf  []byte
	pkt  packet.Packet
	from *rxq
	// frame is set for a bridge port's frame (the whole frame in buf);
	// pkt is then unused
	frame []byte
	// valid: the device vouched for the frame's transport checksum
	// (ReadValid)
	valid bool
}

// rxq is one queue of a port: its device and its reader's elements.
type rxq struct {
	p    *port
	dev  Device
	free chan *elem
}

type port struct {
	// dev is the first queue's device (a TAP's only one: its ARP
	// goes there); queues are all of them, in order.
	dev    Device
	queues []*rxq
	name   string
	mtu    int
	// ifindex is the port's index in the engine's FIB at start (0:
	// none); the engine checks it against the name
	ifindex int
	// decap opens the tunnel packets written to the device (nil: none);
	// set before the goroutines start, read-only after (decap.go).
	decap *decapSpec
	// l2 is the Ethernet side of a TAP port (nil: a TUN); set before
	// the goroutines start (tap.go).
	l2 *tapPort
	// bridge: the TAP is a port of one of the engine's bridges; its
	// frames go to Engine.ReceiveFrame whole (set before the start)
	bridge bool
	// faults are the port's wire faults (fault.go; nil: none),
	// swapped whole by SetFaults
	faults atomic.Pointer[portFaults]
	// tun: the port is a tunnel device the workers play (tunnel.go);
	// it has no queues; set before the start
	tun *tunnel
	// host: the port is a TUN into the host's own stack (WithHost):
	// what it reads runs OUTPUT (Engine.Send), and it is written the
	// packets the engine delivers locally; set before the start
	host bool
}

// WithHost makes the TUN dev a port to the host's own network stack (a
// lab node's host namespace, whose sockets are the node's): the packets
// read from it are the host's own, run from OUTPUT on (Engine.Send),
// and the packets the engine delivers locally are written to it instead
// of being answered by the engine (datapath.Config.HostStack) — those
// that came in on one of the devices mirrors names (the node device
// the host TUN stands for), and, for the first host port, every other.
func WithHost(dev string, mirrors ...string) DatapathOption {
	return func(d *Datapath) {
		p := d.byName[dev]
		if p == nil {
			return
		}
		p.host = true
		d.hosts = append(d.hosts, p)
		if d.hostFor == nil {
			d.hostFor = map[string]*port{}
		}
		for _, m := range mirrors {
			d.hostFor[m] = p
		}
	}
}

// WithBridgePort makes the TAP device dev a port of a bridge of the
// engine (datapath.BridgeConfig): the frames read from it are bridged
// by the engine, and the frames the engine sends out of it are written
// as they are.
func WithBridgePort(dev string) DatapathOption {
	return func(d *Datapath) {
		if p := d.byName[dev]; p != nil {
			p.bridge = true
		}
	}
}

type work struct{ elems []*elem }

// Stats are the datapath's counters.
type Stats struct {
	Received  uint64 // packets read from the devices
	NotIPv4   uint64 // IPv6 and other versions (the namespaces' own IPv6 chatter)
	Malformed uint64 // failed packet.Decode otherwise (bad header, length...)
	Forwarded uint64
	// FlowCached counts the packets whose table runs and input route
	// the engine's flow cache replayed (datapath/flowcache.go)
	FlowCached uint64
	Delivered  uint64 // to uswitch itself (answered by the engine)
	Answers    uint64 // packets the engine generated and uswitch sent
	Dropped    uint64
	Other      uint64 // queued, stolen
	// Held are fragments that waited for their datagram (reassembly);
	// FragTimeouts the fragments dropped when it timed out
	Held, FragTimeouts uint64
	NoDevice           uint64 // leaving through an interface with no device
	TxErrors           uint64
	// OffloadErrors are packets the devices' offloads dropped on
	// reading: malformed super-packets or checksum offsets (offload.go).
	OffloadErrors uint64
	// WireDrops are packets a full wire (an in-process link between
	// two datapaths, wire.go) dropped on their way to this datapath.
	WireDrops uint64
	// GSOIn are the super-packets read from the devices and cut into
	// segments; GROOut the super-packets written, each coalesced from
	// several segments (offload.go).
	GSOIn, GROOut uint64
	// Drops counts the engine's drops by reason (datapath.DropKey).
	Drops map[datapath.DropKey]uint64

	// TAP ports (tap.go, neigh.go); Malformed also counts frames
	// shorter than an Ethernet header and bad ARP messages.
	ARPReplied    uint64 // ARP requests for uswitch's addresses answered
	ARPRequested  uint64 // ARP requests uswitch sent to resolve a next hop
	Unresolved    uint64 // packets dropped waiting for a MAC (queue full, no answer)
	NotIPv4Frames uint64 // frames neither IPv4 nor ARP (IPv6, 802.3...): dropped
	VLANFrames    uint64 // VLAN-tagged frames: dropped
	OtherHost     uint64 // frames to another host's MAC: dropped (ip_rcv)
}

func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d packets in, %d forwarded, %d to uswitch itself, %d answers sent, %d dropped",
		s.Received, s.Forwarded, s.Delivered, s.Answers, s.Dropped)
	if s.FlowCached > 0 {
		fmt.Fprintf(&b, ", %d from the flow cache", s.FlowCached)
	}
	if s.Malformed > 0 {
		fmt.Fprintf(&b, ", %d malformed", s.Malformed)
	}
	if s.NotIPv4 > 0 {
		fmt.Fprintf(&b, ", %d not IPv4 (ignored)", s.NotIPv4)
	}
	if s.ARPReplied+s.ARPRequested > 0 {
		fmt.Fprintf(&b, ", ARP: %d requests answered, %d sent", s.ARPReplied, s.ARPRequested)
	}
	if s.Unresolved > 0 {
		fmt.Fprintf(&b, ", %d dropped unresolved", s.Unresolved)
	}
	if n := s.NotIPv4Frames + s.VLANFrames + s.OtherHost; n > 0 {
		fmt.Fprintf(&b, ", %d frames ignored (%d not IPv4, %d VLAN, %d to other hosts)", n, s.NotIPv4Frames, s.VLANFrames, s.OtherHost)
	}
	if s.GSOIn+s.GROOut > 0 {
		fmt.Fprintf(&b, ", offloads: %d super-packets in, %d out", s.GSOIn, s.GROOut)
	}
	if s.OffloadErrors > 0 {
		fmt.Fprintf(&b, ", %d dropped by offloads", s.OffloadErrors)
	}
	if s.WireDrops > 0 {
		fmt.Fprintf(&b, ", %d dropped by full wires", s.WireDrops)
	}
	if s.TxErrors > 0 || s.NoDevice > 0 {
		fmt.Fprintf(&b, ", %d write errors, %d without device", s.TxErrors, s.NoDevice)
	}
	if len(s.Drops) > 0 {
		keys := make([]string, 0, len(s.Drops))
		by := map[string]uint64{}
		for k, n := range s.Drops {
			keys = append(keys, k.String())
			by[k.String()] = n
		}
		sort.Strings(keys)
		b.WriteString(" (")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s: %d", k, by[k])
		}
		b.WriteString(")")
	}
	return b.String()
}

// Datapath moves packets between devices through an Engine.
type Datapath struct {
	eng    *datapath.Engine
	ports  []*port
	byName map[string]*port // immutable after NewDatapath
	// byIndex are the ports by their index in the engine's FIB at start
	// (nil where none): the output port of a Fate without a map lookup;
	// immutable after NewDatapath
	byIndex []*port
	queues  []chan *work
	start   time.Time

	readers sync.WaitGroup
	workers sync.WaitGroup
	done    chan struct{}
	once    sync.Once
	works   sync.Pool
	// inline: readers run the engine themselves (WithInline); set
	// before the goroutines start.
	inline bool

	rx, notIPv4, malformed, fwd, delivered, answers, dropped, other, nodev, txerr atomic.Uint64
	// held: fragments waiting for their datagram; fragTimeouts:
	// fragments dropped when their reassembly timed out
	held, fragTimeouts atomic.Uint64
	flowCached         atomic.Uint64

	drops datapath.DropCounts

	// live trace (xtables-monitor --trace): while someone listens, the
	// workers run the engine with a tracer and publish the lines of the
	// packets -j TRACE marked
	tracing atomic.Int32
	tmu     sync.Mutex // guards tsubs
	tsubs   map[chan string]struct{}
	// nworkers numbers the engine workers made (newWorker)
	nworkers atomic.Int64
	tdropped atomic.Uint64 // lines a slow listener missed

	// live paths (paths.go): while someone listens, the workers record
	// the path events of the packets -j TRACE marks and of a sample of
	// the others
	pathing atomic.Int32
	pmu     sync.Mutex // guards psubs
	psubs   map[chan []datapath.PathEvent]struct{}
	// psample is when the last sampled packet was taken (Now's clock)
	psample atomic.Int64

	// packet capture: while someone captures, readers and workers copy
	// the packets of the captured devices to the capturers
	capturing atomic.Int32
	cmu       sync.Mutex // guards csubs
	csubs     map[*capture]struct{}
	cdropped  atomic.Uint64 // packets a slow capturer missed
	// errc reports a device that failed other than by being closed.
	errc chan error
	// faults are the wire faults and their delay queues (fault.go;
	// nil: none); set before the goroutines start
	faults *wireFaults
	// kill: datapath-kill and -stall (kill.go)
	kill killState
	// hosts are the host ports (WithHost), the first the default one;
	// hostFor the host port of each device a host port mirrors; set
	// before the goroutines start, read-only after
	hosts   []*port
	hostFor map[string]*port
	// tunnels are the tunnel ports (WithVXLAN, WithIPIP); set before
	// the start
	tunnels []*port
}

// NewDatapath starts the readers, workers and the conntrack reaper over
// the devices; devices of one name are the queues of one port; mtu
// gives each device's buffer size (missing: 1500); the options are
// applied before anything starts.
func NewDatapath(eng *datapath.Engine, devs []Device, mtu map[string]int, workers int, opts ...DatapathOption) *Datapath {
	if workers <= 0 {
		workers = 1
	}
	d := &Datapath{eng: eng, byName: map[string]*port{}, start: time.Now(), done: make(chan struct{}),
		errc: make(chan error, len(devs))}
	d.works.New = func() any { return &work{elems: make([]*elem, 0, batchSize)} }
	for _, dv := range devs {
		p := d.byName[dv.Name()]
		if p == nil {
			m := mtu[dv.Name()]
			if m == 0 {
				m = DefaultMTU
			}
			p = &port{dev: dv, name: dv.Name(), mtu: m}
			d.ports = append(d.ports, p)
			d.byName[p.name] = p
		}
		q := &rxq{p: p, dev: dv, free: make(chan *elem, elemsPerPort)}
		for range elemsPerPort {
			q.free <- &elem{buf: make([]byte, ethHeaderLen+p.mtu), from: q}
		}
		p.queues = append(p.queues, q)
	}
	if fib := eng.Config().FIB; fib != nil {
		for _, p := range d.ports {
			if i := fib.Ifindex(p.name); i > 0 {
				p.ifindex = i
				if i >= len(d.byIndex) {
					d.byIndex = append(d.byIndex, make([]*port, i+1-len(d.byIndex))...)
				}
				d.byIndex[i] = p
			}
		}
	}
	for _, o := range opts {
		o(d)
	}
	if !d.inline {
		for i := range workers {
			q := make(chan *work, queueDepth)
			d.queues = append(d.queues, q)
			d.workers.Add(1)
			go d.worker(q, i)
		}
	}
	for _, p := range d.ports {
		for i, q := range p.queues {
			d.readers.Add(1)
			go d.reader(q, i)
		}
	}
	d.workers.Add(1)
	go d.reaper()
	if d.faults != nil {
		d.workers.Add(2)
		go d.faults.run()
		go d.faults.ticker()
	}
	return d
}

// Now is the engine's clock: monotonic nanoseconds since the start.
func (d *Datapath) Now() int64 { return int64(time.Since(d.start)) + 1 }

// flowHash spreads flows over workers; every packet of one direction of
// a flow hashes alike. Fragments hash on addresses and protocol only, so
// a first fragment (which has ports) stays with the others.
func flowHash(p *packet.Packet) uint32 {
	h := p.Src*0x9e3779b1 ^ p.Dst ^ uint32(p.Proto)<<24
	if p.HasL4 && !p.IP.IsFragment() {
		h ^= (uint32(p.SrcPort)<<16 | uint32(p.DstPort)) * 0x85ebca6b
	}
	h ^= h >> 15
	h *= 0x2c1b3c6d
	h ^= h >> 12
	return h
}

// frameHash spreads a bridge port's frames over workers by their
// addresses, so one conversation's frames keep their order.
func frameHash(f []byte) uint32 {
	var h uint32 = 0x811c9dc5
	for i := 0; i < 12 && i < len(f); i++ {
		h = (h ^ uint32(f[i])) * 0x01000193
	}
	return h
}

// WithInline makes the readers run the engine on what they read
// themselves (run to completion), with no workers.
func WithInline() DatapathOption { return func(d *Datapath) { d.inline = true } }

func (d *Datapath) reader(q *rxq, qi int) {
	defer d.readers.Done()
	p := q.p
	stash := make([]*elem, 0, batchSize)
	bufs := make([][]byte, batchSize)
	sizes := make([]int, batchSize)
	// valid says which packets the device vouched the checksum of
	vr, _ := q.dev.(validReader)
	valid := make([]bool, batchSize)
	pending := make([]*work, len(d.queues))
	// inline: this reader is the worker of its batches
	var self *worker
	var batch []*elem
	// fc is this reader's context for ingress faults (made at the
	// first)
	var fc *faultCtx
	if d.inline {
		self = d.newWorker(qi)
		batch = make([]*elem, 0, batchSize)
	}
	// a TUN's packets are read after the headroom; a TAP's frames from
	// the start of the buffer
	hr := ethHeaderLen
	if p.l2 != nil || p.bridge {
		hr = 0
	}
	for {
		if !d.waitStall() {
			return
		}
		// gather free elements: wait for one, take what else is free
		if len(stash) == 0 {
			select {
			case el := <-q.free:
				stash = append(stash, el)
			case <-d.done:
				return
			}
		}
	fill:
		for len(stash) < batchSize {
			select {
			case el := <-q.free:
				stash = append(stash, el)
			default:
				break fill
			}
		}
		for i, el := range stash {
			bufs[i] = el.buf[hr:cap(el.buf)]
		}
		var n int
		var err error
		clear(valid)
		if vr != nil {
			n, err = vr.ReadValid(bufs[:len(stash)], sizes[:len(stash)], valid[:len(stash)])
		} else {
			n, err = q.dev.Read(bufs[:len(stash)], sizes[:len(stash)])
		}
		// what was read waits out a stall that began meanwhile
		if n > 0 && !d.waitStall() {
			for _, el := range stash {
				q.free <- el
			}
			return
		}
		var now int64
		if p.l2 != nil && n > 0 {
			now = d.Now()
		}
		for i := range n {
			el := stash[i]
			d.rx.Add(1)
			if p.bridge {
				el.frame, el.valid = el.buf[:sizes[i]], valid[i]
				if self != nil {
					batch = append(batch, el)
					continue
				}
				w := frameHash(el.frame) % uint32(len(d.queues))
				if pending[w] == nil {
					pending[w] = d.works.Get().(*work)
				}
				pending[w].elems = append(pending[w].elems, el)
				continue
			}
			if p.l2 != nil {
				ip, pt, ok := p.l2.input(el.buf[:sizes[i]], now, p.dev)
				if !ok {
					q.free <- el
					continue
				}
				el.pkt = packet.Packet{Data: ip, L2: el.buf[:ethHeaderLen:ethHeaderLen]}
				el.pkt.PktType = pt
			} else {
				el.pkt = packet.Packet{Data: el.buf[hr : hr+sizes[i]]}
			}
			if el.pkt.Decode() != nil {
				if len(el.pkt.Data) == 0 || el.pkt.Data[0]>>4 != 4 {
					d.notIPv4.Add(1)
				} else {
					d.malformed.Add(1)
				}
				q.free <- el
				continue
			}
			if !p.host {
				// the host's own packets have no input device
				el.pkt.InIf, el.pkt.InIndex = p.name, p.ifindex
			}
			el.pkt.CsumValid = valid[i]
			if d.capturing.Load() > 0 {
				d.tap(p.name, el.pkt.Data)
			}
			if pf := p.faults.Load(); pf != nil && len(pf.ingress) > 0 {
				if fc == nil {
					fc = new(faultCtx)
				}
				if !d.faults.ingress(fc, p, pf, &el.pkt, 0, d.Now()) {
					q.free <- el
					continue
				}
			}
			if self != nil {
				batch = append(batch, el)
				continue
			}
			w := flowHash(&el.pkt) % uint32(len(d.queues))
			if pending[w] == nil {
				pending[w] = d.works.Get().(*work)
			}
			pending[w].elems = append(pending[w].elems, el)
		}
		stash = append(stash[:0], stash[n:]...)
		if self != nil && len(batch) > 0 {
			self.run(batch)
			clear(batch)
			batch = batch[:0]
		}
		for w, wk := range pending {
			if wk != nil {
				d.queues[w] <- wk
				pending[w] = nil
			}
		}
		if err != nil {
			if d.kill.killed.Load() && d.waitRestart() {
				continue // a datapath-kill's restart opened the device again
			}
			if !errors.Is(err, os.ErrClosed) && !errors.Is(err, io.EOF) {
				select {
				case d.errc <- fmt.Errorf("%s: read: %w", p.name, err):
				default:
				}
			}
			for _, el := range stash {
				q.free <- el
			}
			return
		}
	}
}

// out collects a worker's packets per output device for one batch.
type out struct {
	p    *port
	pkts [][]byte
}

// worker is a worker's state: what one goroutine running the engine
// (a worker, or an inline reader) reuses from batch to batch.
type worker struct {
	d *Datapath
	// ew runs the engine with this worker's own random source
	ew *datapath.Worker
	// idx picks the queue of a multi-queue port written to
	idx  int
	outs []out
	wtr  datapath.Tracer
	// held are the pooled frames of this batch's TAP writes, released
	// once the batch is written
	held []*frameBuf
	now  int64
	// fc and fpkt serve the egress faults (fault.go), made at the
	// first
	fc   *faultCtx
	fpkt packet.Packet
	// ff is the fate of the bridge frame being run, reused (its Out
	// keeps its capacity)
	ff datapath.FrameFate
	// mark is the mark of the packet whose fate is being sent: a
	// tunnel's outer packet keeps it (tunnel.go)
	mark uint32
	// tunnel packets (tunnel.go): tunq waits to run after the current
	// packet, tused were run and are written with the batch, tfree
	// are free; cur is the one running (nil: a read packet); tw is
	// the L2 code's writer on a vxlan port; remotes a lookup's
	// scratch
	tunq, tused, tfree []*tunPkt
	cur                *tunPkt
	tw                 tunnelWriter
	remotes            []encap.Remote
}

func (d *Datapath) newWorker(idx int) *worker {
	// every worker (an inline reader is one) draws from a stream of its
	// own: no lock, no shared generator state
	ew := d.eng.NewWorker(int(d.nworkers.Add(1) - 1))
	return &worker{d: d, ew: ew, idx: idx, outs: make([]out, 0, len(d.ports))}
}

func (d *Datapath) worker(q chan *work, idx int) {
	defer d.workers.Done()
	w := d.newWorker(idx)
	for wk := range q {
		w.run(wk.elems)
		clear(wk.elems)
		wk.elems = wk.elems[:0]
		d.works.Put(wk)
	}
}

func (w *worker) add(p *port, b []byte) {
	for i := range w.outs {
		if w.outs[i].p == p {
			w.outs[i].pkts = append(w.outs[i].pkts, b)
			return
		}
	}
	w.outs = append(w.outs, out{p: p, pkts: append(make([][]byte, 0, batchSize), b)})
}

// send writes the IPv4 packet b to the device name; nh is its next
// hop (Fate.NextHop), own the buffer b was read into (nil for a
// packet the engine made), whose headroom a TAP port writes the
// Ethernet header into
func (w *worker) send(idx int, name string, b []byte, nh uint32, own []byte) bool {
	d := w.d
	var p *port
	if idx > 0 && idx < len(d.byIndex) {
		p = d.byIndex[idx]
	}
	if p == nil || p.name != name {
		p = d.byName[name] // a FIB swapped in since the start
	}
	if p == nil {
		d.nodev.Add(1)
		return false
	}
	if pf := p.faults.Load(); pf != nil && len(pf.egress) > 0 {
		if w.fc == nil {
			w.fc = new(faultCtx)
		}
		if !d.faults.egress(w.fc, &w.fpkt, p, pf, b, nh, 0, w.now) {
			return true
		}
	}
	w.emit(p, b, nh, own)
	return true
}

// emit hands b to p's write batch: the capture, decapsulation, a TAP
// port's Ethernet header.
func (w *worker) emit(p *port, b []byte, nh uint32, own []byte) {
	d := w.d
	name := p.name
	if d.capturing.Load() > 0 {
		// the IPv4 packet, also on a TAP port (LINKTYPE_RAW,
		// as on a TUN; tap.go)
		d.tap(name, b)
	}
	if p.tun != nil {
		// a tunnel device: encapsulated (tunnel.go)
		w.tunnelOut(p, b, nh, own)
		return
	}
	// a decapsulating device gets the inner packet, a subslice of
	// b with the same owner (decap.go)
	b = p.decap.apply(b)
	if p.l2 != nil {
		// a TAP port: the frame, or the packet waits for its
		// next hop's MAC (and an ARP request goes out)
		f, req := p.l2.output(b, nh, own, w.now, &w.held)
		if req != nil {
			w.add(p, req)
		}
		if f == nil {
			return
		}
		b = f
	}
	w.add(p, b)
}

// run runs the engine on the elements, writes what leaves, and gives
// the elements back to their readers.
func (w *worker) run(elems []*elem) {
	w.now = w.d.Now()
	for _, el := range elems {
		if el.frame != nil {
			w.runFrame(el, w.tracer())
		} else {
			w.one(&el.pkt, el.buf, el.from.p.host)
		}
		if len(w.tunq) > 0 {
			w.drain()
		}
	}
	// the rule counters the batch's replayed frames hit, gathered in
	// the worker's batch, reach the counters before the batch's frames
	// are written
	w.ew.FlushHits()
	w.flush()
	for _, el := range elems {
		el.pkt = packet.Packet{}
		el.frame, el.valid = nil, false
		el.from.free <- el
	}
}

// tracer is the tracer for the next packet (nil: nobody listens).
func (w *worker) tracer() *datapath.Tracer {
	d := w.d
	if d.tracing.Load() == 0 && d.pathing.Load() == 0 {
		return nil
	}
	w.wtr = datapath.Tracer{Lines: w.wtr.Lines[:0], Path: w.wtr.Path[:0]}
	if d.pathing.Load() > 0 {
		w.wtr.Record, w.wtr.PathAll = true, d.samplePath(w.now)
	}
	return &w.wtr
}

// one runs the engine on one packet (read into own; send: the host's
// own, from OUTPUT) and sends what leaves.
func (w *worker) one(pkt *packet.Packet, own []byte, send bool) {
	d := w.d
	tr := w.tracer()
	var f datapath.Fate
	if send {
		f = w.ew.Send(pkt, w.now, tr)
	} else {
		f = w.ew.Receive(pkt, w.now, tr)
	}
	if tr != nil && len(tr.Lines) > 0 {
		d.publishTrace(tr.Lines)
	}
	if tr != nil && len(tr.Path) > 0 {
		d.publishPath(tr.Path)
	}
	if f.FlowCached {
		d.flowCached.Add(1)
	}
	w.mark = pkt.Mark
	switch f.Kind {
	case datapath.Forwarded, datapath.Sent:
		if f.Datagram != nil {
			// the packet completed a datagram: the datagram
			// (or its fragments) leaves, not the fragment
			if w.sendFate(&f, f.Datagram.IP, nil) {
				d.fwd.Add(1)
			}
		} else if w.sendFate(&f, pkt.IP, own) {
			d.fwd.Add(1)
		}
	case datapath.Delivered:
		d.delivered.Add(1)
		if f.Datagram != nil {
			w.deliver(f.Datagram, f.Datagram.IP)
		} else {
			w.deliver(pkt, pkt.IP)
		}
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

// runFrame bridges a frame read from a bridge port: the frames that
// leave ports are written as they are; what the IP stack sent out of
// other devices is sent as any fate is.
func (w *worker) runFrame(el *elem, tr *datapath.Tracer) {
	d := w.d
	if d.capturing.Load() > 0 {
		d.tapFrame(el.from.p.name, el.frame, true)
	}
	ff := &w.ff
	w.ew.ReceiveFrameCsum(ff, el.frame, el.valid, el.from.p.name, w.now, tr)
	if tr != nil && len(tr.Lines) > 0 {
		d.publishTrace(tr.Lines)
	}
	if tr != nil && len(tr.Path) > 0 {
		d.publishPath(tr.Path)
	}
	w.writeFrames(ff.Out)
	switch {
	case len(ff.Out) > 0:
		d.fwd.Add(1)
	case ff.Held:
		d.held.Add(1)
	case ff.Drop != "":
		d.dropped.Add(1)
	}
	if f := ff.Up; f != nil {
		if f.Datagram != nil {
			w.mark = f.Datagram.Mark
		}
		if f.Kind == datapath.Delivered {
			d.delivered.Add(1)
			if f.Datagram != nil {
				w.deliver(f.Datagram, f.Datagram.IP)
			}
		}
		if f.Frames == nil && (f.Kind == datapath.Forwarded || f.Kind == datapath.Sent) && f.Datagram != nil {
			w.sendFate(f, f.Datagram.IP, nil)
		}
		for _, a := range f.Answers {
			if a.Fate.Frames == nil && (a.Fate.Kind == datapath.Sent || a.Fate.Kind == datapath.Forwarded) {
				if w.sendFate(&a.Fate, a.Pkt.IP, nil) {
					d.answers.Add(1)
				}
			}
		}
	}
}

// writeFrames queues frames for their bridge ports.
func (w *worker) writeFrames(fs []datapath.FrameOut) {
	for _, o := range fs {
		p := w.d.byName[o.Port]
		if p == nil {
			w.d.nodev.Add(1)
			continue
		}
		if w.d.capturing.Load() > 0 {
			w.d.tapFrame(o.Port, o.Data, true)
		}
		w.add(p, o.Data)
	}
}

// sendFate writes a forwarded or sent packet b (own: the buffer it was
// read into, nil for one the engine made), or the fragments the fate
// cut it into.
func (w *worker) sendFate(f *datapath.Fate, b, own []byte) bool {
	if f.Frames != nil || f.ARPPending {
		// out of a bridge device: its frames (or nothing yet, waiting
		// for the next hop's ARP answer)
		w.writeFrames(f.Frames)
		return f.Frames != nil
	}
	if f.Frags == nil {
		return w.send(f.OutIndex, f.OutIf, b, f.NextHop, own)
	}
	ok := true
	for _, fr := range f.Frags {
		ok = w.send(f.OutIndex, f.OutIf, fr, f.NextHop, nil) && ok
	}
	return ok
}

// deliver hands a packet the engine delivered locally (p, whose
// bytes, or its reassembled datagram's, are b) to the host port that
// mirrors its input device, or the first host port; without host ports
// the engine has answered it and nothing is written.
func (w *worker) deliver(p *packet.Packet, b []byte) {
	d := w.d
	if len(d.tunnels) > 0 && w.tunnelIn(p, b) {
		return // a tunnel's socket or protocol handler took it
	}
	if len(d.hosts) == 0 {
		return
	}
	hp := d.hostFor[p.InIf]
	if hp == nil {
		hp = d.hosts[0]
	}
	w.emit(hp, b, 0, nil)
}

// sendAnswers writes the packets the engine generated that leave.
func (w *worker) sendAnswers(as []datapath.Answer) {
	for _, a := range as {
		if a.Fate.Kind == datapath.Sent || a.Fate.Kind == datapath.Forwarded {
			w.mark = a.Pkt.Mark
			if w.sendFate(&a.Fate, a.Pkt.IP, nil) {
				w.d.answers.Add(1)
			}
		}
	}
}

// flush writes what the batch collected per device and releases the
// batch's TAP frames.
func (w *worker) flush() {
	d := w.d
	if len(w.tunq) > 0 {
		w.drain() // what the reaper's answers queued
	}
	for i := range w.outs {
		o := &w.outs[i]
		if len(o.pkts) == 0 {
			continue
		}
		q := o.p.queues[w.idx%len(o.p.queues)]
		n, _ := q.dev.Write(o.pkts)
		if n < len(o.pkts) {
			d.txerr.Add(uint64(len(o.pkts) - n))
		}
		clear(o.pkts)
		o.pkts = o.pkts[:0]
	}
	for i, f := range w.held {
		f.release()
		w.held[i] = nil
	}
	w.held = w.held[:0]
	if len(w.tused) > 0 {
		w.releaseTun()
	}
}

// reaper is conntrack's amortised garbage collection (gc_worker), one
// goroutine on a ticker.
func (d *Datapath) reaper() {
	defer d.workers.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	tick := 0
	// rw writes what the timers send (ICMP time exceeded for a
	// reassembly that timed out)
	rw := d.newWorker(0)
	for {
		select {
		case <-d.done:
			return
		case <-t.C:
			now := d.Now()
			d.eng.CT.Reap(now, 16384)
			// the bridges' forwarding entries age (br_fdb_cleanup)
			for _, b := range d.eng.Bridges() {
				b.Expire(now)
			}
			// the bridge devices' neighbour timers: ARP requests
			// again, and host unreachable for what waited in vain
			if ff, as := d.eng.BridgeNeighTick(now); len(ff.Out) > 0 || len(as) > 0 {
				rw.now = now
				rw.writeFrames(ff.Out)
				rw.sendAnswers(as)
				rw.flush()
			}
			// reassembly timers (ip_expire)
			if x := d.eng.ExpireFragments(now, nil); len(x) > 0 {
				rw.now = now
				for _, e := range x {
					d.fragTimeouts.Add(uint64(len(e.Frags)))
					rw.sendAnswers(e.Answers)
				}
				rw.flush()
			}
			// TAP ports: ARP retransmissions, neighbour ageing, and
			// host unreachable for what waited in vain
			var unreach []datapath.Answer
			for _, p := range d.ports {
				if p.l2 != nil && p.tun == nil {
					for _, ip := range p.l2.tick(now, p.dev) {
						unreach = append(unreach, d.eng.HostUnreachable(ip, now)...)
					}
				}
			}
			if len(unreach) > 0 {
				rw.now = now
				rw.sendAnswers(unreach)
				rw.flush()
			}
			if len(d.tunnels) > 0 {
				// tunnels: FDB ageing, ARP over the tunnel
				rw.now = now
				rw.tunnelTick(now)
				rw.flush()
			}
			if lv := d.eng.LVS; lv != nil {
				// IPVS connection timers, and its rate estimator
				// every other second (ip_vs_est: 2 s)
				lv.Conns.Reap(now)
				if tick++; tick%2 == 0 {
					lv.Estimate()
				}
			}
		}
	}
}

// Stats returns the counters.
func (d *Datapath) Stats() Stats {
	s := Stats{Received: d.rx.Load(), NotIPv4: d.notIPv4.Load(), Malformed: d.malformed.Load(), Forwarded: d.fwd.Load(), FlowCached: d.flowCached.Load(),
		Delivered: d.delivered.Load(), Answers: d.answers.Load(), Dropped: d.dropped.Load(),
		Other: d.other.Load(), Held: d.held.Load(), FragTimeouts: d.fragTimeouts.Load(), NoDevice: d.nodev.Load(), TxErrors: d.txerr.Load(), Drops: d.drops.Snapshot()}
	for _, p := range d.ports {
		if p.l2 != nil {
			p.l2.addStats(&s)
		}
		for _, q := range p.queues {
			if o, ok := q.dev.(interface{ offloadStats(*Stats) }); ok {
				o.offloadStats(&s)
			}
			if we, ok := q.dev.(*WireEnd); ok {
				s.WireDrops += we.Drops()
			}
		}
	}
	return s
}

// SubscribeTrace starts sending the trace lines of the packets -j TRACE
// marks to the returned channel (buffered; lines a slow reader has no
// room for are dropped and counted); cancel stops it. While anyone
// listens the engine runs with a tracer, so drop reasons name the rule.
func (d *Datapath) SubscribeTrace(buffer int) (lines <-chan string, cancel func()) {
	ch := make(chan string, buffer)
	d.tmu.Lock()
	if d.tsubs == nil {
		d.tsubs = map[chan string]struct{}{}
	}
	d.tsubs[ch] = struct{}{}
	d.tracing.Add(1)
	d.tmu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			d.tmu.Lock()
			delete(d.tsubs, ch)
			d.tracing.Add(-1)
			d.tmu.Unlock()
		})
	}
}

func (d *Datapath) publishTrace(lines []string) {
	d.tmu.Lock()
	for ch := range d.tsubs {
		for _, l := range lines {
			select {
			case ch <- l:
			default:
				d.tdropped.Add(1)
			}
		}
	}
	d.tmu.Unlock()
}

// Captured is a packet seen on a device (its IPv4 packet, copied).
type Captured struct {
	Time  time.Time
	Iface string
	Data  []byte
	// Ether: Data is an Ethernet frame (a bridge port's), not an IPv4
	// packet
	Ether bool
}

type capture struct {
	iface string // "" or "any": every device
	ch    chan Captured
}

// SubscribeCapture copies every packet read from or written to the
// device iface ("any": all of them) to the returned channel (buffered;
// what a slow reader has no room for is dropped and counted); cancel
// stops it.
func (d *Datapath) SubscribeCapture(iface string, buffer int) (pkts <-chan Captured, cancel func()) {
	if iface == "any" {
		iface = ""
	}
	c := &capture{iface: iface, ch: make(chan Captured, buffer)}
	d.cmu.Lock()
	if d.csubs == nil {
		d.csubs = map[*capture]struct{}{}
	}
	d.csubs[c] = struct{}{}
	d.capturing.Add(1)
	d.cmu.Unlock()
	var once sync.Once
	return c.ch, func() {
		once.Do(func() {
			d.cmu.Lock()
			delete(d.csubs, c)
			d.capturing.Add(-1)
			d.cmu.Unlock()
		})
	}
}

// queueDepths is the batches waiting in each worker's queue; inline,
// the readers of queue index i are worker i and nothing waits.
func (d *Datapath) queueDepths() []int {
	if d.inline {
		n := 0
		for _, p := range d.ports {
			n = max(n, len(p.queues))
		}
		return make([]int, n)
	}
	ds := make([]int, len(d.queues))
	for i, q := range d.queues {
		ds[i] = len(q)
	}
	return ds
}

// IsBridgePort reports whether the device name is a bridge port (its
// captures are Ethernet frames).
func (d *Datapath) IsBridgePort(name string) bool {
	p := d.byName[name]
	return p != nil && p.bridge
}

// HasDevice reports whether the datapath has a device of that name.
func (d *Datapath) HasDevice(name string) bool { return d.byName[name] != nil }

// PortConfig is how a port was set up: by NewDatapath and its options.
type PortConfig struct {
	Name   string
	MTU    int
	Queues int
	// Ethernet: a TAP port (WithTAP), with uswitch's MAC and addresses
	// on the link.
	Ethernet bool
	MAC      [6]byte
	Addrs    []netip.Prefix
	// Decap is what the port decapsulates (WithDecap), for packets to
	// DecapAddrs.
	Decap      DecapValue
	DecapAddrs []netip.Prefix
}

// Port returns the configuration of the port called name.
func (d *Datapath) Port(name string) (PortConfig, bool) {
	p := d.byName[name]
	if p == nil {
		return PortConfig{}, false
	}
	c := PortConfig{Name: p.name, MTU: p.mtu, Queues: len(p.queues)}
	if p.l2 != nil {
		c.Ethernet, c.MAC, c.Addrs = true, p.l2.mac, p.l2.addrs
	}
	if p.decap != nil {
		c.Decap = p.decap.v
		for _, a := range p.decap.addrs {
			c.DecapAddrs = append(c.DecapAddrs, netip.PrefixFrom(packet.AddrOf(a), 32))
		}
	}
	return c, true
}

func (d *Datapath) tap(iface string, b []byte) { d.tapFrame(iface, b, false) }

// tapFrame hands a packet, or a bridge port's frame (ether), to the
// captures that want iface.
func (d *Datapath) tapFrame(iface string, b []byte, ether bool) {
	now := time.Now()
	d.cmu.Lock()
	for c := range d.csubs {
		if c.iface != "" && c.iface != iface {
			continue
		}
		select {
		case c.ch <- Captured{Time: now, Iface: iface, Data: append([]byte(nil), b...), Ether: ether}:
		default:
			d.cdropped.Add(1)
		}
	}
	d.cmu.Unlock()
}

// Err reports a device failure (a read error other than Close).
func (d *Datapath) Err() <-chan error { return d.errc }

// Close stops the datapath: the devices are closed, which ends the
// readers; the workers finish the queued batches and end. Idempotent.
func (d *Datapath) Close() error {
	var err error
	d.once.Do(func() {
		d.kill.mu.Lock()
		close(d.done)
		if d.kill.timer != nil {
			d.kill.timer.Stop()
		}
		for _, p := range d.ports {
			for _, q := range p.queues {
				err = errors.Join(err, q.dev.Close())
			}
		}
		d.kill.mu.Unlock()
		d.readers.Wait()
		for _, q := range d.queues {
			close(q)
		}
		d.workers.Wait()
	})
	return err
}

// Tracing reports whether a live trace listener is attached.
func (d *Datapath) Tracing() bool { return d.tracing.Load() > 0 }

// Capturing reports whether a packet capture is attached.
func (d *Datapath) Capturing() bool { return d.capturing.Load() > 0 }

// WriteMetrics writes the datapath's counters (Stats), its queues and
// its dropped trace lines and captured packets. A nil datapath (a lab
// without devices) writes its counters as zeros.
func (d *Datapath) WriteMetrics(m *prom.Writer) {
	var s Stats
	if d != nil {
		s = d.Stats()
	}
	m.Counter("uswitch_packets_received_total", "Packets read from the lab's devices.", s.Received)
	const offload = "uswitch_offload_packets_total"
	m.Family(offload, "counter", "TUN offloads: super-packets read and cut into segments (gso_in), super-packets written coalesced from segments (gro_out), what the offloads dropped (error).")
	m.Sample(offload, s.GSOIn, "kind", "gso_in")
	m.Sample(offload, s.GROOut, "kind", "gro_out")
	m.Sample(offload, s.OffloadErrors, "kind", "error")
	const fates = "uswitch_packets_total"
	m.Family(fates, "counter", "Packets by what became of them.")
	for _, f := range []struct {
		k string
		v uint64
	}{{"forwarded", s.Forwarded}, {"delivered", s.Delivered}, {"dropped", s.Dropped},
		{"malformed", s.Malformed}, {"not_ipv4", s.NotIPv4}, {"held", s.Held}, {"other", s.Other}} {
		m.Sample(fates, f.v, "fate", f.k)
	}
	m.Counter("uswitch_flow_cache_hits_total", "Packets whose table runs and input route came from the flow cache.", s.FlowCached)
	m.Counter("uswitch_fragment_timeouts_total", "Fragments dropped when their datagram's reassembly timed out (ipfrag_time).", s.FragTimeouts)
	m.Counter("uswitch_answers_sent_total", "Packets uswitch generated (REJECT, ICMP errors, echo replies) and sent.", s.Answers)
	const tx = "uswitch_tx_errors_total"
	m.Family(tx, "counter", "Packets a device did not take, or with no device to leave by.")
	m.Sample(tx, s.TxErrors, "error", "write")
	m.Sample(tx, s.NoDevice, "error", "no_device")
	const arp = "uswitch_arp_total"
	m.Family(arp, "counter", "ARP on TAP ports: requests for uswitch's addresses answered, requests sent to resolve a next hop.")
	m.Sample(arp, s.ARPReplied, "event", "request_answered")
	m.Sample(arp, s.ARPRequested, "event", "request_sent")
	const l2 = "uswitch_l2_drops_total"
	m.Family(l2, "counter", "Frames and packets TAP ports dropped: next hop unresolved, not IPv4 or ARP, VLAN-tagged, to another host's MAC.")
	for _, f := range []struct {
		k string
		v uint64
	}{{"unresolved", s.Unresolved}, {"not_ipv4", s.NotIPv4Frames}, {"vlan", s.VLANFrames}, {"otherhost", s.OtherHost}} {
		m.Sample(l2, f.v, "reason", f.k)
	}
	datapath.WriteDropMetrics(m, s.Drops)
	if d == nil {
		return
	}
	const depth = "uswitch_worker_queue_depth"
	m.Family(depth, "gauge", "Batches waiting in each worker's queue (inline: the readers of each queue index, which have none).")
	for i, n := range d.queueDepths() {
		m.Sample(depth, uint64(n), "worker", strconv.Itoa(i))
	}
	m.Counter("uswitch_capture_packets_dropped_total", "Captured packets a slow capturer had no room for.", d.cdropped.Load())
	m.Counter("uswitch_trace_lines_dropped_total", "Live trace lines a slow listener had no room for.", d.tdropped.Load())
	if d.faults != nil {
		d.faults.tab.Load().set.WriteMetrics(m)
	}
}

// NeighbourEntry is one entry of a TAP port's neighbour table with its
// NUD state (MAC zero in INCOMPLETE and FAILED).
type NeighbourEntry struct {
	Port  string
	Addr  netip.Addr
	MAC   [6]byte
	State string
}

// NeighbourTable lists the neighbour tables of all TAP ports (ip neigh
// show).
func (d *Datapath) NeighbourTable() []NeighbourEntry {
	var out []NeighbourEntry
	for _, p := range d.ports {
		if p.l2 == nil || p.tun != nil {
			continue
		}
		p.l2.neigh.states(func(ip uint32, mac [6]byte, state string) {
			out = append(out, NeighbourEntry{Port: p.name, Addr: packet.AddrOf(ip), MAC: mac, State: state})
		})
	}
	return out
}

// Neighbours is the neighbour table of the TAP port called port (as `ip
// neigh show dev PORT` lists its reachable entries): the resolved next
// hops and their MACs; nil for a TUN or no such port.
func (d *Datapath) Neighbours(port string) map[netip.Addr][6]byte {
	p := d.byName[port]
	if p == nil || p.l2 == nil {
		return nil
	}
	out := map[netip.Addr][6]byte{}
	for ip, mac := range p.l2.neigh.entries() {
		out[packet.AddrOf(ip)] = mac
	}
	return out
}
