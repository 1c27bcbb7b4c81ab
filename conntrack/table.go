package conntrack

import (
	"errors"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/netfilter"

	"github.com/uswitch-lab/uswitch/packet"
)

// Verdict is conntrack's own verdict on a packet: almost always Accept
// (invalid packets are accepted without an entry, as the kernel does; the
// rules decide their fate). It is kept apart from netfilter.Verdict
// because each drop has a reason the caller reports (nf_conntrack_in
// and __nf_conntrack_confirm return a bare NF_DROP).
type Verdict uint8

// Verdicts.
const (
	Accept Verdict = iota
	// DropTableFull: nf_conntrack_max reached and early_drop found no
	// unassured entry ("nf_conntrack: table full, dropping packet").
	DropTableFull
	// DropInsertFailed: Confirm found the tuple taken by another entry
	// (a clash that cannot be resolved) or the entry dying.
	DropInsertFailed
	// DropReopen: a TCP SYN reopening an entry that another path is
	// already destroying (nf_ct_kill failed, NF_DROP).
	DropReopen
	// DropHelper: a conntrack helper dropped the packet (a partial FTP
	// command, an expectation it could not add, a payload it could not
	// mangle) or the sequence adjustment failed.
	DropHelper
)

var verdictNames = [...]string{"ACCEPT", "DROP(table full)", "DROP(insert failed)", "DROP(reopen race)", "DROP(helper)"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "Verdict(?)"
}

// invalidReason says why a packet got no entry; counted in Stats.
type invalidReason uint8

const (
	invNone          invalidReason = iota
	invNoL4                        // fragment or bogus IP header (get_l4proto)
	invTruncated                   // transport header short / malformed
	invChecksum                    // bad transport checksum at PREROUTING
	invTCPFlags                    // invalid TCP flag combination
	invTCPNew                      // TCP packet that cannot start a connection
	invTCPState                    // sIV transition
	invTCPWindow                   // tcp_in_window said INVALID
	invTCPRst                      // invalid RST
	invICMPType                    // ICMP type > 18
	invICMPNew                     // ICMP type that cannot create an entry / invert
	invICMPErrorNoCt               // ICMP error about no known flow
	invICMPErrorDst                // ICMP error whose outer daddr mismatches
	invSCTPChunks                  // SCTP chunk walk refused (do_basic_checks)
	invSCTPNew                     // SCTP packet that cannot start an association
	invSCTPVtag                    // SCTP verification tag check failed
	invSCTPState                   // SCTP sIV transition
	numInvalidReasons
)

// InvalidReasonNames names Stats.Invalid's slots.
var InvalidReasonNames = [numInvalidReasons]string{"", "no-l4", "truncated", "checksum",
	"tcp-flags", "tcp-new", "tcp-state", "tcp-window", "tcp-rst", "icmp-type",
	"icmp-new", "icmp-error-no-ct", "icmp-error-daddr", "sctp-chunks", "sctp-new", "sctp-vtag",
	"sctp-state"}

// Stats are the table's counters (/proc/net/stat/nf_conntrack).
type Stats struct {
	// Found counts tuples TupleTaken found taken: the kernel's found
	// since 4.x (nf_conntrack_tuple_taken). A packet's lookup is not
	// counted, as the kernel does not count it (a shared counter per
	// packet would cost every packet a locked add).
	Found uint64

	New, Insert, InsertFailed, Drop, EarlyDrop, Ignore, Expired, Clash uint64
	// Invalid counts invalid packets by reason (InvalidReasonNames).
	Invalid [numInvalidReasons]uint64
	// Count is the number of confirmed entries.
	Count int64
	// Errors counts ICMP packets the ICMP error path refused (bad type,
	// checksum, error about no flow): the kernel's error, counted in
	// nf_conntrack_handle_icmp. They are in Invalid by reason too.
	Errors uint64
	// ExpectNew counts entries made for an expectation (expect_new).
	ExpectNew uint64
}

type counters struct {
	new, insert, insertFailed, drop, earlyDrop, ignore, expired, clash atomic.Uint64
	// tupleFound and icmpErrors are the kernel's own found and error
	// (conntrack -S): nf_conntrack_tuple_taken finding the tuple taken;
	// nf_conntrack_handle_icmp refusing an ICMP packet.
	tupleFound, icmpErrors atomic.Uint64
	// expectNew counts entries made for an expectation (expect_new)
	expectNew atomic.Uint64
	invalid   [numInvalidReasons]atomic.Uint64
}

// bucket is one hash chain (an hlist_nulls_head of nf_conntrack_hash):
// a bare head, 8 bytes, so a table of 262,144 buckets is 2 MiB and its
// heads stay in the cache; the lock of bucket i is locks[i&lockMask].
// Writers change a chain under its lock; lookups walk it without one
// (the kernel's RCU walk in ____nf_conntrack_find), which is why head
// and next are atomic and an unlinked entry keeps its next.
type bucket struct {
	head atomic.Pointer[tupleHash]
}

