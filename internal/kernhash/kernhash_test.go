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

func TestNoAllocs(t *testing.T) {
	k := []uint32{1, 2, 3, 4, 5}
	var sink uint32
	if n := testing.AllocsPerRun(100, func() {
		sink += Jhash2(k, 1) + Jhash3Words(1, 2, 3, 4)
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
	_ = sink
}
