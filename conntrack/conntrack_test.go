package conntrack

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

const (
	fS = packet.TCPSyn
	fA = packet.TCPAck
	fF = packet.TCPFin
	fR = packet.TCPRst
	fP = packet.TCPPsh
)

func TestTCPScenarios(t *testing.T) {
	const c, s = true, false
	isn, rsn := uint32(1000), uint32(5000)
	hs := func(sp uint16) []step {
		return []step{
			{name: "syn", spec: tcpSpec(c, sp, 80, fS, isn, 0, 0), state: StateNew, dir: Original, tcp: TCPSynSent},
			{name: "synack", spec: tcpSpec(s, 80, sp, fS|fA, rsn, isn+1, 0), state: StateEstablished, dir: Reply, tcp: TCPSynRecv},
			{name: "ack", spec: tcpSpec(c, sp, 80, fA, isn+1, rsn+1, 0), state: StateEstablished, dir: Original, tcp: TCPEstablished},
		}
	}
	cat := func(a ...[]step) []step {
		var out []step
		for _, x := range a {
			out = append(out, x...)
		}
		return out
	}
	tests := []struct {
		name      string
		steps     []step
		wantTCP   TCPState
		wantLive  bool
		wantFlags string // substring of the printed entry
	}{
		{"handshake", hs(1000), TCPEstablished, true, "[ASSURED]"},
		{"close", cat(hs(1001), []step{
			{name: "data", spec: tcpSpec(c, 1001, 80, fP|fA, isn+1, rsn+1, 100), state: StateEstablished, tcp: TCPEstablished},
			{name: "ack", spec: tcpSpec(s, 80, 1001, fA, rsn+1, isn+101, 0), state: StateEstablished, dir: Reply, tcp: TCPEstablished},
			{name: "fin", spec: tcpSpec(c, 1001, 80, fF|fA, isn+101, rsn+1, 0), state: StateEstablished, tcp: TCPFinWait},
			{name: "ack fin", spec: tcpSpec(s, 80, 1001, fA, rsn+1, isn+102, 0), state: StateEstablished, dir: Reply, tcp: TCPCloseWait},
			{name: "fin2", spec: tcpSpec(s, 80, 1001, fF|fA, rsn+1, isn+102, 0), state: StateEstablished, dir: Reply, tcp: TCPLastAck},
			{name: "last ack", spec: tcpSpec(c, 1001, 80, fA, isn+102, rsn+2, 0), state: StateEstablished, tcp: TCPTimeWait},
			{name: "reopen syn", spec: tcpSpec(c, 1001, 80, fS, isn+100000, 0, 0), state: StateNew, tcp: TCPSynSent},
		}), TCPSynSent, true, "[UNREPLIED]"},
		{"rst", cat(hs(1002), []step{
			{name: "rst", spec: tcpSpec(s, 80, 1002, fR|fA, rsn+1, isn+1, 0), state: StateEstablished, dir: Reply, tcp: TCPClose},
		}), TCPClose, true, "CLOSE"},
		{"rst only reply kills", []step{
			{name: "syn", spec: tcpSpec(c, 1003, 80, fS, isn, 0, 0), state: StateNew, tcp: TCPSynSent},
			{name: "rst", spec: tcpSpec(s, 80, 1003, fR|fA, 0, isn+1, 0), state: StateEstablished, dir: Reply, tcp: TCPClose},
			{name: "ack after", spec: tcpSpec(c, 1003, 80, fA, isn+1, 1, 0), state: StateNew, tcp: TCPEstablished},
		}, TCPEstablished, true, "[UNREPLIED]"},
		{"synack first", []step{
			{name: "synack", spec: tcpSpec(s, 80, 1004, fS|fA, rsn, isn+1, 0), state: StateInvalid},
		}, 0, false, ""},
		{"fin first", []step{
			{name: "fin", spec: tcpSpec(c, 1005, 80, fF|fA, isn, 1, 0), state: StateInvalid},
		}, 0, false, ""},
		{"syn+fin", []step{
			{name: "synfin", spec: tcpSpec(c, 1006, 80, fS|fF, isn, 0, 0), state: StateInvalid},
		}, 0, false, ""},
		{"loose pickup", []step{
			{name: "ack", spec: tcpSpec(c, 1007, 80, fA, isn, rsn, 10), state: StateNew, tcp: TCPEstablished},
			{name: "reply", spec: tcpSpec(s, 80, 1007, fA, rsn, isn+10, 0), state: StateEstablished, dir: Reply, tcp: TCPEstablished},
			{name: "next", spec: tcpSpec(c, 1007, 80, fA, isn+10, rsn, 0), state: StateEstablished, tcp: TCPEstablished},
		}, TCPEstablished, true, "[ASSURED]"},
		{"out of window seq", cat(hs(1008), []step{
			{name: "far data", spec: tcpSpec(c, 1008, 80, fP|fA, isn+1+10_000_000, rsn+1, 10), state: StateInvalid},
			{name: "ack too high", spec: tcpSpec(s, 80, 1008, fA, rsn+1, isn+1+500_000, 0), state: StateInvalid},
			{name: "ok data", spec: tcpSpec(c, 1008, 80, fP|fA, isn+1, rsn+1, 10), state: StateEstablished, tcp: TCPEstablished},
		}), TCPEstablished, true, "[ASSURED]"},
		{"old data ignored", cat(hs(1009), []step{
			{name: "data", spec: tcpSpec(c, 1009, 80, fP|fA, isn+1, rsn+1, 1000), state: StateEstablished, tcp: TCPEstablished},
			{name: "ack", spec: tcpSpec(s, 80, 1009, fA, rsn+1, isn+1001, 0), state: StateEstablished, dir: Reply},
		}), TCPEstablished, true, "[ASSURED]"},
		{"syn retransmit and simultaneous open", []step{
			{name: "syn", spec: tcpSpec(c, 1010, 80, fS, isn, 0, 0), state: StateNew, tcp: TCPSynSent},
			{name: "syn again", spec: tcpSpec(c, 1010, 80, fS, isn, 0, 0), state: StateNew, tcp: TCPSynSent},
			{name: "reply syn", spec: tcpSpec(s, 80, 1010, fS, rsn, 0, 0), state: StateEstablished, dir: Reply, tcp: TCPSynSent2},
			{name: "synack", spec: tcpSpec(c, 1010, 80, fS|fA, isn, rsn+1, 0), state: StateEstablished, tcp: TCPSynRecv},
		}, TCPSynRecv, true, "SYN_RECV"},
		{"bad checksum", []step{
			{name: "syn", spec: tcpSpec(c, 1011, 80, fS, isn, 0, 0), raw: func(b []byte) { b[36] ^= 0xff }, state: StateInvalid},
		}, 0, false, ""},
		{"dropped new leaves nothing", []step{
			{name: "syn", spec: tcpSpec(c, 1012, 80, fS, isn, 0, 0), state: StateNew, tcp: TCPSynSent, drop: true},
			{name: "synack", spec: tcpSpec(s, 80, 1012, fS|fA, rsn, isn+1, 0), state: StateInvalid},
		}, 0, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := testTable()
			now := int64(1000 * sec)
			run(t, tb, &now, tc.steps)
			first := tc.steps[0].spec
			tu := Tuple{Src: first.Src, Dst: first.Dst, SrcPort: first.SrcPort, DstPort: first.DstPort, Proto: packet.ProtoTCP}
			c, _, ok := tb.Lookup(tu, now)
			if ok != tc.wantLive {
				t.Fatalf("entry present %v, want %v", ok, tc.wantLive)
			}
			if !ok {
				return
			}
			if c.TCPState() != tc.wantTCP {
				t.Errorf("final state %v, want %v", c.TCPState(), tc.wantTCP)
			}
			if out := c.Format(now, false); !strings.Contains(out, tc.wantFlags) {
				t.Errorf("entry %q lacks %q", out, tc.wantFlags)
			}
		})
	}
}

