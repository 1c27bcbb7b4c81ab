package datapath

import (
	"sort"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// The neighbour table of a bridge device (arp_tbl on br0): each entry
// runs route.NUD, the kernel's states and timers. The timers run in
// Engine.BridgeNeighTick, which the lab's reaper calls once a second (an
// offline replay runs none: its ARP requests are never answered and
// never repeated). Entries are not garbage-collected (the kernel
// collects only above gc_thresh1, 128 entries).

// neighEntry is one neighbour of br0 (guarded by bridgeState.mu): its
// state machine and what waits for its MAC while INCOMPLETE.
type neighEntry struct {
	route.NUD
	q *neighQueue
}

// queuedPkt is an IPv4 packet waiting for its next hop's MAC: its
// input device (0: the host's own) and connection, for the ICMP error
// sent about it when the neighbour fails.
type queuedPkt struct {
	ip   []byte
	iif  int
	ct   conntrack.Ref
	zone uint16
}

// resolveNeigh is the neighbour lookup of a packet to a out of br0 at
// now: the MAC when the entry has one (route.NUD.Use), else false
// (queue it).
func (b *bridgeState) resolveNeigh(a uint32, now int64) (packet.MAC, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.neigh[a]
	if n == nil || !n.Use(now) {
		return packet.MAC{}, false
	}
	return n.MAC, true
}

// learnNeigh is neigh_update from arp_process (route.NUD.Learn): a's
// MAC is m, REACHABLE for a unicast reply, else STALE. An entry is made
// only when create (a request for our address: neigh_event_ns); else
// only one there, in any state, learns. It returns what was waiting for
// the MAC.
func (b *bridgeState) learnNeigh(a uint32, m packet.MAC, create, reachable bool, now int64) *neighQueue {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.neigh[a]
	if n == nil {
		if !create {
			return nil
		}
		n = &neighEntry{}
		b.neigh[a] = n
	}
	if !n.Learn(m, reachable, now) {
		return nil
	}
	q := n.q
	n.q = nil
	return q
}

// queueNeigh puts packets in the queue of a neighbour without a MAC (at
// most neighQueueMax, the oldest dropped first, as __neigh_event_send
// does); src is their source. It reports whether a request goes out now:
// a new resolution (no entry, or a FAILED one) sends its first at once.
func (b *bridgeState) queueNeigh(a uint32, pkts []queuedPkt, src uint32, now int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, isNew := b.startNeigh(a, now)
	w := n.q
	w.src = src
	for _, p := range pkts {
		if len(w.pkts) >= neighQueueMax {
			w.pkts = w.pkts[1:]
		}
		p.ip = append([]byte(nil), p.ip...)
		w.pkts = append(w.pkts, p)
	}
	return isNew
}

// startNeigh returns a's INCOMPLETE entry, starting its resolution when
// there is none (b.mu held).
func (b *bridgeState) startNeigh(a uint32, now int64) (*neighEntry, bool) {
	n := b.neigh[a]
	if n == nil {
		n = &neighEntry{}
		b.neigh[a] = n
	}
	isNew := n.Start(now)
	if isNew || n.q == nil {
		n.q = &neighQueue{}
	}
	return n, isNew
}

// neighRequest is an ARP request a timer sends: broadcast (zero dst)
// or unicast to the old MAC (PROBE).
type neighRequest struct {
	target, src uint32
	dst         packet.MAC
}

// neighTick runs the timers of b's neighbours due at now
// (neigh_timer_handler): the requests to send, and the queues of the
// entries that failed.
func (b *bridgeState) neighTick(now int64) (reqs []neighRequest, failed []*neighQueue) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for a, n := range b.neigh {
		probe, unicast, fail := n.Timer(now)
		switch {
		case fail:
			if n.q != nil {
				failed = append(failed, n.q)
				n.q = nil
			}
		case probe:
			r := neighRequest{target: a}
			if unicast {
				r.dst = n.MAC
			} else if n.q != nil {
				r.src = n.q.src
			}
			reqs = append(reqs, r)
		}
	}
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].target < reqs[j].target })
	return reqs, failed
}

