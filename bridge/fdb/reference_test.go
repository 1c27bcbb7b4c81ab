package fdb

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// refBridge is a slow, plain reading of br_handle_frame,
// br_handle_frame_finish, br_fdb_update, br_flood and should_deliver,
// written separately from the Bridge (one map, no stripes, no atomics)
// to check it on random frames.
type refBridge struct {
	flags   []PortFlags
	entries map[packet.MAC]*refEntry
	ageing  int64
}

type refEntry struct {
	port                  int
	local, static, sticky bool
	updated               int64
}

func (r *refBridge) input(in int, src, dst packet.MAC, now int64) (Verdict, bool, []int) {
	if src.IsMulticast() || src == (packet.MAC{}) {
		return VerdictDrop, false, nil
	}
	linkLocal := dst[0] == 1 && dst[1] == 0x80 && dst[2] == 0xc2 && dst[3] == 0 && dst[4] == 0 && dst[5] < 0x10
	if linkLocal && dst[5] == 1 {
		return VerdictDrop, false, nil
	}
	if r.flags[in]&Learning != 0 && r.ageing != 0 {
		if e := r.entries[src]; e != nil {
			if !e.local {
				e.updated = now
				if !e.sticky {
					e.port = in
				}
			}
		} else {
			r.entries[src] = &refEntry{port: in, updated: now}
		}
	}
	if linkLocal && dst[5] != 0 {
		return VerdictPass, false, nil
	}
	deliver := func(to int) bool {
		if to == in && r.flags[to]&Hairpin == 0 {
			return false
		}
		return r.flags[to]&Isolated == 0 || r.flags[in]&Isolated == 0
	}
	need, up := Flood, false
	switch {
	case dst == packet.Broadcast:
		need, up = BcastFlood, true
	case dst.IsMulticast():
		need, up = McastFlood, true
	default:
		if e := r.entries[dst]; e != nil {
			if e.local {
				return VerdictLocal, true, nil
			}
			if deliver(e.port) {
				return VerdictForward, false, []int{e.port}
			}
			return VerdictDrop, false, nil
		}
	}
	var out []int
	for p, f := range r.flags {
		if f&need != 0 && deliver(p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 && !up {
		return VerdictDrop, false, nil
	}
	return VerdictFlood, up, out
}

func (r *refBridge) expire(now int64) {
	for m, e := range r.entries {
		if !e.static && e.updated+r.ageing <= now {
			delete(r.entries, m)
		}
	}
}

// TestAgainstReference: 200,000 random frames, flag changes, static
// entries, ageing time changes and expiries give the same decisions and
// the same table in the Bridge and in refBridge.
func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b := testBridge(t, nil)
	ref := &refBridge{flags: make([]PortFlags, 3), entries: map[packet.MAC]*refEntry{}, ageing: DefaultAgeingTime}
	for i := range 3 {
		ref.flags[i] = DefaultPortFlags
		ref.entries[b.Port(i).MAC] = &refEntry{port: i, local: true, static: true}
	}
	pool := []packet.MAC{hostA, hostB, hostC, other, mcast, packet.Broadcast, {},
		mac("02:00:00:00:00:0a"), mac("02:00:00:00:00:0b"), mac("02:00:00:00:00:0c"),
		mac("01:80:c2:00:00:00"), mac("01:80:c2:00:00:01"), mac("01:80:c2:00:00:0e"),
		mac("02:00:00:00:07:01"), mac("02:00:00:00:07:02"), mac("02:00:00:00:07:03")}
	now := int64(0)
	var seen [VerdictPass + 1]int
	for i := 0; i < 200000; i++ {
		now += rng.Int64N(3 * sec)
		switch op := rng.IntN(1000); {
		case op < 5: // port flags
			p := rng.IntN(3)
			f := PortFlags(rng.Uint32()) & (Learning | Flood | McastFlood | BcastFlood | Hairpin | Isolated)
			b.SetPortFlags(p, f)
			ref.flags[p] = f
		case op < 8: // a static entry
			m, p, sticky := pool[13+rng.IntN(3)], rng.IntN(3), rng.IntN(2) == 0
			if err := b.Replace(p, m, Static, sticky, now); err != nil {
				t.Fatal(err)
			}
			ref.entries[m] = &refEntry{port: p, static: true, sticky: sticky, updated: now}
		case op < 10: // ageing time
			a := []int64{0, 10 * sec, 100 * sec, DefaultAgeingTime}[rng.IntN(4)]
			b.SetAgeingTime(a)
			ref.ageing = a
		case op < 40:
			b.Expire(now)
			ref.expire(now)
		default:
			in := rng.IntN(3)
			src, dst := pool[rng.IntN(len(pool))], pool[rng.IntN(len(pool))]
			var d Decision
			if rng.IntN(2) == 0 && src.IsValidUnicast() && !(isLinkLocal(dst) && dst[5] == 1) {
				// the datapath's way: LearnForward, Decide when it
				// declines
				if to, ok := b.LearnForward(in, src, dst, now); ok {
					d.Verdict = VerdictForward
					d.Out.Add(to)
				} else {
					d = b.Decide(in, dst, now)
				}
			} else {
				d = b.Input(in, frame(dst, src), now)
			}
			v, up, out := ref.input(in, src, dst, now)
			seen[v]++
			if d.Verdict != v || d.Up != up || !slices.Equal(ports(d), out) {
				t.Fatalf("step %d: %v -> %v on %d: %v up=%v %v, reference %v up=%v %v",
					i, src, dst, in, d.Verdict, d.Up, ports(d), v, up, out)
			}
		}
	}
	for v, n := range seen {
		if n < 1000 {
			t.Errorf("verdict %v only %d times: the random mix does not cover it", Verdict(v), n)
		}
	}
	t.Logf("verdicts drop/local/forward/flood/pass: %v", seen)
	got := b.Entries()
	if len(got) != len(ref.entries) {
		t.Fatalf("%d entries, reference %d", len(got), len(ref.entries))
	}
	for _, e := range got {
		r := ref.entries[e.Key.MAC]
		if r == nil || r.port != e.Port || r.local != e.Local || r.static != e.Static || r.sticky != e.Sticky || (!r.static && r.updated != e.Updated) {
			t.Errorf("entry %+v, reference %+v", e, r)
		}
	}
}

// TestConcurrent runs learning and forwarding on several goroutines with
// ageing, additions, deletions and printing beside them (for -race).
func TestConcurrent(t *testing.T) {
	b := testBridge(t, func(c *Config) { c.AgeingTime = 5 * sec })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 20000 {
				src := packet.MAC{2, 0, 0, 1, byte(rng.IntN(4)), byte(rng.IntN(64))}
				dst := packet.MAC{2, 0, 0, 1, byte(rng.IntN(4)), byte(rng.IntN(64))}
				d := b.Input(rng.IntN(3), frame(dst, src), int64(i)*1e6)
				if d.Verdict == VerdictForward && d.Out.Len() != 1 {
					t.Error("forward without one port")
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			now := int64(i) * 100e6
			b.Expire(now)
			m := packet.MAC{2, 0, 0, 1, 9, byte(i)}
			b.Add(i%3, m, Static, false, now)
			b.Delete(m)
			_ = b.Show(now, true)
			b.SetPortFlags(i%3, DefaultPortFlags|Hairpin)
		}
	}()
	wg.Wait()
}

// TestTableAgainstMap: the lock-free hash table against a map on random
// inserts, removals and clears that grow it, fill it with tombstones and
// shrink it again: every key is found exactly when the map has it.
func TestTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var tb table
	tb.init()
	ref := map[Key]*entry{}
	key := func() Key {
		n := rng.IntN(6000)
		return Key{MAC: packet.MAC{2, byte(rng.IntN(2)), 0, byte(n >> 16), byte(n >> 8), byte(n)}}
	}
	for i := 0; i < 300000; i++ {
		k := key()
		switch op := rng.IntN(100); {
		case op < 45:
			e := &entry{key: k}
			got, ok := tb.insert(e)
			if r := ref[k]; r != nil {
				if ok || got != r {
					t.Fatalf("step %d: insert of a key there: %v %v", i, ok, got == r)
				}
			} else {
				if !ok || got != e {
					t.Fatalf("step %d: insert of a new key refused", i)
				}
				ref[k] = e
			}
		case op < 85:
			if r := ref[k]; r != nil {
				if !tb.remove(r) || !r.dead.Load() {
					t.Fatalf("step %d: remove failed", i)
				}
				delete(ref, k)
			} else if tb.remove(&entry{key: k}) {
				t.Fatalf("step %d: removed an entry not there", i)
			}
		case op < 99:
			if got := tb.find(k); got != ref[k] {
				t.Fatalf("step %d: find %v: %p, map %p", i, k, got, ref[k])
			}
		default:
			if rng.IntN(50) == 0 {
				tb.clear()
				clear(ref)
			}
		}
		if tb.live != len(ref) {
			t.Fatalf("step %d: %d live, map %d", i, tb.live, len(ref))
		}
	}
	if n := len(tb.all()); n != len(ref) {
		t.Fatalf("all: %d, map %d", n, len(ref))
	}
	for k, e := range ref {
		if tb.find(k) != e {
			t.Fatalf("%v not found", k)
		}
	}
	if a := tb.slots.Load(); 2*tb.used > len(a.slots) {
		t.Errorf("%d of %d slots used", tb.used, len(a.slots))
	}
}
