package conntrack

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/packet"
)

// Dir is a tuple's direction (enum ip_conntrack_dir).
type Dir uint8

// Directions.
const (
	Original Dir = 0
	Reply    Dir = 1
)

func (d Dir) String() string {
	if d == Original {
		return "ORIGINAL"
	}
	return "REPLY"
}

// Tuple is the lookup key of one direction of a flow (struct
// nf_conntrack_tuple plus the zone nf_ct_key_equal compares). It is
// comparable and 16 bytes; addresses and ports are in host byte order.
//
// For ICMP, SrcPort is the query id and DstPort is type<<8 | code (the
// kernel's dst.u.icmp.type/code share the port's two bytes). For GRE the
// ports are the keys (zero for version 0). Other protocols without a
// tracker (the generic one) have zero ports.
type Tuple struct {
	Src, Dst         uint32
	SrcPort, DstPort uint16
	Zone             uint16
	Proto            uint8
	_                uint8
}

// invertFrom sets t to the inverse of o, field by field, as Invert
// returns it; o must be invertible (an ICMP type with an answer).
func (t *Tuple) invertFrom(o *Tuple) {
	t.Src, t.Dst = o.Dst, o.Src
	t.SrcPort, t.DstPort = o.DstPort, o.SrcPort
	if o.Proto == packet.ProtoICMP {
		// the id stays; the type becomes its answer's (or query's)
		t.SrcPort = o.SrcPort
		t.DstPort = uint16(icmpInvMap[o.ICMPType()]-1)<<8 | o.DstPort&0xff
	}
	t.Zone, t.Proto = o.Zone, o.Proto
}

// ICMPType is the ICMP type of an ICMP tuple.
func (t Tuple) ICMPType() uint8 { return uint8(t.DstPort >> 8) }

// ICMPCode is the ICMP code of an ICMP tuple.
func (t Tuple) ICMPCode() uint8 { return uint8(t.DstPort) }

// icmpInvMap maps a query type to its answer plus one, zero when the type
// cannot be inverted (invmap in nf_conntrack_proto_icmp.c).
var icmpInvMap = [256]uint8{
	packet.ICMPEcho:           packet.ICMPEchoReply + 1,
	packet.ICMPEchoReply:      packet.ICMPEcho + 1,
	packet.ICMPTimestamp:      packet.ICMPTimestampReply + 1,
	packet.ICMPTimestampReply: packet.ICMPTimestamp + 1,
	packet.ICMPInfoRequest:    packet.ICMPInfoReply + 1,
	packet.ICMPInfoReply:      packet.ICMPInfoRequest + 1,
	packet.ICMPAddressMask:    packet.ICMPAddressReply + 1,
	packet.ICMPAddressReply:   packet.ICMPAddressMask + 1,
}

// Invert returns the tuple of the other direction and false when the
// protocol cannot invert it (an ICMP type that is no query or answer),
// as nf_ct_invert_tuple does.
func (t Tuple) Invert() (Tuple, bool) {
	// small enough to be inlined (a table of all 256 types, no call)
	if t.Proto == packet.ProtoICMP {
		inv := icmpInvMap[t.ICMPType()]
		if inv == 0 {
			return Tuple{}, false
		}
		// the id stays; the type becomes its answer's (or query's)
		t.DstPort = uint16(inv-1)<<8 | t.DstPort&0xff
	} else {
		t.SrcPort, t.DstPort = t.DstPort, t.SrcPort
	}
	t.Src, t.Dst = t.Dst, t.Src
	return t, true
}

// hasPorts reports the protocols whose tuple carries ports (the trackers
// nf_ct_get_tuple knows). DCCP is tracked by the generic tracker here
// (a documented gap), so its tuples carry no ports.
func hasPorts(proto uint8) bool {
	return proto == packet.ProtoTCP || proto == packet.ProtoUDP || proto == packet.ProtoUDPLite ||
		proto == packet.ProtoSCTP
}

// tupleFromL4 builds the tuple of an IPv4 header at ip (already checked to
// be 20 bytes) whose transport header starts at l4, with end the bytes
// available. It follows nf_ct_get_tuple: TCP/UDP/UDPLite need the 4
// port bytes, ICMP the 8-byte header, GRE and the rest nothing.
func tupleFromL4(proto uint8, src, dst uint32, l4 []byte, zone uint16) (Tuple, bool) {
	var t Tuple
	ok := t.setFromL4(proto, src, dst, l4, zone)
	return t, ok
}

// setFromL4 is tupleFromL4 into t, field by field: a lookup then reads
// the fields as they were stored (find, hash), where a Tuple returned by
// value is copied 16 bytes at a time from its field-sized stores, and
// the copy waits for them to retire. t is zero when it reports false.
func (t *Tuple) setFromL4(proto uint8, src, dst uint32, l4 []byte, zone uint16) bool {
	var sport, dport uint16
	switch {
	case hasPorts(proto):
		if len(l4) < 4 {
			*t = Tuple{}
			return false
		}
		sport = binary.BigEndian.Uint16(l4)
		dport = binary.BigEndian.Uint16(l4[2:])
	case proto == packet.ProtoICMP:
		if len(l4) < packet.ICMPHeaderLen {
			*t = Tuple{}
			return false
		}
		sport = binary.BigEndian.Uint16(l4[4:])
		dport = uint16(l4[0])<<8 | uint16(l4[1])
	}
	// GRE: gre_pkt_to_tuple keys only version-1 (PPTP) headers, which need
	// the PPTP helper's keymap; without it the keys stay zero.
	t.Src, t.Dst, t.SrcPort, t.DstPort, t.Zone, t.Proto = src, dst, sport, dport, zone, proto
	return true
}

// hash mixes the tuple with the table's seed (a 64-bit multiply-xorshift
// finaliser; the kernel uses siphash with a random key). It reads the
// fields one by one through a pointer: a tuple just made is in memory as
// the field-sized stores that made it, and one 16-byte load of it (a
// copy for a value receiver) would wait for them to retire instead of
// taking them from the store buffer.
func (t *Tuple) hash(seed uint64) uint64 {
	a := uint64(t.Src)<<32 | uint64(t.Dst)
	b := uint64(t.SrcPort)<<48 | uint64(t.DstPort)<<32 | uint64(t.Zone)<<16 | uint64(t.Proto)
	h := seed ^ a
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= b
	h ^= h >> 29
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 32
	return h
}