// BridgeNeighTick runs the timers of the bridge devices' neighbour
// tables due at now. The lab's reaper calls it once a second. It returns
// the ARP requests the timers send, as frames leaving bridge ports
// (ff.Out), and the ICMP host unreachable errors sent about the queued
// packets of neighbours that failed (arp_error_report; a packet the host
// itself sent, or a bridged DNAT frame, is dropped without one).
func (e *Engine) BridgeNeighTick(now int64) (ff FrameFate, answers []Answer) {
	s := e.bridges.Load()
	if s == nil {
		return ff, nil
	}
	c := e.cfg.Load()
	names := make([]string, 0, len(s.byName))
	for name := range s.byName {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b := s.byName[name]
		reqs, failed := b.neighTick(now)
		for _, r := range reqs {
			dst := r.dst
			if dst == (packet.MAC{}) {
				dst = packet.Broadcast
			}
			// a PROBE's request goes to the old MAC, its target
			// hardware address still zero (arp_solicit)
			e.bridgeXmit(b, dst, packet.EtherTypeARP, arpRequest(b, c.FIB, r.src, r.target), &ff)
		}
		for _, w := range failed {
			for _, q := range w.pkts {
				answers = append(answers, e.neighUnreachable(q, now)...)
			}
		}
	}
	return ff, answers
}

// HostUnreachable is ipv4_link_failure for an IPv4 packet the link
// layer dropped because its next hop never answered ARP (a TAP port's
// neighbour that failed; the lab calls it): the ICMP host unreachable
// error sent to its sender, as for a packet forwarded from the device
// its sender is routed through. A packet from the host itself gets none
// (its socket would see the error; uswitch has none).
func (e *Engine) HostUnreachable(ip []byte, now int64) []Answer {
	return e.neighUnreachable(queuedPkt{ip: ip, iif: -1}, now)
}

// neighUnreachable is ipv4_link_failure for a packet whose neighbour
// failed: ICMP host unreachable to its sender, as for the packet on its
// forwarded route. iif -1: the input device is not known (the device
// towards the sender stands for it).
func (e *Engine) neighUnreachable(q queuedPkt, now int64) []Answer {
	if q.iif == 0 {
		return nil
	}
	p := &packet.Packet{Data: q.ip}
	if p.Decode() != nil {
		return nil
	}
	k := e.newPkt(p, now, nil, nil)
	defer e.putPkt(k)
	fib := k.cfg.FIB
	if fib == nil {
		return nil
	}
	if q.iif < 0 {
		if fib.AddrType(addr4(p.Src), 0, false) == route.Local {
			return nil
		}
		back := fib.Output(&route.Flow{Dst: addr4(p.Src)})
		if back.Err != 0 {
			return nil
		}
		q.iif = back.Dev
	}
	k.ct, k.zone, k.iif = q.ct, q.zone, q.iif
	p.InIf = fib.LinkName(q.iif)
	k.rt = fib.Input(&route.Flow{Dst: addr4(p.Dst), Src: addr4(p.Src), TOS: p.IP.TOS(), IIF: q.iif})
	if k.rt.Err != 0 {
		return nil
	}
	k.icmpError(packet.ICMPDestUnreach, 1)
	return append([]Answer(nil), k.fate.Answers...)
}

// BridgeNeighbour is one entry of a bridge device's neighbour table
// (`ip neigh show dev br0`).
type BridgeNeighbour struct {
	Addr  uint32
	MAC   packet.MAC // zero while INCOMPLETE
	State string     // REACHABLE, STALE, DELAY, PROBE, INCOMPLETE, FAILED
}

// BridgeNeighbours lists the neighbour table of the bridge device name,
// by address.
func (e *Engine) BridgeNeighbours(name string) []BridgeNeighbour {
	s := e.bridges.Load()
	if s == nil || s.byName[name] == nil {
		return nil
	}
	b := s.byName[name]
	b.mu.Lock()
	out := make([]BridgeNeighbour, 0, len(b.neigh))
	for a, n := range b.neigh {
		x := BridgeNeighbour{Addr: a, State: route.NUDName(n.State)}
		if n.HasMAC() {
			x.MAC = n.MAC
		}
		out = append(out, x)
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}
