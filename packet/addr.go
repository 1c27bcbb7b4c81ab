package packet

import (
	"encoding/binary"
	"net/netip"
)

// Addresses travel through the datapath as big-endian uint32s (as
// Packet.Src and Packet.Dst hold them); these convert at the edges.

// AddrFrom is the uint32 form of an IPv4 address (0 for anything else).
func AddrFrom(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// AddrOf is the netip form of a uint32 address.
func AddrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// MustAddr parses a dotted quad into its uint32 form; it panics on
// anything else (for constants and tests).
func MustAddr(s string) uint32 { return AddrFrom(netip.MustParseAddr(s)) }
