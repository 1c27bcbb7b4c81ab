package packet

import "encoding/binary"

// ARPLen is an ARP message for IPv4 over Ethernet (28 bytes).
const ARPLen = 28

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ARP is an ARP message for IPv4 over Ethernet; addresses are in host
// byte order.
type ARP struct {
	Op       uint16
	SHA, THA MAC
	SPA, TPA uint32
}

// ParseARP reads the ARP message at the start of b (the payload of an
// Ethernet frame) as arp_rcv checks it: Ethernet (or IEEE 802) hardware,
// IPv4 protocol, 6- and 4-byte addresses, a request or a reply.
func ParseARP(b []byte) (m ARP, ok bool) {
	if len(b) < ARPLen {
		return m, false
	}
	hrd, pro := binary.BigEndian.Uint16(b[0:2]), binary.BigEndian.Uint16(b[2:4])
	if (hrd != 1 && hrd != 6) || pro != EtherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		return m, false
	}
	m.Op = binary.BigEndian.Uint16(b[6:8])
	if m.Op != ARPRequest && m.Op != ARPReply {
		return m, false
	}
	copy(m.SHA[:], b[8:14])
	m.SPA = binary.BigEndian.Uint32(b[14:18])
	copy(m.THA[:], b[18:24])
	m.TPA = binary.BigEndian.Uint32(b[24:28])
	return m, true
}

// Put writes the message into a, which has at least ARPLen bytes
// (ARPHRD_ETHER, as arp_create makes it).
func (m ARP) Put(a []byte) {
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], m.Op)
	copy(a[8:14], m.SHA[:])
	binary.BigEndian.PutUint32(a[14:18], m.SPA)
	copy(a[18:24], m.THA[:])
	binary.BigEndian.PutUint32(a[24:28], m.TPA)
}

// Bytes is the message in a new buffer.
func (m ARP) Bytes() []byte {
	a := make([]byte, ARPLen)
	m.Put(a)
	return a
}
