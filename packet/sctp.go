package packet

import (
	"encoding/binary"
	"hash/crc32"
)

// SCTPHeaderLen is the SCTP common header: ports, verification tag and
// checksum.
const SCTPHeaderLen = 12

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// zero4 stands in for the checksum field (a local array would escape
// into crc32.Update and cost an allocation per packet).
var zero4 [4]byte

// SCTPChecksum is the CRC32c of an SCTP packet (common header and
// chunks) with its checksum field taken as zero, as sctp_compute_cksum
// computes it; the field holds it little endian at offset 8. Zero for
// fewer than 12 bytes.
func SCTPChecksum(l4 []byte) uint32 {
	if len(l4) < SCTPHeaderLen {
		return 0
	}
	c := crc32.Update(0, castagnoli, l4[:8])
	c = crc32.Update(c, castagnoli, zero4[:])
	return crc32.Update(c, castagnoli, l4[SCTPHeaderLen:])
}

// SCTPChecksumOK reports whether an SCTP packet's CRC32c is right.
func SCTPChecksumOK(l4 []byte) bool {
	return len(l4) >= SCTPHeaderLen && binary.LittleEndian.Uint32(l4[8:]) == SCTPChecksum(l4)
}

// SetSCTPChecksum writes the CRC32c of an SCTP packet, as
// sctp_manip_pkt does after NAT changed a port (no-op when shorter than
// the common header).
func SetSCTPChecksum(l4 []byte) {
	if len(l4) >= SCTPHeaderLen {
		binary.LittleEndian.PutUint32(l4[8:], SCTPChecksum(l4))
	}
}

// SCTPChunk is one SCTP chunk (type, flags, value) padded to 4 bytes,
// its length field the unpadded length.
func SCTPChunk(typ, flags uint8, value []byte) []byte {
	n := 4 + len(value)
	b := make([]byte, (n+3)&^3)
	b[0], b[1] = typ, flags
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	copy(b[4:], value)
	return b
}

// SCTPInitValue is the fixed part of an INIT or INIT ACK chunk's value:
// the initiate tag, a_rwnd 65536, streams outbound and inbound streams,
// initial TSN 1.
func SCTPInitValue(tag uint32, streams uint16) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b, tag)
	binary.BigEndian.PutUint32(b[4:], 65536)
	binary.BigEndian.PutUint16(b[8:], streams)
	binary.BigEndian.PutUint16(b[10:], streams)
	binary.BigEndian.PutUint32(b[12:], 1)
	return b
}

// SCTPPacket is an SCTP packet's bytes (the IPv4 payload): the common
// header with the ports and verification tag, the chunks, and the
// CRC32c.
func SCTPPacket(sport, dport uint16, vtag uint32, chunks ...[]byte) []byte {
	b := make([]byte, SCTPHeaderLen)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], vtag)
	for _, c := range chunks {
		b = append(b, c...)
	}
	SetSCTPChecksum(b)
	return b
}
