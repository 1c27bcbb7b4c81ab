// Package ipfrag is IPv4 reassembly as the kernel does it: the queues of
// net/ipv4/ip_fragment.c (ip_defrag, ip_frag_queue, ip_frag_reasm,
// ip_expire) over the generic code of net/ipv4/inet_fragment.c
// (inet_frag_find, inet_frag_queue_insert and its runs, the memory
// limit). nf_defrag_ipv4 and ip_local_deliver call it as "users"; the
// datapath does the same (datapath/defrag.go).
//
// What it follows, case by case:
//   - A queue is keyed by source, destination, IP ID, protocol, user and
//     l3mdev (frag_v4_compare_key). Its timer is armed once, at creation
//     (ipfrag_time), not per fragment.
//   - A fragment that lies wholly inside a run of fragments already
//     queued is a duplicate: it is dropped and the queue kept. Any other
//     overlap discards the whole queue (RFC 5722 as the kernel applies it
//     to IPv4 too, inet_frag_queue_insert). A run is what the kernel
//     calls one: fragments appended in order at the tail; a fragment
//     inserted before the tail starts a run of its own.
//   - A last fragment that ends before data already queued, or a second
//     last fragment with another end, a fragment with data past the
//     last's end, and a zero-length fragment discard the queue.
//   - A non-last fragment's length is cut down to a multiple of 8.
//   - Once more than ipfrag_high_thresh bytes are queued, every fragment
//     is dropped until timers free memory (inet_frag_find; since 4.17
//     there is no evictor and ipfrag_low_thresh is unused).
//   - ipfrag_max_dist: when more than that many fragments from the same
//     source arrived between two fragments of a queue, the queue starts
//     over (ip_frag_too_far, ip_frag_reinit).
//   - The datagram takes the IP header of the first fragment, the total
//     length, the ECN bits of RFC 3168 5.3 (ip_frag_ecn_table; a mix of
//     Not-ECT and ECT/CE fails), DF when the largest fragment had DF,
//     and frag_max_size (the largest fragment's size) for the output's
//     refragmentation (ip_do_fragment).
//
// Memory is counted as the kernel counts it, in sk_buff truesize, which
// uswitch can only estimate (truesize below): the thresholds are
// approximate in bytes but bound what is held all the same.
package ipfrag

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/packet"
)

// User is the kernel's enum ip_defrag_users (include/net/ip.h): who asks
// for reassembly. Each user has its own queues.
type User uint32

const (
	// LocalDeliver is ip_local_deliver's reassembly before INPUT.
	LocalDeliver User = 0
	// CallRA is ip_call_ra_chain's (router alert).
	CallRA User = 1
	// ConntrackIn (+ the conntrack zone) is nf_defrag_ipv4 at
	// PREROUTING.
	ConntrackIn User = 2
	// ConntrackOut (+ zone) is nf_defrag_ipv4 at LOCAL_OUT.
	ConntrackOut User = ConntrackIn + 0x10000
	// ConntrackBridgeIn (+ zone) is br_netfilter's.
	ConntrackBridgeIn User = ConntrackOut + 0x10000
	// VSIn, VSOut and VSFwd are IPVS's.
	VSIn  User = ConntrackBridgeIn + 0x10000
	VSOut User = VSIn + 1
	VSFwd User = VSIn + 2
)

// skipsTimeExceeded is frag_expire_skip_icmp: conntrack's users send
// "fragment reassembly time exceeded" only for a datagram addressed to
// the host itself (RFC 792: only an end host sends it).
func (u User) skipsTimeExceeded() bool {
	return u >= ConntrackIn && u < ConntrackOut ||
		u >= ConntrackBridgeIn && u < VSIn
}

// Config is the namespace's net.ipv4.ipfrag_* sysctls.
type Config struct {
	// HighThresh is ipfrag_high_thresh: queued bytes (truesize) above
	// which fragments are dropped. 0 turns reassembly off (every
	// fragment is dropped), as in the kernel.
	HighThresh int64
	// LowThresh is ipfrag_low_thresh, kept for the snapshot's sake: the
	// kernel no longer uses it.
	LowThresh int64
	// Timeout is ipfrag_time in nanoseconds.
	Timeout int64
	// MaxDist is ipfrag_max_dist (0: off).
	MaxDist int
}

// DefaultConfig is a new namespace's (ipv4_frags_init_net: 4 MiB, 3 MiB,
// IP_FRAG_TIME = 30 s, 64).
var DefaultConfig = Config{HighThresh: 4 << 20, LowThresh: 3 << 20, Timeout: 30e9, MaxDist: 64}

