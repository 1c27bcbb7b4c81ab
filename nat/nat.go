// Package nat is uswitch's NAT core for IPv4, following
// net/netfilter/nf_nat_core.c and nf_nat_proto.c: bindings made once per
// connection and manip type (SRC, DST) on its first packet — null
// bindings when no NAT target fired — the unique-tuple search with the
// kernel's address hash and port ranges, rewriting of every later packet
// from the connection's tuples with incremental checksums, and the
// translation of ICMP errors about NATed flows.
//
// Conntrack owns the connections; Core only adds the source-mapping index
// the kernel keeps (nf_nat_bysource) so a client keeps its mapped source:
// hash chains linked through the connections themselves (Conn.NAT), so
// indexing allocates nothing, and a connection leaves its chain when
// conntrack deletes it (the table's delete hook, as
// nf_nat_cleanup_conntrack runs on the kernel's destroy path).
//
// Locks: chain i of the by-source index is guarded by
// Core.srcLocks[i%1024], as nf_nat_core.c guards nf_nat_bysource[h] with
// nf_nat_locks[h % CONNTRACK_LOCKS]. They are leaf locks: no conntrack
// lock is held while one is taken (the delete hook runs after the table
// released its locks), none is taken under one, and no two are held at
// once.
package nat

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/internal/kernhash"
	"github.com/uswitch-lab/uswitch/packet"
)

// Manip is the manip type (enum nf_nat_manip_type).
type Manip uint8

const (
	Src Manip = iota // SNAT, MASQUERADE: POSTROUTING, INPUT
	Dst              // DNAT, REDIRECT: PREROUTING, OUTPUT
)

// Range flags (NF_NAT_RANGE_*, include/uapi/linux/netfilter/nf_nat.h).
const (
	MapIPs           = 1
	ProtoSpecified   = 2
	ProtoRandom      = 4
	Persistent       = 8
	ProtoRandomFully = 16
	ProtoOffset      = 32
	Netmap           = 64

	protoRandomAll = ProtoRandom | ProtoRandomFully
)

// Range is struct nf_nat_range2 for IPv4 (host byte order).
type Range struct {
	Flags            uint32
	MinIP, MaxIP     uint32
	MinPort, MaxPort uint16 // ports, or ICMP ids
	BasePort         uint16
}

// Core makes and applies bindings.
type Core struct {
	ct *conntrack.Table

	// bysource holds the chains of the connections whose SRC manip is
	// set up, hashed by original source (addr, port, proto, zone) and
	// linked through Conn.NAT, newest first (nf_nat_bysource,
	// hlist_add_head_rcu); chain i's head and the links of its entries
	// are guarded by srcLock(i)
	bysource []*conntrack.Conn
	// srcOcc has bit i set while chain i is not empty, so that linking
	// into an empty chain (the usual case: the head array is as big as
	// conntrack's and stays out of the cache) stores without loading
	// the head, and findSrc of an empty chain loads nothing. Bit i
	// changes and is read under srcLock(i); the changes are atomic
	// Or/And because a word holds the bits of chains of 64 locks.
	srcOcc  []atomic.Uint64
	srcMask uint32
	srcSeed uint64
	// srcLocks are the locks the chains share (nf_nat_locks), chain i
	// taking srcLocks[i&srcLockMask]
	srcLocks    []srcLock
	srcLockMask uint32

	// rand is the state of the random port offsets (get_random_u16),
	// seeded so experiments repeat; advanced by compare-and-swap, so
	// concurrent bindings take distinct steps of the sequence.
	rand atomic.Uint64
	// poolLimit, when above 0, cuts every source NAT's TCP/UDP port
	// range to its first poolLimit ports (SetPoolLimit)
	poolLimit atomic.Uint32
}

