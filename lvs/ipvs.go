package lvs

import (
	"fmt"
	"time"

	"github.com/uswitch-lab/uswitch/netfilter"

	"github.com/uswitch-lab/uswitch/packet"
)

// IPVS's callbacks on the netfilter hooks (ip_vs_ops4,
// net/netfilter/ipvs/ip_vs_core.c; the priorities are netfilter's
// PriIPVS* constants). In and Out take the hook they run at:
//
//	LOCAL_IN   98  ip_vs_out_hook      VS/NAT replies to a local client
//	LOCAL_IN   99  ip_vs_in_hook       schedule and forward remote requests
//	LOCAL_OUT -99  ip_vs_out_hook      VS/NAT replies from a local real server
//	LOCAL_OUT -98  ip_vs_in_hook       schedule requests of local clients
//	FORWARD    99  ip_vs_forward_icmp  ICMP errors for IPVS connections
//	FORWARD   100  ip_vs_out_hook      VS/NAT replies being forwarded

// Verdict is what an IPVS hook decided. It is not a netfilter.Verdict:
// Xmit and Leave ask the caller to act (transmit to the real server,
// answer ICMP) before the packet is stolen or dropped.
type Verdict uint8

const (
	// Accept: not IPVS's packet (or a reply it rewrote): the hook list
	// goes on.
	Accept Verdict = iota
	// Drop: the packet is dropped (Result.Reason says why).
	Drop
	// Xmit: the packet belongs to Result.Conn and must be transmitted
	// to its real server by the caller (ip_vs_*_xmit: route to the
	// dest, rewrite or encapsulate, re-inject at LOCAL_OUT; NF_STOLEN).
	Xmit
	// Leave: a service matched but no dest is available (ip_vs_leave):
	// the caller answers ICMP port unreachable and drops.
	Leave
)

var verdictNames = [...]string{"accept", "drop", "xmit", "leave"}

func (v Verdict) String() string { return verdictNames[v] }

// Result is an IPVS hook's outcome.
type Result struct {
	V    Verdict
	Conn *Conn
	// New: the connection was made by this packet (scheduled).
	New bool
	// ICMP: the packet is an ICMP error about the connection (the
	// caller rewrites it with NATICMPIn instead of DNAT for VS/NAT).
	ICMP bool
	// Reason names a drop.
	Reason string
	// PortUnreach: the drop is answered with ICMP port unreachable
	// (nat_icmp_send).
	PortUnreach bool
}

// In is ip_vs_in (LOCAL_IN 99, LOCAL_OUT -98) and ip_vs_forward_icmp
// (FORWARD 99): find the packet's connection or schedule a new one; an
// ICMP error about a connection is sent on to its real server. p must be decoded; it is not
// modified (the caller transmits on Xmit). rnd is the random source of
// the schedulers that need one.
func (d *Director) In(p *packet.Packet, h netfilter.Hook, now int64, rnd func() uint32) Result {
	return d.InTracked(p, h, now, rnd, false)
}

// InTracked is In for a packet whose netfilter conntrack entry is
// already confirmed (ctConfirmed): an old connection's entry that the
// packet still uses (ip_vs_conn_uses_old_conntrack). A new connection's
// first packet on a connection that is rescheduled is then dropped, as
// the kernel drops it (the client's retransmission finds no IPVS
// connection and is scheduled afresh).
func (d *Director) InTracked(p *packet.Packet, h netfilter.Hook, now int64, rnd func() uint32, ctConfirmed bool) Result {
	if d.Empty() || !p.HasL4 {
		return Result{}
	}
	// "remote client: only PACKET_HOST"
	if h != netfilter.LocalOut && p.PktType != packet.PktHost {
		return Result{}
	}
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
	case packet.ProtoICMP:
		return d.inICMP(p, now)
	default:
		return Result{}
	}
	t := d.Conns
	cp := t.lookupIn(p.Proto, p.Src, p.SrcPort, p.Dst, p.DstPort, now)
	if cp != nil && d.reuse(p, cp) {
		if ctConfirmed {
			return Result{V: Drop, Conn: cp, Reason: "ipvs: new connection on a rescheduled one still uses its old conntrack entry"}
		}
		cp = nil
	}
	res := Result{}
	if cp == nil {
		sched, drop := schedulable(p, d.Sysctls().SloppySCTP)
		if drop {
			// sctp_conn_schedule: no chunk header, no ports: NF_DROP
			return Result{V: Drop, Reason: "ipvs: SCTP packet without a chunk header"}
		}
		if !sched {
			return Result{}
		}
		svc := d.Lookup(p.Mark, p.Proto, p.Dst, p.DstPort)
		if svc == nil {
			return Result{}
		}
		var leave bool
		cp, leave = d.schedule(svc, p, h, now, rnd)
		if cp == nil {
			if leave {
				return Result{V: Leave, Reason: "ipvs: no destination available"}
			}
			return Result{}
		}
		res.New = true
	}
	res.Conn = cp
	// "Check the server status": a removed dest's connections drop
	if cp.Dest != nil && cp.Dest.Flags.Load()&DestAvailable == 0 {
		if d.Sysctls().ExpireNodestConn {
			t.expireNow(cp)
		}
		res.V, res.Reason = Drop, "ipvs: destination not available"
		return res
	}
	inStats(cp, p)
	cp.setState(d, dirInput, p)
	cp.InPkts.Add(1)
	if cp.flags.Load()&ConnOnePacket != 0 {
		t.release(cp)
	} else {
		cp.touch(now)
	}
	res.V = Xmit
	return res
}