// Key identifies a queue (frag_v4_compare_key).
type Key struct {
	Src, Dst uint32
	ID       uint16
	Proto    uint8
	User     User
	// VIF is the l3mdev (VRF) master's index; 0 without VRFs.
	VIF int32
}

// KeyOf is the key of an IPv4 fragment for user.
func KeyOf(ip packet.IPv4, user User) Key {
	return Key{Src: ip.Src(), Dst: ip.Dst(), ID: ip.ID(), Proto: ip.Protocol(), User: user}
}

// Status is what became of a fragment handed to Add.
type Status uint8

const (
	// Held: the fragment waits in its queue (-EINPROGRESS; the hook
	// returns NF_STOLEN).
	Held Status = iota
	// Complete: the fragment completed its datagram (Result.Datagram).
	Complete
	// Duplicate: the fragment lies inside data already queued; it is
	// dropped, the queue kept (IPFRAG_DUP, SKB_DROP_REASON_DUP_FRAG).
	Duplicate
	// Overlap: the fragment overlaps queued data; the queue is
	// discarded (IPSTATS_MIB_REASM_OVERLAPS).
	Overlap
	// Invalid: the fragment contradicts the queue's length (a second
	// last fragment, data past the end, zero length); the queue is
	// discarded.
	Invalid
	// NoMemory: over ipfrag_high_thresh, the fragment is dropped.
	NoMemory
	// Oversize: the datagram would be longer than 65535 bytes.
	Oversize
	// BadECN: the fragments mix Not-ECT with ECT or CE (RFC 3168 5.3).
	BadECN
	// TimedOut: the queue's timer had fired when ip_frag_too_far asked
	// it to start over (ip_frag_reinit's -ETIMEDOUT).
	TimedOut
)

var statusNames = [...]string{"held", "complete", "duplicate fragment", "overlapping fragment", "invalid fragment",
	"reassembly memory full (ipfrag_high_thresh)", "reassembled datagram over 65535 bytes", "fragments mix ECN codepoints", "reassembly queue timed out"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status?"
}

// Frag is one fragment of a queue: the number its reader gave the packet
// (packet.Meta.Seq), where its data lies in the datagram, and its size.
type Frag struct {
	Seq      uint64
	Off, Len int
}

// Result is the outcome of Add.
type Result struct {
	Status Status
	// Datagram is the reassembled datagram (Complete): a new buffer
	// owned by the caller, header checksum set.
	Datagram []byte
	// FragMaxSize is IPCB(skb)->frag_max_size: the largest fragment's
	// size (header included), which the output refragments to at most.
	FragMaxSize int
	// PMTU is IPSKB_FRAG_PMTU: the largest fragment had DF, so the
	// datagram has DF and its fragments keep it.
	PMTU bool
	// Meta is the first fragment's metadata, which the datagram takes
	// (inet_frag_reasm_prepare: skb_morph makes the completing
	// fragment a copy of the first) but for the input device.
	Meta packet.Meta
	// Frags are the fragments the datagram was built from, in offset
	// order: their payload lengths are the frag_list geometry that
	// ip_do_fragment's fast path sends again as they came.
	Frags []Frag
}

// Stats are the reassembly counters of /proc/net/snmp (Ip: Reasm*).
type Stats struct {
	ReasmReqds, ReasmOKs, ReasmFails, ReasmTimeout, ReasmOverlaps uint64
}

// frag is a queued fragment.
type frag struct {
	seq      uint64
	off      int
	data     []byte // payload, end-off bytes
	truesize int64
}

// run is fragments that follow each other without a gap, appended in
// order at the tail (inet_frag_queue_insert's frag runs).
type run struct {
	off, end int
	frags    []frag
}

const (
	flagFirstIn  = 1 // INET_FRAG_FIRST_IN
	flagLastIn   = 2 // INET_FRAG_LAST_IN
	flagComplete = 4 // INET_FRAG_COMPLETE: killed
)

// queue is one datagram being reassembled (struct ipq).
type queue struct {
	key   Key
	runs  []run // sorted by offset, not overlapping
	flags uint8
	// len is the datagram's payload length as far as known (q.len);
	// meat is how much of it is queued
	len, meat int
	// maxSize / maxDFSize: the largest fragment, and the largest with DF
	maxSize, maxDFSize int
	ecn                uint8
	iif                int
	// hdr is the first fragment's IP header and meta its metadata
	// (set with flagFirstIn)
	hdr     []byte
	meta    packet.Meta
	mem     int64 // truesize of the queued fragments
	expires int64
	// rid is the peer's fragment count at this queue's last fragment
	rid  uint32
	peer *peer
	// timer list links (armed order = expiry order: the timeout is the
	// same for all)
	prev, next *queue
}