// cutPool is r with its port range cut to k ports (SetPoolLimit): a
// range without ports gets the kernel's implicit one for the original
// source port (1-511, 600-1023 or 1024-65535), made explicit and cut,
// so a port outside it is remapped as with --to-ports.
func cutPool(r *Range, orig conntrack.Tuple, k uint32) *Range {
	switch orig.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoSCTP, packet.ProtoDCCP:
	default:
		return r
	}
	c := *r
	if c.Flags&ProtoSpecified == 0 {
		c.Flags |= ProtoSpecified
		switch p := orig.SrcPort; {
		case p < 512:
			c.MinPort, c.MaxPort = 1, 511
		case p < 1024:
			c.MinPort, c.MaxPort = 600, 1023
		default:
			c.MinPort, c.MaxPort = 1024, 65535
		}
	}
	lo, hi := uint32(c.MinPort), uint32(c.MaxPort)
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi-lo+1 > k {
		hi = lo + k - 1
	}
	c.MinPort, c.MaxPort = uint16(lo), uint16(hi)
	return &c
}

// SetPoolLimit cuts the port range of every source NAT binding made
// from now on (SNAT, MASQUERADE of TCP, UDP, UDP-Lite, SCTP, DCCP) to
// its first k ports; 0 lifts the cut. It emulates NAT port exhaustion
// (package fault's nat-exhaust): once the k ports are taken for a
// destination, the search (nf_nat_l4proto_unique_tuple) finds none, the
// connection keeps a clashing tuple and its packet is dropped at
// confirm with insert_failed, as the kernel does with a pool that ran
// dry.
func (n *Core) SetPoolLimit(k int) { n.poolLimit.Store(uint32(max(k, 0))) }

// srcLockCount is CONNTRACK_LOCKS, the size of nf_nat_locks.
const srcLockCount = 1024

// srcLock is one of the locks the by-source chains share.
type srcLock struct {
	mu sync.Mutex
	_  [56]byte // keep neighbouring locks off one cache line
}

// New makes a Core over the connection table; seed drives the random
// port offsets. The Core takes the table's delete hook. Its by-source
// index has as many chains as the table has buckets (nf_nat_htable_size
// is nf_conntrack_htable_size).
func New(ct *conntrack.Table, seed uint64) *Core {
	n := ct.Config().Buckets
	if n < 1 {
		n = 1024
	}
	n = 1 << bits.Len(uint(n-1))
	nl := min(n, srcLockCount)
	c := &Core{ct: ct, bysource: make([]*conntrack.Conn, n), srcOcc: make([]atomic.Uint64, (n+63)/64), srcMask: uint32(n - 1),
		srcSeed: seed*0x9e3779b97f4a7c15 | 1, srcLocks: make([]srcLock, nl), srcLockMask: uint32(nl - 1)}
	c.rand.Store(seed | 1)
	ct.SetDeleteHook(c.forget)
	return c
}

// srcHash is hash_by_src: the chain of an original source (address,
// port, protocol, zone).
func (n *Core) srcHash(t *conntrack.Tuple) uint32 {
	h := n.srcSeed ^ (uint64(t.Src)<<32 | uint64(t.SrcPort)<<16 | uint64(t.Proto)<<8) ^ uint64(t.Zone)<<56
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return uint32(h) & n.srcMask
}

// srcLock is the lock of by-source chain i.
func (n *Core) srcLock(i uint32) *sync.Mutex { return &n.srcLocks[i&n.srcLockMask].mu }

// srcOccupied reports whether chain i is not empty; call it under the
// chain's lock.
func (n *Core) srcOccupied(i uint32) bool { return n.srcOcc[i>>6].Load()&(1<<(i&63)) != 0 }

// forget takes a deleted connection off its by-source chain
// (nf_nat_cleanup_conntrack). The original tuple, and so the chain, is
// known without the lock: it never changes.
func (n *Core) forget(c *conntrack.Conn) {
	o := c.Tuple(conntrack.Original)
	hi := n.srcHash(&o)
	mu := n.srcLock(hi)
	mu.Lock()
	if l := &c.NAT; l.Linked {
		if l.Prev != nil {
			l.Prev.NAT.Next = l.Next
		} else {
			n.bysource[hi] = l.Next
			if l.Next == nil {
				n.srcOcc[hi>>6].And(^(1 << (hi & 63)))
			}
		}
		if l.Next != nil {
			l.Next.NAT.Prev = l.Prev
		}
		// field by field: MasqIndex is read without this lock
		l.Next, l.Prev, l.Linked = nil, nil, false
	}
	mu.Unlock()
}

