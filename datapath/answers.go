package datapath

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// The host's own answers: what a Linux host with no listening sockets
// sends back for a packet delivered to it, and what REJECT and the
// forwarding path send. Each answer runs OUTPUT -> POSTROUTING like any
// locally generated packet.

// defaultTTL is net.ipv4.ip_default_ttl.
const defaultTTL = 64

// icmpErrorMax is the 576-byte limit icmp_send (net/ipv4/icmp.c) keeps an
// error within.
const icmpErrorMax = 576

// answer reacts to a packet delivered locally (INPUT done).
func (k *pkt) answer() {
	p := k.p
	if k.rt.Type != route.Local {
		return // broadcast/multicast: icmp_echo_ignore_broadcasts, no RST/unreach
	}
	switch p.Proto {
	case packet.ProtoICMP:
		if p.HasL4 && p.ICMPType == packet.ICMPEcho {
			k.echoReply()
		}
	case packet.ProtoTCP:
		if p.HasL4 && p.TCPFlags&packet.TCPRst == 0 {
			k.tcpReset()
		}
	case packet.ProtoUDP, packet.ProtoUDPLite:
		if p.HasL4 {
			k.icmpError(packet.ICMPDestUnreach, 3) // port unreachable
		}
	default:
		if !p.IP.IsFragment() {
			k.icmpError(packet.ICMPDestUnreach, 2) // protocol unreachable
		}
	}
}

// sendAnswer runs a generated packet through the OUTPUT path.
func (k *pkt) sendAnswer(b []byte) { k.sendAnswerFrom(b, false, false) }

// sendAnswerFrom is sendAnswer; anySrc lets the answer's source be an
// address that is not ours (nf_send_reset for a forwarded packet);
// attach gives the answer the packet's connection (nf_ct_attach, as
// nf_send_reset and icmp_glue_bits for ICMP errors do).
func (k *pkt) sendAnswerFrom(b []byte, anySrc, attach bool) {
	q := &packet.Packet{Data: b}
	if err := q.Decode(); err != nil {
		return
	}
	var tr *Tracer
	if k.tr != nil {
		tr = k.tr.sub()
	}
	a := k.e.newPkt(q, k.env.now, tr, k.w)
	a.p.Local = true
	a.anySrc = anySrc
	if attach && k.ct.Conn != nil {
		// nf_ct_attach (nf_conntrack_attach): the answer carries the
		// original's connection as RELATED in the other direction, so
		// NAT translates it and conntrack does not track it anew
		info := conntrack.CtRelatedReply
		if k.ct.Info.Dir() != conntrack.Original {
			info = conntrack.CtRelated
		}
		a.ct = conntrack.Ref{Conn: k.ct.Conn, Info: info}
	}
	a.pathStart("answer", k.trace)
	a.send()
	a.pathEnd()
	f := a.fate
	if tr != nil && k.tr != nil {
		k.tr.Lines = append(k.tr.Lines, tr.Lines...)
		k.tr.Path = append(k.tr.Path, tr.Path...)
		k.tr.keep = k.tr.keep || tr.keep
	}
	if tr == nil {
		// nothing refers to a any more: back to the pool with its
		// traversal scratch
		k.e.putPkt(a)
	}
	k.fate.Answers = append(k.fate.Answers, Answer{Pkt: q, Fate: f})
}

// echoReply is icmp_echo (net/ipv4/icmp.c): the same id, sequence and
// data back to the sender, from the address it pinged, with the echo of
// the request's IP options (icmp_reply: ip_options_echo).
func (k *pkt) echoReply() {
	p := k.p
	data := p.IP.Payload()[packet.ICMPHeaderLen:]
	c := packet.ICMP(p.L4)
	b := packet.Build(packet.Spec{Src: p.Dst, Dst: p.Src, Proto: packet.ProtoICMP, TTL: defaultTTL, TOS: p.IP.TOS(),
		ICMPType: packet.ICMPEchoReply, ICMPID: c.ID(), ICMPSeq: c.Seq(), Payload: data})
	b, ok := k.replyOptions(b)
	if !ok {
		return
	}
	k.sendAnswer(b)
}

// tcpReset is tcp_v4_send_reset (net/ipv4/tcp_ipv4.c) as
// nf_send_reset also builds it: with an ACK in the segment the RST takes
// its sequence from it; otherwise RST|ACK acknowledging the segment.
func (k *pkt) tcpReset() {
	b := resetFor(k.p)
	// tcp_v4_send_reset reflects the segment's TOS (arg.tos);
	// nf_reject_iphdr_put (REJECT) leaves it 0
	ip := packet.IPv4(b)
	b[1] = k.p.IP.TOS()
	ip.SetChecksum()
	// ip_send_unicast_reply echoes the segment's IP options
	b, ok := k.replyOptions(b)
	if !ok {
		return
	}
	k.sendAnswer(b)
}

func resetFor(p *packet.Packet) []byte {
	t := packet.TCP(p.L4)
	// DF: tcp_v4_send_reset's control socket has IP_PMTUDISC_DO
	// (tcp_sk_init) and nf_reject_iphdr_put sets IP_DF
	s := packet.Spec{Src: p.Dst, Dst: p.Src, Proto: packet.ProtoTCP, TTL: defaultTTL, SrcPort: p.DstPort, DstPort: p.SrcPort, Window: 1, DF: true}
	if t.Flags()&packet.TCPAck != 0 {
		s.Seq = t.Ack()
		s.TCPFlags = packet.TCPRst
	} else {
		seglen := uint32(len(p.IP.Payload()) - t.DataOffset())
		if t.Flags()&packet.TCPSyn != 0 {
			seglen++
		}
		if t.Flags()&packet.TCPFin != 0 {
			seglen++
		}
		s.Ack = t.Seq() + seglen
		s.TCPFlags = packet.TCPRst | packet.TCPAck
	}
	b := packet.Build(s)
	// the RST carries a zero window
	binary.BigEndian.PutUint16(b[packet.IPv4MinHeaderLen+14:], 0)
	fixTCPChecksum(b)
	return b
}