// reuse is the rescheduling of ip_vs_in_hook: a packet that opens a
// connection (a TCP SYN, an SCTP INIT: is_new_conn) on one no template
// controls is scheduled afresh, the old connection expired, when
// expire_nodest_conn is on and the old one's dest has weight 0, or under
// conn_reuse_mode when the old one is over (TCP TIME_WAIT or CLOSE, or
// FIN_WAIT with bit 2 for DR/TUN; SCTP CLOSED: is_new_conn_expected).
// A connection that controls others (the kernel's FTP data connections,
// which uswitch does not make) is left alone.
func (d *Director) reuse(p *packet.Packet, cp *Conn) bool {
	if cp.Control != nil || cp.nControlled.Load() > 0 {
		return false
	}
	switch p.Proto {
	case ProtoTCP:
		// is_new_conn: any SYN
		if p.TCPFlags&packet.TCPSyn == 0 {
			return false
		}
	case ProtoSCTP:
		if !sctpIsInit(p.L4) {
			return false
		}
	default:
		return false
	}
	sc := d.Sysctls()
	resched := sc.ExpireNodestConn && cp.Dest != nil && cp.Dest.Weight.Load() == 0
	if !resched && sc.ConnReuseMode != 0 {
		switch st := cp.State(); p.Proto {
		case ProtoTCP:
			resched = st == TCPTimeWait || st == TCPClose ||
				(sc.ConnReuseMode&2 != 0 && st == TCPFinWait && cp.flags.Load()&ConnNoOutput != 0)
		case ProtoSCTP:
			resched = st == SCTPClosed
		}
	}
	if !resched {
		return false
	}
	d.Conns.expireNow(cp)
	return true
}

// schedulable is the protocol's conn_schedule test: TCP schedules on a
// SYN without RST (tcp_conn_schedule), SCTP on an INIT first chunk (any
// but ABORT with sloppy_sctp; drop: too short to have one,
// sctp_conn_schedule), UDP on any packet.
func schedulable(p *packet.Packet, sloppySCTP bool) (sched, drop bool) {
	switch p.Proto {
	case ProtoTCP:
		return p.TCPFlags&packet.TCPSyn != 0 && p.TCPFlags&packet.TCPRst == 0, false
	case ProtoSCTP:
		return sctpScheduleVerdict(p.L4, sloppySCTP)
	}
	return true, false
}

// schedule is ip_vs_schedule: pick a dest (through a persistence
// template for persistent services) and make the connection. leave
// reports "service but no dest" (the ICMP answer).
func (d *Director) schedule(svc *Service, p *packet.Packet, h netfilter.Hook, now int64, rnd func() uint32) (*Conn, bool) {
	if h == netfilter.LocalOut || p.InIf == "lo" {
		// "Do not schedule replies from local real server"
		if d.Conns.lookupIn(p.Proto, p.Dst, p.DstPort, p.Src, p.SrcPort, now) != nil {
			return nil, false
		}
	}
	f := Flow{Proto: p.Proto, Src: p.Src, Dst: p.Dst, SPort: p.SrcPort, DPort: p.DstPort, Now: now, Rand: rnd}
	var flags uint32
	if svc.Flags&SvcOnePacket != 0 && p.Proto == ProtoUDP {
		flags = ConnOnePacket
	}
	if svc.Flags&SvcPersistent != 0 {
		return d.schedPersist(svc, p, &f, flags, now)
	}
	if svc.FwMark == 0 && p.DstPort != svc.Port {
		// "port zero only supported in persistent services"
		return nil, true
	}
	dest := svc.Sched.Schedule(svc, &f)
	if dest == nil {
		return nil, true
	}
	dport := dest.Port
	if dport == 0 {
		dport = p.DstPort
	}
	cp := &Conn{Proto: p.Proto, CAddr: p.Src, CPort: p.SrcPort, VAddr: p.Dst, VPort: p.DstPort, DAddr: dest.Addr, DPort: dport, FwMark: p.Mark}
	cp.flags.Store(flags)
	d.Conns.newConn(cp, dest, svc, connKey{}, now)
	connStats(cp, svc)
	return cp, false
}

