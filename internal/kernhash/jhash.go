package kernhash

import "math/bits"

// JhashInitval is JHASH_INITVAL, the constant jhash adds to every
// initval (include/linux/jhash.h).
const JhashInitval = 0xdeadbeef

// Jhash2 is jhash2 (include/linux/jhash.h): the hash of an array of
// 32-bit words, as the kernel hashes a struct of u32s (nf_nat_core.c's
// find_best_ips_proto hashes a union nf_inet_addr this way). A zero-length
// key hashes to JhashInitval + initval without mixing, as in the kernel.
func Jhash2(k []uint32, initval uint32) uint32 {
	a := JhashInitval + uint32(len(k))<<2 + initval
	b, c := a, a
	// all but the last one to three words, three at a time
	for ; len(k) > 3; k = k[3:] {
		a += k[0]
		b += k[1]
		c += k[2]
		a, b, c = jhashMix(a, b, c)
	}
	switch len(k) {
	case 3:
		c += k[2]
		fallthrough
	case 2:
		b += k[1]
		fallthrough
	case 1:
		a += k[0]
		return jhashFinal(a, b, c)
	}
	return c
}

// Jhash3Words is jhash_3words (include/linux/jhash.h): __jhash_nwords,
// the final mix of the three words each offset by initval +
// JHASH_INITVAL + 3<<2. It equals Jhash2 of the three words.
func Jhash3Words(a, b, c, initval uint32) uint32 {
	iv := initval + JhashInitval + 3<<2
	return jhashFinal(a+iv, b+iv, c+iv)
}

// jhashMix is __jhash_mix: mix three words reversibly.
func jhashMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

// jhashFinal is __jhash_final: the final mixing of three words into c,
// which it returns.
func jhashFinal(a, b, c uint32) uint32 {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}
