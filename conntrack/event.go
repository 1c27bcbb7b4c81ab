package conntrack

import (
	"sync"
	"sync/atomic"
)

// Conntrack events, as net/netfilter/nf_conntrack_ecache.c makes them
// for ctnetlink (conntrack -E):
//
//	In ──► tracker ──► cache bits on the entry (REPLY, ASSURED,
//	  │                PROTOINFO; MARK from CONNMARK) ──┐
//	  ▼                                                 ▼
//	Confirm: a new entry enters the table ──► NEW (with whatever was cached)
//	         an entry already confirmed   ──► UPDATE, if anything was cached
//	delete of a confirmed entry (timeout, early drop, RST, -D, -F) ──► DESTROY
//
// The kernel caches per entry and delivers once per packet, at the
// confirm hook (nf_conntrack_confirm → nf_ct_deliver_cached_events),
// so a SYN/ACK that both sets SEEN_REPLY and moves the TCP state gives
// one UPDATE. Bits cached while a packet is dropped before confirm wait
// for the entry's next packet, as they do in the kernel.
//
// An entry reports events only if a listener existed when it was made:
// the kernel adds the ecache extension in init_conntrack only then
// (nf_ct_ecache_ext_add with net.netfilter.nf_conntrack_events = 2, the
// default, checked: an entry made before conntrack -E started leaves
// without a DESTROY). Without a listener nothing is cached or delivered:
// the per-packet cost is one atomic load where an event could arise.

// ecache bits (enum ip_conntrack_events, the ones uswitch raises).
const (
	ecacheNew       uint32 = 1 << 0 // IPCT_NEW
	ecacheProtoinfo uint32 = 1 << 4 // IPCT_PROTOINFO: TCP or SCTP state change
	ecacheReply     uint32 = 1 << 3 // IPCT_REPLY: first reply seen
	ecacheAssured   uint32 = 1 << 2 // IPCT_ASSURED
	ecacheMark      uint32 = 1 << 8 // IPCT_MARK
	// ecacheExt: the entry has the ecache extension (made while a
	// listener existed); only such entries report events.
	ecacheExt uint32 = 1 << 31
)

// EventType is the kind of an event message (IPCTNL_MSG_CT_NEW with
// NLM_F_CREATE, IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE), usable as a
// mask (conntrack -e NEW,UPDATE).
type EventType uint8

// Event types.
const (
	EventNew EventType = 1 << iota
	EventUpdate
	EventDestroy

	EventAll = EventNew | EventUpdate | EventDestroy
)

func (e EventType) String() string {
	switch e {
	case EventNew:
		return "NEW"
	case EventUpdate:
		return "UPDATE"
	case EventDestroy:
		return "DESTROY"
	}
	return "EventType(?)"
}

// Event is one delivered event. Conn is live: read it in the callback
// (its state is the one the event reports); do not keep it.
type Event struct {
	Type EventType
	Conn *Conn
	// Now is the table's clock at delivery (for the timeout column).
	Now int64
	// Mark: the event carries IPCT_MARK, so the mark is reported even
	// when zero (ctnetlink_dump_mark's dump argument).
	Mark bool
	// User: a DESTROY a userspace request caused (conntrack -D, -F),
	// printed as [USERSPACE] portid=PortID.
	User   bool
	PortID uint32
}

// subscriber is one listener; the list is copied on change and swapped
// through Table.events, so delivery reads it without a lock.
type subscriber struct {
	f func(*Event)
}

// eventSubs is the table's listener list (nil: nobody listens).
type eventSubs struct {
	mu   sync.Mutex // serialises Subscribe and cancel
	list atomic.Pointer[[]*subscriber]
}

// Subscribe calls f for every event from now on, until cancel is
// called. f runs on the goroutine that made the event (a datapath
// worker, or the caller of Delete, Flush or Reap), with no table lock
// held; it must be quick and must not block: hand the event on (format
// it and queue it, dropping when the queue is full, as a netlink socket
// overruns with ENOBUFS).
func (t *Table) Subscribe(f func(*Event)) (cancel func()) {
	s := &subscriber{f: f}
	t.events.mu.Lock()
	var list []*subscriber
	if old := t.events.list.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, s)
	t.events.list.Store(&list)
	t.events.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.events.mu.Lock()
			defer t.events.mu.Unlock()
			old := t.events.list.Load()
			if old == nil {
				return
			}
			var list []*subscriber
			for _, o := range *old {
				if o != s {
					list = append(list, o)
				}
			}
			if len(list) == 0 {
				t.events.list.Store(nil)
				return
			}
			t.events.list.Store(&list)
		})
	}
}

// Listening reports whether an event listener is attached.
func (t *Table) Listening() bool { return t.events.list.Load() != nil }

// Listeners is the number of event listeners attached.
func (t *Table) Listeners() int {
	if l := t.events.list.Load(); l != nil {
		return len(*l)
	}
	return 0
}

// cacheEvent records bits on c for the next delivery
// (nf_conntrack_event_cache); nothing without a listener.
func (t *Table) cacheEvent(c *Conn, bits uint32) {
	if t.events.list.Load() == nil || c.proto.ecache.Load()&ecacheExt == 0 {
		return
	}
	c.proto.ecache.Or(bits)
}

// ecacheAdd gives a new entry the ecache extension if anybody listens
// (nf_ct_ecache_ext_add in init_conntrack).
func (t *Table) ecacheAdd(c *Conn) {
	if t.events.list.Load() != nil {
		c.proto.ecache.Store(ecacheExt)
	}
}

// deliverCached sends what is cached on c: NEW when isNew (c just
// confirmed), else UPDATE when anything is (nf_ct_deliver_cached_events).
func (t *Table) deliverCached(c *Conn, isNew bool, now int64) {
	list := t.events.list.Load()
	if list == nil {
		return
	}
	if v := c.proto.ecache.Load(); v&ecacheExt == 0 || (!isNew && v == ecacheExt) {
		return
	}
	bits := c.proto.ecache.And(ecacheExt)
	e := Event{Type: EventUpdate, Conn: c, Now: now, Mark: bits&ecacheMark != 0}
	if isNew {
		e.Type = EventNew
	}
	for _, s := range *list {
		s.f(&e)
	}
}

// deliverDestroy sends DESTROY for a confirmed entry just deleted.
func (t *Table) deliverDestroy(c *Conn, now int64, user bool, portid uint32) {
	list := t.events.list.Load()
	if list == nil || c.proto.ecache.Load()&ecacheExt == 0 {
		return
	}
	e := Event{Type: EventDestroy, Conn: c, Now: now, User: user, PortID: portid}
	for _, s := range *list {
		s.f(&e)
	}
}
