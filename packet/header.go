// Package packet holds uswitch's packet model: header views over the
// packet bytes (IPv4, TCP, UDP, ICMP) with checksum-preserving setters,
// and Packet, the one decode of a packet plus the per-packet metadata the
// kernel keeps in its sk_buff (interfaces, mark, trace flag).
//
// The views follow gVisor's pkg/tcpip/header: a view is a byte slice whose
// accessors are unchecked; Packet.Decode is the single validity gate that
// makes them safe for the rest of the pipeline.
package packet

import "encoding/binary"

// Protocol numbers.
const (
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	ProtoDCCP    = 33
	ProtoGRE     = 47
	ProtoSCTP    = 132
	ProtoUDPLite = 136
)

// IPv4 header length bounds and flag bits.
const (
	IPv4MinHeaderLen = 20
	IPv4MaxHeaderLen = 60
	ipv4FlagDF       = 0x4000
	ipv4FlagMF       = 0x2000
	ipv4FragMask     = 0x1fff
)

// IPv4 is a view of an IPv4 header (and what follows it).
type IPv4 []byte

func (h IPv4) Version() uint8       { return h[0] >> 4 }
func (h IPv4) HeaderLen() int       { return int(h[0]&0x0f) * 4 }
func (h IPv4) TOS() uint8           { return h[1] }
func (h IPv4) TotalLen() uint16     { return binary.BigEndian.Uint16(h[2:]) }
func (h IPv4) ID() uint16           { return binary.BigEndian.Uint16(h[4:]) }
func (h IPv4) flagsFrag() uint16    { return binary.BigEndian.Uint16(h[6:]) }
func (h IPv4) DF() bool             { return h.flagsFrag()&ipv4FlagDF != 0 }
func (h IPv4) MF() bool             { return h.flagsFrag()&ipv4FlagMF != 0 }
func (h IPv4) CE() bool             { return h.flagsFrag()&0x8000 != 0 }
func (h IPv4) FragOffset() uint16   { return h.flagsFrag() & ipv4FragMask } // in 8-byte units
func (h IPv4) TTL() uint8           { return h[8] }
func (h IPv4) Protocol() uint8      { return h[9] }
func (h IPv4) Checksum() uint16     { return binary.BigEndian.Uint16(h[10:]) }
func (h IPv4) Src() uint32          { return binary.BigEndian.Uint32(h[12:]) }
func (h IPv4) Dst() uint32          { return binary.BigEndian.Uint32(h[16:]) }
func (h IPv4) Options() []byte      { return h[IPv4MinHeaderLen:h.HeaderLen()] }
func (h IPv4) Payload() []byte      { return h[h.HeaderLen():h.TotalLen()] }
func (h IPv4) setChecksum(c uint16) { binary.BigEndian.PutUint16(h[10:], c) }

// IsFragment reports a fragment: MF set or a non-zero offset.
func (h IPv4) IsFragment() bool { return h.flagsFrag()&(ipv4FlagMF|ipv4FragMask) != 0 }

// CalculateChecksum computes the header checksum (with the field as is).
func (h IPv4) CalculateChecksum() uint16 {
	return ^Checksum(h[:h.HeaderLen()], 0)
}

// SetChecksum recomputes the header checksum from scratch.
func (h IPv4) SetChecksum() {
	h.setChecksum(0)
	h.setChecksum(h.CalculateChecksum())
}

// SetSrc rewrites the source address, updating the header checksum
// incrementally (RFC 1624). The transport checksum, which covers the
// pseudo-header, is the caller's to fix (see UpdatePseudo).
func (h IPv4) SetSrc(a uint32) {
	old := h.Src()
	binary.BigEndian.PutUint32(h[12:], a)
	h.setChecksum(UpdateChecksum32(h.Checksum(), old, a))
}

// SetDst is SetSrc for the destination address.
func (h IPv4) SetDst(a uint32) {
	old := h.Dst()
	binary.BigEndian.PutUint32(h[16:], a)
	h.setChecksum(UpdateChecksum32(h.Checksum(), old, a))
}

// SetTTL sets the TTL with an incremental checksum update.
func (h IPv4) SetTTL(ttl uint8) {
	old := binary.BigEndian.Uint16(h[8:])
	h[8] = ttl
	h.setChecksum(UpdateChecksum16(h.Checksum(), old, binary.BigEndian.Uint16(h[8:])))
}

