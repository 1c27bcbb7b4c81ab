package ebtables

import (
	"fmt"
	"testing"

	"github.com/uswitch-lab/uswitch/bench/rulegen"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// fwdFrame is the frame rulegen.EbtablesForward's rules let through: an
// IPv4 UDP frame from rulegen.EbtSrcMAC to rulegen.EbtDstMAC, 10.0.1.2
// to 192.168.1.2.
func fwdFrame(t testing.TB) []byte {
	src, err1 := packet.ParseMAC(rulegen.EbtSrcMAC)
	dst, err2 := packet.ParseMAC(rulegen.EbtDstMAC)
	sp, _, err3 := packet.ParseSpec("udp 10.0.1.2:1024 > 192.168.1.2:53")
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	return packet.BuildFrame(dst, src, packet.EtherTypeIPv4, packet.Build(sp))
}

// fwdCase is one FORWARD chain of the benchmarks: n rules, the frame
// matching none (policy ACCEPT) or only the last (policy DROP).
type fwdCase struct {
	name string
	text string
}

func fwdCases(n int) []fwdCase {
	return []fwdCase{
		{"none", rulegen.EbtablesForward(n)},
		{"last", rulegen.EbtablesForwardLast(n)},
	}
}

// runFwd runs the frame through filter FORWARD from tap0 to veth0.
func runFwd(p *Program, x *Ctx, linear bool) netfilter.Verdict {
	x.Reset()
	x.In, x.Out, x.LogicalIn, x.LogicalOut = "tap0", "veth0", "br0", "br0"
	x.Linear = linear
	return p.Run(Filter, Forward, x)
}

func fwdSetup(t testing.TB, text string) (*Program, *Ctx) {
	rs, err := (&Loader{}).Load(text)
	if err != nil {
		t.Fatal(err)
	}
	f := &packet.Frame{Data: fwdFrame(t)}
	if err := f.Decode(); err != nil {
		t.Fatal(err)
	}
	return Compile(rs), &Ctx{Frame: f, PktType: PacketOtherHost}
}

// BenchmarkEbtablesForward1000: a new bridged frame through 1,000
// filter FORWARD rules (rulegen.EbtablesForward), the linear walk
// against the compiled classifier; the frame matches none of them, or
// only the last.
func BenchmarkEbtablesForward1000(b *testing.B) {
	for _, n := range []int{1000} {
		for _, c := range fwdCases(n) {
			for _, mode := range []string{"walk", "compiled"} {
				b.Run(fmt.Sprintf("%s/%s", c.name, mode), func(b *testing.B) {
					p, x := fwdSetup(b, c.text)
					b.ReportAllocs()
					for b.Loop() {
						if runFwd(p, x, mode == "walk") != netfilter.Accept {
							b.Fatal("frame dropped")
						}
					}
				})
			}
		}
	}
}

// TestEbtablesForwardClassifier: the benchmark's chains give the frame
// the same verdict and counters either way, the classifier evaluates no
// rule for it when it matches none, and neither way allocates.
func TestEbtablesForwardClassifier(t *testing.T) {
	for _, c := range fwdCases(1000) {
		t.Run(c.name, func(t *testing.T) {
			pl, xl := fwdSetup(t, c.text)
			pc, xc := fwdSetup(t, c.text)
			for range 3 {
				if v := runFwd(pl, xl, true); v != netfilter.Accept {
					t.Fatalf("walk: %v, want ACCEPT", v)
				}
				if v := runFwd(pc, xc, false); v != netfilter.Accept {
					t.Fatalf("compiled: %v, want ACCEPT", v)
				}
			}
			if a, b := saveCounters(pl.Ruleset()), saveCounters(pc.Ruleset()); a != b {
				t.Fatalf("counters differ:\n%s\n%s", a, b)
			}
			// the candidates: none of the 1,000 rules, or just the last
			ch := &pc.tables[Filter].chains[pc.tables[Filter].base[Forward]]
			var k cursor
			k.set(ch.index, xc)
			var cand []int
			for i := k.next(0, len(ch.rules)); i < len(ch.rules); i = k.next(i+1, len(ch.rules)) {
				cand = append(cand, i)
			}
			want := []int(nil)
			if c.name == "last" {
				want = []int{1000}
			}
			if fmt.Sprint(cand) != fmt.Sprint(want) {
				t.Errorf("candidates %v, want %v", cand, want)
			}
			for _, linear := range []bool{true, false} {
				p, x := pl, xl
				if !linear {
					p, x = pc, xc
				}
				if n := testing.AllocsPerRun(200, func() { runFwd(p, x, linear) }); n != 0 {
					t.Errorf("linear %v: %v allocations per frame", linear, n)
				}
			}
		})
	}
}
