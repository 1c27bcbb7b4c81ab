package conntrack

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Status is the entry's status word (enum ip_conntrack_status,
// include/uapi/linux/netfilter/nf_conntrack_common.h).
type Status uint32

// Status bits.
const (
	StatusExpected     Status = 1 << 0 // expected connection (helpers)
	StatusSeenReply    Status = 1 << 1 // packets seen both ways
	StatusAssured      Status = 1 << 2 // will not be early-dropped
	StatusConfirmed    Status = 1 << 3 // in the table
	StatusSrcNAT       Status = 1 << 4 // source manip changed the tuple
	StatusDstNAT       Status = 1 << 5 // destination manip changed the tuple
	StatusSeqAdjust    Status = 1 << 6
	StatusSrcNATDone   Status = 1 << 7 // SRC manip initialised (maybe null binding)
	StatusDstNATDone   Status = 1 << 8 // DST manip initialised
	StatusDying        Status = 1 << 9 // removed from the table
	StatusFixedTimeout Status = 1 << 10
	StatusTemplate     Status = 1 << 11
	// StatusUntracked is bit 12, IPS_UNTRACKED of older kernels; current
	// kernels mark untracked packets in ctinfo instead and reuse the bit
	// as IPS_NAT_CLASH.
	StatusUntracked Status = 1 << 12
	StatusNATClash  Status = 1 << 12
	StatusHelper    Status = 1 << 13
	StatusOffload   Status = 1 << 14

	StatusNATMask     = StatusSrcNAT | StatusDstNAT
	StatusNATDoneMask = StatusSrcNATDone | StatusDstNATDone
)

// CtInfo is the relation of a packet to its entry (enum
// ip_conntrack_info).
type CtInfo uint8

// ctinfo values. A reply-direction value is its original-direction
// value plus CtIsReply.
const (
	CtEstablished      CtInfo = 0
	CtRelated          CtInfo = 1
	CtNew              CtInfo = 2
	CtIsReply          CtInfo = 3
	CtEstablishedReply CtInfo = 3
	CtRelatedReply     CtInfo = 4
	CtUntracked        CtInfo = 7
)

var ctinfoNames = [...]string{"ESTABLISHED", "RELATED", "NEW", "ESTABLISHED_REPLY", "RELATED_REPLY", "", "", "UNTRACKED"}

func (i CtInfo) String() string {
	if int(i) < len(ctinfoNames) && ctinfoNames[i] != "" {
		return ctinfoNames[i]
	}
	return "CtInfo(?)"
}

// Dir is the direction of the packet (CTINFO2DIR).
func (i CtInfo) Dir() Dir {
	if i >= CtIsReply && i != CtUntracked {
		return Reply
	}
	return Original
}

// StateBits are the xt_conntrack/xt_state --ctstate/--state bits
// (include/uapi/linux/netfilter/xt_conntrack.h).
type StateBits uint16

// State bits: XT_CONNTRACK_STATE_BIT(ctinfo) = 1 << (ctinfo%3 + 1).
const (
	StateInvalid     StateBits = 1 << 0
	StateEstablished StateBits = 1 << 1
	StateRelated     StateBits = 1 << 2
	StateNew         StateBits = 1 << 3
	StateUntracked   StateBits = 1 << 6
	StateSNAT        StateBits = 1 << 7
	StateDNAT        StateBits = 1 << 8
)

// Ref is what a packet carries about its connection (skb->_nfct): the
// entry, nil when the packet is invalid or untracked, and the ctinfo.
type Ref struct {
	Conn *Conn
	Info CtInfo
}

// Untracked is the Ref of a packet the raw table exempted with
// -j CT --notrack / -j NOTRACK.
var Untracked = Ref{Info: CtUntracked}

// IsUntracked reports the NOTRACK marker.
func (r Ref) IsUntracked() bool { return r.Conn == nil && r.Info == CtUntracked }

// State computes the bits -m conntrack --ctstate matches, as
// conntrack_mt in net/netfilter/xt_conntrack.c: the ctinfo's bit, or
// UNTRACKED, or INVALID; plus SNAT/DNAT from the status. xt_state.c gives
// the same bits without SNAT/DNAT (mask them off for -m state).
func (r Ref) State() StateBits {
	if r.Conn == nil {
		if r.Info == CtUntracked {
			return StateUntracked
		}
		return StateInvalid
	}
	s := StateBits(1) << (r.Info%CtIsReply + 1)
	st := r.Conn.Status()
	if st&StatusSrcNAT != 0 {
		s |= StateSNAT
	}
	if st&StatusDstNAT != 0 {
		s |= StateDNAT
	}
	return s
}

// tupleHash is one direction of an entry linked into a table bucket
// (struct nf_conntrack_tuple_hash). next is written under the lock of
// the bucket the tuple hashes to and read without it by lookups
// (bucket). There is no back link: an unlink finds the predecessor by
// walking the (short) chain under the lock, so linking a new entry
// writes nothing into the entry it is put in front of.
type tupleHash struct {
	tuple Tuple
	conn  *Conn
	next  atomic.Pointer[tupleHash]
}