// SetTOS sets the TOS byte with an incremental checksum update.
func (h IPv4) SetTOS(tos uint8) {
	old := binary.BigEndian.Uint16(h[0:])
	h[1] = tos
	h.setChecksum(UpdateChecksum16(h.Checksum(), old, binary.BigEndian.Uint16(h[0:])))
}

// TCP is a view of a TCP header.
type TCP []byte

func (t TCP) SrcPort() uint16      { return binary.BigEndian.Uint16(t[0:]) }
func (t TCP) DstPort() uint16      { return binary.BigEndian.Uint16(t[2:]) }
func (t TCP) Seq() uint32          { return binary.BigEndian.Uint32(t[4:]) }
func (t TCP) Ack() uint32          { return binary.BigEndian.Uint32(t[8:]) }
func (t TCP) DataOffset() int      { return int(t[12]>>4) * 4 }
func (t TCP) Flags() uint8         { return t[13] }
func (t TCP) Window() uint16       { return binary.BigEndian.Uint16(t[14:]) }
func (t TCP) Checksum() uint16     { return binary.BigEndian.Uint16(t[16:]) }
func (t TCP) Options() []byte      { return t[20:t.DataOffset()] }
func (t TCP) setChecksum(c uint16) { binary.BigEndian.PutUint16(t[16:], c) }

// TCP flag bits.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
	TCPEce = 0x40
	TCPCwr = 0x80
)

// TCPMinHeaderLen is the header without options.
const TCPMinHeaderLen = 20

// UDP is a view of a UDP header.
type UDP []byte

func (u UDP) SrcPort() uint16  { return binary.BigEndian.Uint16(u[0:]) }
func (u UDP) DstPort() uint16  { return binary.BigEndian.Uint16(u[2:]) }
func (u UDP) Length() uint16   { return binary.BigEndian.Uint16(u[4:]) }
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:]) }

// UDPHeaderLen is the UDP header size.
const UDPHeaderLen = 8

// ICMP is a view of an ICMPv4 header.
type ICMP []byte

func (c ICMP) Type() uint8      { return c[0] }
func (c ICMP) Code() uint8      { return c[1] }
func (c ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(c[2:]) }
func (c ICMP) ID() uint16       { return binary.BigEndian.Uint16(c[4:]) } // echo/timestamp/info
func (c ICMP) Seq() uint16      { return binary.BigEndian.Uint16(c[6:]) }

// ICMPHeaderLen is the fixed ICMP header (type, code, checksum, rest).
const ICMPHeaderLen = 8

// ICMP types.
const (
	ICMPEchoReply      = 0
	ICMPDestUnreach    = 3
	ICMPSourceQuench   = 4
	ICMPRedirect       = 5
	ICMPEcho           = 8
	ICMPTimeExceeded   = 11
	ICMPParamProb      = 12
	ICMPTimestamp      = 13
	ICMPTimestampReply = 14
	ICMPInfoRequest    = 15
	ICMPInfoReply      = 16
	ICMPAddressMask    = 17
	ICMPAddressReply   = 18
)

// IsICMPError reports the error types whose payload embeds the
// offending packet (net/netfilter/nf_conntrack_proto_icmp.c).
func IsICMPError(t uint8) bool {
	switch t {
	case ICMPDestUnreach, ICMPSourceQuench, ICMPRedirect, ICMPTimeExceeded, ICMPParamProb:
		return true
	}
	return false
}

// UpdateChecksum16 is RFC 1624 eqn. 3: the checksum after a 16-bit word
// changed from old to new: HC' = ~(~HC + ~m + m').
func UpdateChecksum16(sum, old, new uint16) uint16 {
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}

// UpdateChecksum32 is UpdateChecksum16 for a 32-bit field.
// It is UpdateChecksum16 of the high words, then of the low words,
// written so that it inlines: the first step's complemented result,
// fed back complemented, is its folded sum (at most 0xffff after two
// folds).
func UpdateChecksum32(sum uint16, old, new uint32) uint16 {
	s := uint32(^sum) + uint32(^uint16(old>>16)) + new>>16
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	s += uint32(^uint16(old)) + new&0xffff
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
}

// PseudoHeaderSum is the one's-complement sum of the IPv4 pseudo-header.
func PseudoHeaderSum(src, dst uint32, proto uint8, length uint16) uint32 {
	return src>>16 + src&0xffff + dst>>16 + dst&0xffff + uint32(proto) + uint32(length)
}
