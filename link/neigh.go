package link

import (
	"sync"
	"time"
)

// The neighbour table of one TAP port: the kernel's arp_tbl for one
// device (net/core/neighbour.c, net/ipv4/arp.c), reduced to what a lab
// needs. An entry is a next hop's IPv4 address and, once known, its MAC:
//
//	(none) ──a packet for it──> incomplete: the packet queued (at most
//	   ▲                        unresQLen; beyond, the oldest is dropped,
//	   │                        as __neigh_event_send does), one ARP
//	   │                        request sent at once
//	   │                          │ ARP from the host (reply, or request)
//	   │                          ▼
//	   │    no answer to     reachable: queued packets flushed; any ARP
//	   │    arpProbes      ◄─ from the host confirms it again
//	   │    requests            │
//	   │   (queue dropped)      │ neighLifetime without ARP from the host
//	   └────────────────────────┘
//
// The reaper (Datapath.reaper, once a second) re-sends the request of an
// incomplete entry (retrans_time: at most once a second, mcast_probes:
// arpProbes in all) and ages the entries. The kernel's entry goes
// REACHABLE -> STALE -> DELAY -> PROBE with unicast probes while still
// used; here a reachable entry simply lives neighLifetime after the last
// ARP from its host (whose own kernel re-resolves uswitch's address well
// within that, which confirms the entry), and a packet after that
// resolves it anew.
//
// Locking: mu guards m and every entry's fields. The write path's lookup
// takes the read lock and allocates nothing; everything else (a miss, a
// learned address, the reaper) takes the write lock.

const (
	// unresQLen is how many packets wait for one unresolved neighbour
	// (the kernel counts bytes, unres_qlen_bytes; a few packets is the
	// same idea).
	unresQLen = 3
	// arpProbes is how many requests an incomplete entry gets before it
	// fails (mcast_probes).
	arpProbes = 3
	// arpRetrans is the interval between them (retrans_time).
	arpRetrans = int64(time.Second)
	// neighLifetime is how long a learned MAC is kept after the last
	// ARP from its host (base_reachable_time is 30 s, and a stale entry
	// lingers until gc; one minute is the simple middle).
	neighLifetime = int64(60 * time.Second)
)

// frameBuf is a pooled frame buffer of a TAP port: an IPv4 packet that
// has to wait (or was made by the engine) with room for the Ethernet
// header in front, or an ARP frame. b is the frame; buf the whole
// buffer; home the pool it goes back to.
type frameBuf struct {
	b    []byte
	buf  []byte
	home *sync.Pool
}

// release puts the buffer back into its pool.
func (f *frameBuf) release() {
	f.b = nil
	f.home.Put(f)
}

type neighEntry struct {
	mac      [6]byte
	resolved bool
	// permanent: a static entry (ip neigh ... nud permanent): never
	// ages, and ARP does not change it
	permanent bool
	// confirmed is the time of the last ARP from the host (resolved).
	confirmed int64
	// probes and lastProbe: requests sent while incomplete.
	probes    int
	lastProbe int64
	// queue holds the packets waiting for the MAC (incomplete), as
	// frames whose Ethernet header is still to be written.
	queue []*frameBuf
}

// neighTable maps a next hop (IPv4, host byte order) to its entry.
type neighTable struct {
	mu sync.RWMutex
	m  map[uint32]*neighEntry // guarded by mu
}

func newNeighTable() *neighTable { return &neighTable{m: map[uint32]*neighEntry{}} }

// lookup returns the MAC of a resolved next hop. It does not allocate.
func (t *neighTable) lookup(ip uint32) (mac [6]byte, ok bool) {
	t.mu.RLock()
	if e := t.m[ip]; e != nil && e.resolved {
		mac, ok = e.mac, true
	}
	t.mu.RUnlock()
	return mac, ok
}

// enqueue is the miss path: if the next hop was resolved meanwhile it
// returns its MAC (resolved) and does not take f; otherwise f waits in
// the entry's queue (made incomplete if new). dropped is a frame pushed
// out of a full queue (the oldest), for the caller to count and
// release; solicit says a request must go out now (a new entry).
func (t *neighTable) enqueue(ip uint32, f *frameBuf, now int64) (mac [6]byte, resolved bool, dropped *frameBuf, solicit bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[ip]
	if e != nil && e.resolved {
		return e.mac, true, nil, false
	}
	if e == nil {
		e = &neighEntry{probes: 1, lastProbe: now}
		t.m[ip] = e
		solicit = true
	}
	if len(e.queue) >= unresQLen {
		dropped = e.queue[0]
		copy(e.queue, e.queue[1:])
		e.queue = e.queue[:len(e.queue)-1]
	}
	e.queue = append(e.queue, f)
	return mac, false, dropped, solicit
}

// learn records that ip is at mac (an ARP from it). Only an existing
// entry is updated unless create (arp_process creates one for the
// sender of a request for one of our addresses, neigh_event_ns; other
// ARP only updates what is there: unsolicited ARP is not accepted,
// arp_accept = 0). It returns the frames that were waiting, for the
// caller to send and release.
func (t *neighTable) learn(ip uint32, mac [6]byte, now int64, create bool) (flush []*frameBuf) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[ip]
	if e == nil {
		if !create {
			return nil
		}
		e = &neighEntry{}
		t.m[ip] = e
	}
	if e.permanent {
		return nil
	}
	e.mac, e.resolved, e.confirmed, e.probes = mac, true, now, 0
	flush, e.queue = e.queue, nil
	return flush
}

// age is the reaper's pass: reachable entries unconfirmed for
// neighLifetime go; an incomplete entry whose last request is
// arpRetrans old gets another one (resolicit) until arpProbes were
// sent, then fails: it goes and its queue is returned (failed) for the
// caller to count and release.
func (t *neighTable) age(now int64) (resolicit []uint32, failed []*frameBuf) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ip, e := range t.m {
		switch {
		case e.permanent:
		case e.resolved:
			if now-e.confirmed >= neighLifetime {
				delete(t.m, ip)
			}
		case now-e.lastProbe < arpRetrans:
		case e.probes < arpProbes:
			e.probes++
			e.lastProbe = now
			resolicit = append(resolicit, ip)
		default:
			failed = append(failed, e.queue...)
			delete(t.m, ip)
		}
	}
	return resolicit, failed
}

// setPermanent adds a static entry: ip is at mac for good.
func (t *neighTable) setPermanent(ip uint32, mac [6]byte) {
	t.mu.Lock()
	t.m[ip] = &neighEntry{mac: mac, resolved: true, permanent: true}
	t.mu.Unlock()
}

// entries is the table's content for tests and the control plane: the
// resolved next hops and their MACs.
func (t *neighTable) entries() map[uint32][6]byte {
	t.mu.RLock()
	defer t.mu.RUnlock()
	m := map[uint32][6]byte{}
	for ip, e := range t.m {
		if e.resolved {
			m[ip] = e.mac
		}
	}
	return m
}

// states lists the table with each entry's state as ip neigh names it:
// PERMANENT for a static entry, REACHABLE for a learned one (this
// table's reachable entries have no STALE, DELAY or PROBE: see above),
// INCOMPLETE while being resolved.
func (t *neighTable) states(f func(ip uint32, mac [6]byte, state string)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for ip, e := range t.m {
		switch {
		case e.permanent:
			f(ip, e.mac, "PERMANENT")
		case e.resolved:
			f(ip, e.mac, "REACHABLE")
		default:
			f(ip, [6]byte{}, "INCOMPLETE")
		}
	}
}