func TestTCPTimeouts(t *testing.T) {
	tb := testTable()
	now := int64(0)
	isn, rsn := uint32(1), uint32(100)
	p := func(s packet.Spec) Ref {
		ref, _ := tb.In(mkpkt(t, s, nil), 0, netfilter.PreRouting, now)
		tb.Confirm(ref, now)
		return ref
	}
	r := p(tcpSpec(true, 2000, 80, fS, isn, 0, 0))
	if got := r.Conn.Expires(now) / sec; got != 120 {
		t.Errorf("SYN_SENT timeout %d", got)
	}
	p(tcpSpec(false, 80, 2000, fS|fA, rsn, isn+1, 0))
	if got := r.Conn.Expires(now) / sec; got != 60 {
		t.Errorf("SYN_RECV timeout %d", got)
	}
	p(tcpSpec(true, 2000, 80, fA, isn+1, rsn+1, 0))
	if got := r.Conn.Expires(now) / sec; got != 432000 {
		t.Errorf("ESTABLISHED timeout %d", got)
	}
	p(tcpSpec(true, 2000, 80, fA|fP, isn+1, rsn+1, 10))
	if got := r.Conn.Expires(now) / sec; got != 300 {
		t.Errorf("unacknowledged data timeout %d", got)
	}
	now += 299 * sec
	if _, _, ok := tb.Lookup(r.Conn.Tuple(Original), now); !ok {
		t.Fatal("entry gone before its time")
	}
	now += sec
	if _, _, ok := tb.Lookup(r.Conn.Tuple(Original), now); ok {
		t.Fatal("entry outlived its timeout")
	}
	if tb.Count() != 0 {
		t.Errorf("count %d after expiry", tb.Count())
	}
}