// maxLocks is CONNTRACK_LOCKS: the buckets share this many locks.
const maxLocks = 1024

// lockStripe is one of the locks the buckets share (nf_conntrack_locks).
type lockStripe struct {
	mu sync.Mutex
	_  [56]byte // keep neighbouring locks off one cache line
}

// Table is the connection table (the per-netns nf_conntrack_hash).
type Table struct {
	cfg         Config
	tcpTimeouts [tcpTimeoutMax]int64
	buckets     []bucket
	mask        uint64
	locks       []lockStripe
	lockMask    int
	// occupied has bit i set while bucket i's chain is not empty, so
	// the lookup of an absent tuple (every new connection's, every NAT
	// port probe) is mostly answered by this bitmap, 32 KiB for 262,144
	// buckets, without a cache miss on the heads. Changed under the
	// bucket's lock, with atomic Or/And as a word spans buckets of
	// several locks; read without a lock, like the chains.
	occupied []atomic.Uint64
	seed     uint64
	count    atomic.Int64
	// pressure is set when an allocation failed; Reap then early-drops
	// (conntrack_gc_work.early_drop).
	pressure atomic.Bool
	stats    counters

	reapMu     sync.Mutex
	reapCursor int

	// onDelete is called for every entry delete removes (SetDeleteHook)
	onDelete func(*Conn)

	// events are the event listeners (event.go)
	events eventSubs
	// maxOverride, when above 0, is nf_conntrack_max instead of
	// cfg.Max (SetMax: a fault's emulated limit)
	maxOverride atomic.Int64
	// loose and liberal, when not 0, override cfg.TCPLoose and
	// cfg.TCPBeLiberal (1 off, 2 on: SetTCPLoose, SetTCPBeLiberal, a
	// sysctl flipped while running)
	loose, liberal atomic.Int32

	// exp is the expectation table (expect.go); natHelper the NAT side
	// of the helpers (SetNATHelper)
	exp       expectTable
	natHelper NATHelper
}

// SetTCPLoose sets nf_conntrack_tcp_loose while the table runs (the
// sysctl is read per packet in the kernel too).
func (t *Table) SetTCPLoose(on bool) { t.loose.Store(boolOverride(on)) }

// SetTCPBeLiberal sets nf_conntrack_tcp_be_liberal while the table runs.
func (t *Table) SetTCPBeLiberal(on bool) { t.liberal.Store(boolOverride(on)) }

// TCPLoose is nf_conntrack_tcp_loose now.
func (t *Table) TCPLoose() bool { return overridden(t.loose.Load(), t.cfg.TCPLoose) }

// TCPBeLiberal is nf_conntrack_tcp_be_liberal now.
func (t *Table) TCPBeLiberal() bool { return overridden(t.liberal.Load(), t.cfg.TCPBeLiberal) }

func boolOverride(on bool) int32 {
	if on {
		return 2
	}
	return 1
}

func overridden(v int32, def bool) bool {
	if v == 0 {
		return def
	}
	return v == 2
}

// SetMax makes n the table's nf_conntrack_max until SetMax(0) restores
// the configured one: the kernel's sysctl is read-only in a child
// namespace, so a lab emulates a full table this way (package fault's
// conntrack-full). Entries over the limit stay; new ones meet
// early_drop, then the drop.
func (t *Table) SetMax(n int) { t.maxOverride.Store(int64(max(n, 0))) }

// Max is nf_conntrack_max now (0: no limit).
func (t *Table) Max() int { return int(t.max()) }

func (t *Table) max() int64 {
	if m := t.maxOverride.Load(); m > 0 {
		return m
	}
	return int64(t.cfg.Max)
}

// SetDeleteHook makes f be called once for every entry the table deletes
// (expired, early-dropped, killed, Delete), confirmed or not, after it is
// marked dying and unlinked, with no conntrack lock held: the destroy
// path on which the kernel's extensions let go of an entry
// (nf_nat_cleanup_conntrack takes it off nf_nat_bysource). Set it before
// the table is used.
func (t *Table) SetDeleteHook(f func(*Conn)) { t.onDelete = f }

// NewTable makes a table with cfg (start from DefaultConfig). seed keys
// the bucket hash; pass a random value in production, a fixed one in
// tests.
func NewTable(cfg Config, seed uint64) *Table {
	n := cfg.Buckets
	if n < 1 {
		n = 1024
	}
	n = 1 << bits.Len(uint(n-1))
	nl := min(n, maxLocks)
	t := &Table{cfg: cfg, buckets: make([]bucket, n), mask: uint64(n - 1), seed: seed | 1,
		locks: make([]lockStripe, nl), lockMask: nl - 1, occupied: make([]atomic.Uint64, (n+63)/64)}
	t.tcpTimeouts = cfg.tcpTimeouts()
	return t
}

