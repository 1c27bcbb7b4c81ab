package link

import (
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/route"
)

// The neighbour table of one TAP port: the kernel's arp_tbl for one
// device (net/core/neighbour.c, net/ipv4/arp.c). Each entry runs
// route.NUD, the kernel's states and timers: INCOMPLETE with broadcast
// requests, REACHABLE, STALE, DELAY, PROBE with unicast requests,
// FAILED (its waiting packets answered with ICMP host unreachable by the
// caller), PERMANENT for static entries. The reaper (Datapath.reaper,
// once a second) runs the timers.
//
// Locking: mu guards m and every entry's fields but used. The write
// path's lookup takes the read lock and allocates nothing: it stores the
// entry's used time (atomic, once a second at most) and takes the write
// lock only for a STALE entry (which becomes DELAY); everything else (a
// miss, a learned address, the reaper) takes the write lock.

// unresQLen is how many packets wait for one unresolved neighbour (the
// kernel counts bytes, unres_qlen_bytes; a few packets is the same
// idea).
const unresQLen = 3

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
	nud route.NUD
	// used is the last time a packet went to the neighbour, stored by
	// readers (nud.Used is brought up to date under the write lock)
	used atomic.Int64
	// queue holds the packets waiting for the MAC (INCOMPLETE), as
	// frames whose Ethernet header is still to be written.
	queue []*frameBuf
}

// neighTable maps a next hop (IPv4, host byte order) to its entry.
type neighTable struct {
	mu sync.RWMutex
	m  map[uint32]*neighEntry // guarded by mu
}

func newNeighTable() *neighTable { return &neighTable{m: map[uint32]*neighEntry{}} }

// sync brings nud.Used up to date (mu held for writing).
func (e *neighEntry) sync() {
	if u := e.used.Load(); u > e.nud.Used {
		e.nud.Used = u
	}
}

// lookup returns the MAC of a next hop that has one (REACHABLE, STALE,
// DELAY, PROBE, PERMANENT) for a packet sent at now. It does not
// allocate.
func (t *neighTable) lookup(ip uint32, now int64) (mac [6]byte, ok bool) {
	t.mu.RLock()
	e := t.m[ip]
	if e == nil || !e.nud.HasMAC() {
		t.mu.RUnlock()
		return mac, false
	}
	if e.nud.State != route.NUDStale {
		if u := e.used.Load(); now-u >= int64(1e9) || now < u {
			e.used.Store(now)
		}
		mac = e.nud.MAC
		t.mu.RUnlock()
		return mac, true
	}
	t.mu.RUnlock()
	// STALE: the packet goes, and the entry becomes DELAY
	t.mu.Lock()
	defer t.mu.Unlock()
	if e = t.m[ip]; e == nil {
		return mac, false
	}
	e.sync()
	if !e.nud.Use(now) {
		return mac, false
	}
	e.used.Store(now)
	return e.nud.MAC, true
}

// enqueue is the miss path: if the next hop got a MAC meanwhile it
// returns it (resolved) and does not take f; otherwise f waits in the
// entry's queue (a resolution starts if none runs). dropped is a frame
// pushed out of a full queue (the oldest), for the caller to count and
// release; solicit says a request must go out now (a new resolution).
func (t *neighTable) enqueue(ip uint32, f *frameBuf, now int64) (mac [6]byte, resolved bool, dropped *frameBuf, solicit bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[ip]
	if e != nil && e.nud.HasMAC() {
		e.sync()
		e.nud.Use(now)
		e.used.Store(now)
		return e.nud.MAC, true, nil, false
	}
	if e == nil {
		e = &neighEntry{}
		t.m[ip] = e
	}
	solicit = e.nud.Start(now)
	if len(e.queue) >= unresQLen {
		dropped = e.queue[0]
		copy(e.queue, e.queue[1:])
		e.queue = e.queue[:len(e.queue)-1]
	}
	e.queue = append(e.queue, f)
	return mac, false, dropped, solicit
}

// learn records that ip is at mac (an ARP from it): REACHABLE for a
// reply sent to us (reachable), else STALE. Only an existing entry is
// updated unless create (arp_process creates one for the sender of a
// request for one of our addresses, neigh_event_ns; other ARP only
// updates what is there: unsolicited ARP is not accepted, arp_accept =
// 0). It returns the frames that were waiting, for the caller to send
// and release.
func (t *neighTable) learn(ip uint32, mac [6]byte, now int64, create, reachable bool) (flush []*frameBuf) {
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
	e.sync()
	if e.nud.Learn(mac, reachable, now) {
		flush, e.queue = e.queue, nil
	}
	return flush
}

// neighProbe is a request a timer sends: to target, unicast to mac when
// unicast (PROBE), else broadcast.
type neighProbe struct {
	target  uint32
	mac     [6]byte
	unicast bool
}

// age is the reaper's pass (neigh_timer_handler for every entry due):
// the requests to send, and the queues of the entries that FAILED, for
// the caller to report and release.
func (t *neighTable) age(now int64) (probes []neighProbe, failed []*frameBuf) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ip, e := range t.m {
		e.sync()
		probe, unicast, fail := e.nud.Timer(now)
		switch {
		case fail:
			failed = append(failed, e.queue...)
			e.queue = nil
		case probe:
			probes = append(probes, neighProbe{target: ip, mac: e.nud.MAC, unicast: unicast})
		}
	}
	return probes, failed
}

// setPermanent adds a static entry: ip is at mac for good.
func (t *neighTable) setPermanent(ip uint32, mac [6]byte) {
	t.mu.Lock()
	t.m[ip] = &neighEntry{nud: route.NUD{MAC: mac, State: route.NUDPermanent}}
	t.mu.Unlock()
}

// entries is the table's content for tests and the control plane: the
// next hops that have a MAC, and their MACs.
func (t *neighTable) entries() map[uint32][6]byte {
	t.mu.RLock()
	defer t.mu.RUnlock()
	m := map[uint32][6]byte{}
	for ip, e := range t.m {
		if e.nud.HasMAC() {
			m[ip] = e.nud.MAC
		}
	}
	return m
}

// states lists the table with each entry's state as ip neigh names it.
func (t *neighTable) states(f func(ip uint32, mac [6]byte, state string)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for ip, e := range t.m {
		var mac [6]byte
		if e.nud.HasMAC() {
			mac = e.nud.MAC
		}
		f(ip, mac, route.NUDName(e.nud.State))
	}
}
