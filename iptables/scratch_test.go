package iptables

import (
	"math/rand/v2"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// TestScratchReuse: traversals that share one Scratch, as an engine's
// table runs do, give the verdict, mark and counters of traversals that
// each start from a fresh one (Ctx.Scratch nil), with the classifier and
// with the linear walk; what a run leaves in the Scratch never leaks into
// the next.
func TestScratchReuse(t *testing.T) {
	for _, linear := range []bool{false, true} {
		for seed := uint64(1); seed <= 10; seed++ {
			r := rand.New(rand.NewPCG(seed, 11))
			text := clsRuleset(r, 40+r.IntN(400))
			fresh, err := (&Loader{}).LoadString(text)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			reuse, _ := (&Loader{}).LoadString(text)
			envF, envR := newEvalEnv(), newEvalEnv()
			stF, stR := &State{}, &State{}
			s := new(Scratch)
			for n := 0; n < 2000; n++ {
				p := clsPacket(r)
				q := *p
				q.Data = append([]byte(nil), p.Data...)
				q.Decode()
				now := int64(n) * 1e6
				envF.now, envR.now = now, now
				cf := &Ctx{Pkt: p, Hook: netfilter.Forward, Env: envF, State: stF, Linear: linear}
				cr := &Ctx{Pkt: &q, Hook: netfilter.Forward, Env: envR, State: stR, Linear: linear, Scratch: s}
				vf := fresh.Tables[Filter].Run(cf, nil)
				vr := reuse.Tables[Filter].Run(cr, nil)
				if vf != vr || p.Mark != q.Mark || (cf.Reject == nil) != (cr.Reject == nil) || cf.HotDrop != cr.HotDrop {
					t.Fatalf("linear %v seed %d packet %d: fresh %v mark %x, reused %v mark %x", linear, seed, n, vf, p.Mark, vr, q.Mark)
				}
			}
			for ci, c := range fresh.Tables[Filter].Chains {
				cc := reuse.Tables[Filter].Chains[ci]
				for ri, rl := range c.Rules {
					if a, b := rl.LiveCounters(), cc.Rules[ri].LiveCounters(); a != b {
						t.Fatalf("linear %v seed %d: %s rule %d counters %v / %v", linear, seed, c.Name, ri+1, a, b)
					}
				}
			}
		}
	}
}

// TestScratchNoAllocs: a traversal with a Scratch allocates nothing.
func TestScratchNoAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 7))
	rs, err := (&Loader{}).LoadString(clsRuleset(r, 300))
	if err != nil {
		t.Fatal(err)
	}
	p := clsPacket(r)
	env := newEvalEnv()
	st := &State{}
	c := &Ctx{}
	s := new(Scratch)
	n := testing.AllocsPerRun(200, func() {
		*c = Ctx{Pkt: p, Hook: netfilter.Forward, Env: env, State: st, Scratch: s}
		rs.Tables[Filter].RunBase(rs.Tables[Filter].Builtin(netfilter.Forward), c, nil)
	})
	if n != 0 {
		t.Errorf("%v allocations per traversal", n)
	}
}