// Config returns the table's configuration.
func (t *Table) Config() Config { return t.cfg }

// Count is the number of confirmed entries (nf_conntrack_count).
func (t *Table) Count() int { return int(t.count.Load()) }

// Stats returns a snapshot of the counters.
func (t *Table) Stats() Stats {
	s := Stats{
		New: t.stats.new.Load(), Insert: t.stats.insert.Load(),
		InsertFailed: t.stats.insertFailed.Load(), Drop: t.stats.drop.Load(),
		EarlyDrop: t.stats.earlyDrop.Load(), Ignore: t.stats.ignore.Load(),
		Expired: t.stats.expired.Load(), Clash: t.stats.clash.Load(), Count: t.count.Load(),
		Found: t.stats.tupleFound.Load(), Errors: t.stats.icmpErrors.Load(),
		ExpectNew: t.stats.expectNew.Load(),
	}
	for i := range s.Invalid {
		s.Invalid[i] = t.stats.invalid[i].Load()
	}
	return s
}

func (t *Table) bucketOf(tu *Tuple) int { return int(tu.hash(t.seed) & t.mask) }

// lock is the lock of bucket i.
func (t *Table) lock(i int) *sync.Mutex { return &t.locks[i&t.lockMask].mu }

// find looks a tuple up among confirmed entries, removing an expired
// entry it meets (____nf_conntrack_find). It returns the tuple's entry
// and direction. It takes no lock: like the kernel's RCU walk it may miss
// an entry being inserted meanwhile (Confirm resolves that clash); an
// entry being deleted meanwhile is passed over once marked dying, as the
// locked walk never saw one.
func (t *Table) find(tu *Tuple, now int64) (*Conn, Dir) {
	bi := t.bucketOf(tu)
	if t.occupied[bi>>6].Load()&(1<<(bi&63)) == 0 {
		return nil, 0
	}
	b := &t.buckets[bi]
	for {
		var stale *Conn
		for h := b.head.Load(); h != nil; h = h.next.Load() {
			if h.tuple != *tu {
				continue
			}
			c := h.conn
			if c.Status()&StatusDying != 0 {
				continue
			}
			if c.expired(now) {
				stale = c
				break
			}
			d := Original
			if h == &c.th[Reply] {
				d = Reply
			}
			return c, d
		}
		if stale == nil {
			return nil, 0
		}
		if t.delete(stale, now, false, 0) {
			t.stats.expired.Add(1)
		}
	}
}

// Lookup finds the confirmed, unexpired entry having tu as one of its
// tuples, and which direction tu is.
func (t *Table) Lookup(tu Tuple, now int64) (*Conn, Dir, bool) {
	c, d := t.find(&tu, now)
	return c, d, c != nil
}

// TupleTaken reports whether a confirmed entry other than ignore uses tu
// as its reply tuple or original tuple (nf_conntrack_tuple_taken, as NAT
// asks with the would-be reply tuple).
func (t *Table) TupleTaken(tu Tuple, ignore *Conn, now int64) bool {
	c, _ := t.find(&tu, now)
	if c != nil && c != ignore {
		t.stats.tupleFound.Add(1)
		return true
	}
	return false
}

// lockPair takes the locks of buckets i and j, the lower lock first and
// a shared one once (nf_conntrack_double_lock).
func (t *Table) lockPair(i, j int) {
	i, j = i&t.lockMask, j&t.lockMask
	if i > j {
		i, j = j, i
	}
	t.locks[i].mu.Lock()
	if i != j {
		t.locks[j].mu.Lock()
	}
}

func (t *Table) unlockPair(i, j int) {
	i, j = i&t.lockMask, j&t.lockMask
	t.locks[i].mu.Unlock()
	if i != j {
		t.locks[j].mu.Unlock()
	}
}

// link puts h at the head of bucket bi's chain (its lock held); h is
// published whole by the store of the head, then the bucket marked
// occupied. old is the chain's head, as the caller loaded it under the
// lock.
func (t *Table) link(bi int, h, old *tupleHash) {
	// h is not published yet and its next is usually right already
	// (nil: a new entry into an empty bucket), which saves the store,
	// a locked exchange
	if h.next.Load() != old {
		h.next.Store(old)
	}
	t.buckets[bi].head.Store(h)
	if old == nil {
		t.occupied[bi>>6].Or(1 << (bi & 63))
	}
}

