package lvs

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/packet"
)

// ICMP errors about IPVS connections (ip_vs_core.c ip_vs_in_icmp,
// ip_vs_out_icmp, ip_vs_nat_icmp). Only destination unreachable, source
// quench and time exceeded are looked at; the quoted header is matched
// against the connection table with its addresses swapped ("the embedded
// headers contain source and dest in reverse order").

func icmpErrorType(t uint8) bool {
	return t == packet.ICMPDestUnreach || t == 4 || t == packet.ICMPTimeExceeded
}

// quoted is the header an ICMP error quotes: the inner IPv4 header and
// its first 4 transport bytes (the ports).
type quoted struct {
	ip           packet.IPv4
	proto        uint8
	src, dst     uint32
	sport, dport uint16
	ports        []byte // the 4 port bytes, nil without
}

func quote(p *packet.Packet) (q quoted, ok bool) {
	if p.Proto != packet.ProtoICMP || !p.HasL4 || !icmpErrorType(p.ICMPType) || len(p.L4) < 8+20 {
		return q, false
	}
	in := packet.IPv4(p.L4[8:])
	hl := in.HeaderLen()
	if in.Version() != 4 || hl < 20 || len(in) < hl+4 || in.FragOffset() != 0 {
		return q, false
	}
	q.ip, q.proto, q.src, q.dst = in, in.Protocol(), in.Src(), in.Dst()
	switch q.proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		q.ports = in[hl : hl+4]
		q.sport, q.dport = binary.BigEndian.Uint16(q.ports), binary.BigEndian.Uint16(q.ports[2:])
	default:
		return q, false
	}
	return q, true
}

// inICMP is ip_vs_in_icmp: an error from outside about a packet the
// director sent towards a client (its quoted header is VIP -> client, or
// for DR/TUN real servers' own replies the same): the connection is found
// from the client's side and the error goes to the real server.
func (d *Director) inICMP(p *packet.Packet, now int64) Result {
	q, ok := quote(p)
	if !ok {
		return Result{}
	}
	cp := d.Conns.lookupIn(q.proto, q.dst, q.dport, q.src, q.sport, now)
	if cp == nil {
		return Result{}
	}
	inStats(cp, p)
	return Result{V: Xmit, Conn: cp, ICMP: true}
}

// outICMP is ip_vs_out_icmp + handle_response_icmp: an error from a real
// server (or a router on its side) about a packet the director sent to it
// on a VS/NAT connection gets the VIP back, outside and in the quoted
// header (ip_vs_nat_icmp, in -> out).
func (d *Director) outICMP(p *packet.Packet, now int64) Result {
	q, ok := quote(p)
	if !ok {
		return Result{}
	}
	cp := d.Conns.lookupOut(q.proto, q.dst, q.dport, q.src, q.sport, now)
	if cp == nil || cp.Fwd() != Masq {
		return Result{}
	}
	p.IP.SetSrc(cp.VAddr)
	p.Src = cp.VAddr
	q.ip.SetDst(cp.VAddr)
	binary.BigEndian.PutUint16(q.ports[2:], cp.VPort)
	fixICMPChecksum(p)
	outStats(cp, p)
	return Result{V: Accept, Conn: cp, ICMP: true}
}

// NATICMPIn is ip_vs_nat_icmp out -> in: the error goes to the real
// server, its quoted packet made the real server's own.
func NATICMPIn(p *packet.Packet, cp *Conn) {
	q, ok := quote(p)
	if !ok {
		return
	}
	p.IP.SetDst(cp.DAddr)
	p.Dst = cp.DAddr
	q.ip.SetSrc(cp.DAddr)
	binary.BigEndian.PutUint16(q.ports[0:], cp.DPort)
	fixICMPChecksum(p)
}

func fixICMPChecksum(p *packet.Packet) {
	l4 := p.L4
	l4[2], l4[3] = 0, 0
	binary.BigEndian.PutUint16(l4[2:], ^packet.Checksum(l4, 0))
}

// ForwardICMP is ip_vs_forward_icmp (FORWARD 99): an ICMP error being
// forwarded (not addressed to the director, as for a fwmark service's
// transparent cache cluster) that is about an IPVS connection is sent on
// to the connection's real server (Xmit), like one addressed to the VIP.
func (d *Director) ForwardICMP(p *packet.Packet, now int64) Result {
	if d.Empty() || p.Proto != packet.ProtoICMP {
		return Result{}
	}
	return d.inICMP(p, now)
}
