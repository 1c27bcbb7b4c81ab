package packet

import "encoding/binary"

// Spec describes a packet to Build: tests, the trace command's --packet
// form, and the host's own answers (echo replies, RSTs, ICMP errors).
type Spec struct {
	Src, Dst uint32
	Proto    uint8
	TTL      uint8 // 0 means 64
	TOS      uint8
	ID       uint16
	DF       bool
	// TCP/UDP
	SrcPort, DstPort uint16
	TCPFlags         uint8
	Seq, Ack         uint32
	Window           uint16 // 0 means 64240 for TCP
	// ICMP
	ICMPType, ICMPCode uint8
	ICMPID, ICMPSeq    uint16
	// Payload follows the transport header (for ICMP errors: the
	// embedded packet).
	Payload []byte
}

// Build makes the packet with correct checksums.
func Build(s Spec) []byte {
	var l4len int
	switch s.Proto {
	case ProtoTCP:
		l4len = TCPMinHeaderLen
	case ProtoUDP:
		l4len = UDPHeaderLen
	case ProtoICMP:
		l4len = ICMPHeaderLen
	}
	total := IPv4MinHeaderLen + l4len + len(s.Payload)
	b := make([]byte, total)
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	b[0] = 0x45
	b[1] = s.TOS
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint16(b[4:], s.ID)
	if s.DF {
		binary.BigEndian.PutUint16(b[6:], ipv4FlagDF)
	}
	b[8] = ttl
	b[9] = s.Proto
	binary.BigEndian.PutUint32(b[12:], s.Src)
	binary.BigEndian.PutUint32(b[16:], s.Dst)
	IPv4(b).SetChecksum()
	l4 := b[IPv4MinHeaderLen:]
	copy(l4[l4len:], s.Payload)
	switch s.Proto {
	case ProtoTCP:
		binary.BigEndian.PutUint16(l4[0:], s.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], s.DstPort)
		binary.BigEndian.PutUint32(l4[4:], s.Seq)
		binary.BigEndian.PutUint32(l4[8:], s.Ack)
		l4[12] = 5 << 4
		l4[13] = s.TCPFlags
		w := s.Window
		if w == 0 {
			w = 64240
		}
		binary.BigEndian.PutUint16(l4[14:], w)
		sum := PseudoHeaderSum(s.Src, s.Dst, ProtoTCP, uint16(len(l4)))
		binary.BigEndian.PutUint16(l4[16:], ^Checksum(l4, sum))
	case ProtoUDP:
		binary.BigEndian.PutUint16(l4[0:], s.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], s.DstPort)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		sum := PseudoHeaderSum(s.Src, s.Dst, ProtoUDP, uint16(len(l4)))
		c := ^Checksum(l4, sum)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	case ProtoICMP:
		l4[0], l4[1] = s.ICMPType, s.ICMPCode
		binary.BigEndian.PutUint16(l4[4:], s.ICMPID)
		binary.BigEndian.PutUint16(l4[6:], s.ICMPSeq)
		binary.BigEndian.PutUint16(l4[2:], ^Checksum(l4, 0))
	}
	return b
}

// ChecksumGood is nf_ip_checksum's answer: the device vouched for the
// transport checksum (CsumValid), or it verifies.
func (p *Packet) ChecksumGood() bool { return p.CsumValid || p.TransportChecksumOK() }

// TransportChecksumOK verifies the TCP/UDP/ICMP checksum of a decoded
// packet (true for other protocols, fragments and UDP without checksum).
func (p *Packet) TransportChecksumOK() bool {
	if !p.HasL4 || p.IP.IsFragment() {
		return true
	}
	l4 := []byte(p.IP[p.IP.HeaderLen():])
	switch p.Proto {
	case ProtoTCP, ProtoUDP:
		if p.Proto == ProtoUDP && UDP(l4).Checksum() == 0 {
			return true
		}
		return Checksum(l4, PseudoHeaderSum(p.Src, p.Dst, p.Proto, uint16(len(l4)))) == 0xffff
	case ProtoICMP:
		return Checksum(l4, 0) == 0xffff
	}
	return true
}