// unlink takes h off bucket bi's chain (its lock held), finding its
// predecessor by walking the chain (hlist_nulls_del_rcu has the back
// link instead; chains are short and deletes rarer than inserts). h
// keeps its next, so a lookup standing on it goes on along the chain.
func (t *Table) unlink(bi int, h *tupleHash) {
	b := &t.buckets[bi]
	next := h.next.Load()
	if b.head.Load() == h {
		b.head.Store(next)
		if next == nil {
			t.occupied[bi>>6].And(^(uint64(1) << (bi & 63)))
		}
		return
	}
	for p := b.head.Load(); p != nil; p = p.next.Load() {
		if p.next.Load() == h {
			p.next.Store(next)
			return
		}
	}
	panic("conntrack: unlinking an entry not in its bucket")
}

// delete removes a confirmed entry and marks it dying (nf_ct_delete),
// with a DESTROY event for a listener (user: a userspace request, from
// portid). It reports false when someone else already did.
func (t *Table) delete(c *Conn, now int64, user bool, portid uint32) bool {
	i, j := t.bucketOf(&c.th[0].tuple), t.bucketOf(&c.th[1].tuple)
	t.lockPair(i, j)
	if c.Status()&StatusDying != 0 {
		t.unlockPair(i, j)
		return false
	}
	c.SetStatus(StatusDying)
	confirmed := c.Confirmed()
	if confirmed {
		if c.Status()&StatusNATClash == 0 {
			// a clash entry is in by its reply tuple only
			t.unlink(i, &c.th[0])
		}
		t.unlink(j, &c.th[1])
		t.count.Add(-1)
	}
	t.unlockPair(i, j)
	if confirmed {
		t.deliverDestroy(c, now, user, portid)
	}
	t.removeExpectations(c)
	if t.onDelete != nil {
		t.onDelete(c)
	}
	return true
}

// Delete removes an entry; false if it was gone already. Its DESTROY
// event, if anybody listens, reports the timeout as of now 0; use Kill
// for conntrack -D.
func (t *Table) Delete(c *Conn) bool { return t.delete(c, 0, false, 0) }

// Kill removes an entry at a userspace request (conntrack -D, -F) from
// portid (the requester; ctnetlink's NETLINK_CB(skb).portid), false if it
// was gone already.
func (t *Table) Kill(c *Conn, now int64, portid uint32) bool {
	return t.delete(c, now, true, portid)
}

// earlyDrop frees room for a new entry (early_drop): from the new
// tuple's bucket, up to 8 buckets, delete every confirmed, non-assured,
// non-dying entry of the first bucket that has any.
func (t *Table) earlyDrop(bi int, now int64) bool {
	const evictionRange = 8
	for i := 0; i < evictionRange; i++ {
		b, mu := &t.buckets[(bi+i)&int(t.mask)], t.lock((bi+i)&int(t.mask))
		var victims [16]*Conn
		n := 0
		mu.Lock()
		for h := b.head.Load(); h != nil && n < len(victims); h = h.next.Load() {
			c := h.conn
			st := c.Status()
			if c.expired(now) {
				victims[n] = c // gc'd, not counted as a drop
				n++
				continue
			}
			if st&(StatusAssured|StatusDying) != 0 || st&StatusConfirmed == 0 {
				continue
			}
			victims[n] = c
			n++
		}
		mu.Unlock()
		drops := 0
		for _, c := range victims[:n] {
			expired := c.expired(now)
			if t.delete(c, now, false, 0) {
				if expired {
					t.stats.expired.Add(1)
				} else {
					drops++
				}
			}
		}
		if drops > 0 {
			t.stats.earlyDrop.Add(uint64(drops))
			return true
		}
	}
	return false
}

// alloc makes an unconfirmed entry for tuple (init_conntrack): nil and a
// verdict when the table is full.
func (t *Table) alloc(orig *Tuple, now int64) (*Conn, Verdict) {
	if max := t.max(); max > 0 && t.count.Load()+1 > max {
		if !t.earlyDrop(t.bucketOf(orig), now) {
			t.pressure.Store(true)
			t.stats.drop.Add(1)
			return nil, DropTableFull
		}
	}
	c := &Conn{created: now}
	// the tuples in place (the entry is zero): no 16-byte copies of
	// values just stored field by field
	o, r := &c.th[Original], &c.th[Reply]
	o.tuple, o.conn = *orig, c
	r.conn = c
	r.tuple.invertFrom(orig)
	t.ecacheAdd(c)
	return c, Accept
}

func (t *Table) invalid(r invalidReason) (Ref, Verdict) {
	t.stats.invalid[r].Add(1)
	return Ref{}, Accept
}

