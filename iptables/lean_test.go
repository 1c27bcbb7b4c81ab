package iptables

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
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
		case 5:
			if r.IntN(2) == 0 {
				// a random draw, perhaps before an xt tcp match that a
				// fragment leaves to its Eval
				f[1] += " -m statistic --mode random " + maybeNot(r) + " --probability 0.5"
				if r.IntN(2) == 0 && !strings.Contains(l, " -p ") {
					f[1] += " -p tcp -m tcp"
				}
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
				dl != df || cl.DropRule != cf.DropRule || cl.Table != cf.Table || envL.rnd != envF.rnd {
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
		r.prepared, r.plainIP, r.anyIP, r.leanAll, r.evals, r.lean = false, false, false, false, nil, nil
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

// leanTestRule is a random rule made of the matches that have typed
// tests (tcp/udp ports and flags, empty tcp/udp matches, mark,
// conntrack state), sometimes with one that has none (a --ctdir test,
// a --tcp-option).
func leanTestRule(r *rand.Rand) string {
	pick := func(l ...string) string { return l[r.IntN(len(l))] }
	var p []string
	switch r.IntN(3) {
	case 0:
		p = append(p, "-p tcp -m tcp")
		switch r.IntN(6) {
		case 0:
			p = append(p, maybeNot(r), "--dport", pick("80", "53", "1000:2000", "0:79"))
		case 1:
			p = append(p, maybeNot(r), "--sport", pick("1024:65535", "2000"))
		case 2:
			p = append(p, maybeNot(r), pick("--syn", "--tcp-flags SYN,ACK ACK", "--tcp-flags ALL NONE"))
		case 3:
			p = append(p, "--dport 80", maybeNot(r), "--tcp-flags FIN,SYN,RST,ACK SYN")
		case 4:
			if r.IntN(4) == 0 {
				p = append(p, maybeNot(r), "--tcp-option", pick("2", "8"))
			}
		}
	case 1:
		p = append(p, "-p udp -m udp")
		switch r.IntN(3) {
		case 0:
			p = append(p, maybeNot(r), "--dport", pick("53", "80", "1:1023"))
		case 1:
			p = append(p, maybeNot(r), "--sport", pick("1024:65535", "53"))
		}
	}
	if r.IntN(2) == 0 {
		p = append(p, "-m mark", maybeNot(r), "--mark", pick("0x1", "0x2/0x2", "0x0/0x3"))
	}
	switch r.IntN(4) {
	case 0:
		p = append(p, "-m conntrack", maybeNot(r), "--ctstate", pick("INVALID", "NEW", "RELATED,ESTABLISHED", "DNAT", "SNAT,UNTRACKED"))
	case 1:
		p = append(p, "-m state", maybeNot(r), "--state", pick("NEW", "ESTABLISHED", "INVALID"))
	case 3:
		p = append(p, "-m statistic --mode random", maybeNot(r), "--probability", pick("0.5", "0.25", "0.9"))
	case 2:
		if r.IntN(4) == 0 {
			p = append(p, "-m conntrack --ctstate NEW --ctdir ORIGINAL")
		}
	}
	return strings.Join(p, " ")
}

// leanTestPacket is a random TCP, UDP or ICMP packet, sometimes a
// fragment (first, at offset 8 bytes, or further on) or cut short in
// its transport header, with a random mark.
func leanTestPacket(t *testing.T, r *rand.Rand) *packet.Packet {
	for {
		var spec string
		switch r.IntN(3) {
		case 0:
			spec = fmt.Sprintf("tcp 10.0.0.1:%d > 10.0.0.2:%d %s", []int{53, 2000, 40000}[r.IntN(3)], []int{80, 53, 1500}[r.IntN(3)],
				[]string{"syn", "ack 1", "syn ack 1", "fin ack 1", "rst"}[r.IntN(5)])
			if r.IntN(3) == 0 {
				spec += " len 10"
			}
		case 1:
			spec = fmt.Sprintf("udp 10.0.0.1:%d > 10.0.0.2:%d", []int{53, 2000}[r.IntN(2)], []int{80, 53, 1500}[r.IntN(3)])
		default:
			spec = "icmp 10.0.0.1 > 10.0.0.2 type 8"
		}
		sp, meta, err := packet.ParseSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		b := packet.Build(sp)
		h := packet.IPv4(b)
		switch r.IntN(6) {
		case 0:
			// cut in the transport header
			n := 20 + r.IntN(len(b)-20)
			b = b[:n]
			binary.BigEndian.PutUint16(b[2:], uint16(n))
		case 1:
			// a fragment: first (MF), at offset 8 bytes, or beyond
			binary.BigEndian.PutUint16(b[6:], []uint16{0x2000, 1, 2 + uint16(r.IntN(100))}[r.IntN(3)])
		}
		h = packet.IPv4(b)
		h.SetChecksum()
		p := &packet.Packet{Data: b, Meta: meta}
		if p.Decode() != nil {
			continue
		}
		p.Mark = uint32(r.IntN(4))
		return p
	}
}

// The typed tests of the lean walk against the matches' own Eval: on
// random rules and packets (fragments, truncated headers, marks, every
// conntrack state), whenever leanMatch decides, it says what the
// matches say, and they do not hot-drop.
func TestLeanTests(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 17))
	decided, typed := 0, 0
	tab := conntrack.NewTable(conntrack.DefaultConfig(), 1)
	for n := 0; n < 400; n++ {
		text := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
		for i := 0; i < 10; i++ {
			text += "-A FORWARD " + leanTestRule(r) + " -j ACCEPT\n"
		}
		rs, err := (&Loader{}).LoadString(text + "COMMIT\n")
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		for _, rule := range rs.Tables[Filter].Chain("FORWARD").Rules {
			if !rule.leanAll {
				continue
			}
			typed++
			for k := 0; k < 20; k++ {
				p := leanTestPacket(t, r)
				// the typed tests and Eval draw from equal sources
				envT, envE := newEvalEnv(), newEvalEnv()
				envT.rnd = r.Uint32()
				envE.rnd = envT.rnd
				c := &Ctx{Pkt: p, Hook: netfilter.Forward, Env: envT, State: &State{}}
				switch r.IntN(4) {
				case 0:
					c.CT = conntrack.Untracked
				case 1:
					// a new entry, or a later packet of one
					c.CT, _ = tab.In(p.Clone(), 0, netfilter.PreRouting, int64(n))
					if r.IntN(2) == 0 {
						c.CT, _ = tab.Confirm(c.CT, int64(n))
					}
					if r.IntN(2) == 0 && c.CT.Conn != nil {
						c.CT.Conn.SetStatus([]conntrack.Status{conntrack.StatusSrcNAT, conntrack.StatusDstNAT}[r.IntN(2)])
					}
					if r.IntN(3) == 0 {
						c.CT.Info = []conntrack.CtInfo{conntrack.CtRelated, conntrack.CtRelatedReply, conntrack.CtEstablished}[r.IntN(3)]
					}
				}
				got := rule.leanMatch(c)
				if got < 0 {
					continue
				}
				decided++
				c.Env = envE
				want := true
				for _, m := range rule.evals {
					if !m.Eval(c) {
						want = false
						break
					}
				}
				if (got == 1) != want || c.HotDrop || envT.rnd != envE.rnd {
					t.Fatalf("rule %q, packet % x (ct %v): typed tests %d, matches %v hotdrop %v", RuleString(rule), p.Data, c.CT.State(), got, want, c.HotDrop)
				}
			}
		}
	}
	if typed < 1000 || decided < 10000 {
		t.Fatalf("only %d rules with typed tests, %d packets decided", typed, decided)
	}
	t.Logf("%d rules with typed tests, %d packets decided", typed, decided)
}
