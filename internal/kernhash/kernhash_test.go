package kernhash

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// jhashBytes is jhash (include/linux/jhash.h), the byte-string form,
// which uswitch does not use: written here from the header only to carry
// lookup3.c's published vectors over to Jhash2 (for a length that is a
// multiple of four, jhash of the words' little-endian bytes is jhash2 of
// the words).
func jhashBytes(k []byte, initval uint32) uint32 {
	a := JhashInitval + uint32(len(k)) + initval
	b, c := a, a
	for ; len(k) > 12; k = k[12:] {
		a += binary.LittleEndian.Uint32(k)
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a, b, c = jhashMix(a, b, c)
	}
	if len(k) == 0 {
		return c
	}
	var last [12]byte
	copy(last[:], k)
	a += binary.LittleEndian.Uint32(last[:])
	b += binary.LittleEndian.Uint32(last[4:])
	c += binary.LittleEndian.Uint32(last[8:])
	return jhashFinal(a, b, c)
}

// TestJhashLookup3Vectors: the kernel's jhash is lookup3's hashlittle
// (same set-up, 0xdeadbeef + length + initval, same mix and final), so
// the values lookup3.c's driver5 prints for hashlittle hold for it.
func TestJhashLookup3Vectors(t *testing.T) {
	const s = "Four score and seven years ago"
	for _, c := range []struct{ initval, want uint32 }{{0, 0x17770551}, {1, 0xcd628161}} {
		if got := jhashBytes([]byte(s), c.initval); got != c.want {
			t.Errorf("jhash(%q, %d) = %#08x, lookup3.c says %#08x", s, c.initval, got, c.want)
		}
	}
	// and jhash2 is jhash over the words' bytes (little-endian host)
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 40 {
		k := make([]uint32, n)
		b := make([]byte, 4*n)
		for i := range k {
			k[i] = r.Uint32()
			binary.LittleEndian.PutUint32(b[4*i:], k[i])
		}
		iv := r.Uint32()
		if got, want := Jhash2(k, iv), jhashBytes(b, iv); got != want {
			t.Fatalf("Jhash2 of %d words = %#08x, jhash of their bytes %#08x", n, got, want)
		}
	}
}

// The expected values below were printed by a throwaway C program (not
// in the repository) that transcribes include/linux/jhash.h's
// __jhash_mix, __jhash_final, jhash, jhash2 and jhash_3words from the
// header, compiled with cc on x86-64; the same program printed
// 0x17770551 and 0xcd628161 for lookup3.c's two hashlittle vectors.

func TestJhash2KnownAnswers(t *testing.T) {
	var k [7]uint32
	for i := range k {
		k[i] = 0x9e3779b9 * uint32(i+1)
	}
	for _, c := range []struct {
		initval uint32
		want    [8]uint32 // by number of words, 0..7
	}{
		{0, [8]uint32{0xdeadbeef, 0x5ae9ac0c, 0x5863e4fa, 0x6e07dba2, 0x2246cc06, 0xdfe677a7, 0xcfa5b220, 0xdf1e7751}},
		{0x01020304, [8]uint32{0xdfafc1f3, 0xcbd39d08, 0x451bf38c, 0x242c23ce, 0x38f1ed2f, 0xc4ec3214, 0x30e62b5e, 0xfc17fb0d}},
	} {
		for n, want := range c.want {
			if got := Jhash2(k[:n], c.initval); got != want {
				t.Errorf("jhash2(k, %d, %#x) = %#08x, want %#08x", n, c.initval, got, want)
			}
		}
	}
	// nf_nat_core.c find_best_ips_proto: the four words of a union
	// nf_inet_addr holding 10.0.1.2, initval 10.0.1.1 (both as a
	// little-endian CPU loads them)
	if got := Jhash2([]uint32{0x0201000a, 0, 0, 0}, 0x0101000a); got != 0x63d3e080 {
		t.Errorf("jhash2(10.0.1.2) = %#08x, want 0x63d3e080", got)
	}
}

func TestJhash3WordsKnownAnswers(t *testing.T) {
	for _, c := range []struct{ a, b, c, initval, want uint32 }{
		{0, 0, 0, 0, 0x1b68e557},
		{1, 2, 3, 0, 0xa46158f5},
		{0x0a000001, 0xc0a80102, 6, 0x12345678, 0xa332ab4a},
		{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xc343af0b},
	} {
		if got := Jhash3Words(c.a, c.b, c.c, c.initval); got != c.want {
			t.Errorf("jhash_3words(%#x, %#x, %#x, %#x) = %#08x, want %#08x", c.a, c.b, c.c, c.initval, got, c.want)
		}
	}
	// jhash_3words is jhash2 of the three words
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		a, b, c, iv := r.Uint32(), r.Uint32(), r.Uint32(), r.Uint32()
		if Jhash3Words(a, b, c, iv) != Jhash2([]uint32{a, b, c}, iv) {
			t.Fatalf("jhash_3words(%#x, %#x, %#x, %#x) is not jhash2 of them", a, b, c, iv)
		}
	}
}

// hsiphashVectors are test_vectors_hsiphash for BITS_PER_LONG == 64 in
// the kernel's lib/tests/siphash_kunit.c (lib/test_siphash.c in older
// trees): hsiphash of the bytes 0, 1, ..., n-1 under the key below, for n
// = 0..63.
var hsiphashVectors = [64]uint32{
	0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67,
	0xc59f22a7, 0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352,
	0x57b4d9a2, 0x1229ffa7, 0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c,
	0xb473e63e, 0x8d297d1c, 0xa6cce040, 0x2b45f844, 0xa320872e, 0xdae6c123,
	0x67349c8c, 0x705b0979, 0xca9913a5, 0x4ade3b35, 0xef6cd00d, 0x4ab1e1f4,
	0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e, 0xbf186b91,
	0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944,
	0xc8138825, 0xc28949a6, 0xfaf8876b, 0x9f042196, 0x68b1d623, 0x8b5114fd,
	0xdf074c46, 0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0,
	0x73f0bce6, 0x70a7e980, 0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148,
	0xf7a644ee, 0x0f1837f2, 0x4b6694e0, 0xb7bbb3a8,
}

