package nfqueue

import (
	"bytes"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// Queued is one packet the kernel queued, as the reader hands it over.
type Queued struct {
	ID      uint32
	Hook    netfilter.Hook
	Mark    uint32
	InDev   uint32 // ifindex, 0 = none
	OutDev  uint32
	UID     uint32
	GID     uint32
	HasUID  bool
	Payload []byte // from the IPv4 header on; rewritten in place
}

// Decision is uswitch's verdict on a queued packet.
type Decision struct {
	Verdict netfilter.Verdict
	// Mark is the packet's mark after uswitch's rules; SetMark says it
	// differs from the mark the kernel queued it with.
	Mark    uint32
	SetMark bool
	// Payload is the rewritten packet, nil when uswitch left it as it was.
	Payload []byte
	Fate    datapath.Fate
	// Malformed: the payload did not decode (dropped).
	Malformed bool
	// RouteMismatch: at FORWARD, uswitch's route left through another
	// device than the kernel's (the kernel does not reroute there).
	RouteMismatch bool
	// Offload is set (Decider.Offload) when the packet was the first of
	// a TCP or UDP connection uswitch accepted: Flow is what to install
	// in the kernel's conntrack (offload_linux.go).
	Offload bool
	Flow    flowReq
}

// Batchable is whether the decision is a plain ACCEPT that a batch
// verdict can give.
func (d *Decision) Batchable() bool {
	return d.Verdict == netfilter.Accept && !d.SetMark && d.Payload == nil
}

// Decider runs queued packets through an engine. It is not safe for
// concurrent use: each worker has its own (the engine is shared).
type Decider struct {
	Eng *datapath.Engine
	// W is the engine worker the decider runs packets on (its own
	// random source); nil: the engine's shared one.
	W *datapath.Worker
	// Name gives an interface's name from its ifindex (the engine's
	// FIB: Engine config FIB.LinkName).
	Name func(ifindex int) string
	// Now is the engine's clock (monotonic nanoseconds).
	Now func() int64
	// Offload: report the first packets of the connections uswitch
	// accepts (Decision.Offload).
	Offload bool

	orig []byte
	pkt  packet.Packet
	// asked remembers the installs this decider asked for lately
	// (made on first use)
	asked *installsAsked
}

// installWindow is how long a flow's install is taken to be under way:
// a packet of the flow queued meanwhile (it reached the kernel before
// the install landed) asks for none again. A refused install is tried
// again by the flow's first packet after it.
const installWindow = 50e6 // ns

// installsAsked is a direct-mapped table of the installs asked for
// lately, by original tuple: fixed size, nothing allocated a flow; a
// slot another flow took only costs an install asked for twice.
type installsAsked [1 << 13]struct {
	t  conntrack.Tuple
	at int64
}

func (a *installsAsked) slot(t conntrack.Tuple) int {
	h := (t.Src*0x9e3779b1 ^ t.Dst) * 0x85ebca6b
	h ^= (uint32(t.SrcPort)<<16 | uint32(t.DstPort)) * 0xc2b2ae35
	return int((h ^ h>>15 ^ uint32(t.Proto)) & (uint32(len(a)) - 1))
}

// ask reports whether flow t may ask for an install at now (none asked
// for within installWindow) and notes it when it may.
func (a *installsAsked) ask(t conntrack.Tuple, now int64) bool {
	e := &a[a.slot(t)]
	if e.t == t && now-e.at < installWindow {
		return false
	}
	e.t, e.at = t, now
	return true
}

// Decide runs q through the engine and returns the verdict. q.Payload
// may be rewritten in place; Decision.Payload aliases it.
func (d *Decider) Decide(q *Queued) Decision {
	d.orig = append(d.orig[:0], q.Payload...)
	p := &d.pkt
	*p = packet.Packet{Data: q.Payload}
	if err := p.Decode(); err != nil {
		return Decision{Verdict: netfilter.Drop, Malformed: true}
	}
	in := ""
	if q.InDev != 0 {
		in = d.Name(int(q.InDev))
		p.InIf = in
	}
	p.Mark = q.Mark
	ttl := p.IP.TTL()
	// the tuple the kernel's conntrack gave the packet (it looked the
	// packet up before the queue: mangle, not raw, with offload)
	tu := conntrack.Tuple{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
	hasL4 := p.HasL4 && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP)
	now := d.Now()
	var f datapath.Fate
	switch {
	case q.Hook == netfilter.LocalOut || (q.Hook == netfilter.PostRouting && q.InDev == 0):
		// a packet of the namespace's own: the engine's OUTPUT path
		p.InIf = ""
		if q.HasUID {
			p.HasSocket, p.UID, p.GID = true, q.UID, q.GID
		}
		if d.W != nil {
			f = d.W.Send(p, now, nil)
		} else {
			f = d.Eng.Send(p, now, nil)
		}
	default:
		// The engine runs the packet's way from PREROUTING. At FORWARD
		// (and POSTROUTING) ip_forward has decremented the TTL already:
		// give the engine the packet as it arrived, and the kernel the
		// TTL it queued, so the TTL is decremented once.
		if q.Hook != netfilter.PreRouting && q.Hook != netfilter.LocalIn && ttl < 255 {
			p.SetTTL(ttl + 1)
		}
		if d.W != nil {
			f = d.W.Receive(p, now, nil)
		} else {
			f = d.Eng.Receive(p, now, nil)
		}
		// The kernel decrements the TTL itself when it forwards.
		if p.IP.TTL() != ttl {
			p.SetTTL(ttl)
		}
	}
	dec := Decision{Fate: f, Mark: p.Mark, SetMark: p.Mark != q.Mark}

	switch f.Kind {
	case datapath.Dropped, datapath.Stolen:
		dec.Verdict = netfilter.Drop
		return dec
	}
	// Forwarded, Sent, Delivered, and Queued (the rule set itself has
	// an NFQUEUE rule: uswitch is that queue's reader, so the packet
	// goes on). Held: a fragment reached the queue (the kernel
	// reassembles before any queue when its conntrack runs, so only a
	// namespace without it queues fragments); the engine keeps a copy
	// for its datagram and the kernel passes the fragment on, the
	// datagram's verdict applying to its last fragment only.
	dec.Verdict = netfilter.Accept
	if q.Hook == netfilter.Forward && f.Kind == datapath.Forwarded && q.OutDev != 0 && f.OutIf != d.Name(int(q.OutDev)) {
		dec.RouteMismatch = true
	}
	if len(p.IP) != len(d.orig) || !bytes.Equal(p.IP, d.orig) {
		dec.Payload = p.IP
	}
	if d.Offload && hasL4 && f.Kind != datapath.Queued && f.Kind != datapath.Held {
		// A packet of the original direction: the first one (a UDP
		// flow is installed then; a TCP flow's first packet is counted
		// when the rule set keeps it queued), and for TCP the first
		// once uswitch's entry is ESTABLISHED (the handshake's last
		// ACK): installed then, the kernel has seen the handshake's
		// replies through the queue and the entry starts established.
		// A later packet of a flow not installed (the kernel refused
		// it, or its entry went) tries again.
		c, dir, ok := d.Eng.CT.Lookup(tu, now)
		switch {
		case ok && dir == conntrack.Original:
			first := c.Created() == now
			install := p.Proto == packet.ProtoUDP || c.TCPState() == conntrack.TCPEstablished
			if first || install {
				dec.Offload = true
				dec.Flow = flowReq{Orig: c.Tuple(conntrack.Original), Reply: c.Tuple(conntrack.Reply), TCPState: c.TCPState(),
					First: first, Install: install, conn: c}
			}
		case !ok:
			// no entry of uswitch's: its rule set needs no conntrack
			// (as in the kernel, nothing then tracks), so no NAT
			// either; the kernel's own entry gets the mark (found by
			// either of its tuples). TCP after the handshake's SYNs.
			syn := p.Proto == packet.ProtoTCP && p.TCPFlags&0x02 != 0
			dec.Offload = true
			dec.Flow = flowReq{Orig: tu, Reply: conntrack.Tuple{Src: tu.Dst, Dst: tu.Src, SrcPort: tu.DstPort, DstPort: tu.SrcPort, Proto: tu.Proto},
				First: p.Proto == packet.ProtoUDP || syn, Install: !syn}
		}
	}
	if dec.Offload {
		dec.Flow.kind, dec.Flow.outIf, dec.Flow.inIf = f.Kind, f.OutIf, in
	}
	if dec.Offload && dec.Flow.Install {
		if d.asked == nil {
			d.asked = new(installsAsked)
		}
		if !d.asked.ask(dec.Flow.Orig, now) {
			// its install is under way (the installer writes it after
			// this round): another would delete the entry it makes
			dec.Offload = false
		}
	}
	return dec
}