func (n *Core) random16() uint16 {
	for {
		// xorshift64*
		old := n.rand.Load()
		x := old
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		if n.rand.CompareAndSwap(old, x) {
			return uint16((x * 0x2545F4914F6CDD1D) >> 48)
		}
	}
}

// Initialized reports whether the manip of the connection is set up
// (nf_nat_initialized).
func Initialized(c *conntrack.Conn, m Manip) bool {
	if m == Src {
		return c.Status()&conntrack.StatusSrcNATDone != 0
	}
	return c.Status()&conntrack.StatusDstNATDone != 0
}

// Setup binds the manip of an unconfirmed connection to a tuple in r
// (nf_nat_setup_info). now is the packet's time (for tuple checks). On
// a confirmed connection it does nothing and the packet goes on, as
// nf_nat_setup_info returns NF_ACCEPT there ("Can't setup nat info for
// confirmed ct"): a NEW packet whose entry another packet confirmed
// first (a clash's winner without this manip done) runs the nat chain,
// and its NAT target binds nothing.
func (n *Core) Setup(c *conntrack.Conn, r *Range, m Manip, now int64) error {
	if c.Confirmed() {
		return nil
	}
	// what we have looks like the inverse of the reply tuple
	curr, ok := c.Tuple(conntrack.Reply).Invert()
	if !ok {
		curr = c.Tuple(conntrack.Original)
	}
	if k := n.poolLimit.Load(); k > 0 && m == Src {
		r = cutPool(r, curr, k)
	}
	nt := curr
	n.uniqueTuple(&nt, r, c, m, now)
	// the status bits are set at the end in one atomic OR (the kernel
	// sets them with plain ORs: it owns the unconfirmed entry); the
	// by-source walk of another packet (findSrc) reads neither
	done := conntrack.StatusDstNATDone
	if m == Src {
		done = conntrack.StatusSrcNATDone
	}
	if nt != curr {
		reply, ok := nt.Invert()
		if !ok {
			return errors.New("nat: tuple cannot be inverted")
		}
		if err := c.SetReplyTuple(reply); err != nil {
			return err
		}
		if m == Src {
			done |= conntrack.StatusSrcNAT
		} else {
			done |= conntrack.StatusDstNAT
		}
	}
	if m == Src {
		o := c.Tuple(conntrack.Original)
		hi := n.srcHash(&o)
		mu := n.srcLock(hi)
		mu.Lock()
		// the loads that miss, issued together before the first
		// locked instruction waits for them: the chain's head (nil
		// exactly when the chain is empty) and the conntrack buckets
		// Confirm is about to link c into
		head := n.bysource[hi]
		n.ct.Prefetch(c)
		if l := &c.NAT; !l.Linked && c.Status()&conntrack.StatusDying == 0 {
			if head != nil {
				head.NAT.Prev = c
			} else {
				n.srcOcc[hi>>6].Or(1 << (hi & 63))
			}
			l.Next, l.Prev, l.Linked = head, nil, true
			n.bysource[hi] = c
		}
		mu.Unlock()
	}
	c.SetStatus(done)
	return nil
}

// NullBinding installs the identity binding for the manip
// (__nf_nat_alloc_null_binding): the address the reply tuple already
// has, so later lookups see the manip as done.
func (n *Core) NullBinding(c *conntrack.Conn, m Manip, now int64) error {
	rt := c.Tuple(conntrack.Reply)
	ip := rt.Src
	if m == Src {
		ip = rt.Dst
	}
	return n.Setup(c, &Range{Flags: MapIPs, MinIP: ip, MaxIP: ip}, m, now)
}

// usedTuple is nf_nat_used_tuple: is the reply tuple of t taken by
// another connection?
func (n *Core) usedTuple(t conntrack.Tuple, c *conntrack.Conn, now int64) bool {
	reply, ok := t.Invert()
	if !ok {
		return false
	}
	return n.ct.TupleTaken(reply, c, now)
}

func inRange(t conntrack.Tuple, r *Range, m Manip) bool {
	ip, port := t.Dst, t.DstPort
	if m == Src {
		ip, port = t.Src, t.SrcPort
	}
	if t.Proto == packet.ProtoICMP {
		port = t.SrcPort
	}
	if r.Flags&MapIPs != 0 && (ip < r.MinIP || ip > r.MaxIP) {
		return false
	}
	if r.Flags&ProtoSpecified == 0 {
		return true
	}
	return port >= r.MinPort && port <= r.MaxPort
}

