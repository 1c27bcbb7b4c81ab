package fault

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/fault/faulthost"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

var _ Host = (*faulthost.Host)(nil)

// natEngine is a router whose nat table DNATs 10.96.0.10:80 (tcp and
// udp 53) to 192.168.1.2, with the faults of specs bound to it.
func natEngine(t testing.TB, specs ...Spec) (*datapath.Engine, *Set) {
	t.Helper()
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := (&iptables.Loader{}).LoadString(datapathtest.Table("nat",
		"-A PREROUTING -d 10.96.0.10/32 -p tcp --dport 80 -j DNAT --to-destination 192.168.1.2",
		"-A PREROUTING -d 10.96.0.10/32 -p udp --dport 53 -j DNAT --to-destination 192.168.1.2"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(specs, 42, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st []datapath.FaultStage
	for _, f := range s.Hooks() {
		st = append(st, f)
	}
	e := datapath.New(datapath.Config{Rules: rs, FIB: fib, IPForward: true, Faults: st}, conntrack.DefaultConfig(), 1)
	s.BindState(e.CT, e.NAT)
	s.BindHost(&faulthost.Host{Eng: e})
	return e, s
}

// dnatCount is the DNAT rule's packet counter (iptables-save -c).
func dnatCount(t *testing.T, e *datapath.Engine, port string) string {
	var b strings.Builder
	e.Config().Rules.Save(&b, iptables.SaveOptions{Counters: true})
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, "--dport "+port) && strings.Contains(l, "DNAT") {
			return l[:strings.Index(l, "]")+1]
		}
	}
	t.Fatalf("no DNAT rule for port %s in\n%s", port, b.String())
	return ""
}

// TestConntrackEvict: conntrack -D of a TCP flow mid-stream (a
// conntrack-evict at 1s) makes its next packet start a new entry
// (tcp_loose: picked up as NEW), which runs the nat table again: the
// DNAT rule's counter goes from 1 to 2, as on the kernel (the research
// note's check in a namespace: 1 -> 2, the connection survives).
func TestConntrackEvict(t *testing.T) {
	e, s := natEngine(t, Spec{Name: "evict", Action: "conntrack-evict", Filter: "-p tcp --orig-dst 10.96.0.10 --dport 80",
		Schedule: &Schedule{At: Instants{"1s"}}})
	steps := []struct {
		spec string
		at   int64
	}{
		{"tcp 10.0.0.2:40000 > 10.96.0.10:80 syn seq 100 iif eth0", 1e6},
		{"tcp 192.168.1.2:80 > 10.0.0.2:40000 syn ack seq 500 ack 101 iif eth1", 2e6},
		{"tcp 10.0.0.2:40000 > 10.96.0.10:80 ack seq 101 ack 501 iif eth0", 3e6},
	}
	for _, st := range steps {
		if f := e.Receive(spec(t, st.spec), st.at, nil); f.Kind != datapath.Forwarded {
			t.Fatalf("%s: %v", st.spec, f)
		}
	}
	if got := dnatCount(t, e, "80"); got != "[1:40]" {
		t.Fatalf("before the eviction: DNAT counter %s, want [1:40]", got)
	}
	p := spec(t, "tcp 10.0.0.2:40000 > 10.96.0.10:80 ack psh seq 101 ack 501 iif eth0")
	if f := e.Receive(p, 2e9, nil); f.Kind != datapath.Forwarded || packet.AddrOf(p.Dst).String() != "192.168.1.2" {
		t.Fatalf("after the eviction: %v to %v", f, packet.AddrOf(p.Dst))
	}
	if got := dnatCount(t, e, "80"); !strings.HasPrefix(got, "[2:") {
		t.Errorf("after the eviction: DNAT counter %s, want 2 packets", got)
	}
	if n := s.Faults[0].Affected(); n != 1 {
		t.Errorf("evicted %d, want 1", n)
	}
	if !strings.Contains(listOf(s), "entries deleted 1") {
		t.Errorf("fault list:\n%s", listOf(s))
	}
}

func listOf(s *Set) string {
	var b strings.Builder
	s.WriteList(&b)
	return b.String()
}

// TestConntrackExpire: the matching entries get the timeout left; the
// flow's next packet after it starts a new entry.
func TestConntrackExpire(t *testing.T) {
	e, s := natEngine(t, Spec{Name: "exp", Action: "conntrack-expire", Filter: "-p udp", Timeout: "1s", Schedule: &Schedule{At: Instants{"1s"}}})
	q := "udp 10.0.0.2:5353 > 10.96.0.10:53 iif eth0"
	e.Receive(spec(t, q), 1e6, nil)
	e.Receive(spec(t, "udp 192.168.1.2:53 > 10.0.0.2:5353 iif eth1"), 2e6, nil)
	// another flow's packet fires it (the flow's own would refresh
	// its entry right after, as after conntrack -U)
	e.Receive(spec(t, "udp 10.0.0.2:5354 > 10.96.0.10:53 iif eth0"), 1.5e9, nil)
	if e.CT.Count() != 2 {
		t.Fatalf("count %d", e.CT.Count())
	}
	before := e.CT.Stats().New
	e.Receive(spec(t, q), 2.6e9, nil)
	if e.CT.Stats().New != before+1 {
		t.Errorf("the packet after the timeout did not make a new entry")
	}
	if s.Faults[0].Affected() != 1 {
		t.Errorf("affected %d, want 1 (the other flow was not there yet)", s.Faults[0].Affected())
	}
}

// TestConntrackClashFault: a NEW UDP packet whose twin confirmed first
// with the same NAT takes the twin's entry (clash_resolve); with the
// twin DNATed elsewhere it goes in by its reply tuple (clash_resolve,
// two entries); a TCP one is dropped at confirm (insert_failed).
func TestConntrackClashFault(t *testing.T) {
	for _, tc := range []struct {
		name, pkt, dnat string
		drop            bool
		count           int
		// the events: the twin's NEW (its confirm); the loser none
		// (merged, dropped, or in by its reply tuple only)
		events string
	}{
		{"udp same", "udp 10.0.0.2:5353 > 10.96.0.10:53 iif eth0", "", false, 1, "NEW 192.168.1.2"},
		{"udp other backend", "udp 10.0.0.2:5353 > 10.96.0.10:53 iif eth0", "192.168.1.3:53", false, 2, "NEW 192.168.1.3"},
		{"tcp", "tcp 10.0.0.2:40000 > 10.96.0.10:80 syn seq 1 iif eth0", "", true, 1, "NEW 192.168.1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, s := natEngine(t, Spec{Name: "race", Action: "conntrack-clash", Match: "-p " + tc.pkt[:3], TwinDNAT: tc.dnat, Times: 1})
			var events []string
			cancel := e.CT.Subscribe(func(ev *conntrack.Event) {
				r := ev.Conn.Tuple(conntrack.Reply)
				events = append(events, ev.Type.String()+" "+packet.AddrOf(r.Src).String())
			})
			defer cancel()
			before := e.CT.Stats()
			tr := &datapath.Tracer{All: true}
			f := e.Receive(spec(t, tc.pkt), 1e6, tr)
			st := e.CT.Stats()
			if tc.drop {
				if f.Kind != datapath.Dropped || st.InsertFailed != before.InsertFailed+1 || st.Drop != before.Drop+1 {
					t.Fatalf("%v insert_failed %d drop %d", f, st.InsertFailed, st.Drop)
				}
			} else if f.Kind != datapath.Forwarded || st.Clash != before.Clash+1 {
				t.Fatalf("%v clash_resolve %d", f, st.Clash)
			}
			if e.CT.Count() != tc.count {
				t.Errorf("count %d, want %d", e.CT.Count(), tc.count)
			}
			if !strings.Contains(strings.Join(tr.Lines, "\n"), "race n=1 race: a twin of the flow confirmed first") {
				t.Errorf("trace:\n%s", strings.Join(tr.Lines, "\n"))
			}
			// times = 1: the flow's next new connection goes in cleanly
			if s.Faults[0].Acted.Load() != 1 {
				t.Errorf("acted %d", s.Faults[0].Acted.Load())
			}
			if got := strings.Join(events, ", "); got != tc.events {
				t.Errorf("events %q, want %q", got, tc.events)
			}
			if tc.dnat == "" {
				return
			}
			// the clash entry (in by its reply tuple) takes its reply
			// and stays: the kernel no longer deletes it at the first
			// reply (c46172147ebb); it goes after its second, with a
			// DESTROY event though no NEW announced it
			events = nil
			r := spec(t, "udp 192.168.1.2:53 > 10.0.0.2:5353 iif eth1")
			if f := e.Receive(r, 2e6, nil); f.Kind != datapath.Forwarded || packet.AddrOf(r.Src).String() != "10.96.0.10" {
				t.Errorf("the reply: %v from %v, want forwarded from 10.96.0.10", f, packet.AddrOf(r.Src))
			}
			if e.CT.Count() != 2 {
				t.Errorf("after the reply: %d entries, want the clash entry still there (2)", e.CT.Count())
			}
			e.CT.Reap(1500e6, 1<<20)
			if e.CT.Count() != 1 || strings.Join(events, ", ") != "UPDATE 192.168.1.2, DESTROY 192.168.1.2" {
				t.Errorf("after its second: %d entries, events %q; want the clash entry gone (UPDATE for its reply, DESTROY)", e.CT.Count(), events)
			}
			// the flow's next query (glibc's AAAA after the A answer, on
			// the same socket) finds the winner: it goes to the twin's
			// backend, and that backend's answer comes back from the
			// service address
			q2 := spec(t, tc.pkt)
			if f := e.Receive(q2, 1600e6, nil); f.Kind != datapath.Forwarded || packet.AddrOf(q2.Dst).String() != "192.168.1.3" {
				t.Errorf("the next query: %v to %v, want forwarded to the twin's 192.168.1.3", f, packet.AddrOf(q2.Dst))
			}
			r2 := spec(t, "udp 192.168.1.3:53 > 10.0.0.2:5353 iif eth1")
			if f := e.Receive(r2, 1700e6, nil); f.Kind != datapath.Forwarded || packet.AddrOf(r2.Src).String() != "10.96.0.10" {
				t.Errorf("its answer: %v from %v, want forwarded from 10.96.0.10", f, packet.AddrOf(r2.Src))
			}
		})
	}
}

