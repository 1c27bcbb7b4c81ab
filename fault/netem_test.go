package fault

import (
	"math"
	"sort"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

const (
	ipA = 0x0a000001 // 10.0.0.1
	ipB = 0x0a000002 // 10.0.0.2
)

// binomialOK: k successes of n within 4.5 standard deviations of n·p
// (for a fixed seed the counts are exact; the bound says they are also
// what the definition predicts).
func binomialOK(t *testing.T, what string, k, n int, p float64) {
	t.Helper()
	mean, sd := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
	if math.Abs(float64(k)-mean) > 4.5*sd {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f (4.5σ)", what, k, n, mean, 4.5*sd)
	}
}

// run decides n packets of one flow and returns the decisions.
func run(t *testing.T, f *Fault, n int) []Decision {
	t.Helper()
	p := udp(t, ipA, ipB, 1000, 53, 100)
	out := make([]Decision, n)
	for i := range out {
		d, ok := decide(f, p, 0)
		if !ok {
			t.Fatalf("packet %d not matched", i+1)
		}
		out[i] = d
	}
	return out
}

func count(ds []Decision, pred func(*Decision) bool) int {
	n := 0
	for i := range ds {
		if pred(&ds[i]) {
			n++
		}
	}
	return n
}

func dropped(d *Decision) bool { return d.Orig.Drop }

const bigN = 100000

// TestLossRandom: loss random P drops a binomial fraction P; for seed 42
// the count is exact.
func TestLossRandom(t *testing.T) {
	for _, tc := range []struct {
		words string
		p     float64
		want  int
	}{
		{"loss 20%", 0.20, wantLoss20},
		{"loss 1%", 0.01, wantLoss1},
		{"loss 0%", 0, 0},
		{"loss 100%", 1, bigN},
	} {
		f := mustFault(t, Spec{Name: "l", At: "wire:t0:egress", Netem: tc.words}, 42)
		k := count(run(t, f, bigN), dropped)
		binomialOK(t, tc.words, k, bigN, tc.p)
		if k != tc.want {
			t.Errorf("%s seed 42: %d dropped, want exactly %d", tc.words, k, tc.want)
		}
		if got := f.Dropped.Load(); got != uint64(k) {
			t.Errorf("%s: counter %d, decisions %d", tc.words, got, k)
		}
	}
}

// TestLossCorrelation: netem's correlated stream (get_crandom) keeps
// consecutive draws close (lag-1 autocorrelation ≈ rho) and narrows
// their spread, so the realized loss drifts below P for P < 50 % — the
// "bad behavior" tc-netem(8) warns of; no bursts come of it.
func TestLossCorrelation(t *testing.T) {
	s := crnd{rho: uint32(ProbOf(0.75)), last: 12345}
	var xs []float64
	for i := range 20000 {
		xs = append(xs, float64(s.next(draw(7, uint64(i+1), laneLoss))))
	}
	if r := autocorr(xs); r < 0.70 || r > 0.80 {
		t.Errorf("lag-1 autocorrelation %.3f, want ≈ 0.75", r)
	}
	f := mustFault(t, Spec{Name: "c", At: "wire:t0:egress", Netem: "loss 20% 75%"}, 42)
	k := count(run(t, f, bigN), dropped)
	if k >= bigN*20/100*3/4 {
		t.Errorf("loss 20%% 75%%: %d dropped of %d, want well below 20%% (netem's correlation narrows the spread)", k, bigN)
	}
	if k != wantLossCorr {
		t.Errorf("loss 20%% 75%% seed 42: %d, want exactly %d", k, wantLossCorr)
	}
}

func autocorr(x []float64) float64 {
	var m float64
	for _, v := range x {
		m += v
	}
	m /= float64(len(x))
	var num, den float64
	for i := range x {
		den += (x[i] - m) * (x[i] - m)
		if i > 0 {
			num += (x[i] - m) * (x[i-1] - m)
		}
	}
	return num / den
}

// TestGilbertElliottTransitions: loss_gilb_ell's arms with chosen draws.
func TestGilbertElliottTransitions(t *testing.T) {
	n := &Netem{A1: ProbOf(0.1), A2: ProbOf(0.3), A3: ProbOf(0.2), A4: ProbOf(0.05)}
	lo, hi := uint32(0), uint32(math.MaxUint32)
	st := uint8(goodState)
	// GOOD: r1 ≥ p stays GOOD; r2 < 1−k loses
	if lossGE(n, &st, hi, hi) || st != goodState {
		t.Fatalf("good, high draws: lost or left (state %d)", st)
	}
	if !lossGE(n, &st, hi, lo) || st != goodState {
		t.Fatalf("good, low loss draw: want lost in GOOD (state %d)", st)
	}
	// r1 < p: to BAD, the loss draw still against 1−k (the arm of GOOD)
	if lossGE(n, &st, lo, hi) || st != badState {
		t.Fatalf("good → bad: state %d", st)
	}
	// BAD: lost when r2 > h
	if !lossGE(n, &st, hi, hi) || st != badState {
		t.Fatalf("bad, high loss draw: want lost, state %d", st)
	}
	if lossGE(n, &st, hi, lo) || st != badState {
		t.Fatalf("bad, low loss draw: want kept")
	}
	// r1 < r: back to GOOD
	lossGE(n, &st, lo, lo)
	if st != goodState {
		t.Fatalf("bad → good: state %d", st)
	}
}

// TestGilbertStationary: Simple Gilbert (p, r; 1−h = 1, 1−k = 0) loses
// p/(p+r) of the packets in bursts of mean length 1/r.
func TestGilbertStationary(t *testing.T) {
	p, r := 0.02, 0.25
	f := mustFault(t, Spec{Name: "ge", At: "wire:t0:egress", Netem: "loss gemodel 2% 25% 100% 0%"}, 42)
	ds := run(t, f, bigN)
	k := count(ds, dropped)
	want := p / (p + r)
	if math.Abs(float64(k)/bigN-want) > 0.15*want {
		t.Errorf("gemodel: loss %.4f, want p/(p+r) = %.4f", float64(k)/bigN, want)
	}
	var bursts, inBurst int
	for i := range ds {
		if ds[i].Orig.Drop {
			inBurst++
		} else if inBurst > 0 {
			bursts++
			inBurst = 0
		}
	}
	mean := float64(k) / float64(bursts)
	// the loss draw of the packet that leaves BAD still loses (the
	// kernel tests 1−h in BAD's arm after the transition): 1/r + ...
	if mean < 0.8/r || mean > 1.4/r {
		t.Errorf("gemodel: mean burst %.2f, want ≈ 1/r = %.1f", mean, 1/r)
	}
	if k != wantGE {
		t.Errorf("gemodel seed 42: %d, want exactly %d", k, wantGE)
	}
}

// Test4State: loss_4state's transitions with chosen draws, and the
// Bernoulli special case (p13 alone: p31 = 1−p13).
func Test4State(t *testing.T) {
	n := &Netem{A1: ProbOf(0.1), A2: ProbOf(0.3), A3: ProbOf(0.2), A4: ProbOf(0.05), A5: ProbOf(0.4)}
	st := uint8(txInGap)
	if loss4State(n, &st, math.MaxUint32) || st != txInGap {
		t.Fatal("gap, high draw: stays")
	}
	if !loss4State(n, &st, 0) || st != lostInGap {
		t.Fatal("gap, draw < p14: isolated loss")
	}
	if loss4State(n, &st, 0) || st != txInGap {
		t.Fatal("isolated loss → gap, always")
	}
	if !loss4State(n, &st, uint32(ProbOf(0.1))) || st != lostInBurst {
		t.Fatal("gap, p14 ≤ draw < p14+p13: burst loss")
	}
	if loss4State(n, &st, 0) || st != txInBurst {
		t.Fatal("burst loss, draw < p32: to tx in burst")
	}
	if !loss4State(n, &st, 0) || st != lostInBurst {
		t.Fatal("tx in burst, draw < p23: lost in burst")
	}
	if !loss4State(n, &st, math.MaxUint32) || st != lostInBurst {
		t.Fatal("burst loss, high draw: stays lost")
	}
	if loss4State(n, &st, uint32(ProbOf(0.3))) || st != txInGap {
		t.Fatal("burst loss, p32 ≤ draw < p32+p31: to gap")
	}
	f := mustFault(t, Spec{Name: "s", At: "wire:t0:egress", Netem: "loss state 5%"}, 42)
	k := count(run(t, f, bigN), dropped)
	binomialOK(t, "loss state 5%", k, bigN, 0.05)
	if k != want4State {
		t.Errorf("loss state 5%% seed 42: %d, want exactly %d", k, want4State)
	}
}

// TestDistTables: the generated tables have iproute2's size and shape;
// the normal table's first row is that of the normal.dist iproute2
// builds.
func TestDistTables(t *testing.T) {
	n, _ := Dist("normal")
	want := []int16{-32768, -28307, -26871, -25967, -25298, -24765, -24320, -23937}
	for i, w := range want {
		if n.At(i) != w {
			t.Errorf("normal[%d] = %d, want %d", i, n.At(i), w)
		}
	}
	for _, name := range []string{"normal", "pareto", "paretonormal"} {
		tb, ok := Dist(name)
		if !ok || tb.Len() != 4096 {
			t.Fatalf("%s: %v %d entries", name, ok, tb.Len())
		}
		for i := 1; i < tb.Len(); i++ {
			if tb.At(i) < tb.At(i-1) {
				t.Fatalf("%s not monotonic at %d", name, i)
			}
		}
	}
}

// TestDelayDistribution: delay 100ms 10ms with each distribution: the
// mean is the delay and the quantiles are the distribution's; uniform
// stays in [90ms, 110ms).
func TestDelayDistribution(t *testing.T) {
	for _, tc := range []struct {
		dist              string
		p16, p50, p84, sd float64 // ms; 0: not checked
	}{
		{"normal", 90, 100, 110, 10},
		{"uniform", 0, 100, 0, 10 / math.Sqrt(3)},
		{"pareto", 0, 0, 0, 0},
		{"paretonormal", 0, 0, 0, 0},
	} {
		f := mustFault(t, Spec{Name: "d", At: "wire:t0:egress", Netem: "delay 100ms 10ms distribution " + tc.dist}, 42)
		ds := run(t, f, bigN)
		xs := make([]float64, len(ds))
		var sum float64
		for i := range ds {
			xs[i] = float64(ds[i].Orig.Delay) / 1e6
			sum += xs[i]
		}
		sort.Float64s(xs)
		mean := sum / float64(len(xs))
		if math.Abs(mean-100) > 0.5 {
			t.Errorf("%s: mean %.2fms, want 100", tc.dist, mean)
		}
		q := func(p float64) float64 { return xs[int(p*float64(len(xs)))] }
		for _, c := range []struct{ p, want float64 }{{0.1587, tc.p16}, {0.5, tc.p50}, {0.8413, tc.p84}} {
			if c.want != 0 && math.Abs(q(c.p)-c.want) > 0.3 {
				t.Errorf("%s: quantile %.4f = %.2fms, want %.1f", tc.dist, c.p, q(c.p), c.want)
			}
		}
		if tc.dist == "uniform" && (xs[0] < 90 || xs[len(xs)-1] >= 110) {
			t.Errorf("uniform: range [%.3f, %.3f], want within [90, 110)", xs[0], xs[len(xs)-1])
		}
		if tc.dist == "pareto" && q(0.5) >= mean {
			t.Errorf("pareto: median %.2f not below the mean %.2f (a right tail)", q(0.5), mean)
		}
	}
}

// TestReorderGap: reorder 100% gap 5 sends exactly every 5th packet at
// once; reorder 25% (gap 1) a binomial quarter.
func TestReorderGap(t *testing.T) {
	f := mustFault(t, Spec{Name: "r", At: "wire:t0:egress", Netem: "delay 10ms reorder 100% gap 5"}, 42)
	ds := run(t, f, 50)
	for i := range ds {
		if want := (i+1)%5 == 0; ds[i].Orig.Reorder != want {
			t.Errorf("packet %d: reordered %v, want %v", i+1, ds[i].Orig.Reorder, want)
		}
		if !ds[i].Orig.Reorder && ds[i].Orig.Delay != 10e6 {
			t.Errorf("packet %d: delay %d", i+1, ds[i].Orig.Delay)
		}
	}
	f = mustFault(t, Spec{Name: "r", At: "wire:t0:egress", Netem: "delay 10ms reorder 25%"}, 42)
	k := count(run(t, f, bigN), func(d *Decision) bool { return d.Orig.Reorder })
	binomialOK(t, "reorder 25%", k, bigN, 0.25)
}

// TestDuplicate: duplicate P makes one copy with probability P; the copy
// is never duplicated again and has its own loss decision.
func TestDuplicate(t *testing.T) {
	f := mustFault(t, Spec{Name: "dup", At: "wire:t0:egress", Netem: "duplicate 10%"}, 42)
	ds := run(t, f, bigN)
	k := count(ds, func(d *Decision) bool { return d.HasDup })
	binomialOK(t, "duplicate 10%", k, bigN, 0.10)
	if k != wantDup {
		t.Errorf("duplicate 10%% seed 42: %d, want exactly %d", k, wantDup)
	}
	// duplicate and loss both 100%: netem's count goes 2 → 1, so one
	// packet leaves (the original), no copy
	f = mustFault(t, Spec{Name: "dl", At: "wire:t0:egress", Netem: "duplicate 100% loss 100%"}, 42)
	for _, d := range run(t, f, 10) {
		if d.Orig.Drop || d.HasDup {
			t.Fatalf("dup+loss 100%%: %+v, want the original alone", d)
		}
	}
}

// TestCorrupt: corrupt flips exactly one bit of the packet.
func TestCorrupt(t *testing.T) {
	f := mustFault(t, Spec{Name: "c", At: "wire:t0:egress", Netem: "corrupt 100%"}, 42)
	for i := range 200 {
		p := udp(t, ipA, ipB, 1000, uint16(53+i), 100)
		orig := append([]byte(nil), p.IP...)
		d, _ := decide(f, p, 0)
		if !d.Orig.Corrupt {
			t.Fatal("corrupt 100%: not corrupted")
		}
		f.Apply(&d, &d.Orig, p.IP, p)
		bits := 0
		for j := range orig {
			x := orig[j] ^ p.IP[j]
			for ; x != 0; x &= x - 1 {
				bits++
			}
		}
		if bits != 1 {
			t.Fatalf("%d bits differ, want 1", bits)
		}
	}
	f = mustFault(t, Spec{Name: "c", At: "wire:t0:egress", Netem: "corrupt 0.1%"}, 42)
	k := count(run(t, f, bigN), func(d *Decision) bool { return d.Orig.Corrupt })
	binomialOK(t, "corrupt 0.1%", k, bigN, 0.001)
}

// TestECN: loss with ecn marks an ECN-capable packet CE (checksum
// right) instead of dropping it; a packet that is not ECT is dropped.
func TestECN(t *testing.T) {
	f := mustFault(t, Spec{Name: "e", At: "wire:t0:egress", Netem: "loss 100% ecn"}, 1)
	p := &packet.Packet{Data: packet.Build(packet.Spec{Src: ipA, Dst: ipB, Proto: packet.ProtoUDP, TOS: 0x02, SrcPort: 1, DstPort: 2})}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	d, _ := decide(f, p, 0)
	if d.Orig.Drop || !d.Orig.ECN {
		t.Fatalf("ECT(0): %+v", d.Orig)
	}
	f.Apply(&d, &d.Orig, p.IP, p)
	if p.IP.TOS()&3 != 3 || p.Decode() != nil {
		t.Errorf("TOS %#x after marking (decode %v)", p.IP.TOS(), p.Decode())
	}
	d, _ = decide(f, udp(t, ipA, ipB, 1, 2, 10), 0)
	if !d.Orig.Drop {
		t.Errorf("not ECT: %+v, want dropped", d.Orig)
	}
}

// TestTabledist: netem's rounding of sigma·table/8192, and the uniform
// draw without a table.
func TestTabledist(t *testing.T) {
	tb := &Table{v: []int16{-8192, 0, 4096, 8191}}
	for _, c := range []struct {
		rnd  uint32
		want int64
	}{{0, 1000 - 100}, {1, 1000}, {2, 1000 + 50}, {3, 1000 + 100}} {
		if got := tabledist(1000, 100, c.rnd, tb); got != c.want {
			t.Errorf("table[%d]: %d, want %d", c.rnd, got, c.want)
		}
	}
	// sigma over the scale: the whole multiples and the rest, rounded
	if got := tabledist(0, 10000, 3, tb); got != 9999 {
		t.Errorf("sigma 10000 at 8191/8192: %d, want 9999", got)
	}
	if got := tabledist(100, 10, 25, nil); got != 100+25%20-10 {
		t.Errorf("uniform: %d", got)
	}
	if got := tabledist(100, 0, 25, tb); got != 100 {
		t.Errorf("no jitter: %d", got)
	}
}
