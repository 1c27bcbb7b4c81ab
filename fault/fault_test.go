package fault

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestSelection: skip, every/offset, nth and times pick the packets of
// each flow exactly.
func TestSelection(t *testing.T) {
	acted := func(s Spec, n int) []int {
		s.Name, s.At, s.Action = "sel", "wire:t0:egress", "loss"
		f := mustFault(t, s, 1)
		var out []int
		for i, d := range run(t, f, n) {
			if d.Acted {
				if !d.Orig.Drop {
					t.Fatalf("acted without dropping (loss 100%%)")
				}
				out = append(out, i+1)
			}
		}
		return out
	}
	for _, tc := range []struct {
		s    Spec
		want string
	}{
		{Spec{Every: 3}, "[3,6,9,12]"},
		{Spec{Every: 3, Offset: 1}, "[1,4,7,10]"},
		{Spec{Nth: []uint64{2, 5}}, "[2,5]"},
		{Spec{Skip: 10}, "[11,12]"},
		{Spec{Skip: 2, Every: 4}, "[6,10]"},
		{Spec{Every: 2, Times: 3}, "[2,4,6]"},
	} {
		if got := fmtInts(acted(tc.s, 12)); got != tc.want {
			t.Errorf("%+v: acted on %s, want %s", tc.s, got, tc.want)
		}
	}
}

func fmtInts(xs []int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(itoa(uint16(x)))
	}
	b.WriteByte(']')
	return b.String()
}

func itoa(v uint16) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}

// TestSchedule: a fault acts only between start and stop, on the clock
// counted from the epoch.
func TestSchedule(t *testing.T) {
	f := mustFault(t, Spec{Name: "w", At: "wire:t0:egress", Action: "loss", Start: "5s", Stop: "15s"}, 1)
	s := &Set{Faults: []*Fault{f}}
	s.SetEpoch(100e9)
	p := udp(t, ipA, ipB, 1, 2, 10)
	for _, tc := range []struct {
		at   int64
		want bool
	}{{100e9, false}, {104.9e9, false}, {105e9, true}, {114.9e9, true}, {115e9, false}} {
		if _, ok := decide(f, p, tc.at); ok != tc.want {
			t.Errorf("at %d: active %v, want %v", tc.at, ok, tc.want)
		}
	}
}

// TestMatch: the iptables match targets the fault; -o is refused at an
// ingress placement with iptables' message.
func TestMatch(t *testing.T) {
	f := mustFault(t, Spec{Name: "m", At: "wire:t0:egress", Action: "loss", Match: "-p udp --dport 53 -d 10.0.0.2"}, 1)
	if _, ok := decide(f, udp(t, ipA, ipB, 1, 53, 10), 0); !ok {
		t.Error("udp to 10.0.0.2:53 not matched")
	}
	if _, ok := decide(f, udp(t, ipA, ipB, 1, 54, 10), 0); ok {
		t.Error("udp to :54 matched")
	}
	if got := f.MatchText(); got != "-d 10.0.0.2/32 -p udp -m udp --dport 53" {
		t.Errorf("match text %q", got)
	}
	_, err := Compile(&Spec{Name: "o", At: "wire:t0:ingress", Action: "loss", Match: "-o eth0"}, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "Can't use -o with PREROUTING") {
		t.Errorf("-o at ingress: %v", err)
	}
	_, err = Compile(&Spec{Name: "j", At: "wire:t0:ingress", Action: "loss", Match: "-p udp -j DROP"}, 1, nil)
	if err == nil {
		t.Error("a match with a target compiled")
	}
}

// flows makes nf flows of np packets each, as (flow index, packet).
func flows(t testing.TB, nf int) []*packet.Packet {
	ps := make([]*packet.Packet, nf)
	for i := range ps {
		ps[i] = udp(t, ipA+uint32(i%7), ipB, uint16(1000+i), 53, 50)
	}
	return ps
}

type rec struct {
	flow, n int
	act     string
}

