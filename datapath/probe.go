package datapath

import (
	"fmt"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// probeStep is one table a reply packet meets at a hook; noCT: the
// packet has no conntrack entry there yet (raw runs before conntrack).
type probeStep struct {
	h    netfilter.Hook
	tid  iptables.TableID
	noCT bool
}

// The tables an established connection's reply meets, in the kernel's
// priority order, on each of its ways (the nat tables see a
// connection's first packet only).
var (
	probeForward = []probeStep{
		{netfilter.PreRouting, iptables.Raw, true}, {netfilter.PreRouting, iptables.Mangle, false},
		{netfilter.Forward, iptables.Mangle, false}, {netfilter.Forward, iptables.Filter, false},
		{netfilter.Forward, iptables.Security, false}, {netfilter.PostRouting, iptables.Mangle, false},
	}
	probeInput = []probeStep{
		{netfilter.PreRouting, iptables.Raw, true}, {netfilter.PreRouting, iptables.Mangle, false},
		{netfilter.LocalIn, iptables.Mangle, false}, {netfilter.LocalIn, iptables.Filter, false},
		{netfilter.LocalIn, iptables.Security, false},
	}
	probeOutput = []probeStep{
		{netfilter.LocalOut, iptables.Raw, true}, {netfilter.LocalOut, iptables.Mangle, false},
		{netfilter.LocalOut, iptables.Filter, false}, {netfilter.LocalOut, iptables.Security, false},
		{netfilter.PostRouting, iptables.Mangle, false},
	}
)

// ProbeReply asks what a reply packet of connection c would meet in the
// tables that can refuse or change it, once the connection is
// established: a packet of c's reply tuple (a bare TCP ACK or an empty
// UDP datagram, mark 0, ctinfo ESTABLISHED_REPLY) runs through raw,
// mangle, filter and security on the reply's way, without counting a
// hit. orig is the fate uswitch gave the connection's packet, tu that
// packet's tuple. c is nil when the rule set needs no conntrack (nothing
// tracks the connection, as in the kernel): the reply is then tu's
// inverse, and no table sees an entry. The reply's way mirrors the
// packet's: a forwarded one's reply comes in by orig.OutIf and leaves as
// the FIB routes it; a delivered one's leaves as the host's own; a sent
// one's comes in by orig.OutIf for the host.
//
// ok: every table accepts the reply as it is. Otherwise where says
// which table, chain and rule (or policy) would not, or why the probe
// could not tell (no route, a fate with no reply way); the caller keeps
// such a connection's packets coming to uswitch. The NFQUEUE offload
// uses it before handing a UDP flow to the kernel: the kernel then
// accepts the flow's replies by its connmark, so uswitch must have
// found that its own rules accept them too (a TCP connection's
// handshake reply has been through uswitch before its offload).
//
// The probe runs the tables' walks as the datapath does (the traced
// walk, not the lean one) with the matches' answers for that packet.
// Rule sets with matches whose answers change from packet to packet
// (limit, statistic, recent, ...) are the caller's to refuse: the probe
// would draw from their state.
func (e *Engine) ProbeReply(c *conntrack.Conn, tu conntrack.Tuple, orig Fate, now int64) (ok bool, where string) {
	cfg := e.cfg.Load()
	if c != nil && probeAccepts(cfg, orig.Kind) {
		return true, ""
	}
	return e.probe(cfg, c, tu, orig, now)
}

// probe is ProbeReply without probeAccepts' shortcut.
func (e *Engine) probe(cfg *compiled, c *conntrack.Conn, tu conntrack.Tuple, orig Fate, now int64) (ok bool, where string) {
	r := conntrack.Tuple{Src: tu.Dst, Dst: tu.Src, SrcPort: tu.DstPort, DstPort: tu.SrcPort, Proto: tu.Proto}
	if c != nil {
		r = c.Tuple(conntrack.Reply)
	}
	// the reply's way: the steps before the routing decision, then the
	// rest, which the route picks (and the device it leaves by)
	var pre, post []probeStep
	rin := ""
	switch orig.Kind {
	case Forwarded, Sent:
		rin = orig.OutIf
		pre = probeForward[:2]
	case Delivered:
	default:
		return false, fmt.Sprintf("reply: the packet was %v", orig.Kind)
	}
	k, where := e.probePkt(cfg, r, "reply", now)
	if k == nil {
		return false, where
	}
	defer e.putPkt(k)
	p := k.p
	if ok, where := k.probeSteps(c, conntrack.CtEstablishedReply, "reply", pre, rin, ""); !ok {
		return false, where
	}
	if c != nil && c.Status()&conntrack.StatusSrcNAT != 0 && orig.Kind != Delivered {
		// nat PREROUTING undoes a source NAT on the reply's destination
		// (after raw and mangle, before the route)
		o := c.Tuple(conntrack.Original)
		p.SetDstAddrPort(o.Src, o.SrcPort)
	}
	rout := ""
	switch orig.Kind {
	case Forwarded, Sent:
		res := cfg.FIB.Route(&route.Flow{Dst: addr4(p.Dst), Src: addr4(p.Src), IIF: cfg.FIB.Ifindex(rin),
			Proto: p.Proto, SPort: p.SrcPort, DPort: p.DstPort, Packet: true})
		want, steps := route.Unicast, probeForward[2:]
		if orig.Kind == Sent {
			want, steps = route.Local, probeInput[2:]
		}
		if res.Err != 0 || res.Type != want {
			return false, fmt.Sprintf("reply: routed as %v %v by %s, not back", res.Type, res.Err, rin)
		}
		if orig.Kind == Forwarded {
			rout = cfg.FIB.LinkName(res.Dev)
		}
		post = steps
	case Delivered:
		res := cfg.FIB.Output(&route.Flow{Dst: addr4(p.Dst), Src: addr4(p.Src), Proto: p.Proto, SPort: p.SrcPort, DPort: p.DstPort})
		if res.Err != 0 {
			return false, fmt.Sprintf("reply: no route to %v (%v)", addr4(p.Dst), res.Err)
		}
		rout = cfg.FIB.LinkName(res.Dev)
		post = probeOutput
	}
	return k.probeSteps(c, conntrack.CtEstablishedReply, "reply", post, rin, rout)
}

// ProbeOriginal is ProbeReply for the connection's later packets in the
// original direction once it is established: the packet as the first
// one came in by device in (tu, before NAT), ctinfo ESTABLISHED, through
// raw, mangle, filter and security on the first packet's way, with the
// connection's destination NAT applied where nat PREROUTING or OUTPUT
// applies it. They leave by orig.OutIf, as the first packet did (the
// same tuple after NAT, the same FIB). A first packet that was NEW and
// accepted says nothing of an ESTABLISHED one: `--ctstate NEW -j ACCEPT`
// and a DROP policy pass the first datagram and drop the ones after a
// reply. With no entry (c nil: a rule set without conntrack) nothing
// distinguishes the later packets from the first, and the answer is
// yes; so it is for TCP, whose install follows the handshake's last
// ACK, an established packet uswitch decided itself.
func (e *Engine) ProbeOriginal(c *conntrack.Conn, tu conntrack.Tuple, orig Fate, in string, now int64) (ok bool, where string) {
	if c == nil {
		return true, ""
	}
	cfg := e.cfg.Load()
	var pre, post []probeStep
	switch orig.Kind {
	case Forwarded:
		pre, post = probeForward[:2], probeForward[2:]
	case Delivered:
		pre, post = probeInput[:2], probeInput[2:]
	case Sent:
		pre, post = probeOutput[:2], probeOutput[2:]
	default:
		return false, fmt.Sprintf("original: the packet was %v", orig.Kind)
	}
	if stepsAccept(cfg, pre) && stepsAccept(cfg, post) {
		return true, ""
	}
	k, where := e.probePkt(cfg, tu, "original", now)
	if k == nil {
		return false, where
	}
	defer e.putPkt(k)
	p := k.p
	// probeSteps gives each hook only the devices it has (no output
	// device at PREROUTING and INPUT, no input one at OUTPUT)
	info := conntrack.CtEstablished
	if ok, where := k.probeSteps(c, info, "original", pre, in, orig.OutIf); !ok {
		return false, where
	}
	if c.Status()&conntrack.StatusDstNAT != 0 {
		// nat PREROUTING (OUTPUT) gives the packet the connection's
		// destination after raw and mangle
		r := c.Tuple(conntrack.Reply)
		p.SetDstAddrPort(r.Src, r.SrcPort)
	}
	return k.probeSteps(c, info, "original", post, in, orig.OutIf)
}

// probePkt readies the probe's packet of tuple t (a bare TCP ACK or an
// empty UDP datagram) on a pooled pkt, which the caller puts back
// (putPkt); where says why there is none (dir names the direction).
func (e *Engine) probePkt(cfg *compiled, t conntrack.Tuple, dir string, now int64) (k *pkt, where string) {
	spec := packet.Spec{Src: t.Src, Dst: t.Dst, Proto: t.Proto, SrcPort: t.SrcPort, DstPort: t.DstPort}
	switch t.Proto {
	case packet.ProtoTCP:
		spec.TCPFlags = packet.TCPAck
	case packet.ProtoUDP:
	default:
		return nil, fmt.Sprintf("%s: protocol %d not probed", dir, t.Proto)
	}
	p := &packet.Packet{Data: packet.Build(spec)}
	if err := p.Decode(); err != nil {
		return nil, dir + ": " + err.Error()
	}
	k, _ = e.pkts.Get().(*pkt)
	if k == nil {
		k = new(pkt)
	}
	e.initPkt(k, cfg, p, now, nil, nil)
	k.cold = true
	return k, ""
}

// probeSteps runs the probe's packet, of ctinfo info, through steps
// (ProbeReply, ProbeOriginal); dir names the direction in where.
func (k *pkt) probeSteps(c *conntrack.Conn, info conntrack.CtInfo, dir string, steps []probeStep, rin, rout string) (ok bool, where string) {
	p := k.p
	for _, s := range steps {
		k.ct = conntrack.Ref{Conn: c, Info: info}
		if s.noCT || c == nil {
			k.ct = conntrack.Ref{}
		}
		din, dout := rin, rout
		switch s.h {
		case netfilter.PreRouting, netfilter.LocalIn:
			dout = ""
		case netfilter.LocalOut, netfilter.PostRouting:
			din = ""
		}
		mark := p.Mark
		v, x := k.probeTable(s.tid, s.h, din, dout)
		switch {
		case v == iptables.TDrop && x != nil && x.DropChain != nil && x.DropRule > 0:
			return false, fmt.Sprintf("%s: %s %s rule %d", dir, s.tid, x.DropChain.Name, x.DropRule)
		case v == iptables.TDrop && x != nil && x.DropChain != nil:
			return false, fmt.Sprintf("%s: %s %s policy", dir, s.tid, x.DropChain.Name)
		case v != iptables.TAccept && v != iptables.TContinue:
			return false, fmt.Sprintf("%s: %s %s", dir, s.tid, s.h)
		case x != nil && (x.NAT != nil || x.Notrack || x.CTTemplate != nil || x.HasZone):
			return false, fmt.Sprintf("%s: %s %s (conntrack or NAT target)", dir, s.tid, s.h)
		case p.Mark != mark:
			return false, fmt.Sprintf("%s: %s %s (mark)", dir, s.tid, s.h)
		}
	}
	return true, ""
}

// probeAccepts reports whether every chain an established reply meets
// on the way for a packet of fate kind accepts it at once, whatever its
// addresses, devices and route (the common first rule
// `-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, or no rule and
// policy ACCEPT): the probe's answer without building the reply.
func probeAccepts(cfg *compiled, kind FateKind) bool {
	switch kind {
	case Forwarded:
		return stepsAccept(cfg, probeForward)
	case Sent:
		return stepsAccept(cfg, probeInput)
	case Delivered:
		return stepsAccept(cfg, probeOutput)
	}
	return false
}

// stepsAccept reports whether every chain of steps accepts an
// established packet at once (acceptsEstablished).
func stepsAccept(cfg *compiled, steps []probeStep) bool {
	for _, s := range steps {
		if !acceptsEstablished(cfg.base[s.h][s.tid], s.noCT) {
			return false
		}
	}
	return true
}

// acceptsEstablished reports whether base (nil: no such chain) accepts
// an ESTABLISHED_REPLY packet (noCT: one without an entry yet) before
// anything else can happen to it: every rule before a certain ACCEPT is
// one whose state test excludes the packet.
func acceptsEstablished(base *iptables.Chain, noCT bool) bool {
	if base == nil {
		return true
	}
	if noCT {
		return len(base.Rules) == 0 && base.Policy == iptables.VerdictAccept
	}
	// the reply's state bits: ESTABLISHED, and SNAT/DNAT as the entry has
	const reply = iptables.CTStateEstablished | iptables.CTStateSNAT | iptables.CTStateDNAT
	for _, r := range base.Rules {
		state, only := uint32(0), true
		for _, m := range r.Matches {
			switch x := m.(type) {
			case *iptables.ConntrackMatch:
				if mask, ok := x.StateOnly(); ok && state == 0 {
					state = mask
					continue
				}
			case *iptables.CommentMatch:
				continue
			}
			only = false
		}
		switch {
		case state != 0 && state&reply == 0:
			// the state test excludes the reply: the rule cannot match
		case only && (state == 0 || state&iptables.CTStateEstablished != 0) && r.IP == (iptables.IPHeader{}) &&
			r.Target == nil && r.Verdict == iptables.VerdictAccept:
			return true
		default:
			return false
		}
	}
	return base.Policy == iptables.VerdictAccept
}

// probeTable is runTable for the probe's packet: the walk that counts
// no hit (Ctx.Probe), with no log, trace or recording.
func (k *pkt) probeTable(tid iptables.TableID, h netfilter.Hook, in, out string) (iptables.TVerdict, *iptables.Ctx) {
	base := k.cfg.base[h][tid]
	if base == nil {
		return iptables.TAccept, nil
	}
	k.p.InIf, k.p.OutIf = in, out
	if k.scratch == nil {
		k.scratch = new(iptables.Scratch)
	}
	c := &k.ctx
	*c = iptables.Ctx{}
	c.Pkt, c.Hook, c.CT, c.Env, c.State, c.Linear, c.Scratch = k.p, h, k.ct, &k.env, k.e.State, k.cfg.Linear, k.scratch
	c.Probe = true
	return k.cfg.Rules.Tables[tid].RunBase(base, c, nil), c
}