type peer struct {
	rid  uint32
	refs int
}

// qsize is what a queue costs besides its fragments (sizeof(struct
// ipq), rounded to its slab).
const qsize = 256

// truesize estimates an sk_buff's truesize for n bytes of packet: the
// data rounded up to its kmalloc bucket with the shared info and the
// headroom, plus the sk_buff itself (SKB_TRUESIZE).
func truesize(n int) int64 {
	d := n + 64 + 320
	b := 512
	for b < d {
		b <<= 1
	}
	return int64(b + 256)
}

// Table is a namespace's reassembly queues (struct fqdir). It is safe for
// concurrent use: one mutex, fragments being rare next to whole packets.
type Table struct {
	mu     sync.Mutex
	cfg    Config
	queues map[Key]*queue
	// head/tail of the armed timers, earliest first
	head, tail *queue
	peers      map[uint32]*peer
	mem        int64
	stats      Stats
	// next is the earliest timer (0: none), read without the lock
	next atomic.Int64
}

// New makes a table.
func New(cfg Config) *Table {
	return &Table{cfg: cfg, queues: map[Key]*queue{}, peers: map[uint32]*peer{}}
}

// SetConfig changes the sysctls; queued fragments stay.
func (t *Table) SetConfig(cfg Config) {
	t.mu.Lock()
	t.cfg = cfg
	t.mu.Unlock()
}

// Stats returns the counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// Mem is the memory the queues hold, as counted against the thresholds.
func (t *Table) Mem() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mem
}

// Len is the number of queues.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queues)
}

// Add queues the fragment p (decoded, a fragment) for user, as
// ip_defrag does; iif is its input device, now the time in nanoseconds.
// Add copies what it keeps: p may be reused at once.
func (t *Table) Add(p *packet.Packet, user User, iif int, now int64) Result {
	t.mu.Lock()
	defer t.setNext()
	defer t.mu.Unlock()
	ip := p.IP
	t.stats.ReasmReqds++
	// inet_frag_find: over the high threshold nothing is queued
	if t.cfg.HighThresh <= 0 || t.mem > t.cfg.HighThresh {
		t.stats.ReasmFails++
		return Result{Status: NoMemory}
	}
	key := KeyOf(ip, user)
	q := t.queues[key]
	if q == nil {
		q = &queue{key: key}
		if t.cfg.MaxDist > 0 {
			p := t.peers[key.Src]
			if p == nil {
				p = &peer{}
				t.peers[key.Src] = p
			}
			p.refs++
			q.peer = p
		}
		t.queues[key] = q
		t.mem += qsize
		t.arm(q, now)
	}
	return t.queueFrag(q, p, iif, now)
}

// setNext publishes the earliest timer for NextExpiry.
func (t *Table) setNext() {
	t.mu.Lock()
	var n int64
	if t.head != nil {
		n = t.head.expires
	}
	t.next.Store(n)
	t.mu.Unlock()
}

// arm (re)starts q's timer: it goes to the end of the list.
func (t *Table) arm(q *queue, now int64) {
	t.unlink(q)
	q.expires = now + t.cfg.Timeout
	q.prev = t.tail
	if t.tail != nil {
		t.tail.next = q
	} else {
		t.head = q
	}
	t.tail = q
}

func (t *Table) unlink(q *queue) {
	if q.prev == nil && t.head != q {
		return // not armed
	}
	if q.prev != nil {
		q.prev.next = q.next
	} else {
		t.head = q.next
	}
	if q.next != nil {
		q.next.prev = q.prev
	} else {
		t.tail = q.prev
	}
	q.prev, q.next = nil, nil
}

// kill removes q from the table and frees its memory (inet_frag_kill
// and the final inet_frag_destroy).
func (t *Table) kill(q *queue) {
	if q.flags&flagComplete != 0 {
		return
	}
	q.flags |= flagComplete
	t.unlink(q)
	delete(t.queues, q.key)
	t.mem -= q.mem + qsize
	q.mem = 0
	if q.peer != nil {
		if q.peer.refs--; q.peer.refs == 0 {
			delete(t.peers, q.key.Src)
		}
		q.peer = nil
	}
}

