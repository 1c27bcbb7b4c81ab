package route

import "time"

// NUD is a neighbour entry's state machine, as net/core/neighbour.c
// runs an arp_tbl entry with its default parameters; the bridge
// devices' tables (datapath) and the TAP ports' (link) keep one per
// next hop, with their own locks and queues:
//
//	(none, FAILED) ──a packet for it──> INCOMPLETE: the packet queued,
//	   ▲                                 a broadcast request at once and
//	   │                                 one per retrans_time, mcast_probes
//	   │ no answer (3 requests):         (3) in all
//	   │ the queue is dropped, each        │ ARP reply (unicast: REACHABLE)
//	   │ forwarded packet answered with    │ or request (STALE)
//	   │ ICMP host unreachable             ▼
//	   │                                 REACHABLE ──reachable_time──> STALE
//	   │                                   ▲  (used within delay_first_     │
//	   │                                   │   probe_time: DELAY)           │ a packet: sent,
//	   │                                   │                                ▼ and DELAY
//	   └───── PROBE: ucast_probes (3) <── DELAY (delay_first_probe_time):
//	          unicast requests to the        confirmed meanwhile: REACHABLE
//	          old MAC, packets still sent
//	          to it; a reply: REACHABLE
//
// A packet to a REACHABLE, STALE, DELAY, PROBE or PERMANENT neighbour
// goes to its MAC. reachable_time is base_reachable_time's 30 s (the
// kernel draws it between 15 and 45 s every 300 s). Locktime is not
// modelled: a changed MAC always wins.
type NUD struct {
	MAC   [6]byte
	State uint8
	// Confirmed: the last proof of reachability (a unicast reply);
	// Used: the last packet sent to it; Next: when the timer fires (0:
	// none)
	Confirmed, Used, Next int64
	// Probes is neigh->probes: an INCOMPLETE entry starts at
	// ucast_probes, so all of its requests are broadcast.
	Probes int
}

// NUD states.
const (
	NUDIncomplete uint8 = iota + 1
	NUDReachable
	NUDStale
	NUDDelay
	NUDProbe
	NUDFailed
	NUDPermanent
)

var nudNames = [...]string{0: "NONE", NUDIncomplete: "INCOMPLETE", NUDReachable: "REACHABLE", NUDStale: "STALE",
	NUDDelay: "DELAY", NUDProbe: "PROBE", NUDFailed: "FAILED", NUDPermanent: "PERMANENT"}

// NUDName is the state's name as ip neigh prints it.
func NUDName(s uint8) string {
	if int(s) < len(nudNames) {
		return nudNames[s]
	}
	return "NONE"
}

// arp_tbl's timers and probe counts.
const (
	NeighReachable   = int64(30 * time.Second) // base_reachable_time
	NeighDelayProbe  = int64(5 * time.Second)  // delay_first_probe_time
	NeighRetrans     = int64(time.Second)      // retrans_time
	NeighUcastProbes = 3
	NeighMcastProbes = 3
)

// HasMAC reports whether the entry has a link-layer address packets may
// go to (NUD_VALID).
func (n *NUD) HasMAC() bool { return n.State >= NUDReachable && n.State != NUDFailed }

// Use is the lookup of a packet going to the neighbour at now: true
// when it goes to n.MAC (a STALE entry becomes DELAY, its first probe
// delay_first_probe_time away); false: queue it (Start).
func (n *NUD) Use(now int64) bool {
	if !n.HasMAC() {
		return false
	}
	n.Used = now
	if n.State == NUDStale {
		n.State, n.Next = NUDDelay, now+NeighDelayProbe
	}
	return true
}

// Start begins a resolution for a packet that has to wait (no MAC, or
// FAILED): it reports whether a request goes out now (the first of a
// new resolution, counted); an entry already INCOMPLETE sends none.
func (n *NUD) Start(now int64) bool {
	if n.State == NUDIncomplete {
		return false
	}
	n.State, n.Probes, n.Next = NUDIncomplete, NeighUcastProbes+1, now+NeighRetrans
	return true
}

// Learn is neigh_update from arp_process: the neighbour's MAC is m,
// REACHABLE for a unicast reply (reachable), else STALE (a request, a
// broadcast reply); an entry with a MAC that keeps it keeps its state on
// a STALE update, and a PERMANENT one never changes. It reports whether
// the entry got a MAC it did not have (what waited for it goes now).
func (n *NUD) Learn(m [6]byte, reachable bool, now int64) bool {
	if n.State == NUDPermanent {
		return false
	}
	had := n.HasMAC()
	if !reachable && had && n.MAC == m {
		return false
	}
	n.MAC, n.Probes = m, 0
	if reachable {
		n.State, n.Confirmed, n.Next = NUDReachable, now, now+NeighReachable
	} else {
		n.State, n.Next = NUDStale, 0
	}
	return !had
}

// Timer runs the entry's timer if it is due at now (neigh_timer_handler):
// probe says a request goes out (unicast to n.MAC, else broadcast);
// failed says the entry just FAILED (its queue goes, each packet
// reported).
func (n *NUD) Timer(now int64) (probe, unicast, failed bool) {
	if n.Next == 0 || n.Next > now {
		return false, false, false
	}
	switch n.State {
	case NUDReachable:
		switch {
		case now <= n.Confirmed+NeighReachable:
			n.Next = n.Confirmed + NeighReachable
		case now <= n.Used+NeighDelayProbe:
			n.State, n.Next = NUDDelay, now+NeighDelayProbe
		default:
			n.State, n.Next = NUDStale, 0
		}
		return false, false, false
	case NUDDelay:
		if now <= n.Confirmed+NeighDelayProbe {
			n.State, n.Next = NUDReachable, n.Confirmed+NeighReachable
			return false, false, false
		}
		n.State, n.Probes = NUDProbe, 0
	case NUDIncomplete, NUDProbe:
	default:
		n.Next = 0
		return false, false, false
	}
	max := NeighUcastProbes
	if n.State == NUDIncomplete {
		max += NeighMcastProbes
	}
	if n.Probes >= max {
		n.State, n.Next = NUDFailed, 0
		return false, false, true
	}
	n.Probes++
	n.Next = now + NeighRetrans
	return true, n.State == NUDProbe, false
}