// In is nf_conntrack_in for one IPv4 packet at hook (PREROUTING or
// OUTPUT) in zone: it finds or creates the packet's entry, runs the
// protocol tracker and returns the Ref the packet carries on. An invalid
// packet gets the zero Ref (state INVALID) and Accept. p must have been
// decoded. A new entry is unconfirmed until Confirm. In must not be
// called again for a packet that already has a Ref (the kernel returns at
// once when skb->_nfct is set). Checksums are verified only at
// PREROUTING (tcp_error, udp_error and icmp_error in
// net/netfilter/nf_conntrack_proto_*.c check only there).
func (t *Table) In(p *packet.Packet, zone uint16, hook netfilter.Hook, now int64) (Ref, Verdict) {
	return t.InTemplate(p, zone, nil, hook, now)
}

// InTemplate is In for a packet that carries a CT template with helper
// (nil: none): a new entry that no expectation claims gets the helper
// (__nf_ct_try_assign_helper); an expected one gets its expectation's
// instead, and is RELATED (init_conntrack, resolve_normal_ct).
func (t *Table) InTemplate(p *packet.Packet, zone uint16, helper *Helper, hook netfilter.Hook, now int64) (Ref, Verdict) {
	return t.in(p, zone, helper, hook, now, nil, 0)
}

// InHint is In in zone 0 for a TCP or UDP packet whose flow a caller's
// cache says belongs to entry hint (nil: none): if hint is confirmed,
// neither dying nor expired, in the table by both tuples and has the
// packet's tuple as one of them, it is the entry the lookup would find
// (a tuple names one confirmed entry at a time), and the lookup is
// skipped; otherwise it is In.
func (t *Table) InHint(p *packet.Packet, hint *Conn, hook netfilter.Hook, now int64) (Ref, Verdict) {
	if hint == nil || !p.HasL4 || (p.Proto != packet.ProtoTCP && p.Proto != packet.ProtoUDP) {
		return t.in(p, 0, nil, hook, now, nil, 0)
	}
	st := hint.Status()
	if st&(StatusConfirmed|StatusDying|StatusNATClash) != StatusConfirmed || hint.expired(now) {
		return t.in(p, 0, nil, hook, now, nil, 0)
	}
	d := Original
	if !hint.th[Original].tuple.isPacket(p) {
		if !hint.th[Reply].tuple.isPacket(p) {
			return t.in(p, 0, nil, hook, now, nil, 0)
		}
		d = Reply
	}
	return t.in(p, 0, nil, hook, now, hint, d)
}

// isPacket reports whether tu is the zone 0 tuple of TCP or UDP packet
// p (field by field: p's fields were just stored one by one).
func (tu *Tuple) isPacket(p *packet.Packet) bool {
	return tu.Src == p.Src && tu.Dst == p.Dst && tu.SrcPort == p.SrcPort && tu.DstPort == p.DstPort &&
		tu.Proto == p.Proto && tu.Zone == 0
}

// in is InTemplate; found, when not nil, is the packet's entry in
// direction dir, checked by InHint, for the first lookup.
func (t *Table) in(p *packet.Packet, zone uint16, helper *Helper, hook netfilter.Hook, now int64, found *Conn, fdir Dir) (Ref, Verdict) {
	if p.IP == nil || (!p.HasL4 && !p.L4Truncated) {
		// Non-first fragment (conntrack wants defragmented packets).
		return t.invalid(invNoL4)
	}
	if p.Proto == packet.ProtoICMP {
		ref, done, reason := t.icmpError(p, zone, hook, now)
		if reason != invNone {
			t.stats.icmpErrors.Add(1)
			return t.invalid(reason)
		}
		if done {
			return ref, Accept
		}
	}
	// the packet's tuple (found: made when the lookup is repeated; a
	// packet InHint checked has one)
	var tu Tuple
	if found == nil && !tu.setFromL4(p.Proto, p.Src, p.Dst, p.L4, zone) {
		return t.invalid(invTruncated)
	}
	for repeat := 0; ; repeat++ {
		// resolve_normal_ct
		c, dir := found, fdir
		if c == nil || repeat > 0 {
			if found != nil && repeat == 1 {
				tu.setFromL4(p.Proto, p.Src, p.Dst, p.L4, zone)
			}
			c, dir = t.find(&tu, now)
		}
		var info CtInfo
		if c == nil {
			if tu.Proto == packet.ProtoICMP && icmpInvMap[tu.ICMPType()] == 0 {
				return t.invalid(invICMPNew) // no inverse (Invert)
			}
			var v Verdict
			c, v = t.alloc(&tu, now)
			if c == nil {
				return Ref{}, v
			}
			t.stats.new.Add(1)
			info = CtNew
			if t.expected(c, &tu, now) {
				info = CtRelated
			} else if helper != nil && helper.Proto == tu.Proto {
				c.SetHelper(helper)
			}
		} else {
			switch st := c.Status(); {
			case dir == Reply:
				info = CtEstablishedReply
			case st&StatusSeenReply != 0:
				info = CtEstablished
			case st&StatusExpected != 0:
				info = CtRelated
			default:
				info = CtNew
			}
		}

		// nf_conntrack_handle_packet
		switch p.Proto {
		case packet.ProtoTCP:
			v, reason := t.tcpPacket(c, p, info, hook, now)
			switch v {
			case tcpVInvalid:
				return t.invalid(reason)
			case tcpVRepeat:
				// Kill and look up again (-NF_REPEAT); the kernel drops
				// if it cannot kill.
				if !t.delete(c, now, false, 0) || repeat > 0 {
					t.stats.drop.Add(1)
					return Ref{}, DropReopen
				}
				continue
			case tcpVKill:
				t.delete(c, now, false, 0)
			}
		case packet.ProtoUDP, packet.ProtoUDPLite:
			if reason := t.udpPacket(c, p, hook, now); reason != invNone {
				return t.invalid(reason)
			}
		case packet.ProtoICMP:
			if reason := t.icmpPacket(c, now); reason != invNone {
				return t.invalid(reason)
			}
		case packet.ProtoSCTP:
			if reason := t.sctpPacket(c, p, info, hook, now); reason != invNone {
				return t.invalid(reason)
			}
		case packet.ProtoGRE:
			t.grePacket(c, now)
		default:
			c.refresh(int64(t.cfg.GenericTimeout), now)
		}
		if info == CtEstablishedReply && c.Status()&StatusSeenReply == 0 {
			c.SetStatus(StatusSeenReply)
			t.cacheEvent(c, ecacheReply)
		}
		return Ref{Conn: c, Info: info}, Accept
	}
}

