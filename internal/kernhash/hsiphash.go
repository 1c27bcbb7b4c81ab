package kernhash

import (
	"encoding/binary"
	"math/bits"
)

// HsiphashKey is hsiphash_key_t on a 64-bit kernel: two unsigned longs
// (include/linux/siphash.h).
type HsiphashKey [2]uint64

// On 64-bit kernels hsiphash is not HalfSipHash: lib/siphash.c builds
// "HalfSipHash1-3" as SipHash-1-3 (one compression round per 8-byte
// block, three finalisation rounds) and returns the low 32 bits. uswitch
// follows the 64-bit build, which is what x86-64 and arm64 hosts run.

// Hsiphash is hsiphash(data, len, key) on a 64-bit kernel
// (lib/siphash.c __hsiphash_unaligned): data as little-endian 64-bit
// words, the last one completed by the remaining bytes and len<<56.
func Hsiphash(data []byte, key HsiphashKey) uint32 {
	v0, v1, v2, v3 := sipInit(key)
	b := uint64(len(data)) << 56
	for ; len(data) >= 8; data = data[8:] {
		m := binary.LittleEndian.Uint64(data)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
	}
	for i, x := range data {
		b |= uint64(x) << (8 * i)
	}
	return hsipFinal(v0, v1, v2, v3, b)
}

// Hsiphash1u32 is hsiphash_1u32 on a 64-bit kernel (lib/siphash.c): the
// same value as Hsiphash of the word's four bytes in CPU order
// (little-endian), which is what ip_vs_mh.c's ip_vs_mh_hashkey computes
// with hsiphash(&v, sizeof(v), key).
func Hsiphash1u32(first uint32, key HsiphashKey) uint32 {
	v0, v1, v2, v3 := sipInit(key)
	return hsipFinal(v0, v1, v2, v3, 4<<56|uint64(first))
}

// sipInit is the state PREAMBLE sets up (lib/siphash.c): the constants
// "somepseudorandomlygeneratedbytes" keyed by the two key words.
func sipInit(key HsiphashKey) (v0, v1, v2, v3 uint64) {
	return 0x736f6d6570736575 ^ key[0], 0x646f72616e646f6d ^ key[1],
		0x6c7967656e657261 ^ key[0], 0x7465646279746573 ^ key[1]
}

// hsipFinal is HPOSTAMBLE on 64-bit (lib/siphash.c): the last block b
// (the message's tail and its length), one compression round, three
// finalisation rounds, and the xor of the state truncated to 32 bits.
func hsipFinal(v0, v1, v2, v3, b uint64) uint32 {
	v3 ^= b
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= b
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return uint32(v0 ^ v1 ^ v2 ^ v3)
}

// sipRound is SIPROUND (lib/siphash.c), the SipHash permutation
// (SIPHASH_PERMUTATION, include/linux/siphash.h).
func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