func TestUDP(t *testing.T) {
	tb := testTable()
	now := int64(0)
	run(t, tb, &now, []step{
		{name: "req", spec: udpSpec(true, 5000, 53), state: StateNew},
		{name: "req2", spec: udpSpec(true, 5000, 53), state: StateNew},
		{name: "reply", spec: udpSpec(false, 53, 5000), state: StateEstablished, dir: Reply},
		{name: "req3", spec: udpSpec(true, 5000, 53), state: StateEstablished},
	})
	c, _, _ := tb.Lookup(Tuple{Src: cliIP, Dst: srvIP, SrcPort: 5000, DstPort: 53, Proto: packet.ProtoUDP}, now)
	if c.Status()&StatusAssured != 0 || c.Expires(now)/sec != 30 {
		t.Errorf("young replied flow: %s", c.Format(now, false))
	}
	run(t, tb, &now, []step{{name: "later", dt: 3 * sec, spec: udpSpec(true, 5000, 53), state: StateEstablished}})
	want := "udp      17 120 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 [ASSURED] mark=0 use=1"
	if got := c.Format(now, false); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestICMP(t *testing.T) {
	tb := testTable()
	now := int64(0)
	udp := udpSpec(true, 6000, 7)
	run(t, tb, &now, []step{
		{name: "echo", spec: icmpSpec(cliIP, srvIP, 8, 0, 77, nil), state: StateNew},
		{name: "echo reply", spec: icmpSpec(srvIP, cliIP, 0, 0, 77, nil), state: StateEstablished, dir: Reply},
		{name: "unsolicited reply", spec: icmpSpec(srvIP, cliIP, 0, 0, 78, nil), state: StateInvalid},
		{name: "timestamp", spec: icmpSpec(cliIP, srvIP, 13, 0, 79, make([]byte, 12)), state: StateNew},
		{name: "type 19", spec: icmpSpec(cliIP, srvIP, 19, 0, 80, nil), state: StateInvalid},
		{name: "redirect no flow", spec: icmpErr(srvIP, cliIP, 3, 3, udp), state: StateInvalid},
		{name: "udp", spec: udp, state: StateNew},
		{name: "port unreach", spec: icmpErr(srvIP, cliIP, 3, 3, udp), state: StateRelated, dir: Reply},
		{name: "wrong outer dst", spec: icmpErr(srvIP, cliIP+1, 3, 3, udp), state: StateInvalid},
		{name: "reply", spec: udpSpec(false, 7, 6000), state: StateEstablished, dir: Reply},
		{name: "ttl exceeded about reply", spec: icmpErr(cliIP, srvIP, 11, 0, udpSpec(false, 7, 6000)), state: StateRelated, dir: Original},
		{name: "error about echo", spec: icmpErr(srvIP+5, cliIP, 11, 0, icmpSpec(cliIP, srvIP, 8, 0, 77, nil)), state: StateRelated, dir: Reply},
		{name: "error about error", spec: icmpErr(srvIP, cliIP, 3, 1, icmpErr(cliIP, srvIP, 3, 3, udp)), state: StateInvalid},
	})
	c, _, _ := tb.Lookup(Tuple{Src: cliIP, Dst: srvIP, SrcPort: 77, DstPort: 8 << 8, Proto: packet.ProtoICMP}, now)
	want := "icmp     1 30 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=77 src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=77 mark=0 use=1"
	if got := c.Format(now, false); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestGenericAndZones(t *testing.T) {
	tb := testTable()
	now := int64(0)
	g := packet.Spec{Proto: 253, Src: cliIP, Dst: srvIP, Payload: []byte("abcd")}
	r, _ := tb.In(mkpkt(t, g, nil), 0, netfilter.PreRouting, now)
	tb.Confirm(r, now)
	if r.State() != StateNew {
		t.Fatalf("generic: %s", stateString(r.State()))
	}
	if got, want := r.Conn.Format(now, true), "ipv4     2 unknown  253 600 src=10.1.0.2 dst=10.2.0.2 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 mark=0 use=1"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// The same flow in zone 5 is a different entry.
	r5, _ := tb.In(mkpkt(t, g, nil), 5, netfilter.PreRouting, now)
	if r5.State() != StateNew || r5.Conn == r.Conn {
		t.Fatalf("zone 5 found zone 0's entry")
	}
	tb.Confirm(r5, now)
	if !strings.Contains(r5.Conn.Format(now, false), "mark=0 zone=5 use=1") {
		t.Errorf("zone not printed: %s", r5.Conn.Format(now, false))
	}
	if tb.Count() != 2 {
		t.Errorf("count %d", tb.Count())
	}
	if Untracked.State() != StateUntracked || (Ref{}).State() != StateInvalid {
		t.Error("untracked/invalid state bits")
	}
}

func TestNATReplyTuple(t *testing.T) {
	tb := testTable()
	now := int64(0)
	r, _ := tb.In(mkpkt(t, udpSpec(true, 7000, 53), nil), 0, netfilter.PreRouting, now)
	repl := r.Conn.Tuple(Reply)
	repl.Src = 0x0a0a0a0a // DNAT to 10.10.10.10
	if err := r.Conn.SetReplyTuple(repl); err != nil {
		t.Fatal(err)
	}
	r.Conn.SetStatus(StatusDstNAT | StatusDstNATDone)
	tb.Confirm(r, now)
	if r.State() != StateNew|StateDNAT {
		t.Errorf("state %s", stateString(r.State()))
	}
	if err := r.Conn.SetReplyTuple(repl); err != ErrConfirmed {
		t.Errorf("SetReplyTuple after confirm: %v", err)
	}
	back := packet.Spec{Proto: packet.ProtoUDP, Src: 0x0a0a0a0a, Dst: cliIP, SrcPort: 53, DstPort: 7000}
	r2, _ := tb.In(mkpkt(t, back, nil), 0, netfilter.PreRouting, now)
	if r2.Conn != r.Conn || r2.Info != CtEstablishedReply {
		t.Errorf("reply from the DNAT target not found: %+v", r2)
	}
}

func TestEarlyDropAndTableFull(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Buckets = 1 // one bucket: early_drop always scans the whole table
	cfg.Max = 3
	tb := NewTable(cfg, 1)
	now := int64(0)
	in := func(sport uint16, assure bool) (Ref, Verdict) {
		r, v := tb.In(mkpkt(t, udpSpec(true, sport, 53), nil), 0, netfilter.PreRouting, now)
		tb.Confirm(r, now)
		if assure && r.Conn != nil {
			r.Conn.SetStatus(StatusAssured)
		}
		return r, v
	}
	a, _ := in(1, true)
	in(2, true)
	c, _ := in(3, false)
	d, v := in(4, false) // full: drops the unassured 3
	if v != Accept || d.Conn == nil {
		t.Fatalf("early drop failed: %v", v)
	}
	if c.Conn.Status()&StatusDying == 0 {
		t.Error("unassured entry survived early drop")
	}
	d.Conn.SetStatus(StatusAssured)
	if _, v := in(5, false); v != DropTableFull {
		t.Fatalf("all assured: verdict %v, want table full", v)
	}
	if tb.Count() != 3 || tb.Stats().EarlyDrop != 1 || tb.Stats().Drop != 1 {
		t.Errorf("count %d stats %+v", tb.Count(), tb.Stats())
	}
	// Reap under pressure at >= 95% of max drops nothing assured in
	// ESTABLISHED-like UDP; expiry removes them.
	now += 200 * sec
	if n := tb.Reap(now, 100); n != 3 {
		t.Errorf("reaped %d, want 3", n)
	}
	if _, _, ok := tb.Lookup(a.Conn.Tuple(Original), now); ok || tb.Count() != 0 {
		t.Error("reap left entries")
	}
}

func TestReapBudget(t *testing.T) {
	tb := testTable()
	now := int64(0)
	for i := 0; i < 500; i++ {
		r, _ := tb.In(mkpkt(t, udpSpec(true, uint16(10000+i), 53), nil), 0, netfilter.PreRouting, now)
		tb.Confirm(r, now)
	}
	now += 31 * sec
	total := 0
	for i := 0; i < 100 && tb.Count() > 0; i++ {
		n := tb.Reap(now, 64)
		if n > 64 {
			t.Fatalf("reaped %d over budget", n)
		}
		total += n
	}
	if total != 500 || tb.Count() != 0 {
		t.Errorf("reaped %d, count %d", total, tb.Count())
	}
}

func TestTupleInvert(t *testing.T) {
	for _, tu := range []Tuple{
		{Src: 1, Dst: 2, SrcPort: 3, DstPort: 4, Proto: 6, Zone: 9},
		{Src: 1, Dst: 2, SrcPort: 3, DstPort: 8 << 8, Proto: 1},
		{Src: 1, Dst: 2, Proto: 47},
	} {
		r, ok := tu.Invert()
		if !ok {
			t.Fatalf("%+v not invertible", tu)
		}
		rr, _ := r.Invert()
		if rr != tu {
			t.Errorf("double invert %+v -> %+v", tu, rr)
		}
	}
	if _, ok := (Tuple{Proto: 1, DstPort: 3 << 8}).Invert(); ok {
		t.Error("ICMP dest-unreach inverted")
	}
}