const ftpPort = 21

// schedPersist is ip_vs_sched_persist: the template <proto, client net,
// 0, vaddr, vport> (fwmark: <IPPROTO_IP, cnet, 0, mark, 0>; port-0 and
// FTP services: vport 0) keeps a client net on one dest for the
// service's timeout.
func (d *Director) schedPersist(svc *Service, p *packet.Packet, f *Flow, flags uint32, now int64) (*Conn, bool) {
	snet := p.Src & svc.Netmask
	proto, vaddr, vport := p.Proto, p.Dst, uint16(0)
	if p.DstPort == svc.Port {
		if svc.Port != ftpPort {
			vport = p.DstPort
		}
	} else if svc.FwMark != 0 {
		proto, vaddr = 0, svc.FwMark
	}
	tk := connKey{a1: snet, a2: vaddr, p2: vport, proto: proto}
	t := d.Conns
	ct := t.lookupTemplate(tk, now)
	if ct != nil && !d.checkTemplate(ct) {
		t.dropTemplate(tk, ct)
		ct = nil
	}
	var dest *Dest
	if ct == nil {
		dest = svc.Sched.Schedule(svc, f)
		if dest == nil {
			return nil, true
		}
		var tport uint16
		if p.DstPort == svc.Port && svc.Port != ftpPort {
			tport = dest.Port
		}
		ct = &Conn{Proto: proto, CAddr: snet, VAddr: vaddr, VPort: vport, DAddr: dest.Addr, DPort: tport}
		if svc.FwMark != 0 {
			ct.FwMark = svc.FwMark
		}
		ct.flags.Store(ConnTemplate)
		t.newConn(ct, dest, svc, tk, now)
		ct.timeout.Store(int64(svc.Timeout) * int64(time.Second))
	} else {
		dest = ct.Dest
	}
	// ip_vs_conn_put(ct) restarts the template's timer
	ct.touch(now)
	dport := p.DstPort
	if dport == svc.Port && dest.Port != 0 {
		dport = dest.Port
	}
	cp := &Conn{Proto: p.Proto, CAddr: p.Src, CPort: p.SrcPort, VAddr: p.Dst, VPort: p.DstPort, DAddr: dest.Addr, DPort: dport, FwMark: p.Mark}
	cp.flags.Store(flags)
	cp.Control = ct
	ct.nControlled.Add(1)
	t.newConn(cp, dest, svc, connKey{}, now)
	connStats(cp, svc)
	return cp, false
}

// checkTemplate is ip_vs_check_template: a template is used only while
// its dest is available (and, with expire_quiescent_template, has
// weight).
func (d *Director) checkTemplate(ct *Conn) bool {
	dest := ct.Dest
	if dest == nil || dest.Flags.Load()&DestAvailable == 0 {
		return false
	}
	if d.Sysctls().ExpireQuiescentTemplate && dest.Weight.Load() == 0 {
		return false
	}
	return true
}

// Out is ip_vs_out (LOCAL_IN 98, FORWARD 100, LOCAL_OUT -99): a packet
// from a real server of a VS/NAT connection gets the VIP and virtual port
// back as its source (handle_response). It returns Accept with the
// connection when it rewrote the packet, Accept without one when the
// packet is not IPVS's, Drop when the rewrite failed.
func (d *Director) Out(p *packet.Packet, h netfilter.Hook, now int64) Result {
	if d.Empty() || !p.HasL4 {
		return Result{}
	}
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
	case packet.ProtoICMP:
		return d.outICMP(p, now)
	default:
		return Result{}
	}
	cp := d.Conns.lookupOut(p.Proto, p.Src, p.SrcPort, p.Dst, p.DstPort, now)
	if cp == nil {
		if d.Sysctls().NatICMPSend && d.hasRealService(p.Proto, p.Src, p.SrcPort) && !resetOrAbort(p) {
			// nat_icmp_send: tell a VS/NAT real server that its
			// packet belongs to no connection
			return Result{V: Drop, PortUnreach: true, Reason: "ipvs: a real server's packet without connection (nat_icmp_send)"}
		}
		return Result{}
	}
	if cp.Fwd() != Masq {
		// ignore_cp: only VS/NAT connections see their replies here
		return Result{}
	}
	if p.Proto == ProtoSCTP && len(p.L4) < sctpHeaderLen {
		// sctp_snat_handler: the common header cannot be made
		// writable (handle_response drops)
		return Result{V: Drop, Conn: cp, Reason: "ipvs: SCTP header truncated"}
	}
	// snat_handler + saddr = vaddr, with incremental checksums
	if p.SrcPort != cp.VPort {
		p.SetSrcPort(cp.VPort)
	}
	p.SetSrc(cp.VAddr)
	outStats(cp, p)
	cp.setState(d, dirOutput, p)
	cp.touch(now)
	return Result{V: Accept, Conn: cp}
}

