package conntrack

import (
	"math/rand/v2"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// checkIndex verifies the lock-free lookup structures: every chain is
// finite, holds only tuples that hash to it, and the
// occupancy bit of a bucket is set exactly when its chain is not empty.
func checkIndex(t *testing.T, tb *Table) {
	t.Helper()
	n := 0
	for i := range tb.buckets {
		h := tb.buckets[i].head.Load()
		occ := tb.occupied[i>>6].Load()&(1<<(i&63)) != 0
		if occ != (h != nil) {
			t.Fatalf("bucket %d: occupied %v, head %v", i, occ, h != nil)
		}
		for k := 0; h != nil; k, h = k+1, h.next.Load() {
			if k > 2*tb.Count() {
				t.Fatalf("bucket %d: chain loops", i)
			}
			if tb.bucketOf(&h.tuple) != i {
				t.Fatalf("bucket %d holds a tuple of bucket %d", i, tb.bucketOf(&h.tuple))
			}
			n++
		}
	}
	if n != 2*tb.Count() {
		t.Fatalf("%d tuples linked for %d entries", n, tb.Count())
	}
}

// TestIndexChurn creates, finds and deletes flows at random in a table
// small enough for chains to share buckets (and buckets to share bitmap
// words and locks): lookups find exactly the live flows, and the chains
// and the occupancy bitmap stay consistent.
func TestIndexChurn(t *testing.T) {
	for _, buckets := range []int{1, 64, 256} {
		cfg := DefaultConfig()
		cfg.Buckets, cfg.Max = buckets, 0
		tb := NewTable(cfg, 9)
		r := rand.New(rand.NewPCG(uint64(buckets), 1))
		live := map[uint16]*Conn{}
		for step := 0; step < 5000; step++ {
			sp := uint16(1024 + r.IntN(300))
			if c := live[sp]; c != nil && r.IntN(2) == 0 {
				if !tb.Delete(c) {
					t.Fatal("delete failed")
				}
				delete(live, sp)
				continue
			}
			p := mkpkt(t, udpSpec(true, sp, 53), nil)
			ref, _ := tb.In(p, 0, netfilter.PreRouting, 1)
			if c := live[sp]; c != nil {
				if ref.Conn != c {
					t.Fatalf("step %d: port %d found %p, want %p", step, sp, ref.Conn, c)
				}
				continue
			}
			if ref.Info != CtNew {
				t.Fatalf("step %d: port %d: a deleted flow was found (%v)", step, sp, ref.Info)
			}
			if _, v := tb.Confirm(ref, 1); v != Accept {
				t.Fatal(v)
			}
			live[sp] = ref.Conn
			if step%97 == 0 {
				checkIndex(t, tb)
			}
		}
		checkIndex(t, tb)
		if tb.Count() != len(live) {
			t.Fatalf("count %d, live %d", tb.Count(), len(live))
		}
	}
}

// invertFrom, which a new entry's reply tuple is made with, is Invert
// for every protocol and every ICMP type that has an inverse.
func TestInvertFrom(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	for i := 0; i < 200000; i++ {
		o := Tuple{Src: r.Uint32(), Dst: r.Uint32(), SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()),
			Zone: uint16(r.IntN(3)), Proto: []uint8{packet.ProtoTCP, packet.ProtoUDP, packet.ProtoICMP, packet.ProtoSCTP, packet.ProtoGRE, 0}[r.IntN(6)]}
		want, ok := o.Invert()
		if !ok {
			continue
		}
		var got Tuple
		got.invertFrom(&o)
		if got != want {
			t.Fatalf("invertFrom(%+v) = %+v, Invert %+v", o, got, want)
		}
	}
}
