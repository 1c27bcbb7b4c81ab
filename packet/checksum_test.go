package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// refChecksum is the Internet checksum written straight from RFC 1071,
// two bytes a step with a 64-bit accumulator (so no initial or length
// overflows it): the reference Checksum is checked against.
func refChecksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for len(b) >= 2 {
		sum += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// TestChecksumKnownAnswers: RFC 1071 section 3's example, and the IPv4
// header worked through on Wikipedia's "Internet checksum" page.
func TestChecksumKnownAnswers(t *testing.T) {
	rfc := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(rfc, 0); got != 0xddf2 {
		t.Errorf("RFC 1071 example: sum %#04x, want 0xddf2", got)
	}
	ip := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := Checksum(ip, 0); got != 0xffff {
		t.Errorf("valid header sums to %#04x, want 0xffff", got)
	}
	ip[10], ip[11] = 0, 0
	if got := ^Checksum(ip, 0); got != 0xb861 {
		t.Errorf("header checksum %#04x, want 0xb861", got)
	}
	// both zeros of one's complement: nothing at all is 0, a sum that
	// cancels is 0xffff
	if got := Checksum(make([]byte, 100), 0); got != 0 {
		t.Errorf("zeros sum to %#04x", got)
	}
	if got := Checksum([]byte{0xff, 0xfe}, 1); got != 0xffff {
		t.Errorf("0xfffe + 1 = %#04x", got)
	}
}

// TestChecksumReference: Checksum equals refChecksum for every length
// 0..2000 at every offset 0..7 from an 8-byte boundary, with random
// bytes and initial sums, and on all-0xff buffers (every add carries)
// up to the largest IPv4 packet.
func TestChecksumReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, 2000+8)
	for n := 0; n <= 2000; n++ {
		for off := range 8 {
			b := buf[off : off+n]
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			for _, initial := range []uint32{0, r.Uint32() & 0xffff, r.Uint32(), 0xffffffff} {
				if got, want := Checksum(b, initial), refChecksum(b, initial); got != want {
					t.Fatalf("len %d offset %d initial %#x: %#04x, reference %#04x", n, off, initial, got, want)
				}
			}
		}
	}
	ff := bytes.Repeat([]byte{0xff}, 65535+8)
	for _, n := range []int{1, 7, 8, 31, 32, 33, 1500, 65534, 65535} {
		for off := range 8 {
			b := ff[off : off+n]
			if got, want := Checksum(b, 0xffffffff), refChecksum(b, 0xffffffff); got != want {
				t.Fatalf("0xff * %d offset %d: %#04x, reference %#04x", n, off, got, want)
			}
		}
	}
}

// TestHeaderSumOK: headerSumOK is Checksum(h, 0) == 0xffff on random
// headers of every IPv4 header length, on all-0xff and all-zero ones,
// and on headers whose checksum field is set right.
func TestHeaderSumOK(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	ok := 0
	for i := range 200000 {
		h := make([]byte, 20+4*(i%11))
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		switch i % 4 {
		case 1:
			h[10], h[11] = 0, 0
			binary.BigEndian.PutUint16(h[10:], ^Checksum(h, 0))
		case 2:
			for j := range h {
				h[j] = 0xff
			}
		case 3:
			if i%8 == 3 {
				clear(h)
			}
		}
		want := Checksum(h, 0) == 0xffff
		if want {
			ok++
		}
		if got := headerSumOK(h); got != want {
			t.Fatalf("% x: %v, Checksum says %v", h, got, want)
		}
	}
	if ok < 50000 {
		t.Fatalf("only %d good headers", ok)
	}
}

func TestChecksumNoAllocs(t *testing.T) {
	b := make([]byte, 1500)
	if n := testing.AllocsPerRun(100, func() { Checksum(b, 1) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// FuzzChecksum: Checksum equals refChecksum on any bytes and initial sum.
func FuzzChecksum(f *testing.F) {
	f.Add([]byte{}, uint32(0))
	f.Add([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, uint32(0))
	f.Add(bytes.Repeat([]byte{0xff}, 41), uint32(0xffffffff))
	f.Add(Build(Spec{Src: 1, Dst: 2, Proto: ProtoUDP, SrcPort: 1, DstPort: 2, Payload: []byte("odd")}), uint32(0x1234))
	f.Fuzz(func(t *testing.T, b []byte, initial uint32) {
		if got, want := Checksum(b, initial), refChecksum(b, initial); got != want {
			t.Fatalf("len %d initial %#x: %#04x, reference %#04x", len(b), initial, got, want)
		}
		if got, want := headerSumOK(b), refChecksum(b, 0) == 0xffff; got != want {
			t.Fatalf("headerSumOK(% x) = %v, reference %v", b, got, want)
		}
	})
}

// BenchmarkChecksum: Checksum ("fast") against the two-bytes-a-step
// reference ("ref", the algorithm packet.Checksum had before) over an IP
// header, a small and a full-size packet, a jumbo frame and the largest
// IPv4 packet.
func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{20, 64, 576, 1500, 9000, 65535} {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		for _, f := range []struct {
			name string
			fn   func([]byte, uint32) uint16
		}{{"fast", Checksum}, {"ref", refChecksum}} {
			b.Run(fmt.Sprintf("%s/%d", f.name, n), func(b *testing.B) {
				b.SetBytes(int64(n))
				var s uint16
				for b.Loop() {
					s += f.fn(buf, 0)
				}
				_ = s
			})
		}
	}
}

// UpdateChecksum32 is UpdateChecksum16 of the high words, then of the
// low words, for every kind of input (the edges 0 and 0xffff too).
func TestUpdateChecksum32Steps(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	edge := []uint32{0, 0xffff, 0xffff0000, 0xffffffff, 1, 0x10000}
	for i := 0; i < 2_000_000; i++ {
		sum, old, new := uint16(r.Uint32()), r.Uint32(), r.Uint32()
		if i%4 == 0 {
			sum = []uint16{0, 0xffff, 1, 0xfffe}[r.IntN(4)]
			old, new = edge[r.IntN(len(edge))], edge[r.IntN(len(edge))]
		}
		want := UpdateChecksum16(UpdateChecksum16(sum, uint16(old>>16), uint16(new>>16)), uint16(old), uint16(new))
		if got := UpdateChecksum32(sum, old, new); got != want {
			t.Fatalf("UpdateChecksum32(%#x, %#x, %#x) = %#x, steps %#x", sum, old, new, got, want)
		}
	}
}