// uniqueTuple is get_unique_tuple: t is the tuple to map on entry, the
// mapped one on return (in place: no 16-byte copies in and out).
func (n *Core) uniqueTuple(t *conntrack.Tuple, r *Range, c *conntrack.Conn, m Manip, now int64) {
	// 1) SRC manip: keep the original tuple if in range and free, or
	// reuse the client's current mapping
	if m == Src && r.Flags&protoRandomAll == 0 {
		if inRange(*t, r, m) {
			if !n.usedTuple(*t, c, now) {
				return
			}
		} else if f, ok := n.findSrc(*t, r, now); ok && !n.usedTuple(f, c, now) {
			*t = f
			return
		}
	}
	// 2) the address
	bestIP(t, r, m)
	// 3) keep the port part if it is in range and unique
	if r.Flags&protoRandomAll == 0 {
		if r.Flags&ProtoSpecified != 0 {
			if r.Flags&ProtoOffset == 0 && l4InRange(*t, m, r) &&
				(r.MinPort == r.MaxPort || !n.usedTuple(*t, c, now)) {
				return
			}
		} else if !n.usedTuple(*t, c, now) {
			return
		}
	}
	// last chance: search the port range
	n.l4UniqueTuple(t, r, m, c, now)
}

func l4InRange(t conntrack.Tuple, m Manip, r *Range) bool {
	var port uint16
	switch t.Proto {
	case packet.ProtoICMP:
		port = t.SrcPort
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoSCTP, packet.ProtoDCCP:
		port = t.DstPort
		if m == Src {
			port = t.SrcPort
		}
	default:
		return true
	}
	return port >= r.MinPort && port <= r.MaxPort
}

// findSrc is find_appropriate_src: an existing SNAT of the same original
// source whose mapping is in range.
func (n *Core) findSrc(orig conntrack.Tuple, r *Range, now int64) (conntrack.Tuple, bool) {
	hi := n.srcHash(&orig)
	mu := n.srcLock(hi)
	mu.Lock()
	defer mu.Unlock()
	if !n.srcOccupied(hi) {
		return conntrack.Tuple{}, false
	}
	for c := n.bysource[hi]; c != nil; c = c.NAT.Next {
		// same_src, and the zone (nf_ct_zone_equal)
		o := c.Tuple(conntrack.Original)
		if o.Src != orig.Src || o.SrcPort != orig.SrcPort || o.Proto != orig.Proto || o.Zone != orig.Zone {
			continue
		}
		if c.Status()&conntrack.StatusDying != 0 {
			continue
		}
		// copy the source manip of that connection
		res, ok := c.Tuple(conntrack.Reply).Invert()
		if !ok {
			continue
		}
		res.Dst, res.DstPort = orig.Dst, orig.DstPort
		if orig.Proto == packet.ProtoICMP {
			res.DstPort = orig.DstPort
		}
		if inRange(res, r, Src) {
			return res, true
		}
	}
	return conntrack.Tuple{}, false
}

// bestIP is find_best_ips_proto: the only address, or one chosen by a
// hash of the source (and destination unless persistent) spread over the
// range with reciprocal_scale, as the kernel does.
func bestIP(t *conntrack.Tuple, r *Range, m Manip) {
	if r.Flags&MapIPs == 0 {
		return
	}
	ip := &t.Dst
	if m == Src {
		ip = &t.Src
	}
	if r.MinIP == r.MaxIP {
		*ip = r.MinIP
		return
	}
	// jhash2 over the source address as the kernel stores it: the whole
	// union nf_inet_addr (4 words: the address in network order read as
	// a host word, then zeros), initval = the destination likewise xor
	// zone, or 0 when persistent (checked against 6.18: 10.0.1.2..5 ->
	// 10.0.2.2-10.0.2.4 for daddr 10.0.1.1 gives .3 .4 .2 .2)
	var initval uint32
	if r.Flags&Persistent == 0 {
		initval = be32(t.Dst) ^ uint32(t.Zone)
	}
	addr := [4]uint32{be32(t.Src)} // union nf_inet_addr: an IPv4 address, then zeros
	j := kernhash.Jhash2(addr[:], initval)
	dist := r.MaxIP - r.MinIP + 1
	*ip = r.MinIP + uint32((uint64(j)*uint64(dist))>>32)
}