func fixTCPChecksum(b []byte) {
	ip := packet.IPv4(b)
	l4 := b[ip.HeaderLen():ip.TotalLen()]
	binary.BigEndian.PutUint16(l4[16:], 0)
	sum := packet.PseudoHeaderSum(ip.Src(), ip.Dst(), packet.ProtoTCP, uint16(len(l4)))
	binary.BigEndian.PutUint16(l4[16:], ^packet.Checksum(l4, sum))
}

// icmpError is icmp_send (net/ipv4/icmp.c): an error about the packet as
// it is now, from the address it was sent to when that is ours, else
// from the address the route back selects; as much of the packet as fits
// in 576 bytes. Errors are never sent about ICMP errors, fragments other
// than the first, or broadcast/multicast destinations, and are subject
// to the global and per-peer rate limits (icmplimit.go).
func (k *pkt) icmpError(typ, code uint8) { k.icmpSend(typ, code, 0) }

// sendRedirect is ip_rt_send_redirect (net/ipv4/route.c): an ICMP host
// redirect to the sender naming the route's nexthop (rt_nexthop: the
// gateway, or the destination itself when it is on link), with the
// per-peer backoff.
func (k *pkt) sendRedirect() {
	p := k.p
	if !k.redirectAllow(p.Src) {
		return
	}
	src := p.Src
	gw := p.Dst
	if k.rt.Gateway.IsValid() {
		gw = u32(k.rt.Gateway)
	}
	k.icmpSend(packet.ICMPRedirect, 1, gw)
	k.redirectSent(src)
}

// icmpSend is __icmp_send; info is the header's rest field
// (icmp_param.data.icmph.un.gateway).
func (k *pkt) icmpSend(typ, code uint8, info uint32) {
	p := k.p
	if p.IP.FragOffset() != 0 || p.Dst == 0xffffffff || p.Dst>>28 == 0xe {
		return
	}
	if p.Proto == packet.ProtoICMP && (!p.HasL4 || packet.IsICMPError(p.ICMPType)) {
		return
	}
	// icmpv4_global_allow: the global bucket first
	ok, apply := k.icmpGlobalAllow(typ, code)
	if !ok {
		return
	}
	var src uint32
	if k.rt.Type == route.Local {
		src = p.Dst
	}
	// __ip_options_echo: the error carries the packet's options echoed
	// (none: nothing compiled them, or it had none); the kernel sends
	// nothing when they cannot be echoed
	optLen, faddr, ok := k.echoRoom()
	if !ok {
		return
	}
	to := p.Src
	if faddr != 0 {
		to = faddr // icmp_route_lookup: a reversed source route's first hop
	}
	room := icmpErrorMax - packet.IPv4MinHeaderLen - optLen - packet.ICMPHeaderLen
	orig := []byte(p.IP)
	if len(orig) > room {
		orig = orig[:room]
	}
	b := packet.Build(packet.Spec{Src: src, Dst: p.Src, Proto: packet.ProtoICMP, TTL: defaultTTL,
		TOS: p.IP.TOS()&0x1e | 0xc0, ICMPType: typ, ICMPCode: code, ICMPID: uint16(info >> 16), ICMPSeq: uint16(info),
		Payload: append([]byte(nil), orig...)})
	loopback := false
	if k.cfg.FIB != nil {
		// icmp_route_lookup: the route back to the sender, from our
		// address when the packet was for us
		fl := route.Flow{Dst: addr4(to), Proto: packet.ProtoICMP}
		if src != 0 {
			fl.Src = addr4(src)
		}
		r := k.cfg.FIB.Output(&fl)
		if r.Err != 0 {
			return
		}
		loopback = r.Dev == k.cfg.FIB.Loopback()
		if src == 0 {
			if !r.Src.IsValid() {
				return
			}
			q := &packet.Packet{Data: b}
			if q.Decode() != nil {
				return
			}
			q.SetSrc(u32(r.Src))
		}
	}
	if optLen != 0 {
		if b, ok = k.replyOptions(b); !ok {
			return
		}
	}
	// icmpv4_xrlim_allow: the peer's bucket, no limit towards the
	// loopback
	if apply && !k.icmpPeerAllow(p.Src, loopback) {
		return
	}
	// icmp_glue_bits attaches the offending packet's connection to an error
	k.sendAnswerFrom(b, false, true)
}

// reject sends what a REJECT target asked for (nf_reject_ipv4.c: ICMP
// errors through icmp_send, resets through nf_send_reset).
func (k *pkt) reject(r *iptables.RejectRequest) {
	p := k.p
	if k.opt.Changed && k.rejectCsumFails(!r.TCPReset) {
		return // options.go: the checksum check fails on the rewritten header
	}
	if r.TCPReset {
		if p.Proto == packet.ProtoTCP && p.HasL4 && p.TCPFlags&packet.TCPRst == 0 {
			k.sendAnswerFrom(resetFor(p), true, true)
		}
		return
	}
	k.icmpError(r.Type, r.Code)
}