// hasRealService is ip_vs_has_real_service: addr:port is a VS/NAT real
// server of a service of protocol proto (or of a fwmark service).
func (d *Director) hasRealService(proto uint8, addr uint32, port uint16) bool {
	for _, svc := range d.services.Load().list {
		if svc.Proto != proto && svc.FwMark == 0 {
			continue
		}
		for _, ds := range svc.Dests {
			if ds.Addr == addr && ds.Port == port && ds.P().Fwd == Masq {
				return true
			}
		}
	}
	return false
}

// resetOrAbort: a TCP RST or an SCTP packet whose first chunk is an
// ABORT (is_tcp_reset, is_sctp_abort), which nat_icmp_send leaves alone.
func resetOrAbort(p *packet.Packet) bool {
	switch p.Proto {
	case ProtoTCP:
		return p.TCPFlags&packet.TCPRst != 0
	case ProtoSCTP:
		typ, ok := sctpFirstChunk(p.L4)
		return ok && typ == sctpChunkAbort
	}
	return false
}

// DNAT is the rewrite of ip_vs_nat_xmit: the destination becomes the
// real server (tcp_dnat_handler, udp_dnat_handler, sctp_dnat_handler:
// ports and checksums; SCTP's CRC32c is computed afresh over the packet
// when the port changes, and left as it came otherwise, since it covers
// no address). false: the packet cannot be rewritten (an SCTP packet
// shorter than its common header) and is dropped (tx_error).
func DNAT(p *packet.Packet, cp *Conn) bool {
	if p.Proto == ProtoSCTP && len(p.L4) < sctpHeaderLen {
		return false
	}
	if p.DstPort != cp.DPort {
		p.SetDstPort(cp.DPort)
	}
	p.SetDst(cp.DAddr)
	return true
}

// directions of ip_vs_set_state
const (
	dirInput = iota
	dirOutput
	dirInputOnly
)

// tcpStates is the kernel's tcp_states table (ip_vs_proto_tcp.c), rows
// INPUT, OUTPUT, INPUT-ONLY by flag syn, fin, ack, rst; columns by the
// current state.
var tcpStates = [12][tcpLast]uint8{
	// INPUT
	{TCPSynRecv, TCPEstablished, TCPEstablished, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv},
	{TCPClose, TCPCloseWait, TCPSynSent, TCPTimeWait, TCPTimeWait, TCPTimeWait, TCPClose, TCPCloseWait, TCPLastAck, TCPListen, TCPTimeWait},
	{TCPClose, TCPEstablished, TCPSynSent, TCPEstablished, TCPFinWait, TCPTimeWait, TCPClose, TCPCloseWait, TCPClose, TCPListen, TCPEstablished},
	{TCPClose, TCPClose, TCPClose, TCPSynRecv, TCPClose, TCPClose, TCPClose, TCPClose, TCPLastAck, TCPListen, TCPSynRecv},
	// OUTPUT
	{TCPSynSent, TCPEstablished, TCPSynSent, TCPSynRecv, TCPSynSent, TCPSynSent, TCPSynSent, TCPSynSent, TCPSynSent, TCPListen, TCPSynRecv},
	{TCPTimeWait, TCPFinWait, TCPSynSent, TCPTimeWait, TCPFinWait, TCPTimeWait, TCPClose, TCPTimeWait, TCPLastAck, TCPListen, TCPTimeWait},
	{TCPEstablished, TCPEstablished, TCPSynSent, TCPEstablished, TCPFinWait, TCPTimeWait, TCPClose, TCPCloseWait, TCPLastAck, TCPEstablished, TCPEstablished},
	{TCPClose, TCPClose, TCPSynSent, TCPClose, TCPClose, TCPTimeWait, TCPClose, TCPClose, TCPClose, TCPClose, TCPClose},
	// INPUT-ONLY
	{TCPSynRecv, TCPEstablished, TCPEstablished, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv, TCPSynRecv},
	{TCPClose, TCPFinWait, TCPSynSent, TCPTimeWait, TCPFinWait, TCPTimeWait, TCPClose, TCPCloseWait, TCPLastAck, TCPListen, TCPTimeWait},
	{TCPClose, TCPEstablished, TCPSynSent, TCPEstablished, TCPFinWait, TCPTimeWait, TCPClose, TCPCloseWait, TCPClose, TCPListen, TCPEstablished},
	{TCPClose, TCPClose, TCPClose, TCPSynRecv, TCPClose, TCPClose, TCPClose, TCPClose, TCPLastAck, TCPListen, TCPClose},
}