// test_key_hsiphash (64-bit) of siphash_kunit.c
var hsiphashTestKey = HsiphashKey{0x0706050403020100, 0x0f0e0d0c0b0a0908}

func TestHsiphashKernelVectors(t *testing.T) {
	var in [64]byte
	var un [65]byte // the kunit's unaligned copy: one byte further on
	for i := range in {
		in[i] = byte(i)
		un[i+1] = byte(i)
	}
	for n, want := range hsiphashVectors {
		if got := Hsiphash(in[:n], hsiphashTestKey); got != want {
			t.Errorf("hsiphash(0..%d) = %#08x, want %#08x", n, got, want)
		}
		if got := Hsiphash(un[1:1+n], hsiphashTestKey); got != want {
			t.Errorf("hsiphash(0..%d) unaligned = %#08x, want %#08x", n, got, want)
		}
	}
	// hsiphash_1u32(0x03020100) is the 4-byte vector, as in the kunit
	if got := Hsiphash1u32(0x03020100, hsiphashTestKey); got != hsiphashVectors[4] {
		t.Errorf("hsiphash_1u32 = %#08x, want %#08x", got, hsiphashVectors[4])
	}
}

// TestHsiphash1u32: the one-word form is hsiphash of the word's bytes,
// for any word and key (ip_vs_mh_hashkey hashes a u32 with hsiphash()).
func TestHsiphash1u32(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var b [4]byte
	for i := range 10000 {
		v, k := r.Uint32(), HsiphashKey{r.Uint64(), r.Uint64()}
		if i%2 == 0 {
			k[1] = k[0] // ip_vs_mh.c's keys have both words equal
		}
		binary.LittleEndian.PutUint32(b[:], v)
		if got, want := Hsiphash1u32(v, k), Hsiphash(b[:], k); got != want {
			t.Fatalf("hsiphash_1u32(%#x, %#x) = %#08x, hsiphash of its bytes %#08x", v, k, got, want)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	k := []uint32{1, 2, 3, 4, 5}
	b := []byte("0123456789abcdef0123")
	var sink uint32
	if n := testing.AllocsPerRun(100, func() {
		sink += Jhash2(k, 1) + Jhash3Words(1, 2, 3, 4) + Hsiphash(b, hsiphashTestKey) + Hsiphash1u32(7, hsiphashTestKey)
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
	_ = sink
}

// test_vectors_siphash of lib/tests/siphash_kunit.c (the reference
// implementation's vectors): SipHash-2-4 of the bytes 0..n-1 under the
// key 00..0f.
var siphashVectors = [64]uint64{
	0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a,
	0x85676696d7fb7e2d, 0xcf2794e0277187b7, 0x18765564cd99a68d,
	0xcbc9466e58fee3ce, 0xab0200f58b01d137, 0x93f5f5799a932462,
	0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
	0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee,
	0xa129ca6149be45e5, 0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794,
	0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd, 0xbed65cf21aa2ee98,
	0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8,
	0xb8ad50c6f649af94, 0xbce192de8a85b8ea, 0x17d835b85bbb15f3,
	0x2f2e6163076bcfad, 0xde4daaaca71dc9a5, 0xa6a2506687956571,
	0xad87a3535c49ef28, 0x32d892fad841c342, 0x7127512f72f27cce,
	0xa7f32346f95978e3, 0x12e0b01abb051238, 0x15e034d40fa197ae,
	0x314dffbe0815a3b4, 0x027990f029623981, 0xcadcd4e59ef40c4d,
	0x9abfd8766a33735c, 0x0e3ea96b5304a7d0, 0xad0c42d6fc585992,
	0x187306c89bc215a9, 0xd4a60abcf3792b95, 0xf935451de4f21df2,
	0xa9538f0419755787, 0xdb9acddff56ca510, 0xd06c98cd5c0975eb,
	0xe612a3cb9ecba951, 0xc766e62cfcadaf96, 0xee64435a9752fe72,
	0xa192d576b245165a, 0x0a8787bf8ecb74b2, 0x81b3e73d20b49b6f,
	0x7fa8220ba3b2ecea, 0x245731c13ca42499, 0xb78dbfaf3a8d83bd,
	0xea1ad565322a1a0b, 0x60e61c23a3795013, 0x6606d7e446282b93,
	0x6ca4ecb15c5f91e1, 0x9f626da15c9625f3, 0xe51b38608ef25f57,
	0x958a324ceb064572,
}

func TestSiphashKernelVectors(t *testing.T) {
	var in [64]byte
	for i := range in {
		in[i] = byte(i)
	}
	key := SiphashKey{0x0706050403020100, 0x0f0e0d0c0b0a0908}
	for n, want := range siphashVectors {
		if got := Siphash(in[:n], key); got != want {
			t.Errorf("siphash(0..%d) = %#016x, want %#016x", n, got, want)
		}
	}
}

// TestJhash2Words: jhash_2words is jhash2 of the two words, as
// jhash_3words is of three.
func TestJhash2Words(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 10000 {
		a, b, iv := r.Uint32(), r.Uint32(), r.Uint32()
		if got, want := Jhash2Words(a, b, iv), Jhash2([]uint32{a, b}, iv); got != want {
			t.Fatalf("jhash_2words(%#x, %#x, %#x) = %#x, jhash2 %#x", a, b, iv, got, want)
		}
	}
}