// be32 is the value the kernel sees when it loads a __be32 as a u32 on a
// little-endian machine: the host-order value byte-swapped.
func be32(a uint32) uint32 { return bits.ReverseBytes32(a) }

// maxAttempts is NF_NAT_MAX_ATTEMPTS.
const maxAttempts = 128

// l4UniqueTuple is nf_nat_l4proto_unique_tuple: search the port (or ICMP
// id) range from an offset for a tuple nobody uses.
func (n *Core) l4UniqueTuple(t *conntrack.Tuple, r *Range, m Manip, c *conntrack.Conn, now int64) {
	var key *uint16
	var min, size uint32
	switch t.Proto {
	case packet.ProtoICMP:
		key = &t.SrcPort
		if r.Flags&ProtoSpecified == 0 {
			min, size = 0, 65536
		} else {
			min, size = uint32(r.MinPort), uint32(r.MaxPort)-uint32(r.MinPort)+1
		}
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoSCTP, packet.ProtoDCCP:
		key = &t.DstPort
		if m == Src {
			key = &t.SrcPort
		}
		if r.Flags&ProtoSpecified == 0 {
			if m == Dst {
				return // a DNAT without ports never changes them
			}
			switch {
			case *key < 512:
				min, size = 1, 511
			case *key < 1024:
				min, size = 600, 1023-600+1
			default:
				min, size = 1024, 65535-1024+1
			}
		} else {
			lo, hi := uint32(r.MinPort), uint32(r.MaxPort)
			if hi < lo {
				lo, hi = hi, lo
			}
			min, size = lo, hi-lo+1
		}
	default:
		return
	}
	var off uint16
	switch {
	case r.Flags&ProtoOffset != 0:
		off = *key - r.BasePort
	case r.Flags&protoRandomAll != 0 || m != Dst:
		off = n.random16()
	}
	if size == 1 {
		// a one-port range takes its port used or not (the kernel
		// looks it up and returns either way): no lookup
		*key = uint16(min)
		return
	}
	attempts := size
	if attempts > maxAttempts {
		attempts = maxAttempts
	}
	// the reply tuple each candidate is checked as (usedTuple), made
	// once: only the key changes from one candidate to the next, and
	// it is the reply's destination port for a SRC manip, its source
	// port for a DST manip, and the id for ICMP (which Invert keeps)
	reply, invertible := t.Invert()
	rkey := &reply.SrcPort
	if m == Src && t.Proto != packet.ProtoICMP {
		rkey = &reply.DstPort
	}
	for {
		for i := uint32(0); i < attempts; i, off = i+1, off+1 {
			*key = uint16(min + uint32(off)%size)
			if !invertible {
				return
			}
			*rkey = *key
			if !n.ct.TupleTaken(reply, c, now) {
				return
			}
		}
		if attempts >= size || attempts < 16 {
			return
		}
		attempts /= 2
		off = n.random16()
	}
}

// Translate rewrites a packet of an established (or just bound)
// connection for the manip of its hook (nf_nat_packet): if the
// connection's status says that manip changed the tuple in the packet's
// direction, the source or destination becomes the inverse of the other
// direction's tuple. It reports false when the packet must be dropped:
// the transport header the manip rewrites is not all there
// (nf_nat_ipv4_manip_pkt: tcp/udp/icmp need 8 bytes, GRE the 8-byte
// PPTP header).
func Translate(p *packet.Packet, ref conntrack.Ref, m Manip) bool {
	c := ref.Conn
	if c == nil {
		return true
	}
	dir := ref.Info.Dir()
	if !applies(c, dir, m) {
		return true
	}
	other := c.Tuple(1 - dir)
	if other.Proto != packet.ProtoICMP && p.Proto != packet.ProtoICMP {
		// the inverse of the other direction's tuple, field by field
		// (manipPacket's TCP/UDP/... case without the tuple built)
		if p.IP.FragOffset() == 0 {
			switch p.Proto {
			case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoGRE:
				if len(p.IP)-p.IP.HeaderLen() < 8 {
					return false
				}
			}
		}
		if m == Src {
			p.SetSrcAddrPort(other.Dst, other.DstPort)
		} else {
			p.SetDstAddrPort(other.Src, other.SrcPort)
		}
		return true
	}
	var target conntrack.Tuple
	if other.Proto == packet.ProtoICMP {
		var ok bool
		if target, ok = other.Invert(); !ok {
			return true
		}
	} else {
		// Invert without its checks: only ICMP can fail to invert
		target = conntrack.Tuple{Src: other.Dst, Dst: other.Src, SrcPort: other.DstPort, DstPort: other.SrcPort}
	}
	if p.IP.FragOffset() == 0 {
		switch p.Proto {
		case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoICMP, packet.ProtoGRE:
			if len(p.IP)-p.IP.HeaderLen() < 8 {
				return false
			}
		}
	}
	manipPacket(p, target, m)
	return true
}

