package lvs

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func mkDest(i int, w int32) *Dest {
	d := &Dest{Addr: 0x0a000100 + uint32(i), Port: 80}
	d.Weight.Store(w)
	d.Flags.Store(DestAvailable)
	return d
}

func mkSvc(t testing.TB, name string, flags uint32, weights ...int32) (*Service, Scheduler) {
	svc := &Service{SchedName: name, Flags: flags}
	for i, w := range weights {
		svc.Dests = append(svc.Dests, mkDest(i, w))
	}
	s, err := NewScheduler(name, svc)
	if err != nil {
		t.Fatal(err)
	}
	svc.Sched = s
	return svc, s
}

func destName(svc *Service, d *Dest) string {
	if d == nil {
		return "-"
	}
	for i, x := range svc.Dests {
		if x == d {
			return string(rune('A' + i))
		}
	}
	return fmt.Sprintf("%v", d.AddrPort())
}

func picks(svc *Service, s Scheduler, n int) string {
	out := ""
	for range n {
		out += destName(svc, s.Schedule(svc, &Flow{Proto: ProtoTCP}))
	}
	return out
}

func newRef(name string) refSched {
	switch name {
	case "rr":
		return &refRR{}
	case "wrr":
		return &refWRR{}
	case "lc":
		return refLC
	case "wlc":
		return refWLC
	case "sed":
		return refSED
	case "nq":
		return refNQ
	case "fo":
		return refFO
	case "ovf":
		return refOVF
	case "twos":
		return refTWOS
	case "dh":
		return &refDH{}
	case "sh":
		return &refSH{}
	case "mh":
		return &refMH{}
	case "lblc":
		return &refLBLC{maxSize: 40, counter: 1, exp: 20 * 60 * second}
	case "lblcr":
		return &refLBLC{r: true, maxSize: 40, counter: 1, exp: 20 * 60 * second}
	}
	panic(name)
}