// flush drops q's fragments (inet_frag_queue_flush).
func (t *Table) flush(q *queue) {
	t.mem -= q.mem
	q.mem = 0
	q.runs = nil
	q.hdr = nil
}

// tooFar is ip_frag_too_far.
func (t *Table) tooFar(q *queue) bool {
	if q.peer == nil || t.cfg.MaxDist <= 0 {
		return false
	}
	start := q.rid
	q.peer.rid++
	end := q.peer.rid
	q.rid = end
	if len(q.runs) > 0 && end-start > uint32(t.cfg.MaxDist) {
		t.stats.ReasmFails++
		return true
	}
	return false
}

// queueFrag is ip_frag_queue.
func (t *Table) queueFrag(q *queue, p *packet.Packet, iif int, now int64) Result {
	ip := p.IP
	if t.tooFar(q) {
		// ip_frag_reinit: a queue whose timer is running starts
		// over; its largest sizes are kept
		if q.expires <= now {
			t.kill(q)
			return Result{Status: TimedOut}
		}
		t.flush(q)
		q.flags, q.len, q.meat, q.iif, q.ecn = 0, 0, 0, 0, 0
		t.arm(q, now)
	}
	ihl := ip.HeaderLen()
	ecn := uint8(1) << (ip.TOS() & 3)
	off := int(ip.FragOffset()) * 8
	end := off + int(ip.TotalLen()) - ihl
	discard := func(s Status) Result {
		t.kill(q)
		t.stats.ReasmFails++
		return Result{Status: s}
	}
	if !ip.MF() {
		// the last fragment
		if end < q.len || q.flags&flagLastIn != 0 && end != q.len {
			return discard(Invalid)
		}
		q.flags |= flagLastIn
		q.len = end
	} else {
		end &^= 7
		if end > q.len {
			if q.flags&flagLastIn != 0 {
				return discard(Invalid)
			}
			q.len = end
		}
	}
	if end == off {
		return discard(Invalid)
	}
	// inet_frag_queue_insert
	switch t.insert(q, off, end) {
	case insertDup:
		return Result{Status: Duplicate}
	case insertOverlap:
		t.stats.ReasmOverlaps++
		return discard(Overlap)
	}
	f := frag{seq: p.Seq, off: off, data: append([]byte(nil), ip[ihl:ihl+end-off]...), truesize: truesize(int(ip.TotalLen()))}
	t.place(q, f, end)
	if iif != 0 {
		q.iif = iif
	}
	q.meat += end - off
	q.ecn |= ecn
	q.mem += f.truesize
	t.mem += f.truesize
	if off == 0 {
		q.flags |= flagFirstIn
		q.hdr = append([]byte(nil), ip[:ihl]...)
		q.meta = p.Meta
	}
	size := end - off + ihl
	if size > q.maxSize {
		q.maxSize = size
	}
	if ip.DF() && size > q.maxDFSize {
		q.maxDFSize = size
	}
	if q.flags == flagFirstIn|flagLastIn && q.meat == q.len {
		return t.reasm(q)
	}
	return Result{Status: Held}
}

type insertResult uint8

const (
	insertOK insertResult = iota
	insertDup
	insertOverlap
)

// insert decides where [off, end) goes (inet_frag_queue_insert). The
// tail is the last fragment of the last run: fragments only ever go
// after it through the first two cases.
func (t *Table) insert(q *queue, off, end int) insertResult {
	if len(q.runs) == 0 {
		return insertOK
	}
	last := q.runs[len(q.runs)-1].end
	if last < end {
		if off < last {
			return insertOverlap
		}
		return insertOK
	}
	// among the runs (the kernel's binary search meets the one run a
	// fragment overlaps first; a fragment that is a duplicate lies in
	// exactly one)
	for _, r := range q.runs {
		if end <= r.off || off >= r.end {
			continue
		}
		if off >= r.off && end <= r.end {
			return insertDup
		}
		return insertOverlap
	}
	return insertOK
}

// place puts a fragment insert accepted into its run.
func (t *Table) place(q *queue, f frag, end int) {
	n := len(q.runs)
	if n > 0 && q.runs[n-1].end <= f.off {
		if q.runs[n-1].end == f.off {
			// fragrun_append_to_last
			r := &q.runs[n-1]
			r.frags = append(r.frags, f)
			r.end = end
			return
		}
		q.runs = append(q.runs, run{off: f.off, end: end, frags: []frag{f}})
		return
	}
	// a run of its own, in offset order
	i := 0
	for i < n && q.runs[i].off < f.off {
		i++
	}
	q.runs = append(q.runs, run{})
	copy(q.runs[i+1:], q.runs[i:])
	q.runs[i] = run{off: f.off, end: end, frags: []frag{f}}
}