// applies is nf_nat_packet's test: did the manip change the tuple for
// packets of this direction? (A reply sees the other manip's bit.)
func applies(c *conntrack.Conn, dir conntrack.Dir, m Manip) bool {
	bit := conntrack.StatusDstNAT
	if m == Src {
		bit = conntrack.StatusSrcNAT
	}
	if dir == conntrack.Reply {
		bit ^= conntrack.StatusNATMask
	}
	return c.Status()&bit != 0
}

// manipPacket is nf_nat_manip_pkt: the source (SRC) or destination (DST)
// address and port become the target's. ICMP queries carry the id in
// the source part for either manip (icmp_manip_pkt).
func manipPacket(p *packet.Packet, target conntrack.Tuple, m Manip) {
	if p.Proto != packet.ProtoICMP {
		// address and port in one pass (the same bytes as the steps
		// below)
		if m == Src {
			p.SetSrcAddrPort(target.Src, target.SrcPort)
		} else {
			p.SetDstAddrPort(target.Dst, target.DstPort)
		}
		return
	}
	if m == Src {
		if p.Src != target.Src {
			p.SetSrc(target.Src)
		}
	} else if p.Dst != target.Dst {
		p.SetDst(target.Dst)
	}
	switch {
	case p.Proto == packet.ProtoICMP:
		if p.HasL4 && p.ICMPID != target.SrcPort && !packet.IsICMPError(p.ICMPType) {
			p.SetICMPID(target.SrcPort)
		}
	case m == Src:
		if p.SrcPort != target.SrcPort {
			p.SetSrcPort(target.SrcPort)
		}
	case p.DstPort != target.DstPort:
		p.SetDstPort(target.DstPort)
	}
}

// TranslateICMPError handles an ICMP error RELATED to a NATed connection
// (nf_nat_icmp_reply_translation): the embedded packet is rewritten with
// the opposite manip using the other direction's tuple, the ICMP checksum
// recomputed, then the outer header is rewritten like a reply. It
// reports false when the packet must be dropped (malformed inner header).
func TranslateICMPError(p *packet.Packet, ref conntrack.Ref, m Manip) bool {
	c := ref.Conn
	if c == nil || !p.HasL4 || p.Proto != packet.ProtoICMP || !packet.IsICMPError(p.ICMPType) {
		return true
	}
	// nf_nat_icmp_reply_translation (net/netfilter/nf_nat_proto.c):
	// a redirect passes only when the connection's NAT is set up in
	// both directions and is null (so the host's own redirect about a
	// connection still unconfirmed at FORWARD is dropped at nat OUTPUT)
	if p.ICMPType == packet.ICMPRedirect {
		st := c.Status()
		if st&conntrack.StatusNATDoneMask != conntrack.StatusNATDoneMask || st&conntrack.StatusNATMask != 0 {
			return false
		}
	}
	dir := ref.Info.Dir()
	if !applies(c, dir, m) {
		return true
	}
	icmp := p.L4
	if len(icmp) < packet.ICMPHeaderLen+packet.IPv4MinHeaderLen {
		return false
	}
	inner := &packet.Packet{Data: icmp[packet.ICMPHeaderLen:]}
	if !decodeInner(inner) {
		return false
	}
	// the embedded packet is put back the way its sender sent it: the
	// opposite manip, taking the other direction's tuple as it is
	opp := Dst
	if m == Dst {
		opp = Src
	}
	manipInner(inner, c.Tuple(1-dir), opp)
	// ICMP checksum over the whole message, recomputed
	binary.BigEndian.PutUint16(icmp[2:], 0)
	binary.BigEndian.PutUint16(icmp[2:], ^packet.Checksum(icmp, 0))
	// outer header: like a reply to the inverted tuple
	outer, ok := c.Tuple(1 - dir).Invert()
	if !ok {
		return false
	}
	if m == Src {
		if p.Src != outer.Src {
			p.SetSrc(outer.Src)
		}
	} else if p.Dst != outer.Dst {
		p.SetDst(outer.Dst)
	}
	return true
}