// Conn is one tracked connection (struct nf_conn).
//
// The fields are ordered so that the entry is 320 bytes, a size class of
// the Go allocator (one conntrack entry is the only allocation of a new
// connection): alloc_test.go checks it.
type Conn struct {
	// th holds the ORIGINAL and REPLY tuples; immutable once confirmed.
	// The zone (nf_ct_zone) is that of both tuples.
	th [2]tupleHash

	status atomic.Uint32
	mark   atomic.Uint32
	// timeout is the absolute deadline (now-nanoseconds) once confirmed;
	// before confirmation it is the relative lifetime in nanoseconds,
	// made absolute by Confirm as __nf_conntrack_confirm does.
	timeout atomic.Int64

	// created is the now of the packet that made the entry.
	created int64
	// ext is the helper, master and sequence adjustment of a helped or
	// expected entry (helper.go); nil for all others. Set before
	// Confirm.
	ext *connExt

	// mu guards proto (ct->lock).
	mu    sync.Mutex
	proto protoState

	// NAT is the entry's place in the NAT core's by-source index
	// (nf_conn's nat_bysource). Only the NAT core touches it, under its
	// own lock.
	NAT NATLink

	// Memo is the datapath's flow cache of each direction (Memo's doc).
	Memo [2]Memo
}

// NATLink links an entry into a hash chain of the NAT core's by-source
// index (an hlist_node). Linked says whether it is in a chain.
type NATLink struct {
	Next, Prev *Conn
	Linked     bool
	// MasqIndex is the output device a MASQUERADE binding was made for
	// (nf_conn_nat's masq_index; 0: none). It is written before the
	// entry is confirmed and only read after. It sits here, in the
	// link's padding, to keep Conn in its size class.
	MasqIndex int32
}

// protoState is the per-protocol part (union nf_conntrack_proto).
type protoState struct {
	tcp tcpState
	// ecache holds the events cached for the entry until the packet's
	// confirm delivers them (the nf_conntrack_ecache extension's cache
	// word; ecacheNew...). Atomic, not guarded by mu; it sits here, in
	// tcpState's tail padding, to keep Conn at 320 bytes.
	ecache atomic.Uint32
	// udpStream is when a replied UDP flow becomes a stream (ns),
	// written by the entry's first packets before it is confirmed and
	// only read after (atomic: readers take no lock); GRE keeps nothing
	// beyond the timeouts.
	udpStream atomic.Int64
	// The SCTP tracker's state shares tcp's bytes (the kernel's union
	// nf_conntrack_proto): see sctp().
}

// Tuple returns the tuple of one direction.
func (c *Conn) Tuple(d Dir) Tuple { return c.th[d&1].tuple }

// Status returns the status word.
func (c *Conn) Status() Status { return Status(c.status.Load()) }

// SetStatus sets bits in the status word (set_bit).
func (c *Conn) SetStatus(s Status) { c.status.Or(uint32(s)) }

// ClearStatus clears bits in the status word.
func (c *Conn) ClearStatus(s Status) { c.status.And(^uint32(s)) }

// Mark is the connmark (ct->mark).
func (c *Conn) Mark() uint32 { return c.mark.Load() }

// SetMark sets the connmark; CONNMARK computes the value. A change is
// an IPCT_MARK event (xt_connmark.c caches it when the value differs);
// an entry knows no table, so the bit is cached even without an event
// listener: one atomic OR on a mark change, none on a mark kept.
func (c *Conn) SetMark(m uint32) {
	if c.mark.Load() != m {
		c.mark.Store(m)
		c.proto.ecache.Or(ecacheMark)
	}
}

// Zone is the entry's conntrack zone.
func (c *Conn) Zone() uint16 { return c.th[Original].tuple.Zone }

// Created is the now at which the entry was made.
func (c *Conn) Created() int64 { return c.created }

// Confirmed reports whether the entry is in the table.
func (c *Conn) Confirmed() bool { return c.Status()&StatusConfirmed != 0 }

// Expires returns the remaining lifetime in nanoseconds at now (zero when
// expired), as nf_ct_expires; for an unconfirmed entry the full timeout.
func (c *Conn) Expires(now int64) int64 {
	t := c.timeout.Load()
	if !c.Confirmed() {
		return t
	}
	if d := t - now; d > 0 {
		return d
	}
	return 0
}

// expired is nf_ct_is_expired: deadline - now <= 0 for confirmed ones.
func (c *Conn) expired(now int64) bool {
	return c.Confirmed() && c.timeout.Load()-now <= 0
}

// jiffy is the granularity of a refreshed timeout (ns).
const jiffy = int64(1e6)

// refresh sets the lifetime to extra from now (__nf_ct_refresh_acct).
func (c *Conn) refresh(extra, now int64) {
	if c.Status()&StatusFixedTimeout != 0 {
		return
	}
	if c.Confirmed() {
		extra += now
	}
	// only when it moves by a jiffy or more (__nf_ct_refresh_acct
	// stores jiffies only when they changed; HZ=1000's jiffy, 1 ms,
	// stands for it) or goes back: an atomic store is a locked exchange
	// on amd64, and a deadline in nanoseconds changes with every packet
	if d := extra - c.timeout.Load(); d >= jiffy || d < 0 {
		c.timeout.Store(extra)
	}
}

// TCPState returns the TCP tracker's state (TCPNone for other protocols).
func (c *Conn) TCPState() TCPState {
	if c.th[0].tuple.Proto != 6 {
		return TCPNone
	}
	c.mu.Lock()
	s := c.proto.tcp.state
	c.mu.Unlock()
	return s
}

// ErrConfirmed is returned by SetReplyTuple on an entry already in the
// table: NAT bindings can only be made before confirmation.
var ErrConfirmed = errors.New("conntrack: entry already confirmed")

// SetReplyTuple replaces the reply tuple of an unconfirmed entry, as
// nf_conntrack_alter_reply does for NAT. The zone is kept.
func (c *Conn) SetReplyTuple(t Tuple) error {
	if c.Confirmed() {
		return ErrConfirmed
	}
	t.Zone = c.th[Original].tuple.Zone
	c.th[Reply].tuple = t
	return nil
}