// ecnTable is ip_frag_ecn_table: what the OR of the fragments' ECN
// codepoints (bit 1<<ecn) makes of the datagram's; 0xff: drop.
func ecnOf(bits uint8) uint8 {
	const notECT, ect1, ect0, ce = 1, 2, 4, 8
	switch {
	case bits&notECT != 0 && bits&(ect1|ect0|ce) != 0:
		return 0xff
	case bits&ce != 0 && bits&(ect1|ect0) != 0:
		return 3 // INET_ECN_CE
	}
	return 0
}

// reasm is ip_frag_reasm.
func (t *Table) reasm(q *queue) Result {
	defer t.kill(q)
	ecn := ecnOf(q.ecn)
	if ecn == 0xff {
		t.stats.ReasmFails++
		return Result{Status: BadECN}
	}
	ihl := len(q.hdr)
	n := ihl + q.len
	if n > 65535 {
		t.stats.ReasmFails++
		return Result{Status: Oversize}
	}
	b := make([]byte, n)
	copy(b, q.hdr)
	var frags []Frag
	for _, r := range q.runs {
		for _, f := range r.frags {
			copy(b[ihl+f.off:], f.data)
			frags = append(frags, Frag{Seq: f.seq, Off: f.off, Len: len(f.data)})
		}
	}
	ip := packet.IPv4(b)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	b[1] |= ecn
	res := Result{Status: Complete, Datagram: b, FragMaxSize: max(q.maxDFSize, q.maxSize), Frags: frags, Meta: q.meta}
	// DF only when the largest fragment had it: a datagram built from
	// one small DF fragment and a large one without is not sent on
	// as tiny DF fragments
	if q.maxDFSize == q.maxSize {
		res.PMTU = true
		binary.BigEndian.PutUint16(b[6:], 0x4000)
	} else {
		binary.BigEndian.PutUint16(b[6:], 0)
	}
	ip.SetChecksum()
	t.stats.ReasmOKs++
	return res
}

// Expired is a queue whose timer fired.
type Expired struct {
	Key Key
	// Head is the first fragment (its IP header and data) when it had
	// arrived, for the ICMP time exceeded ip_expire sends; nil
	// otherwise.
	Head []byte
	// IIF is the device the last fragment came in on (qp->iif).
	IIF int
	// SkipUnlessLocal: send the ICMP only when the head's input route
	// is local (conntrack's users, frag_expire_skip_icmp).
	SkipUnlessLocal bool
	Frags           []Frag
}

// Expire fires the timers due at now (ip_expire) and returns the queues
// they discarded. It is cheap when nothing is due.
func (t *Table) Expire(now int64) []Expired {
	t.mu.Lock()
	defer t.setNext()
	defer t.mu.Unlock()
	var out []Expired
	for q := t.head; q != nil && q.expires <= now; q = t.head {
		x := Expired{Key: q.key, IIF: q.iif, SkipUnlessLocal: q.key.User.skipsTimeExceeded()}
		for _, r := range q.runs {
			for _, f := range r.frags {
				x.Frags = append(x.Frags, Frag{Seq: f.seq, Off: f.off, Len: len(f.data)})
			}
		}
		if q.flags&flagFirstIn != 0 && len(q.runs) > 0 && q.runs[0].off == 0 {
			// inet_frag_pull_head: the first fragment as it came
			h := q.runs[0].frags[0]
			b := make([]byte, len(q.hdr)+len(h.data))
			copy(b, q.hdr)
			copy(b[len(q.hdr):], h.data)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			packet.IPv4(b).SetChecksum()
			x.Head = b
		}
		t.stats.ReasmFails++
		t.stats.ReasmTimeout++
		t.kill(q)
		out = append(out, x)
	}
	return out
}

// NextExpiry is when the earliest timer fires (0: none armed); it takes
// no lock.
func (t *Table) NextExpiry() int64 { return t.next.Load() }

// Pending lists the queues still waiting, with their fragments (trace
// prints them at the end of a capture).
func (t *Table) Pending() []Expired {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Expired
	for q := t.head; q != nil; q = q.next {
		x := Expired{Key: q.key, IIF: q.iif}
		for _, r := range q.runs {
			for _, f := range r.frags {
				x.Frags = append(x.Frags, Frag{Seq: f.seq, Off: f.off, Len: len(f.data)})
			}
		}
		out = append(out, x)
	}
	return out
}
