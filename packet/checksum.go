package packet

import (
	"encoding/binary"
	"math/bits"
)

// Checksum adds b, as big-endian 16-bit words (an odd last byte padded
// with a zero), to the one's-complement sum initial and returns the
// folded 16-bit sum, not inverted: the Internet checksum of RFC 1071
// before its final complement. initial may be any uint32, such as a
// PseudoHeaderSum or a previous Checksum. The result is 0 only when b and
// initial are all zeros; otherwise a sum of zero is 0xffff.
//
// It sums eight bytes at a time, as the kernel's csum_partial does
// (arch/x86/lib/csum-partial_64.c; gVisor's pkg/tcpip/checksum is the
// same idea): the one's-complement sum does not depend on byte order nor
// on the word size (RFC 1071 section 2 (B) and (C)), so b is added as
// little-endian 64-bit words with end-around carry, folded to 16 bits
// and byte-swapped.
func Checksum(b []byte, initial uint32) uint16 {
	var acc, carry uint64
	// four words per step, the carry of each add taken into the next
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b), carry)
		b = b[8:]
	}
	// the last 0..7 bytes as one zero-padded little-endian word; every
	// piece starts at an even byte, so each byte keeps its place in its
	// 16-bit word
	var tail uint64
	shift := 0
	if len(b) >= 4 {
		tail = uint64(binary.LittleEndian.Uint32(b))
		b, shift = b[4:], 32
	}
	if len(b) >= 2 {
		tail |= uint64(binary.LittleEndian.Uint16(b)) << shift
		b, shift = b[2:], shift+16
	}
	if len(b) == 1 {
		tail |= uint64(b[0]) << shift
	}
	acc, carry = bits.Add64(acc, tail, carry)
	// end-around carry: if this add overflows too, acc is 0 and becomes 1
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry
	// fold 64 -> 32 -> 16 bits: s <= 2^33-2, then <= 2^32-1, then
	// <= 0x1fffe, then <= 0xffff
	s := acc>>32 + acc&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	// back to big-endian words, then initial, folded the same way
	t := uint64(bits.ReverseBytes16(uint16(s))) + uint64(initial)
	t = t>>16 + t&0xffff
	t = t>>16 + t&0xffff
	return uint16(t)
}

// headerSumOK is Checksum(h, 0) == 0xffff for an IPv4 header: the
// verification ip_fast_csum does (arch/x86/include/asm/checksum_64.h),
// with the common 20-byte header summed in three adds.
func headerSumOK(h []byte) bool {
	if len(h) != IPv4MinHeaderLen {
		return Checksum(h, 0) == 0xffff
	}
	acc, carry := bits.Add64(binary.LittleEndian.Uint64(h), binary.LittleEndian.Uint64(h[8:]), 0)
	acc, carry = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(h[16:])), carry)
	acc, carry = bits.Add64(acc, 0, carry)
	acc += carry
	s := acc>>32 + acc&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	// 0xffff in either byte order
	return s == 0xffff
}