// tcpTimeout is the timeout table (tcp_timeouts), with ESTABLISHED and
// FIN_WAIT from ipvsadm --set.
func (d *Director) tcpTimeout(s uint8) time.Duration {
	switch s {
	case TCPEstablished:
		return time.Duration(d.Timeouts().TCP) * time.Second
	case TCPFinWait:
		return time.Duration(d.Timeouts().TCPFin) * time.Second
	case TCPNone:
		return 2 * time.Second
	case TCPSynSent, TCPTimeWait, TCPListen, TCPSynAck:
		return 120 * time.Second
	case TCPSynRecv, TCPCloseWait:
		return 60 * time.Second
	case TCPClose:
		return 10 * time.Second
	case TCPLastAck:
		return 30 * time.Second
	}
	return 2 * time.Second
}

// tcpStateActive is tcp_state_active (ip_vs_proto_tcp.c, since 4.7):
// the states a connection counts in the dest's ActiveConn.
func tcpStateActive(s uint8) bool {
	return s == TCPEstablished || s == TCPSynSent || s == TCPSynRecv || s == TCPSynAck
}

// setState is ip_vs_set_state: the protocol's state transition, the
// active/inactive counters of the dest and the new timeout.
func (cp *Conn) setState(d *Director, dir int, p *packet.Packet) {
	if cp.Template() {
		return
	}
	switch cp.Proto {
	case ProtoUDP:
		// udp_state_transition: one state, the UDP timeout
		cp.timeout.Store(int64(d.Timeouts().UDP) * int64(time.Second))
		return
	case ProtoSCTP:
		cp.sctpSetState(dir, p.L4)
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	off := dir * 4
	fl := cp.flags.Load()
	if fl&ConnNoOutput != 0 {
		if dir == dirOutput {
			cp.flags.And(^ConnNoOutput)
		} else {
			off = dirInputOnly * 4
		}
	}
	cur := uint8(cp.state.Load())
	next := TCPClose
	idx := -1
	switch f := p.TCPFlags; {
	case f&packet.TCPRst != 0:
		idx = 3
	case f&packet.TCPSyn != 0:
		idx = 0
	case f&packet.TCPFin != 0:
		idx = 1
	case f&packet.TCPAck != 0:
		idx = 2
	}
	if idx >= 0 && cur < tcpLast {
		next = tcpStates[off+idx][cur]
	}
	if next != cur {
		cp.moveActive(tcpStateActive(next))
		if next == TCPEstablished {
			cp.assureControl()
		}
	}
	cp.state.Store(uint32(next))
	cp.timeout.Store(int64(d.tcpTimeout(next)))
}

// connStats is ip_vs_conn_stats.
func connStats(cp *Conn, svc *Service) {
	if cp.Dest != nil {
		cp.Dest.Stats.Conns.Add(1)
	}
	svc.current().Stats.Conns.Add(1)
}

func inStats(cp *Conn, p *packet.Packet)  { countPacket(cp, len(p.IP), true) }
func outStats(cp *Conn, p *packet.Packet) { countPacket(cp, len(p.IP), false) }

// countPacket is ip_vs_in_stats / ip_vs_out_stats: the dest's and the
// service's packet and byte counters of one direction.
func countPacket(cp *Conn, n int, in bool) {
	add := func(st *Stats) {
		if in {
			st.InPkts.Add(1)
			st.InBytes.Add(uint64(n))
		} else {
			st.OutPkts.Add(1)
			st.OutBytes.Add(uint64(n))
		}
	}
	if dest := cp.Dest; dest != nil {
		add(&dest.Stats)
	}
	if cp.svc != nil {
		add(&cp.svc.current().Stats)
	}
}

// String describes the connection as the trace prints it.
func (cp *Conn) String() string {
	return fmt.Sprintf("%s %s:%d -> %s:%d -> %s:%d %s %s", ProtoName(cp.Proto), Addr(cp.CAddr), cp.CPort,
		Addr(cp.VAddr), cp.VPort, Addr(cp.DAddr), cp.DPort, cp.Fwd(), cp.StateName())
}