// TestRulesSwapSysctl: an atomic rules-swap in a window (the old rules
// come back at its end), a line-by-line one, and an ip_forward flip.
func TestRulesSwapSysctl(t *testing.T) {
	swap := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p udp --dport 53 -j DROP\nCOMMIT\n"
	f := false
	e, s := natEngine(t,
		Spec{Name: "v2", Action: "rules-swap", Rules: swap, Start: "1s", Stop: "2s"},
		Spec{Name: "lines", Action: "rules-swap", Atomic: &f, Rules: "iptables -A FORWARD -p udp --dport 54 -j DROP\n-D FORWARD 1\n", Step: "1s", Schedule: &Schedule{At: Instants{"3s"}}},
		Spec{Name: "noforward", Action: "sysctl", Set: []string{"net.ipv4.ip_forward=0"}, Start: "5s", Stop: "6s"})
	send := func(port string, at float64) datapath.FateKind {
		// a packet of another flow first: a change shows from the
		// packet after the one that made it
		e.Receive(spec(t, "udp 10.0.0.9:1 > 192.168.1.2:9 iif eth0"), int64(at*1e9)-1, nil)
		return e.Receive(spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:"+port+" iif eth0"), int64(at*1e9), nil).Kind
	}
	for _, c := range []struct {
		port string
		at   float64
		want datapath.FateKind
	}{
		{"53", 0.5, datapath.Forwarded}, {"53", 1.5, datapath.Dropped}, {"53", 2.5, datapath.Forwarded},
		{"54", 3.5, datapath.Dropped}, {"54", 4.5, datapath.Forwarded},
		{"55", 5.5, datapath.Dropped}, {"55", 6.5, datapath.Forwarded},
	} {
		if got := send(c.port, c.at); got != c.want {
			t.Errorf("udp :%s at %.1fs: %v, want %v\n%s", c.port, c.at, got, c.want, listOf(s))
		}
	}
	for _, f := range s.Faults {
		if n, e := f.Errors(); n != 0 {
			t.Errorf("%s: %d errors: %s", f.Name, n, e)
		}
	}
}

// TestRampAndSteps: a loss ramp from 0 to 100% in two steps, and a
// step list, change the decisions at their times.
func TestRampAndSteps(t *testing.T) {
	f := mustFault(t, Spec{Name: "ramp", At: "wire:t0:egress", Action: "loss", Probability: ptrPercent(0),
		Ramp: &Ramp{Param: "loss", From: "0%", To: "100%", Over: "10s", Step: "5s"}}, 1)
	g := mustFault(t, Spec{Name: "steps", At: "wire:t0:egress", Steps: []Step{{At: "0s", Netem: "loss 100%"}, {At: "2s", Netem: "loss 0%"}}}, 1)
	p := udp(t, 1, 2, 3, 4, 10)
	for _, c := range []struct {
		f    *Fault
		at   float64
		drop bool
	}{{f, 1, false}, {f, 4.9, false}, {f, 10.5, true}, {g, 1, true}, {g, 2.5, false}} {
		d, ok := decide(c.f, p, int64(c.at*1e9))
		if !ok || d.Orig.Drop != c.drop {
			t.Errorf("%s at %.1fs: seen %v drop %v, want drop %v", c.f.Name, c.at, ok, d.Orig.Drop, c.drop)
		}
	}
	// the middle step, 50%: about half over many flows
	drops := 0
	for i := range 2000 {
		d, _ := decide(f, udp(t, 1, 2, uint16(i), 4, 10), 6e9)
		if d.Orig.Drop {
			drops++
		}
	}
	if drops < 900 || drops > 1100 {
		t.Errorf("at 50%%: %d of 2000 dropped", drops)
	}
	for _, bad := range []Spec{
		{Name: "x", At: "wire:t0:egress", Netem: "loss 1%", Ramp: &Ramp{Param: "rate", From: "1%", To: "2%", Over: "1s", Step: "1s"}},
		{Name: "x", At: "wire:t0:egress", Netem: "loss 1%", Ramp: &Ramp{Param: "loss", From: "1%", To: "2%", Over: "1s", Step: "3s"}},
		{Name: "x", At: "wire:t0:egress", Steps: []Step{{At: "1s", Netem: "loss 1%"}}},
		{Name: "x", At: "wire:t0:egress", Steps: []Step{{At: "0s", Netem: "loss 1%"}, {At: "1s", Netem: "rate 1mbit"}}},
		{Name: "x", At: "wire:t0:egress", Netem: "loss 1%", Schedule: &Schedule{At: Instants{"1s"}}},
	} {
		if _, err := Compile(&bad, 1, nil); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}

func ptrPercent(v float64) *Percent { p := Percent(v); return &p }

// TestTriggers: after_packets counts the matching packets, the one that
// fires is not acted on, and the schedule counts from it; on =
// "conntrack:new" fires on a new entry of a matching flow.
func TestTriggers(t *testing.T) {
	f := mustFault(t, Spec{Name: "after", At: "wire:t0:egress", Action: "loss", Match: "-p udp", Schedule: &Schedule{AfterPackets: 3, Stop: "1s"}}, 1)
	p := udp(t, 1, 2, 3, 4, 10)
	for i, want := range []bool{false, false, false, true, true} {
		d, ok := decide(f, p, int64(i)*1e8)
		if ok != want || (ok && !d.Orig.Drop) {
			t.Errorf("packet %d: seen %v drop %v", i+1, ok, d.Orig.Drop)
		}
	}
	if _, ok := decide(f, p, 1.3e9); ok {
		t.Errorf("seen 1 s after the trigger (at 0.2 s): the stop counts from the trigger")
	}
	e, _ := natEngine(t, Spec{Name: "after-new", At: "hook:ipv4:PREROUTING@-150", Action: "loss", Match: "-p udp --dport 53",
		Schedule: &Schedule{On: "conntrack:new"}})
	q := "udp 10.0.0.2:5353 > 10.96.0.10:53 iif eth0"
	if f := e.Receive(spec(t, "udp 10.0.0.2:5353 > 10.96.0.10:54 iif eth0"), 1e6, nil); f.Kind != datapath.Forwarded {
		t.Fatalf("another port: %v", f)
	}
	if f := e.Receive(spec(t, q), 2e6, nil); f.Kind != datapath.Forwarded {
		t.Fatalf("the new flow's first packet (the trigger): %v", f)
	}
	if f := e.Receive(spec(t, q), 3e6, nil); f.Kind != datapath.Dropped {
		t.Fatalf("after the trigger: %v", f)
	}
}

// TestRampDeterminism: a ramped, correlated loss decides the same per
// packet across interleavings and 1, 2 and 4 workers (a packet's time
// is its index in its flow), and another seed differs.
func TestRampDeterminism(t *testing.T) {
	const nf, np = 100, 40
	ps := flows(t, nf)
	var seq, rr []int
	for i := range nf {
		for range np {
			seq = append(seq, i)
		}
	}
	for range np {
		for i := range nf {
			rr = append(rr, i)
		}
	}
	s := Spec{Name: "ramp", At: "wire:t0:egress", Netem: "loss 1% 25%", Ramp: &Ramp{Param: "loss", From: "1%", To: "40%", Over: "4s", Step: "1s"}}
	run := func(seed uint64, order []int, workers int) map[[2]int]string {
		f := mustFault(t, s, seed)
		out := make([]map[[2]int]string, workers)
		done := make(chan int)
		for w := range workers {
			out[w] = map[[2]int]string{}
			go func() {
				n := map[int]int{}
				var d Decision
				for _, fi := range order {
					if fi%workers != w {
						continue
					}
					n[fi]++
					c := iptables.Ctx{Pkt: ps[fi]}
					if f.Decide(&c, int64(n[fi])*1e8, &d) {
						out[w][[2]int{fi, int(d.N)}] = d.Text()
					}
				}
				done <- w
			}()
		}
		all := map[[2]int]string{}
		for range workers {
			w := <-done
			for k, v := range out[w] {
				all[k] = v
			}
		}
		return all
	}
	ref := run(42, seq, 1)
	for _, w := range []int{1, 2, 4} {
		got := run(42, rr, w)
		for k, v := range ref {
			if got[k] != v {
				t.Fatalf("%d workers: flow %d packet %d: %q, want %q", w, k[0], k[1], got[k], v)
			}
		}
	}
	other, diff := run(43, seq, 1), 0
	for k, v := range ref {
		if other[k] != v {
			diff++
		}
	}
	if diff == 0 {
		t.Errorf("seed 43 decides as seed 42")
	}
}

// TestFDBFault: poison moves a MAC to another port, flush removes the
// dynamic entries.
func TestFDBFault(t *testing.T) {
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	e := datapath.New(datapath.Config{FIB: fib, Bridges: []datapath.BridgeConfig{{
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "p1", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "p2", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}}}}}, conntrack.DefaultConfig(), 1)
	s, err := NewSet([]Spec{
		{Name: "poison", Action: "fdb", Op: "poison", Bridge: "br0", MAC: "02:00:00:00:00:0a", Port: "p2", Schedule: &Schedule{At: Instants{"1s"}}},
		{Name: "flush", Action: "fdb", Op: "flush", Bridge: "br0", Schedule: &Schedule{At: Instants{"2s"}}},
	}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.BindHost(&faulthost.Host{Eng: e})
	b := e.Bridge("br0")
	a := packet.MAC{2, 0, 0, 0, 0, 0xa}
	b.Learn(0, a, 1)
	var c iptables.Ctx
	s.Faults[0].Act(&c, 1e9, false)
	if en, ok := b.Lookup(a); !ok || en.Port != 1 {
		t.Fatalf("after poison: %+v %v, want port p2", en, ok)
	}
	s.Faults[1].Act(&c, 2e9, false)
	if _, ok := b.Lookup(a); ok {
		t.Fatalf("after flush: the entry is still there")
	}
}

// TestLossFaultEstablishedNoAllocs: a loss fault that matches an
// established flow (and drops about half its packets) costs no
// allocation per packet.
func TestLossFaultEstablishedNoAllocs(t *testing.T) {
	e, _ := engine(t, Spec{Name: "lossy", At: "hook:ipv4:FORWARD", Match: "-p udp --dport 53", Netem: "loss 50%"})
	tmpl := spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0").Data
	for range 4 {
		e.Receive(spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0"), 1e6, nil)
		e.Receive(spec(t, "udp 192.168.1.2:53 > 10.0.0.2:5353 iif eth1"), 2e6, nil)
	}
	buf := make([]byte, len(tmpl))
	p := &packet.Packet{}
	dropped := 0
	run := func() {
		copy(buf, tmpl)
		*p = packet.Packet{Data: buf, Meta: packet.Meta{InIf: "eth0"}}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		if f := e.Receive(p, 3e6, nil); f.Kind == datapath.Dropped {
			dropped++
		}
	}
	run()
	if n := testing.AllocsPerRun(400, run); n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
	if dropped < 100 || dropped > 300 {
		t.Errorf("dropped %d of 401", dropped)
	}
}