// Confirm is __nf_conntrack_confirm, called at the end of POSTROUTING and
// INPUT: a new entry of a packet in the original direction enters the
// table, its timeout starting now. It returns the Ref the packet keeps:
// on a benign clash (the same flow confirmed meanwhile by another packet
// with identical tuples) that of the entry already there, as
// nf_ct_resolve_clash does for protocols that allow it.
func (t *Table) Confirm(r Ref, now int64) (Ref, Verdict) {
	c := r.Conn
	if c == nil || c.Confirmed() || r.Info.Dir() != Original {
		if c != nil && c.Confirmed() {
			t.deliverCached(c, false, now)
		}
		return r, Accept
	}
	i, j := t.bucketOf(&c.th[0].tuple), t.bucketOf(&c.th[1].tuple)
	t.touch(i, j)
	for {
		t.lockPair(i, j)
		if c.Status()&StatusDying != 0 {
			t.unlockPair(i, j)
			t.stats.insertFailed.Add(1)
			return Ref{}, DropInsertFailed
		}
		// heads of empty buckets are not loaded (most are empty, and
		// the bucket array is too big to stay in the cache): linking
		// into one is then a store alone
		hi, hj := t.lockedHead(i), t.lockedHead(j)
		clash := c.clashIn(hi)
		if clash == nil && j != i {
			clash = c.clashIn(hj)
		}
		if clash == nil {
			c.timeout.Store(now + c.timeout.Load())
			c.SetStatus(StatusConfirmed)
			t.link(i, &c.th[0], hi)
			if j == i {
				hj = &c.th[0]
			}
			t.link(j, &c.th[1], hj)
			t.count.Add(1)
			t.unlockPair(i, j)
			t.stats.insert.Add(1)
			t.deliverCached(c, true, now)
			return r, Accept
		}
		old := clash.conn
		if old.expired(now) {
			t.unlockPair(i, j)
			if t.delete(old, now, false, 0) {
				t.stats.expired.Add(1)
			}
			continue
		}
		// no NEW event for a clash: __nf_conntrack_confirm caches it
		// only after a clean insert
		res, v := t.resolveClash(r, clash, j, hj, now)
		t.unlockPair(i, j)
		return res, v
	}
}

// allowClash: the protocols whose tracker sets allow_clash (udp,
// udplite, icmp, gre in net/netfilter/nf_conntrack_proto_*.c).
func allowClash(proto uint8) bool {
	return proto == packet.ProtoUDP || proto == packet.ProtoUDPLite || proto == packet.ProtoICMP || proto == packet.ProtoGRE
}