// decodeInner decodes the truncated packet embedded in an ICMP error:
// the IPv4 header must be whole, the total length may exceed what is
// there, and only 8 bytes of transport header are guaranteed.
func decodeInner(p *packet.Packet) bool {
	b := p.Data
	if len(b) < packet.IPv4MinHeaderLen || b[0]>>4 != 4 {
		return false
	}
	h := packet.IPv4(b)
	hl := h.HeaderLen()
	if hl < packet.IPv4MinHeaderLen || hl > len(b) {
		return false
	}
	p.IP = h
	p.Proto = h.Protocol()
	p.Src, p.Dst = h.Src(), h.Dst()
	p.L4 = b[hl:]
	p.HasL4 = len(p.L4) >= 8 && h.FragOffset() == 0
	if p.HasL4 {
		p.SrcPort = binary.BigEndian.Uint16(p.L4)
		p.DstPort = binary.BigEndian.Uint16(p.L4[2:])
		if p.Proto == packet.ProtoICMP {
			p.ICMPType, p.ICMPID = p.L4[0], binary.BigEndian.Uint16(p.L4[4:])
		}
	}
	return true
}

// manipInner rewrites the embedded packet's addresses and ports, keeping
// its IPv4 header checksum right; its transport checksum is adjusted only
// when the whole transport segment could be there (it is usually cut).
func manipInner(p *packet.Packet, target conntrack.Tuple, m Manip) {
	// The embedded packet went from the original sender: an opposite
	// manip rewrites its source (for DST NAT) or destination.
	ip := p.IP
	if m == Src {
		if p.Src != target.Src {
			old := p.Src
			ip.SetSrc(target.Src)
			p.Src = target.Src
			fixInnerL4(p, old, target.Src)
		}
		if p.HasL4 && p.Proto != packet.ProtoICMP && p.SrcPort != target.SrcPort {
			setInnerPort(p, 0, target.SrcPort)
		}
		return
	}
	if p.Dst != target.Dst {
		old := p.Dst
		ip.SetDst(target.Dst)
		p.Dst = target.Dst
		fixInnerL4(p, old, target.Dst)
	}
	if p.HasL4 && p.Proto != packet.ProtoICMP && p.DstPort != target.DstPort {
		setInnerPort(p, 2, target.DstPort)
	}
}

func innerL4ChecksumOff(p *packet.Packet) int {
	switch p.Proto {
	case packet.ProtoTCP:
		if len(p.L4) >= 18 {
			return 16
		}
	case packet.ProtoUDP:
		if len(p.L4) >= 8 && binary.BigEndian.Uint16(p.L4[6:]) != 0 {
			return 6
		}
	}
	return -1
}

func fixInnerL4(p *packet.Packet, old, new uint32) {
	if off := innerL4ChecksumOff(p); off >= 0 {
		binary.BigEndian.PutUint16(p.L4[off:], packet.UpdateChecksum32(binary.BigEndian.Uint16(p.L4[off:]), old, new))
	}
}

func setInnerPort(p *packet.Packet, at int, port uint16) {
	old := binary.BigEndian.Uint16(p.L4[at:])
	binary.BigEndian.PutUint16(p.L4[at:], port)
	if off := innerL4ChecksumOff(p); off >= 0 {
		binary.BigEndian.PutUint16(p.L4[off:], packet.UpdateChecksum16(binary.BigEndian.Uint16(p.L4[off:]), old, port))
	}
	if at == 0 {
		p.SrcPort = port
	} else {
		p.DstPort = port
	}
}