// decideAll runs every packet of np per flow through a fresh fault,
// with the flows' packets interleaved by order (a list of flow indexes,
// each flow's packets in their order), on workers goroutines that own
// the flows i with i % workers == w (as link shards flows), and returns
// the decisions by (flow, n).
func decideAll(t *testing.T, s Spec, seed uint64, ps []*packet.Packet, order []int, workers int) map[[2]int]string {
	f := mustFault(t, s, seed)
	out := map[[2]int]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c iptables.Ctx
			var d Decision
			for _, fi := range order {
				if fi%workers != w {
					continue
				}
				c = iptables.Ctx{Pkt: ps[fi]}
				if !f.Decide(&c, 0, &d) {
					continue
				}
				txt := d.Text()
				mu.Lock()
				out[[2]int{fi, int(d.N)}] = txt
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// TestDeterminism: the same seed gives identical per-packet decisions
// whatever the interleaving of flows and the number of workers; another
// seed differs.
func TestDeterminism(t *testing.T) {
	const nf, np = 200, 50
	ps := flows(t, nf)
	seq := []int{}
	for i := range nf {
		for range np {
			seq = append(seq, i) // flow by flow
		}
	}
	rr := []int{}
	for range np {
		for i := range nf {
			rr = append(rr, i) // round robin
		}
	}
	shuffled := append([]int(nil), seq...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, s := range []Spec{
		{Name: "loss", At: "wire:t0:egress", Netem: "loss 10% 25%"},
		{Name: "ge", At: "wire:t0:egress", Netem: "loss gemodel 5% 30% 90% 1%"},
		{Name: "mix", At: "wire:t0:egress", Netem: "delay 10ms 5ms distribution normal duplicate 5% corrupt 5% reorder 20% gap 3"},
	} {
		ref := decideAll(t, s, 42, ps, seq, 1)
		if len(ref) != nf*np {
			t.Fatalf("%s: %d decisions", s.Name, len(ref))
		}
		for _, tc := range []struct {
			name    string
			order   []int
			workers int
		}{{"round robin", rr, 1}, {"shuffled", shuffled, 1}, {"2 workers", shuffled, 2}, {"4 workers", rr, 4}} {
			got := decideAll(t, s, 42, ps, tc.order, tc.workers)
			for k, v := range ref {
				if got[k] != v {
					t.Fatalf("%s, %s: flow %d packet %d: %q, want %q", s.Name, tc.name, k[0], k[1], got[k], v)
				}
			}
		}
		other := decideAll(t, s, 43, ps, seq, 1)
		diff := 0
		for k, v := range ref {
			if other[k] != v {
				diff++
			}
		}
		if diff == 0 {
			t.Errorf("%s: seed 43 decides as seed 42", s.Name)
		}
	}
}

// TestNamedStreams: adding a fault does not change another's draws (a
// fault's key is its name's).
func TestNamedStreams(t *testing.T) {
	a, err := NewSet([]Spec{{Name: "a", At: "wire:t0:egress", Netem: "loss 30%"}}, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSet([]Spec{{Name: "z", At: "wire:t0:egress", Netem: "loss 50%"}, {Name: "a", At: "wire:t0:egress", Netem: "loss 30%"}}, 9, nil)
	if err != nil {
		t.Fatal(err)
	}
	da, db := run(t, a.Faults[0], 1000), run(t, b.Faults[1], 1000)
	for i := range da {
		if da[i].Orig.Drop != db[i].Orig.Drop {
			t.Fatalf("packet %d differs", i+1)
		}
	}
}

// TestNoMatchNoAllocs: a packet no fault matches costs no allocation;
// neither does a loss decision on a flow already seen.
func TestNoMatchNoAllocs(t *testing.T) {
	f := mustFault(t, Spec{Name: "m", At: "wire:t0:egress", Netem: "loss 5% 25%", Match: "-p tcp --dport 80"}, 1)
	p := udp(t, ipA, ipB, 1, 53, 10)
	var c iptables.Ctx
	var d Decision
	if n := testing.AllocsPerRun(1000, func() {
		c = iptables.Ctx{Pkt: p}
		f.Decide(&c, 0, &d)
	}); n != 0 {
		t.Errorf("no match: %.1f allocations per packet", n)
	}
	g := mustFault(t, Spec{Name: "l", At: "wire:t0:egress", Netem: "loss 5% 25%", Match: "-p udp"}, 1)
	c = iptables.Ctx{Pkt: p}
	g.Decide(&c, 0, &d)
	if n := testing.AllocsPerRun(1000, func() {
		c = iptables.Ctx{Pkt: p}
		g.Decide(&c, 0, &d)
	}); n != 0 {
		t.Errorf("loss on a known flow: %.1f allocations per packet", n)
	}
}

func BenchmarkDecideNoMatch(b *testing.B) {
	f := mustFault(b, Spec{Name: "m", At: "wire:t0:egress", Netem: "loss 5%", Match: "-p tcp --dport 80"}, 1)
	p := udp(b, ipA, ipB, 1, 53, 10)
	var c iptables.Ctx
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		c = iptables.Ctx{Pkt: p}
		f.Decide(&c, 0, &d)
	}
}

func BenchmarkDecideLoss(b *testing.B) {
	f := mustFault(b, Spec{Name: "m", At: "wire:t0:egress", Netem: "loss 5% 25%", Match: "-p udp"}, 1)
	p := udp(b, ipA, ipB, 1, 53, 10)
	var c iptables.Ctx
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		c = iptables.Ctx{Pkt: p}
		f.Decide(&c, 0, &d)
	}
}

// TestFlipFlop: schedule { start = "1s", every = "10s", for = "3s" }
// acts in [1s, 4s), [11s, 14s)...; a paused fault does not act.
func TestFlipFlop(t *testing.T) {
	f := mustFault(t, Spec{Name: "ff", At: "wire:t0:egress", Action: "loss", Schedule: &Schedule{Start: "1s", Every: "10s", For: "3s"}}, 1)
	p := udp(t, ipA, ipB, 1, 2, 10)
	for _, tc := range []struct {
		at   float64
		want bool
	}{{0.5, false}, {1, true}, {3.9, true}, {4, false}, {10.9, false}, {11, true}, {13.99, true}, {14.01, false}} {
		if _, ok := decide(f, p, int64(tc.at*1e9)); ok != tc.want {
			t.Errorf("at %.2fs: active %v, want %v", tc.at, ok, tc.want)
		}
	}
	f.Pause()
	if _, ok := decide(f, p, 2e9); ok {
		t.Error("paused fault acted")
	}
	f.Resume()
	if _, ok := decide(f, p, 2e9); !ok {
		t.Error("resumed fault did not act")
	}
	if _, err := Compile(&Spec{Name: "x", At: "wire:t:egress", Action: "loss", Schedule: &Schedule{Every: "1s", For: "2s"}}, 1, nil); err == nil {
		t.Error("for > every accepted")
	}
}

// TestFlowIdle: a flow silent for longer than FlowIdle starts again at
// index 1, swept or not; a sweep drops only idle flows.
func TestFlowIdle(t *testing.T) {
	f := mustFault(t, Spec{Name: "i", At: "wire:t0:egress", Action: "loss", Every: 2}, 1)
	p := udp(t, ipA, ipB, 1, 2, 10)
	q := udp(t, ipA, ipB, 3, 4, 10)
	for i, at := range []int64{0, 1e9, FlowIdle + 1e9 + 1, FlowIdle + 2e9} {
		d, _ := decide(f, p, at)
		if want := []uint64{1, 2, 1, 2}[i]; d.N != want {
			t.Errorf("packet at %d: n=%d, want %d", at, d.N, want)
		}
	}
	decide(f, q, FlowIdle+2e9)
	for i := range f.flows {
		f.flows[i].sweep(2*FlowIdle + 3e9 - 1) // p idle since FlowIdle+2e9: over; q too
	}
	n := 0
	for i := range f.flows {
		n += len(f.flows[i].m)
	}
	if n != 0 {
		t.Errorf("%d flows after the sweep", n)
	}
	decide(f, p, 0)
	for i := range f.flows {
		f.flows[i].sweep(1e9)
	}
	n = 0
	for i := range f.flows {
		n += len(f.flows[i].m)
	}
	if n != 1 {
		t.Errorf("%d flows after a sweep with none idle, want 1", n)
	}
}

// TestQuickReject: turning packets away on protocol and destination
// port before the schedule and the match decides as the match does.
func TestQuickReject(t *testing.T) {
	for _, m := range []string{"-p tcp --dport 80", "-p udp --dport 50:60", "-p udp ! --dport 53", "! -p udp", "-p icmp", "-p tcp -m tcp --sport 80"} {
		f := mustFault(t, Spec{Name: "q", At: "hook:ipv4:PREROUTING", Match: m, Action: "loss"}, 1)
		for _, ps := range []string{"tcp 10.0.0.2:80 > 10.0.0.3:80 syn", "tcp 10.0.0.2:1 > 10.0.0.3:81 syn", "udp 10.0.0.2:1 > 10.0.0.3:53",
			"udp 10.0.0.2:1 > 10.0.0.3:55", "udp 10.0.0.2:1 > 10.0.0.3:61", "icmp 10.0.0.2 > 10.0.0.3"} {
			p := spec(t, ps)
			c := iptables.Ctx{Pkt: p, Hook: netfilter.PreRouting}
			want := f.match.Match(&c)
			c = iptables.Ctx{Pkt: p, Hook: netfilter.PreRouting}
			if got := f.Sees(&c, 0); got != want {
				t.Errorf("%q on %q: sees %v, the match says %v", m, ps, got, want)
			}
		}
	}
}