// resolveClash is nf_ct_resolve_clash (nf_conntrack_core.c), both
// bucket locks held: the entry of r lost the race to confirm against
// h's. For a protocol that allows clashes, __nf_ct_resolve_clash first:
// when the winner has no NAT done or both entries are the same flow
// both ways (nf_ct_match), the packet takes the winner's entry
// (clash_resolve); else nf_ct_resolve_clash_harder: when the loser's
// reply tuple is not in the table, the loser goes in by its reply
// tuple only (its original one stays out, so lookups find the winner
// and conntrack -L does not show it) with a fixed timeout of one
// second and IPS_NAT_CLASH, which keeps UDP from making it ASSURED
// (clash_resolve); when it is, __nf_ct_resolve_clash against that
// entry. Else the packet is dropped (drop and insert_failed).
func (t *Table) resolveClash(r Ref, h *tupleHash, j int, hj *tupleHash, now int64) (Ref, Verdict) {
	c := r.Conn
	if allowClash(c.th[Original].tuple.Proto) {
		if res, ok := t.resolveClashWith(r, h.conn); ok {
			return res, Accept
		}
		// nf_ct_resolve_clash_harder
		var rh *tupleHash
		for x := hj; x != nil; x = x.next.Load() {
			if x.tuple == c.th[Reply].tuple {
				rh = x
				break
			}
		}
		if rh != nil {
			if res, ok := t.resolveClashWith(r, rh.conn); ok {
				return res, Accept
			}
		} else {
			c.timeout.Store(now + 1e9)
			c.SetStatus(StatusConfirmed | StatusFixedTimeout | StatusNATClash)
			t.link(j, &c.th[Reply], hj)
			t.count.Add(1)
			t.stats.clash.Add(1)
			return r, Accept
		}
	}
	t.stats.drop.Add(1)
	t.stats.insertFailed.Add(1)
	return Ref{}, DropInsertFailed
}

// resolveClashWith is __nf_ct_resolve_clash: the packet of r takes
// winner's entry when winner is not dying and has no NAT done or is
// the same flow both ways (nf_ct_match).
func (t *Table) resolveClashWith(r Ref, winner *Conn) (Ref, bool) {
	ws := winner.Status()
	if ws&StatusDying != 0 {
		return Ref{}, false
	}
	c := r.Conn
	if ws&StatusNATDoneMask == 0 || (winner.th[Original].tuple == c.th[Original].tuple && winner.th[Reply].tuple == c.th[Reply].tuple) {
		t.stats.clash.Add(1)
		return Ref{Conn: winner, Info: r.Info}, true
	}
	return Ref{}, false
}

// InsertTwin puts a confirmed entry in the table for c's original
// tuple, as if a twin of the packet that made the unconfirmed c (the
// same flow: a DNS A and AAAA query from one socket) had gone through
// the hooks beside it and confirmed first: the entry has reply tuple
// reply and c's NAT status bits set in nat (what the twin's own NAT
// decisions were). c's Confirm then meets the clash as
// __nf_conntrack_confirm does (package fault's conntrack-clash). The
// twin's NEW event goes to the listeners as its confirm would send it;
// the loser sends none (the kernel caches NEW only after a clean
// insert), but a clash entry that goes in by its reply tuple sends
// DESTROY when it goes, as the kernel's does. It returns the twin, or an error when a tuple of the twin is in the
// table already.
func (t *Table) InsertTwin(c *Conn, reply Tuple, nat Status, now int64) (*Conn, error) {
	if c == nil || c.Confirmed() {
		return nil, errors.New("conntrack: a twin races an unconfirmed entry")
	}
	orig := c.th[Original].tuple
	reply.Zone = orig.Zone
	w := &Conn{created: now}
	w.th[Original] = tupleHash{tuple: orig, conn: w}
	w.th[Reply] = tupleHash{tuple: reply, conn: w}
	w.status.Store(uint32(nat&(StatusNATMask|StatusNATDoneMask) | StatusConfirmed))
	w.timeout.Store(now + c.timeout.Load())
	w.proto.udpStream.Store(c.proto.udpStream.Load())
	c.mu.Lock()
	w.proto.tcp = c.proto.tcp
	c.mu.Unlock()
	// the twin was made when c was (the same listeners: the event
	// extension, nf_ct_ecache_ext_add) and confirms cleanly, so its
	// NEW event goes out now, before c meets the clash
	w.proto.ecache.Store(c.proto.ecache.Load() & ecacheExt)
	i, j := t.bucketOf(&orig), t.bucketOf(&reply)
	t.lockPair(i, j)
	hi, hj := t.lockedHead(i), t.lockedHead(j)
	if w.clashIn(hi) != nil || (j != i && w.clashIn(hj) != nil) {
		t.unlockPair(i, j)
		return nil, errors.New("conntrack: the twin's tuples are in the table already")
	}
	t.link(i, &w.th[Original], hi)
	if j == i {
		hj = &w.th[Original]
	}
	t.link(j, &w.th[Reply], hj)
	t.count.Add(1)
	t.unlockPair(i, j)
	t.stats.insert.Add(1)
	t.deliverCached(w, true, now)
	return w, nil
}

