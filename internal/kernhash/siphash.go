package kernhash

import "encoding/binary"

// SiphashKey is siphash_key_t (include/linux/siphash.h): two u64 words.
type SiphashKey [2]uint64

// Siphash is siphash(data, len, key) (lib/siphash.c): SipHash-2-4, the
// data as little-endian 64-bit words, the last one completed by the
// remaining bytes and len<<56; two compression rounds per word, four
// finalisation rounds. The flow dissector hashes struct flow_keys with
// it (net/core/flow_dissector.c __flow_hash_from_keys), and so does
// fib_multipath_hash.
func Siphash(data []byte, key SiphashKey) uint64 {
	v0, v1, v2, v3 := sipInit(HsiphashKey(key))
	b := uint64(len(data)) << 56
	for ; len(data) >= 8; data = data[8:] {
		m := binary.LittleEndian.Uint64(data)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
	}
	for i, x := range data {
		b |= uint64(x) << (8 * i)
	}
	v3 ^= b
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= b
	v2 ^= 0xff
	for range 4 {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

// Jhash2Words is jhash_2words (include/linux/jhash.h): __jhash_nwords
// of a, b and 0 each offset by initval + JHASH_INITVAL + 2<<2.
func Jhash2Words(a, b, initval uint32) uint32 {
	iv := initval + JhashInitval + 2<<2
	return jhashFinal(a+iv, b+iv, iv)
}
