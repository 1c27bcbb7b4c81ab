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
