package ipfrag

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// datagram is a UDP datagram with n bytes of patterned payload.
func datagram(id uint16, n int) []byte {
	pl := make([]byte, n)
	for i := range pl {
		pl[i] = byte(i*13 + i>>8)
	}
	return packet.Build(packet.Spec{Src: 0x0a000102, Dst: 0x0a000202, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 7, ID: id, Payload: pl})
}

// cutFrag cuts [off, end) of b's payload (MF unless it reaches the end);
// df sets DF, ecn the ECN bits.
func cutFrag(b []byte, off, end int, df bool, ecn byte) *packet.Packet {
	hl := packet.IPv4(b).HeaderLen()
	pl := b[hl:]
	e := min(end, len(pl))
	f := append(append([]byte(nil), b[:hl]...), pl[off:e]...)
	binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
	fo := uint16(off / 8)
	if end < len(pl) {
		fo |= 0x2000
	}
	if df {
		fo |= 0x4000
	}
	binary.BigEndian.PutUint16(f[6:], fo)
	f[1] = f[1]&^3 | ecn
	packet.IPv4(f).SetChecksum()
	p := &packet.Packet{Data: f}
	if err := p.Decode(); err != nil {
		panic(err)
	}
	return p
}

type step struct {
	off, end int
	want     Status
}

func TestQueue(t *testing.T) {
	const n = 3008 // payload of a 3000-byte UDP datagram
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{0, 1480, Held}, {1480, 2960, Held}, {2960, n, Complete}}},
		{"reversed", []step{{2960, n, Held}, {1480, 2960, Held}, {0, 1480, Complete}}},
		{"duplicate kept out", []step{{0, 1480, Held}, {0, 1480, Duplicate}, {1480, 2960, Held}, {1480, 2960, Duplicate}, {2960, n, Complete}}},
		// inside a run of two appended fragments: a duplicate
		{"duplicate across a run", []step{{0, 800, Held}, {800, 1600, Held}, {400, 1200, Duplicate}, {1600, n, Complete}}},
		// the same bytes, but the two fragments are runs of their own
		// (the second was inserted before the tail): an overlap
		{"overlap across runs", []step{{0, 800, Held}, {2400, n, Held}, {800, 1600, Held}, {400, 1200, Overlap}, {0, 800, Held}}},
		{"overlap at the tail", []step{{0, 1480, Held}, {1000, 2000, Overlap}, {1480, 2960, Held}}},
		{"zero length", []step{{0, 1480, Held}, {1480, 1480, Invalid}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := New(DefaultConfig)
			b := datagram(7, n-8)
			for i, s := range c.steps {
				p := cutFrag(b, s.off, s.end, false, 0)
				p.Seq = uint64(i + 1)
				r := tb.Add(p, ConntrackIn, 3, int64(i))
				if r.Status != s.want {
					t.Fatalf("step %d [%d,%d): %v, want %v", i, s.off, s.end, r.Status, s.want)
				}
				if r.Status == Complete {
					if !bytes.Equal(r.Datagram[20:], b[20:]) || int(binary.BigEndian.Uint16(r.Datagram[2:])) != len(b) {
						t.Fatalf("reassembled datagram differs")
					}
					if packet.Checksum(r.Datagram[:20], 0) != 0xffff {
						t.Errorf("header checksum")
					}
					most := 0
					for _, s := range c.steps {
						if s.want == Held || s.want == Complete {
							most = max(most, min(s.end, n)-s.off+20)
						}
					}
					if r.FragMaxSize != most || r.PMTU {
						t.Errorf("frag_max_size %d pmtu %v", r.FragMaxSize, r.PMTU)
					}
				}
			}
			if c.steps[len(c.steps)-1].want == Complete && (tb.Len() != 0 || tb.Mem() != 0) {
				t.Errorf("after completion: %d queues, %d bytes", tb.Len(), tb.Mem())
			}
		})
	}
}

// TestSecondLastFragment: a last fragment with another end than the
// first last one discards the queue.
func TestSecondLastFragment(t *testing.T) {
	tb := New(DefaultConfig)
	b := datagram(1, 3000)
	if r := tb.Add(cutFrag(b, 1480, 3008, false, 0), ConntrackIn, 1, 0); r.Status != Held {
		t.Fatal(r.Status)
	}
	// a last fragment (no MF) ending earlier: cut of a shorter copy
	short := datagram(1, 2000)
	if r := tb.Add(cutFrag(short, 1480, 2008, false, 0), ConntrackIn, 1, 0); r.Status != Invalid {
		t.Fatalf("second last fragment: %v", r.Status)
	}
	if tb.Len() != 0 {
		t.Errorf("queue kept")
	}
	// data past the last fragment's end
	tb.Add(cutFrag(b, 1480, 3008, false, 0), ConntrackIn, 1, 0)
	long := datagram(1, 4000)
	if r := tb.Add(cutFrag(long, 2960, 3200, false, 0), ConntrackIn, 1, 0); r.Status != Invalid {
		t.Fatalf("data past the end: %v", r.Status)
	}
}