// SetTimeout gives a confirmed entry d nanoseconds to live from now
// (conntrack -U --timeout; package fault's conntrack-expire). The next
// packet refreshes it as usual unless its timeout is fixed.
func (c *Conn) SetTimeout(d, now int64) {
	if c.Confirmed() {
		c.timeout.Store(now + d)
	}
}

// touch loads the heads of buckets i and j, the values unused, so that
// their cache lines come in together: link's stores into them are
// locked exchanges, each of which would wait for its own miss, one after
// the other (the bucket array, 2 MiB at the default size, is mostly out
// of the cache). The lock taken next waits for both loads at once.
func (t *Table) touch(i, j int) {
	t.buckets[i].head.Load()
	t.buckets[j].head.Load()
}

// Prefetch is touch for the buckets an unconfirmed entry's tuples hash
// to, for a caller about to take a lock (the NAT core, whose by-source
// insert precedes Confirm) so that the loads overlap its own miss.
func (t *Table) Prefetch(c *Conn) {
	t.touch(t.bucketOf(&c.th[0].tuple), t.bucketOf(&c.th[1].tuple))
}

// lockedHead is the head of bucket bi's chain, its lock held: nil
// without a load of the head when the occupancy bit says the chain is
// empty (the bit changes only under the bucket's lock).
func (t *Table) lockedHead(bi int) *tupleHash {
	if t.occupied[bi>>6].Load()&(1<<(bi&63)) == 0 {
		return nil
	}
	return t.buckets[bi].head.Load()
}

// clashIn returns the first entry of the chain from h having one of c's
// tuples, or nil.
func (c *Conn) clashIn(h *tupleHash) *tupleHash {
	for ; h != nil; h = h.next.Load() {
		if h.tuple == c.th[0].tuple || h.tuple == c.th[1].tuple {
			return h
		}
	}
	return nil
}

// Reap is the amortised garbage collector (gc_worker): it examines up to
// budget entries from where the last call stopped, deletes the expired
// ones and, while the table is under pressure (an allocation failed) and
// at least 95% full, the ones that may be early-dropped (not assured, or
// TCP in a closing state). It returns how many it removed.
func (t *Table) Reap(now int64, budget int) int {
	t.reapMu.Lock()
	defer t.reapMu.Unlock()
	t.reapExpectations(now)
	removed, seen := 0, 0
	var max95 int64
	if max := t.max(); t.pressure.Load() && max > 0 {
		max95 = max / 100 * 95
	}
	for visited := 0; seen < budget && visited < len(t.buckets); visited++ {
		seen++ // a bucket visit costs one unit of budget too
		b, mu := &t.buckets[t.reapCursor], t.lock(t.reapCursor)
		var victims [32]*Conn
		n := 0
		mu.Lock()
		for h := b.head.Load(); h != nil && n < len(victims); h = h.next.Load() {
			if h != &h.conn.th[Original] && h.conn.Status()&StatusNATClash == 0 {
				continue // visit each entry once, by its original tuple (a clash entry by its reply one)
			}
			seen++
			c := h.conn
			if c.expired(now) {
				victims[n] = c
				n++
				continue
			}
			if max95 == 0 || t.count.Load() < max95 || c.Status()&StatusDying != 0 {
				continue
			}
			if gcCanEarlyDrop(c) {
				victims[n] = c
				n++
			}
		}
		mu.Unlock()
		for _, c := range victims[:n] {
			expired := c.expired(now)
			if t.delete(c, now, false, 0) {
				removed++
				if expired {
					t.stats.expired.Add(1)
				} else {
					t.stats.earlyDrop.Add(1)
				}
			}
		}
		t.reapCursor++
		if t.reapCursor == len(t.buckets) {
			t.reapCursor = 0
			t.pressure.Store(false)
		}
	}
	return removed
}

// gcCanEarlyDrop is gc_worker_can_early_drop.
func gcCanEarlyDrop(c *Conn) bool {
	if c.Status()&StatusAssured == 0 {
		return true
	}
	if c.th[0].tuple.Proto == packet.ProtoTCP {
		return tcpCanEarlyDrop(c.TCPState())
	}
	if c.th[0].tuple.Proto == packet.ProtoSCTP {
		return sctpCanEarlyDrop(c.SCTPState())
	}
	return false
}

// Range calls f for every confirmed, unexpired entry (conntrack -L)
// until f returns false. f must not call methods that take bucket locks.
func (t *Table) Range(now int64, f func(*Conn) bool) {
	for i := range t.buckets {
		b, mu := &t.buckets[i], t.lock(i)
		mu.Lock()
		for h := b.head.Load(); h != nil; h = h.next.Load() {
			if h != &h.conn.th[Original] || h.conn.expired(now) {
				continue
			}
			if !f(h.conn) {
				mu.Unlock()
				return
			}
		}
		mu.Unlock()
	}
}
