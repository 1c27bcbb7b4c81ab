package fault

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// engine is a router (datapathtest.RouterFIB) with a filter table that
// tracks connections, and the faults of specs at their hooks.
func engine(t testing.TB, specs ...Spec) (*datapath.Engine, *Set) {
	t.Helper()
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := (&iptables.Loader{}).LoadString(datapathtest.Table("filter", "-A FORWARD -m conntrack --ctstate INVALID -j DROP"))
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
	return datapath.New(datapath.Config{Rules: rs, FIB: fib, IPForward: true, Faults: st}, conntrack.DefaultConfig(), 1), s
}

func spec(t testing.TB, s string) *packet.Packet {
	t.Helper()
	sp, meta, err := packet.ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	p := &packet.Packet{Data: packet.Build(sp), Meta: meta}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHookFault: a fault at hook:ipv4:FORWARD drops the packets it
// picks (every 2nd of the flow), the fate names it, and a trace shows
// its decision as a line of its own.
func TestHookFault(t *testing.T) {
	e, s := engine(t, Spec{Name: "dns-loss", At: "hook:ipv4:FORWARD@-10", Match: "-p udp --dport 53", Action: "loss", Every: 2})
	for i := 1; i <= 6; i++ {
		tr := &datapath.Tracer{All: true}
		f := e.Receive(spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0"), int64(i)*1e6, tr)
		all := strings.Join(tr.Lines, "\n")
		if i%2 == 0 {
			if f.Kind != datapath.Dropped || f.By() != "fault: dns-loss" {
				t.Errorf("packet %d: %v, want dropped by the fault", i, f)
			}
			if !strings.Contains(all, "fault:FORWARD:rule:0x0:DROP") || !strings.Contains(all, "dns-loss n="+itoa(uint16(i))+" drop") {
				t.Errorf("packet %d: trace lacks the fault's line:\n%s", i, all)
			}
		} else {
			if f.Kind != datapath.Forwarded {
				t.Errorf("packet %d: %v, want forwarded", i, f)
			}
			if !strings.Contains(all, "fault:FORWARD:rule:0x0:ACCEPT") || !strings.Contains(all, "pass") {
				t.Errorf("packet %d: trace lacks the fault's pass line:\n%s", i, all)
			}
		}
	}
	if got := s.Faults[0].Dropped.Load(); got != 3 {
		t.Errorf("dropped %d, want 3", got)
	}
	// a flow the match does not take
	if f := e.Receive(spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:54 iif eth0"), 1e9, nil); f.Kind != datapath.Forwarded {
		t.Errorf("udp :54: %v", f)
	}
}

// TestPartitionReject: a one-way partition at FORWARD rejects a→b with
// an ICMP port unreachable from the router and lets b→a through.
func TestPartitionReject(t *testing.T) {
	e, _ := engine(t, Spec{Name: "cut", At: "hook:ipv4:FORWARD", Action: "partition", Mode: "reject",
		Groups: map[string][]string{"a": {"10.0.0.0/24"}, "b": {"192.168.1.2"}}, Direction: "a->b"})
	f := e.Receive(spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0"), 1e6, nil)
	if f.Kind != datapath.Dropped || len(f.Answers) != 1 || f.Answers[0].Pkt.ICMPType != 3 || f.Answers[0].Pkt.ICMPCode != 3 {
		t.Fatalf("a->b: %v with %d answers", f, len(f.Answers))
	}
	if f := e.Receive(spec(t, "udp 192.168.1.2:53 > 10.0.0.2:5353 iif eth1"), 2e6, nil); f.Kind != datapath.Forwarded {
		t.Errorf("b->a: %v", f)
	}
}

// TestMangleTTL: a mangle fault at PREROUTING sets TTL 1, so the router
// drops the packet at ip_forward and answers time exceeded.
func TestMangleTTL(t *testing.T) {
	ttl := 1
	e, _ := engine(t, Spec{Name: "ttl1", At: "hook:ipv4:PREROUTING@-500", Action: "mangle", TTL: &ttl, Match: "-p udp"})
	f := e.Receive(spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0"), 1e6, nil)
	if f.Kind != datapath.Dropped || f.Reason != datapath.DropTTL || len(f.Answers) != 1 || f.Answers[0].Pkt.ICMPType != 11 {
		t.Fatalf("%v, %d answers", f, len(f.Answers))
	}
}

// TestHookFaultNoAllocs: a fault that matches nothing costs an
// established packet no allocation.
func TestHookFaultNoAllocs(t *testing.T) {
	e, _ := engine(t, Spec{Name: "web", At: "hook:ipv4:PREROUTING@-250", Match: "-p tcp --dport 80", Netem: "loss 50%"})
	tmpl := spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0").Data
	reply := spec(t, "udp 192.168.1.2:53 > 10.0.0.2:5353 iif eth1")
	e.Receive(spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0"), 1e6, nil)
	e.Receive(reply, 2e6, nil)
	buf := make([]byte, len(tmpl))
	p := &packet.Packet{}
	run := func() {
		copy(buf, tmpl)
		*p = packet.Packet{Data: buf, Meta: packet.Meta{InIf: "eth0"}}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		if f := e.Receive(p, 3e6, nil); f.Kind != datapath.Forwarded {
			t.Fatalf("fate %v", f)
		}
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}

// BenchmarkEngineFaultNoMatch: the established path with and without a
// fault stage that matches nothing (compare the two).
func BenchmarkEngineFaultNoMatch(b *testing.B) {
	for _, with := range []bool{false, true} {
		name := "without"
		var specs []Spec
		if with {
			name = "with"
			specs = []Spec{{Name: "web", At: "hook:ipv4:PREROUTING@-250", Match: "-p tcp --dport 80", Netem: "loss 50%"}}
		}
		b.Run(name, func(b *testing.B) {
			e, _ := engine(b, specs...)
			tmpl := spec(b, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0").Data
			e.Receive(spec(b, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0"), 1e6, nil)
			e.Receive(spec(b, "udp 192.168.1.2:53 > 10.0.0.2:5353 iif eth1"), 2e6, nil)
			buf := make([]byte, len(tmpl))
			p := &packet.Packet{}
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, tmpl)
				*p = packet.Packet{Data: buf, Meta: packet.Meta{InIf: "eth0"}}
				p.Decode()
				e.Receive(p, 3e6, nil)
			}
		})
	}
}

// TestConntrackFull: while conntrack-full max = 2 is active (1 s to
// 3 s), a third connection finds the table full: its packet is dropped
// (conntrack -S drop; the entries are ASSURED, so early_drop finds
// nothing to evict), the established ones go on; after the window a
// new connection is tracked again.
func TestConntrackFull(t *testing.T) {
	e, s := engine(t, Spec{Name: "ct-full", Action: "conntrack-full", Max: 2, Start: "1s", Stop: "3s"})
	s.BindState(e.CT, e.NAT)
	flow := func(sport int, now int64) datapath.Fate {
		return e.Receive(spec(t, "udp 10.0.0.2:"+itoa(uint16(sport))+" > 192.168.1.2:53 iif eth0"), now, nil)
	}
	for _, sp := range []int{1001, 1002} {
		flow(sp, 1e6)
		e.Receive(spec(t, "udp 192.168.1.2:53 > 10.0.0.2:"+itoa(uint16(sp))+" iif eth1"), 2e6, nil)
		flow(sp, 3e6) // both ways seen: ASSURED
	}
	if f := flow(1003, 0.5e9); f.Kind != datapath.Forwarded {
		t.Fatalf("before the window: %v", f)
	}
	if n := e.CT.Count(); n != 3 {
		t.Fatalf("%d entries", n)
	}
	f := flow(1004, 1.5e9)
	if f.Kind != datapath.Dropped || f.By() != "conntrack: DROP(table full)" {
		t.Errorf("in the window, a new flow: %v", f)
	}
	if f := flow(1001, 1.6e9); f.Kind != datapath.Forwarded {
		t.Errorf("in the window, an established flow: %v", f)
	}
	if got := e.CT.Max(); got != 2 {
		t.Errorf("max %d in the window", got)
	}
	if f := flow(1005, 3.5e9); f.Kind != datapath.Forwarded {
		t.Errorf("after the window: %v", f)
	}
	if got := e.CT.Max(); got != conntrack.DefaultConfig().Max {
		t.Errorf("max %d after the window", got)
	}
	drop, _ := s.Faults[0].TableFull()
	if drop != 1 {
		t.Errorf("table-full drops %d, want 1", drop)
	}
	var b strings.Builder
	s.WriteList(&b)
	if !strings.Contains(b.String(), `ct-full: hook:ipv4:PREROUTING@-201 conntrack-full max 2 from 1s to 3s`) ||
		!strings.Contains(b.String(), `drop 1 early_drop 0 ("nf_conntrack: table full, dropping packet" x1)`) {
		t.Errorf("list:\n%s", b.String())
	}
}

// TestNATExhaust: with every source NAT pool cut to 2 ports, a third
// masqueraded connection to the same destination finds no free port
// and is dropped at confirm (conntrack -S insert_failed), one to
// another destination reuses the ports; after the window the full pool
// is back.
func TestNATExhaust(t *testing.T) {
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := (&iptables.Loader{}).LoadString(datapathtest.Table("nat", "-A POSTROUTING -o eth1 -j MASQUERADE"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet([]Spec{{Name: "pool", Action: "nat-exhaust", Ports: 2, Stop: "1s"}}, 42, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := datapath.New(datapath.Config{Rules: rs, FIB: fib, IPForward: true, Faults: []datapath.FaultStage{s.Faults[0]}}, conntrack.DefaultConfig(), 1)
	s.BindState(e.CT, e.NAT)
	send := func(sport int, dst string, now int64) (datapath.Fate, *packet.Packet) {
		p := spec(t, "udp 10.0.0.2:"+itoa(uint16(sport))+" > "+dst+":53 iif eth0")
		return e.Receive(p, now, nil), p
	}
	ports := map[uint16]bool{}
	for i, sp := range []int{2001, 2002, 2003} {
		f, p := send(sp, "192.168.1.2", 1e6)
		if i < 2 {
			if f.Kind != datapath.Forwarded || p.SrcPort < 1024 || p.SrcPort > 1025 {
				t.Fatalf("flow %d: %v from port %d, want forwarded from 1024 or 1025", i+1, f, p.SrcPort)
			}
			ports[p.SrcPort] = true
			continue
		}
		if f.Kind != datapath.Dropped || !strings.Contains(f.By(), "insert failed") {
			t.Errorf("third flow: %v, want dropped at confirm (insert failed)", f)
		}
	}
	if len(ports) != 2 {
		t.Errorf("ports %v", ports)
	}
	if f, p := send(2004, "192.168.1.3", 2e6); f.Kind != datapath.Forwarded || p.SrcPort > 1025 {
		t.Errorf("another destination: %v from %d", f, p.SrcPort)
	}
	if n := s.Faults[0].InsertFailed(); n != 1 {
		t.Errorf("insert_failed %d, want 1", n)
	}
	if f, p := send(2005, "192.168.1.2", 2e9); f.Kind != datapath.Forwarded || p.SrcPort != 2005 {
		t.Errorf("after the window: %v from %d, want the port kept", f, p.SrcPort)
	}
}

// BenchmarkFaultStageNoMatch: what a fault stage that matches nothing
// costs a packet by itself (the engine's call of Act: the schedule and
// the match), without the rest of the path whose noise hides it in
// BenchmarkEngineFaultNoMatch: a UDP packet against a TCP fault (turned
// away on the protocol alone) and against a UDP fault of another port
// (the schedule and the whole match).
func BenchmarkFaultStageNoMatch(b *testing.B) {
	for _, bc := range []struct{ name, match string }{
		{"other-proto", "-p tcp --dport 80"},
		{"same-proto", "-p udp --dport 80"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := mustFault(b, Spec{Name: "web", At: "hook:ipv4:PREROUTING@-250", Match: bc.match, Netem: "loss 50%"}, 1)
			var st datapath.FaultStage = f
			p := udp(b, ipA, ipB, 5353, 53, 64)
			c := &iptables.Ctx{Pkt: p, Hook: netfilter.PreRouting}
			b.ReportAllocs()
			for b.Loop() {
				if m, _, _ := st.Act(c, 3e6, false); m {
					b.Fatal("matched")
				}
			}
		})
	}
}

// TestMangleTCPSeq: tcp_seq moves a segment's sequence number (mod 2^32)
// and keeps its checksum right; a UDP datagram and a fragment are left
// alone; a zero or too large offset is refused.
func TestMangleTCPSeq(t *testing.T) {
	for _, add := range []int64{1 << 30, -5, 1} {
		p := spec(t, "tcp 10.244.1.5:8080 > 10.244.0.5:40000 seq 4294967290 ack 7 len 100 iif tun-server")
		if !p.TransportChecksumOK() {
			t.Fatal("the spec packet's checksum is wrong")
		}
		before := packet.TCP(p.Data[p.IP.HeaderLen():]).Seq()
		f := &Fault{Kind: KindMangle, SeqAdd: uint32(add)}
		f.Apply(&Decision{Mangled: true}, &One{}, p.Data, p)
		after := packet.TCP(p.Data[p.IP.HeaderLen():]).Seq()
		if after != before+uint32(add) || !p.TransportChecksumOK() {
			t.Errorf("tcp_seq %d: seq %d -> %d, checksum good %v", add, before, after, p.TransportChecksumOK())
		}
	}
	u := spec(t, "udp 10.0.0.2:5353 > 192.168.1.2:53 iif eth0")
	orig := append([]byte(nil), u.Data...)
	addTCPSeq(u.Data, 99)
	if string(orig) != string(u.Data) {
		t.Error("a UDP datagram was changed")
	}
	for _, v := range []int64{0, 1 << 31, -(1 << 31)} {
		v := v
		if _, err := Compile(&Spec{Name: "s", At: "wire:eth0:ingress", Action: "mangle", TCPSeq: &v}, 1, nil); err == nil || !strings.Contains(err.Error(), "tcp_seq") {
			t.Errorf("tcp_seq %d: %v", v, err)
		}
	}
}