func TestDFAndECN(t *testing.T) {
	tb := New(DefaultConfig)
	b := datagram(2, 3000)
	tb.Add(cutFrag(b, 0, 1480, true, 2), ConntrackIn, 1, 0)
	tb.Add(cutFrag(b, 1480, 2960, true, 3), ConntrackIn, 1, 0)
	r := tb.Add(cutFrag(b, 2960, 3008, true, 2), ConntrackIn, 1, 0)
	if r.Status != Complete || !r.PMTU || !packet.IPv4(r.Datagram).DF() || r.Datagram[1]&3 != 3 {
		t.Fatalf("%v pmtu %v df %v ecn %d", r.Status, r.PMTU, packet.IPv4(r.Datagram).DF(), r.Datagram[1]&3)
	}
	// DF only on a small fragment: no DF on the datagram
	b = datagram(3, 3000)
	tb.Add(cutFrag(b, 0, 800, true, 0), ConntrackIn, 1, 0)
	tb.Add(cutFrag(b, 800, 2280, false, 0), ConntrackIn, 1, 0)
	r = tb.Add(cutFrag(b, 2280, 3008, false, 0), ConntrackIn, 1, 0)
	if r.Status != Complete || r.PMTU || packet.IPv4(r.Datagram).DF() || r.FragMaxSize != 1500 {
		t.Fatalf("%v pmtu %v max %d", r.Status, r.PMTU, r.FragMaxSize)
	}
	// Not-ECT mixed with CE: dropped
	b = datagram(4, 3000)
	tb.Add(cutFrag(b, 0, 1480, false, 0), ConntrackIn, 1, 0)
	tb.Add(cutFrag(b, 1480, 2960, false, 3), ConntrackIn, 1, 0)
	if r := tb.Add(cutFrag(b, 2960, 3008, false, 0), ConntrackIn, 1, 0); r.Status != BadECN {
		t.Fatalf("ECN mix: %v", r.Status)
	}
}

// TestUsers: each user has its own queues.
func TestUsers(t *testing.T) {
	tb := New(DefaultConfig)
	b := datagram(5, 2000)
	tb.Add(cutFrag(b, 0, 1480, false, 0), ConntrackIn, 1, 0)
	if r := tb.Add(cutFrag(b, 1480, 2008, false, 0), LocalDeliver, 1, 0); r.Status != Held {
		t.Fatalf("another user's fragment: %v", r.Status)
	}
	if tb.Len() != 2 {
		t.Errorf("%d queues", tb.Len())
	}
}

