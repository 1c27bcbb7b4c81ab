package iptables

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// nopTracer makes Table.Run take the traced walk (run) instead of the
// lean one, while recording nothing.
type nopTracer struct{ events int }

func (n *nopTracer) Rule(*Table, *Chain, *Rule, TVerdict, *Chain, bool) { n.events++ }
func (n *nopTracer) Return(*Table, *Chain, *Rule)                       { n.events++ }
func (n *nopTracer) Policy(*Table, *Chain, TVerdict)                    { n.events++ }

// leanRuleset is a clsRuleset with comments on some rules and output
// interfaces and -f on a few, so the lean walk's comment skipping and
// its plain and full fixed-part tests all run.
func leanRuleset(r *rand.Rand, nRules int) string {
	lines := strings.Split(clsRuleset(r, nRules), "\n")
	for k, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		f := strings.SplitN(l, " ", 3)
		switch r.IntN(8) {
		case 0, 1, 2:
			f[1] += fmt.Sprintf(" -m comment --comment \"c%d\"", k)
		case 3:
			f[1] += " " + maybeNot(r) + " -o " + []string{"eth0", "eth1", "veth+"}[r.IntN(3)]
		case 4:
			if r.IntN(4) == 0 {
				f[1] += " " + maybeNot(r) + " -f"
			}
		}
		lines[k] = strings.Join(f, " ")
	}
	return strings.Join(lines, "\n")
}

// The lean walk (no tracer, no Memo) against the traced walk, compiled
// and linear: random rule sets loaded twice, with their own match state
// and identical random sources; every packet's verdict, mark, requests,
// hot drop and drop place, and in the end every counter, must be equal.
func TestLeanMatchesTraced(t *testing.T) {
	total := 0
	for seed := uint64(1); seed <= clsSeeds; seed++ {
		r := rand.New(rand.NewPCG(seed, 11))
		text := leanRuleset(r, 40+r.IntN(400))
		lean, full := loadTwice(t, seed, text)
		linear := seed%2 == 0
		envL, envF := newEvalEnv(), newEvalEnv()
		stL, stF := &State{}, &State{}
		for n := 0; n < clsPackets; n++ {
			p := clsPacket(r)
			p.OutIf = []string{"eth0", "eth1", "veth7", ""}[r.IntN(4)]
			if r.IntN(10) == 0 {
				// a non-first fragment (offset 8 bytes): -f matches it
				mark := p.Mark
				p.Data[7] = 1
				packet.IPv4(p.Data).SetChecksum()
				if err := p.Decode(); err != nil {
					t.Fatal(err)
				}
				p.Mark = mark
			}
			q := *p
			q.Data = append([]byte(nil), p.Data...)
			q.Decode()
			q.InIf, q.OutIf, q.Mark = p.InIf, p.OutIf, p.Mark
			now := int64(n) * 1e6
			envL.now, envF.now = now, now
			cl := &Ctx{Pkt: p, Hook: netfilter.Forward, Env: envL, State: stL, Linear: linear}
			cf := &Ctx{Pkt: &q, Hook: netfilter.Forward, Env: envF, State: stF, Linear: linear}
			vl := lean.Tables[Filter].Run(cl, nil)
			vf := full.Tables[Filter].Run(cf, &nopTracer{})
			dl, df := "", ""
			if cl.DropChain != nil {
				dl = cl.DropChain.Name
			}
			if cf.DropChain != nil {
				df = cf.DropChain.Name
			}
			if vl != vf || p.Mark != q.Mark || (cl.Reject == nil) != (cf.Reject == nil) || cl.HotDrop != cf.HotDrop ||
				dl != df || cl.DropRule != cf.DropRule || cl.Table != cf.Table {
				t.Fatalf("seed %d packet %d (proto %d %08x>%08x:%d in %s out %s): lean %v mark %x drop %s:%d, traced %v mark %x drop %s:%d\n%s",
					seed, n, p.Proto, p.Src, p.Dst, p.DstPort, p.InIf, p.OutIf, vl, p.Mark, dl, cl.DropRule, vf, q.Mark, df, cf.DropRule, text)
			}
			total++
		}
		sameFilterCounters(t, seed, lean, full, "lean", "traced")
	}
	t.Logf("%d packets agree", total)
}

// A rule set assembled by hand, never compiled, runs the lean walk with
// its rules' full fixed part and every match.
func TestLeanUncompiled(t *testing.T) {
	rs, err := (&Loader{}).LoadString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A FORWARD -i eth9 -j DROP\n-A FORWARD -p tcp -m comment --comment x -m tcp --dport 81 -j DROP\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs.Tables[Filter].Chain("FORWARD").Rules {
		r.prepared, r.plainIP, r.evals = false, false, nil
	}
	for _, tc := range []struct {
		spec string
		want TVerdict
		rule int32
	}{
		{"tcp 10.0.0.1:1 > 10.0.0.2:81 iif eth9", TDrop, 1},
		{"tcp 10.0.0.1:1 > 10.0.0.2:81 iif eth0", TDrop, 2},
		{"tcp 10.0.0.1:1 > 10.0.0.2:80 iif eth0", TAccept, 0},
	} {
		sp, meta, err := packet.ParseSpec(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		p := &packet.Packet{Data: packet.Build(sp), Meta: meta}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		c := &Ctx{Pkt: p, Hook: netfilter.Forward, Env: newEvalEnv()}
		if v := rs.Tables[Filter].Run(c, nil); v != tc.want || c.DropRule != tc.rule {
			t.Errorf("%s: %v at rule %d, want %v at %d", tc.spec, v, c.DropRule, tc.want, tc.rule)
		}
	}
}