var allScheds = []string{"rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "twos", "dh", "sh", "mh", "lblc", "lblcr"}

// TestSchedAgainstReference runs each scheduler and its plain reference
// side by side over seeded random operations on shared dests and
// requires the same pick every time.
func TestSchedAgainstReference(t *testing.T) {
	for _, name := range allScheds {
		flagSets := []uint32{0}
		if name == "sh" || name == "mh" {
			flagSets = []uint32{0, SvcSched1, SvcSched2, SvcSched1 | SvcSched2}
		}
		for _, flags := range flagSets {
			for seed := uint64(1); seed <= 4; seed++ {
				t.Run(fmt.Sprintf("%s/flags%#x/seed%d", name, flags, seed), func(t *testing.T) {
					diffRun(t, name, flags, seed)
				})
			}
		}
	}
}

func diffRun(t *testing.T, name string, flags uint32, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	svc := &Service{SchedName: name, Flags: flags}
	next := 0
	addDest := func() {
		d := mkDest(next, int32(rng.IntN(7)))
		next++
		// -a: at the head, as the director and the kernel add
		svc.Dests = append([]*Dest{d}, svc.Dests...)
	}
	for range 2 + rng.IntN(6) {
		addDest()
	}
	s, err := NewScheduler(name, svc)
	if err != nil {
		t.Fatal(err)
	}
	ref := newRef(name)
	ref.update(svc)
	switch x := s.(type) {
	case *lblcSched:
		x.maxSize, x.expiration = 40, 20*60*second
	case *lblcrSched:
		x.maxSize, x.expiration = 40, 20*60*second
	}
	now := int64(1e12)
	for step := 0; step < 4000; step++ {
		switch op := rng.IntN(100); {
		case op < 55: // connect
			now += rng.Int64N(20 * second)
			f := Flow{Proto: ProtoTCP, Src: 0xc0a80000 + uint32(rng.IntN(200)), Dst: 0x0b000000 + uint32(rng.IntN(80)),
				SPort: uint16(1024 + rng.IntN(8)), DPort: 80, Now: now}
			if rng.IntN(10) == 0 {
				f.Proto = 1 // ICMP: no ports
			}
			r := [2]uint32{rng.Uint32(), rng.Uint32()}
			f1, f2 := f, f
			i1, i2 := 0, 0
			f1.Rand = func() uint32 { i1++; return r[i1-1] }
			f2.Rand = func() uint32 { i2++; return r[i2-1] }
			got := s.Schedule(svc, &f1)
			want := ref.pick(svc, &f2)
			if got != want {
				t.Fatalf("step %d: %s picked %s, reference %s", step, name, destName(svc, got), destName(svc, want))
			}
			if got != nil {
				if rng.IntN(4) == 0 {
					got.InactConns.Add(1)
				} else {
					got.ActiveConns.Add(1)
				}
			}
		case op < 75: // disconnect or go inactive
			if len(svc.Dests) == 0 {
				continue
			}
			d := svc.Dests[rng.IntN(len(svc.Dests))]
			switch {
			case d.ActiveConns.Load() > 0:
				d.ActiveConns.Add(-1)
				if rng.IntN(2) == 0 {
					d.InactConns.Add(1)
				}
			case d.InactConns.Load() > 0:
				d.InactConns.Add(-1)
			}
		case op < 83: // weight change (ipvsadm -e)
			if len(svc.Dests) == 0 {
				continue
			}
			d := svc.Dests[rng.IntN(len(svc.Dests))]
			d.LastWeight.Store(d.Weight.Load())
			d.Weight.Store(int32(rng.IntN(7)))
			s.Update(svc)
			ref.update(svc)
		case op < 88: // -a
			if len(svc.Dests) < 14 {
				addDest()
				s.Update(svc)
				ref.update(svc)
			}
		case op < 92: // -d
			if len(svc.Dests) > 0 {
				i := rng.IntN(len(svc.Dests))
				svc.Dests[i].Flags.And(^DestAvailable)
				svc.Dests = append(svc.Dests[:i:i], svc.Dests[i+1:]...)
				s.Update(svc)
				ref.update(svc)
			}
		case op < 98: // threshold overload flips
			if len(svc.Dests) > 0 {
				d := svc.Dests[rng.IntN(len(svc.Dests))]
				d.Flags.Store(d.Flags.Load() ^ DestOverload)
			}
		default: // a quiet while (lblc ageing)
			now += rng.Int64N(3 * 60 * 60 * second)
		}
	}
}

func TestSchedRRSequence(t *testing.T) {
	svc, s := mkSvc(t, "rr", 0, 1, 1, 1)
	if got := picks(svc, s, 6); got != "ABCABC" {
		t.Fatalf("rr: %s", got)
	}
	// removing the dest last picked: the next pick follows it
	s.Schedule(svc, &Flow{}) // A
	s.Schedule(svc, &Flow{}) // B
	svc.Dests = []*Dest{svc.Dests[0], svc.Dests[2]}
	s.Update(svc)
	if got := picks(svc, s, 3); got != "BAB" { // names are now A=old A, B=old C
		t.Fatalf("rr after delete: %s", got)
	}
}

func TestSchedWRRSequence(t *testing.T) {
	// Weights 4,3,2: gcd 1, mw 4. cw=4 picks A; cw=3 A,B; cw=2 A,B,C;
	// cw=1 A,B,C; then cw wraps to 4.
	svc, s := mkSvc(t, "wrr", 0, 4, 3, 2)
	if got := picks(svc, s, 18); got != "AABABCABC"+"AABABCABC" {
		t.Fatalf("wrr 4,3,2: %s", got)
	}
	// Weights 4,2 (gcd 2): mw = 4-(2-1) = 3, steps of 2: cw 3 -> A,
	// cw 1 -> A,B.
	svc, s = mkSvc(t, "wrr", 0, 4, 2)
	if got := picks(svc, s, 6); got != "AABAAB" {
		t.Fatalf("wrr 4,2: %s", got)
	}
}

func TestSchedLeastConnTies(t *testing.T) {
	set := func(svc *Service, act, inact []int32) {
		for i, d := range svc.Dests {
			d.ActiveConns.Store(act[i])
			d.InactConns.Store(inact[i])
		}
	}
	one := func(svc *Service, s Scheduler) string { return destName(svc, s.Schedule(svc, &Flow{})) }

	// lc: equal overheads -> the first; inactive conns count 1/256.
	svc, s := mkSvc(t, "lc", 0, 1, 5, 1)
	set(svc, []int32{1, 1, 1}, []int32{0, 0, 0})
	if got := one(svc, s); got != "A" {
		t.Errorf("lc tie: %s", got)
	}
	set(svc, []int32{1, 1, 1}, []int32{3, 2, 2})
	if got := one(svc, s); got != "B" {
		t.Errorf("lc inact: %s", got)
	}
	// wlc: 256*2/2 == 256*1/1: tie -> first; then B (weight 4) wins
	// 512/4 < 256/1.
	svc, s = mkSvc(t, "wlc", 0, 1, 2)
	set(svc, []int32{1, 2}, []int32{0, 0})
	if got := one(svc, s); got != "A" {
		t.Errorf("wlc tie: %s", got)
	}
	svc.Dests[1].Weight.Store(4)
	if got := one(svc, s); got != "B" {
		t.Errorf("wlc weighted: %s", got)
	}
	// sed: (0+1)/1 vs (1+1)/2: tie -> first; wlc would pick A too but
	// sed with (2+1)/2 > (0+1)/1 still A.
	svc, s = mkSvc(t, "sed", 0, 1, 2)
	set(svc, []int32{0, 1}, []int32{0, 0})
	if got := one(svc, s); got != "A" {
		t.Errorf("sed tie: %s", got)
	}
	set(svc, []int32{1, 1}, []int32{0, 0}) // 2/1 vs 2/2
	if got := one(svc, s); got != "B" {
		t.Errorf("sed: %s", got)
	}
	// nq: the first idle dest wins at once even if a later one is
	// heavier; otherwise sed.
	svc, s = mkSvc(t, "nq", 0, 1, 1, 10)
	set(svc, []int32{3, 0, 0}, []int32{0, 0, 0})
	if got := one(svc, s); got != "B" {
		t.Errorf("nq idle: %s", got)
	}
	set(svc, []int32{3, 1, 9}, []int32{0, 0, 0}) // 4/1, 2/1, 10/10
	if got := one(svc, s); got != "C" {
		t.Errorf("nq sed: %s", got)
	}
}

func TestSchedWeightZeroNeverPicked(t *testing.T) {
	for _, name := range allScheds {
		svc, s := mkSvc(t, name, 0, 0, 3, 0, 2)
		for i := range 500 {
			f := &Flow{Proto: ProtoTCP, Src: uint32(i * 7919), Dst: uint32(i * 104729), SPort: uint16(i), Now: int64(i) * second,
				Rand: rand.New(rand.NewPCG(uint64(i), 1)).Uint32}
			d := s.Schedule(svc, f)
			if d == svc.Dests[0] || d == svc.Dests[2] {
				t.Fatalf("%s picked a weight-0 dest", name)
			}
			if d != nil {
				d.ActiveConns.Add(1)
			}
		}
	}
}

func TestSchedFOOVF(t *testing.T) {
	svc, s := mkSvc(t, "fo", 0, 2, 7, 7, 3)
	if d := s.Schedule(svc, &Flow{}); d != svc.Dests[1] {
		t.Fatalf("fo picked %s", destName(svc, d))
	}
	svc.Dests[1].Flags.Or(DestOverload)
	if d := s.Schedule(svc, &Flow{}); d != svc.Dests[2] {
		t.Fatalf("fo with B overloaded picked %s", destName(svc, d))
	}

	// ovf: the highest weight while activeconns <= weight, then overflow
	svc, s = mkSvc(t, "ovf", 0, 2, 3)
	var seq string
	for range 8 {
		d := s.Schedule(svc, &Flow{})
		seq += destName(svc, d)
		if d != nil {
			d.ActiveConns.Add(1)
		}
	}
	// B takes 4 (0..3 active <= 3), A takes 3 (0..2 <= 2), then none
	if seq != "BBBBAAA-" {
		t.Fatalf("ovf: %s", seq)
	}
}

func TestSchedSHSticky(t *testing.T) {
	svc, s := mkSvc(t, "sh", 0, 1, 2, 3, 1, 1)
	rng := rand.New(rand.NewPCG(7, 7))
	first := map[uint32]*Dest{}
	for range 1000 {
		src := rng.Uint32()
		f := &Flow{Proto: ProtoTCP, Src: src, SPort: uint16(rng.Uint32())}
		d := s.Schedule(svc, f)
		if d == nil {
			t.Fatal("sh: no dest")
		}
		first[src] = d
	}
	for src, d := range first {
		for range 3 {
			f := &Flow{Proto: ProtoTCP, Src: src, SPort: uint16(rng.Uint32())}
			if got := s.Schedule(svc, f); got != d {
				t.Fatalf("sh: %v moved", Addr(src))
			}
		}
	}
}

func TestSchedMHMinimalDisruption(t *testing.T) {
	const n = 10
	w := make([]int32, n)
	for i := range w {
		w[i] = 1
	}
	svc, s := mkSvc(t, "mh", 0, w...)
	rng := rand.New(rand.NewPCG(3, 3))
	srcs := make([]uint32, 20000)
	before := map[uint32]*Dest{}
	for i := range srcs {
		srcs[i] = rng.Uint32()
		before[srcs[i]] = s.Schedule(svc, &Flow{Src: srcs[i]})
	}
	gone := svc.Dests[4]
	svc.Dests = append(svc.Dests[:4:4], svc.Dests[5:]...)
	s.Update(svc)
	stayed, moved := 0, 0
	for _, src := range srcs {
		after := s.Schedule(svc, &Flow{Src: src})
		if after == nil || after == gone {
			t.Fatal("mh picked a removed dest")
		}
		if before[src] == gone {
			continue
		}
		if after == before[src] {
			stayed++
		} else {
			moved++
		}
	}
	frac := float64(stayed) / float64(stayed+moved)
	t.Logf("mh: %.2f%% of the clients of surviving dests stayed", 100*frac)
	if frac < 0.90 {
		t.Fatalf("mh: only %.2f%% stayed", 100*frac)
	}
	// quiescing a dest (weight 0) keeps the table: with mh-fallback
	// its clients move, the others stay exactly
	svc.Flags = SvcSched1
	q := svc.Dests[0]
	q.Weight.Store(0)
	s.Update(svc)
	for _, src := range srcs[:2000] {
		after := s.Schedule(svc, &Flow{Src: src})
		if b := before[src]; b != gone && b != q && s.Schedule(svc, &Flow{Src: src}) != after {
			t.Fatal("mh: unstable")
		}
		if after == q {
			t.Fatal("mh: picked the quiesced dest")
		}
	}
}

func TestSchedNoAllocs(t *testing.T) {
	for _, name := range []string{"rr", "wrr", "wlc", "sh", "mh"} {
		svc, s := mkSvc(t, name, 0, 3, 1, 2, 5, 4)
		f := &Flow{Proto: ProtoTCP, Src: 0xc0a80001, SPort: 4000}
		for range 10 {
			s.Schedule(svc, f)
		}
		if n := testing.AllocsPerRun(1000, func() {
			f.Src++
			s.Schedule(svc, f)
		}); n != 0 {
			t.Errorf("%s: %v allocs per Schedule", name, n)
		}
	}
}

func BenchmarkSchedule(b *testing.B) {
	for _, name := range allScheds {
		n := 10000
		if name == "mh" {
			n = mhTabSize // the kernel refuses more dests than slots
		}
		b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
			w := make([]int32, n)
			for i := range w {
				w[i] = int32(1 + i%5)
			}
			svc, s := mkSvc(b, name, 0, w...)
			rng := rand.New(rand.NewPCG(1, 2))
			f := &Flow{Proto: ProtoTCP, Rand: rng.Uint32}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				f.Src = uint32(i) * 2654435761
				f.Dst = uint32(i%4096) + 0x0b000000
				f.Now = int64(i) * 1000
				s.Schedule(svc, f)
			}
		})
	}
}
