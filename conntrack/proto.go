package conntrack

import (
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// udpPacket is nf_conntrack_udp_packet (and _udplite_packet).
func (t *Table) udpPacket(c *Conn, p *packet.Packet, hook netfilter.Hook, now int64) invalidReason {
	// udp_error / udplite_error
	if !p.HasL4 || len(p.L4) < packet.UDPHeaderLen {
		return invTruncated
	}
	u := packet.UDP(p.L4)
	if p.Proto == packet.ProtoUDP {
		if l := int(u.Length()); l > len(p.L4) || l < packet.UDPHeaderLen {
			return invTruncated
		}
		if u.Checksum() != 0 && t.cfg.Checksum && hook == netfilter.PreRouting && !p.ChecksumGood() {
			return invChecksum
		}
	} else {
		// UDP-Lite: coverage 0 = all; checksum is mandatory. The partial
		// checksum itself is not verified (a gap).
		if cov := int(u.Length()); cov != 0 && (cov < packet.UDPHeaderLen || cov > len(p.L4)) {
			return invTruncated
		}
		if u.Checksum() == 0 {
			return invChecksum
		}
	}
	if !c.Confirmed() {
		c.proto.udpStream.Store(now + 2e9)
	}
	st := c.Status()
	if st&StatusSeenReply == 0 {
		c.refresh(int64(t.cfg.UDPTimeout), now)
		return invNone
	}
	// Replied: a stream once it lived past two seconds (6.x sets ASSURED
	// only then). UDP-Lite extends at once.
	extra := int64(t.cfg.UDPTimeout)
	stream := false
	isStream := p.Proto == packet.ProtoUDPLite || now-c.proto.udpStream.Load() > 0
	if isStream {
		extra = int64(t.cfg.UDPTimeoutStream)
		stream = st&StatusAssured == 0
	}
	c.refresh(extra, now)
	if st&StatusNATClash != 0 {
		return invNone
	}
	if stream {
		c.SetStatus(StatusAssured)
		t.cacheEvent(c, ecacheAssured)
	}
	return invNone
}

// grePacket is nf_conntrack_gre_packet for version-0 GRE (keys zero).
func (t *Table) grePacket(c *Conn, now int64) {
	st := c.Status()
	if st&StatusSeenReply != 0 {
		c.refresh(int64(t.cfg.GRETimeoutStream), now)
		if st&StatusNATClash == 0 && st&StatusAssured == 0 {
			c.SetStatus(StatusAssured)
			t.cacheEvent(c, ecacheAssured)
		}
		return
	}
	c.refresh(int64(t.cfg.GRETimeout), now)
}

// icmpPacket is nf_conntrack_icmp_packet: only queries make entries.
func (t *Table) icmpPacket(c *Conn, now int64) invalidReason {
	switch c.th[Original].tuple.ICMPType() {
	case packet.ICMPEcho, packet.ICMPTimestamp, packet.ICMPInfoRequest, packet.ICMPAddressMask:
	default:
		return invICMPNew
	}
	c.refresh(int64(t.cfg.ICMPTimeout), now)
	return invNone
}

// icmpError is nf_conntrack_icmpv4_error + nf_conntrack_inet_error. It
// reports done with the RELATED Ref when the packet is an ICMP error
// about a known flow, a reason when it is invalid, and neither for ICMP
// queries and answers, which take the normal path.
func (t *Table) icmpError(p *packet.Packet, zone uint16, hook netfilter.Hook, now int64) (ref Ref, done bool, reason invalidReason) {
	if !p.HasL4 {
		return Ref{}, false, invTruncated // "short packet"
	}
	if t.cfg.Checksum && hook == netfilter.PreRouting && !p.ChecksumGood() {
		return Ref{}, false, invChecksum
	}
	typ := p.ICMPType
	if typ > packet.ICMPAddressReply { // NR_ICMP_TYPES
		return Ref{}, false, invICMPType
	}
	if !packet.IsICMPError(typ) {
		return Ref{}, false, invNone
	}
	// The embedded header: nf_ct_get_tuplepr on what follows the 8-byte
	// ICMP header, bounded by the outer packet.
	inner := p.L4[packet.ICMPHeaderLen:]
	if len(inner) < packet.IPv4MinHeaderLen {
		return Ref{}, false, invICMPErrorNoCt
	}
	ih := packet.IPv4(inner)
	if ih.FragOffset() != 0 {
		return Ref{}, false, invICMPErrorNoCt
	}
	off := ih.HeaderLen()
	if off > len(inner) {
		return Ref{}, false, invICMPErrorNoCt
	}
	orig, ok := tupleFromL4(ih.Protocol(), ih.Src(), ih.Dst(), inner[off:], zone)
	if !ok {
		return Ref{}, false, invICMPErrorNoCt
	}
	// The embedded packet went the other way: invert it.
	want, ok := orig.Invert()
	if !ok {
		return Ref{}, false, invICMPErrorNoCt
	}
	c, dir := t.find(&want, now)
	if c == nil {
		return Ref{}, false, invICMPErrorNoCt
	}
	// The error must travel to the embedded packet's source:
	// ct->tuplehash[dir].dst == outer daddr.
	if c.th[dir].tuple.Dst != p.Dst {
		return Ref{}, false, invICMPErrorDst
	}
	info := CtRelated
	if dir == Reply {
		info = CtRelatedReply
	}
	return Ref{Conn: c, Info: info}, true, invNone
}