func TestExpire(t *testing.T) {
	cfg := DefaultConfig
	tb := New(cfg)
	b := datagram(6, 3000)
	c := datagram(7, 3000)
	tb.Add(cutFrag(b, 0, 1480, false, 0), ConntrackIn, 4, 0)
	tb.Add(cutFrag(c, 1480, 2960, false, 0), LocalDeliver, 4, 1e9)
	if tb.NextExpiry() != cfg.Timeout {
		t.Fatalf("next expiry %d", tb.NextExpiry())
	}
	if x := tb.Expire(cfg.Timeout - 1); len(x) != 0 {
		t.Fatalf("expired early: %v", x)
	}
	x := tb.Expire(cfg.Timeout)
	if len(x) != 1 || x[0].Head == nil || !x[0].SkipUnlessLocal || x[0].IIF != 4 || len(x[0].Frags) != 1 {
		t.Fatalf("first expiry: %+v", x)
	}
	// the head is the first fragment as it came
	if !bytes.Equal(x[0].Head, cutFrag(b, 0, 1480, false, 0).Data) {
		t.Errorf("head differs")
	}
	x = tb.Expire(cfg.Timeout + 1e9)
	if len(x) != 1 || x[0].Head != nil || x[0].SkipUnlessLocal {
		t.Fatalf("second expiry (no first fragment, local delivery): %+v", x)
	}
	if tb.Len() != 0 || tb.Mem() != 0 || tb.NextExpiry() != 0 {
		t.Errorf("left: %d queues, %d bytes, next %d", tb.Len(), tb.Mem(), tb.NextExpiry())
	}
	if s := tb.Stats(); s.ReasmTimeout != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestHighThresh: what is held never grows past ipfrag_high_thresh (and
// one fragment); over it every fragment is dropped until timers free
// memory.
func TestHighThresh(t *testing.T) {
	cfg := DefaultConfig
	cfg.HighThresh = 1 << 20
	tb := New(cfg)
	var nomem int
	for i := range 5000 {
		b := datagram(uint16(i), 3000)
		r := tb.Add(cutFrag(b, 0, 1480, false, 0), ConntrackIn, 1, int64(i))
		if r.Status == NoMemory {
			nomem++
		}
		if m := tb.Mem(); m > cfg.HighThresh+truesize(1500)+qsize {
			t.Fatalf("after %d fragments: %d bytes held, threshold %d", i+1, m, cfg.HighThresh)
		}
	}
	if nomem == 0 {
		t.Fatalf("nothing refused over the threshold")
	}
	tb.Expire(cfg.Timeout + 5000)
	if tb.Mem() != 0 {
		t.Errorf("%d bytes after every queue expired", tb.Mem())
	}
	if r := tb.Add(cutFrag(datagram(1, 3000), 0, 1480, false, 0), ConntrackIn, 1, cfg.Timeout+5000); r.Status != Held {
		t.Errorf("after expiry: %v", r.Status)
	}
}

// TestMaxDist: more than ipfrag_max_dist fragments from the same source
// between two of a queue start the queue over.
func TestMaxDist(t *testing.T) {
	cfg := DefaultConfig
	cfg.MaxDist = 4
	tb := New(cfg)
	b := datagram(9, 2000)
	tb.Add(cutFrag(b, 0, 1480, false, 0), ConntrackIn, 1, 0)
	for i := range 5 {
		tb.Add(cutFrag(datagram(uint16(100+i), 2000), 0, 1480, false, 0), ConntrackIn, 1, 0)
	}
	// the queue started over: the last fragment alone does not complete
	if r := tb.Add(cutFrag(b, 1480, 2008, false, 0), ConntrackIn, 1, 0); r.Status != Held {
		t.Fatalf("after %d fragments from the same source: %v", 5, r.Status)
	}
	if r := tb.Add(cutFrag(b, 0, 1480, false, 0), ConntrackIn, 1, 0); r.Status != Complete {
		t.Fatalf("refilled queue: %v", r.Status)
	}
}

// TestRandomOrder: any order of any cut completes the datagram exactly
// once, with the same bytes.
func TestRandomOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for it := range 500 {
		n := 8 + r.IntN(6000)
		b := datagram(uint16(it), n)
		pl := len(b) - 20
		var cuts [][2]int
		for off := 0; off < pl; {
			l := 8 * (1 + r.IntN(200))
			cuts = append(cuts, [2]int{off, min(off+l, pl)})
			off += l
		}
		r.Shuffle(len(cuts), func(i, j int) { cuts[i], cuts[j] = cuts[j], cuts[i] })
		tb := New(DefaultConfig)
		done := 0
		for i, c := range cuts {
			res := tb.Add(cutFrag(b, c[0], c[1], false, 0), ConntrackIn, 1, 0)
			if res.Status == Complete {
				done++
				if i != len(cuts)-1 || !bytes.Equal(res.Datagram, b) {
					t.Fatalf("iteration %d: completed at %d of %d, equal %v", it, i+1, len(cuts), bytes.Equal(res.Datagram, b))
				}
			} else if res.Status != Held {
				t.Fatalf("iteration %d: %v", it, res.Status)
			}
		}
		if done != 1 {
			t.Fatalf("iteration %d: completed %d times", it, done)
		}
	}
}

// FuzzAdd: any fragments, never a panic; a completed datagram decodes
// and the memory count returns to zero once everything expired.
func FuzzAdd(f *testing.F) {
	b := datagram(1, 3000)
	f.Add(cutFrag(b, 0, 1480, false, 0).Data, cutFrag(b, 1480, 3008, false, 0).Data, cutFrag(b, 8, 16, false, 0).Data)
	f.Fuzz(func(t *testing.T, x, y, z []byte) {
		tb := New(DefaultConfig)
		for _, d := range [][]byte{x, y, z, x} {
			p := &packet.Packet{Data: d}
			if p.Decode() != nil || !p.IP.IsFragment() {
				continue
			}
			r := tb.Add(p, ConntrackIn, 1, 0)
			if r.Status == Complete {
				q := &packet.Packet{Data: r.Datagram}
				if err := q.Decode(); err != nil {
					t.Fatalf("reassembled datagram: %v", err)
				}
			}
		}
		tb.Expire(DefaultConfig.Timeout)
		if tb.Mem() != 0 || tb.Len() != 0 {
			t.Fatalf("left %d bytes in %d queues", tb.Mem(), tb.Len())
		}
	})
}
