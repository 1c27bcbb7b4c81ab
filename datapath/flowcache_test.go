package datapath

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestFlowCacheMatchesLinear runs the same packets — TCP connections
// with handshakes and data both ways, UDP exchanges, some of them
// DNATed, masqueraded, marked, with odd TOS and TTL — through an engine
// with the classifier and the flow cache and through the linear
// reference without either, over seeded random rule sets (filter,
// mangle, nat and raw; user chains, jumps, gotos, returns; matches the
// cache may and may not rely on; targets with effects). Every packet must
// meet the same fate and leave with the same bytes and mark, and in the
// end every rule and policy counter must agree. The cache must be used
// (a good share of packets replayed), or the comparison proves nothing.
func TestFlowCacheMatchesLinear(t *testing.T) {
	const sets, perSet = 25, 4000 // 100,000 packets
	total, cached := 0, 0
	for seed := range uint64(sets) {
		n, c := flowCacheRun(t, seed, perSet)
		total += n
		cached += c
	}
	t.Logf("%d packets, %d (%.0f%%) replayed from the flow cache", total, cached, 100*float64(cached)/float64(total))
	if total < sets*perSet {
		t.Fatalf("only %d packets ran", total)
	}
	if cached < total/5 {
		t.Fatalf("only %d of %d packets came from the flow cache", cached, total)
	}
}

// flowRules is a random rule set for TestFlowCacheMatchesLinear.
func flowRules(r *rand.Rand) string {
	var b strings.Builder
	pick := func(s ...string) string { return s[r.IntN(len(s))] }
	srcs := func() string {
		return pick("", "-s 10.0.0.0/24 ", fmt.Sprintf("-s 10.0.0.%d/32 ", 2+r.IntN(6)), "! -s 10.0.0.0/30 ", "-s 192.168.1.0/24 ")
	}
	dsts := func() string {
		return pick("", "-d 192.168.1.0/24 ", fmt.Sprintf("-d 192.168.1.%d/32 ", 10+r.IntN(4)), "-d 10.0.5.0/24 ", "-d 10.0.0.1/32 ", "! -d 10.0.0.0/8 ")
	}
	// impure is the share of matches and targets the cache cannot rely
	// on (a third of the sets have none, so the cache gets used)
	impure := []float64{0, 0.03, 0.15}[r.IntN(3)]
	match := func(table, hook string) string {
		if r.Float64() < impure {
			switch r.IntN(8) {
			case 0:
				return "-p tcp --tcp-flags SYN,ACK SYN "
			case 1:
				return fmt.Sprintf("-m statistic --mode nth --every %d --packet 0 ", 2+r.IntN(4))
			case 2:
				return "-m limit --limit " + pick("50/sec", "5/sec") + " --limit-burst 3 "
			case 3:
				return "-m length --length " + pick("0:80", "81:1500") + " "
			case 4:
				return "-m ttl --ttl-lt " + pick("10", "64") + " "
			case 5:
				return "-m connmark --mark 0x1 "
			case 6:
				return "-m recent --name r --rcheck --seconds 5 "
			case 7:
				return "-p udp -m udp --dport 53 -m statistic --mode random --probability 0.5 "
			}
		}
		switch r.IntN(14) {
		case 0, 1:
			return pick("-p tcp ", "-p udp ") + pick("--dport 80 ", "--sport 80 ", "--dport 53 ", "--dport 1000:2000 ", "! --dport 443 ", "")
		case 2:
			return "-m conntrack --ctstate " + pick("NEW", "ESTABLISHED", "RELATED,ESTABLISHED", "DNAT", "SNAT", "NEW,INVALID") + " "
		case 3:
			return "-m conntrack --ctstatus " + pick("ASSURED", "SEEN_REPLY", "CONFIRMED") + " "
		case 4:
			return "-m mark --mark " + pick("0x1", "0x2", "0x0/0x1") + " "
		case 5:
			return "-m tos --tos " + pick("0x10", "0x00") + " "
		case 6:
			return "-p tcp -m multiport --dports 80,443,8080 "
		case 7:
			if hook == "INPUT" || hook == "FORWARD" || hook == "PREROUTING" {
				return pick("-i eth0 ", "-i eth1 ", "! -i eth0 ")
			}
		case 8:
			return "-m addrtype --dst-type " + pick("LOCAL", "UNICAST") + " "
		}
		return srcs() + dsts()
	}
	verdict := func(table string, chain, nuser, self int) string {
		if r.Float64() < impure {
			switch {
			case table == "mangle" && r.IntN(2) == 0:
				return "-j MARK --set-xmark " + pick("0x1/0x1", "0x2/0xff")
			case table == "mangle":
				return pick("-j CONNMARK --save-mark", "-j CONNMARK --restore-mark")
			default:
				return "-m recent --name r --set"
			}
		}
		n := r.IntN(20)
		switch {
		case n < 5:
			return "-j ACCEPT"
		case n < 6 && table == "filter":
			return "-j DROP"
		case n < 11 && self+1 < nuser:
			// jumps only forward, so no loops
			return pick("-j ", "-j ", "-g ") + fmt.Sprintf("U%d", self+1+r.IntN(nuser-self-1))
		case n < 15 && chain > 0:
			return "-j RETURN"
		}
		return "" // counter only
	}
	user := r.IntN(4) // user chains U1..
	table := func(name string, hooks []string, nrules func() int) {
		fmt.Fprintf(&b, "*%s\n", name)
		for _, h := range hooks {
			fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", h)
		}
		for u := 1; u <= user; u++ {
			fmt.Fprintf(&b, ":U%d - [0:0]\n", u)
		}
		for _, h := range hooks {
			for range nrules() {
				fmt.Fprintf(&b, "-A %s %s%s\n", h, match(name, h), verdict(name, 0, user+1, 0))
			}
		}
		for u := 1; u <= user; u++ {
			for range 2 + r.IntN(8) {
				fmt.Fprintf(&b, "-A U%d %s%s\n", u, match(name, "U"), verdict(name, u, user+1, u))
			}
		}
		b.WriteString("COMMIT\n")
	}
	table("filter", []string{"INPUT", "FORWARD", "OUTPUT"}, func() int { return r.IntN(30) })
	table("mangle", []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}, func() int { return r.IntN(4) })
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
	b.WriteString("-A PREROUTING -d 10.0.5.1/32 -p tcp -j DNAT --to-destination 192.168.1.10\n")
	b.WriteString("-A PREROUTING -d 10.0.5.2/32 -p udp -j DNAT --to-destination 192.168.1.11:5353\n")
	if r.IntN(2) == 0 {
		b.WriteString("-A POSTROUTING -o eth1 -j MASQUERADE\n")
	} else {
		b.WriteString("-A POSTROUTING -s 10.0.0.0/24 -o eth1 -p udp -j SNAT --to-source 192.168.1.1\n")
	}
	b.WriteString("COMMIT\n")
	if r.IntN(3) == 0 {
		b.WriteString("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp --dport 9 -j NOTRACK\n-A PREROUTING -s 10.0.0.7/32\nCOMMIT\n")
	}
	return b.String()
}

// simFlow is one connection of the simulation.
type simFlow struct {
	proto            uint8
	cli, srv         uint32
	cport, sport     uint16
	tos              uint8
	cseq, sseq       uint32
	state            int // TCP: 0 no SYN yet, 1 SYN sent, 2 established
	reply            *packet.Spec
	replyIf          string
	synAcked, closed bool
}

func flowCacheRun(t *testing.T, seed uint64, npkts int) (total, cached int) {
	r := rand.New(rand.NewPCG(seed, 0xf10))
	text := flowRules(r)
	mk := func(linear bool) (*Engine, *iptables.Ruleset) {
		rs, err := (&iptables.Loader{}).LoadString(text)
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, text)
		}
		fib, err := datapathtest.RouterFIB()
		if err != nil {
			t.Fatal(err)
		}
		return New(Config{Rules: rs, FIB: fib, IPForward: true, Linear: linear}, conntrack.DefaultConfig(), seed), rs
	}
	ref, refRS := mk(true)
	eng, engRS := mk(false)
	servers := []uint32{0xc0a8010a, 0xc0a8010b, 0xc0a8010c, 0x0a000501, 0x0a000502, 0x0a000001, 0x0a000009}
	var flows []*simFlow
	newFlow := func() *simFlow {
		f := &simFlow{proto: packet.ProtoTCP, cli: 0x0a000002 + uint32(r.IntN(6)), srv: servers[r.IntN(len(servers))],
			cport: uint16(1024 + r.IntN(60000)), sport: []uint16{80, 53, 443, 1500, 8080, 9}[r.IntN(6)],
			cseq: r.Uint32(), sseq: r.Uint32()}
		if r.IntN(2) == 0 {
			f.proto = packet.ProtoUDP
		}
		if r.IntN(6) == 0 {
			f.tos = 0x10
		}
		return f
	}
	bufA, bufB := make([]byte, 2048), make([]byte, 2048)
	var pa, pb packet.Packet
	now := int64(1e9)
	for total < npkts {
		if len(flows) < 12 || r.IntN(20) == 0 {
			flows = append(flows, newFlow())
		}
		fi := r.IntN(len(flows))
		f := flows[fi]
		// the packet: from the client, or the server's answer to what
		// the client's last forwarded packet looked like
		sp := packet.Spec{Proto: f.proto, Src: f.cli, Dst: f.srv, SrcPort: f.cport, DstPort: f.sport, TOS: f.tos, Payload: make([]byte, r.IntN(120))}
		in := "eth0"
		fromServer := f.reply != nil && r.IntN(2) == 0
		if fromServer {
			sp = *f.reply
			sp.Payload = make([]byte, r.IntN(120))
			in = f.replyIf
		}
		if r.IntN(50) == 0 {
			sp.TTL = 1
		}
		if r.IntN(40) == 0 {
			sp.TOS ^= 0x10
		}
		if f.proto == packet.ProtoTCP {
			switch {
			case f.state == 0:
				sp.TCPFlags, sp.Seq, sp.Payload = packet.TCPSyn, f.cseq, nil
				f.cseq++
				f.state = 1
			case fromServer && !f.synAcked:
				sp.TCPFlags, sp.Seq, sp.Ack, sp.Payload = packet.TCPSyn|packet.TCPAck, f.sseq, f.cseq, nil
				f.sseq++
				f.synAcked = true
			case fromServer:
				sp.TCPFlags, sp.Seq, sp.Ack = packet.TCPAck|packet.TCPPsh, f.sseq, f.cseq
				f.sseq += uint32(len(sp.Payload))
			default:
				sp.TCPFlags, sp.Seq, sp.Ack = packet.TCPAck|packet.TCPPsh, f.cseq, f.sseq
				if f.state == 1 && !f.synAcked {
					sp.TCPFlags, sp.Payload = packet.TCPSyn, nil // a retransmitted SYN
					sp.Seq = f.cseq - 1
				}
				f.cseq += uint32(len(sp.Payload))
			}
		}
		mark := uint32(0)
		if r.IntN(30) == 0 {
			mark = 1
		}
		raw := packet.Build(sp)
		now += int64(r.IntN(3_000_000))
		run := func(e *Engine, buf []byte, p *packet.Packet) Fate {
			copy(buf, raw)
			*p = packet.Packet{Data: buf[:len(raw)], Meta: packet.Meta{InIf: in, Mark: mark}}
			if err := p.Decode(); err != nil {
				t.Fatal(err)
			}
			return e.Receive(p, now, nil)
		}
		fa := run(ref, bufA, &pa)
		fb := run(eng, bufB, &pb)
		total++
		if fb.FlowCached {
			cached++
		}
		if fa.FlowCached {
			t.Fatalf("seed %d: the reference used the flow cache", seed)
		}
		if fa.Kind != fb.Kind || fa.OutIf != fb.OutIf || fa.By() != fb.By() || len(fa.Answers) != len(fb.Answers) ||
			!bytes.Equal(pa.Data, pb.Data) || pa.Mark != pb.Mark {
			t.Fatalf("seed %d, packet %d (%s in %s, cached %v): reference %v mark %#x, engine %v mark %#x\n% x\n% x\nrules:\n%s",
				seed, total, describeSpec(sp), in, fb.FlowCached, fa, pa.Mark, fb, pb.Mark, pa.Data, pb.Data, text)
		}
		if fa.Kind == Forwarded && !fromServer {
			// the server answers the packet as it arrived
			q := pa
			rp := packet.Spec{Proto: f.proto, Src: q.Dst, Dst: q.Src, SrcPort: q.DstPort, DstPort: q.SrcPort, TOS: f.tos}
			f.reply, f.replyIf = &rp, fa.OutIf
		}
		if r.IntN(200) == 0 {
			flows[fi] = flows[len(flows)-1]
			flows = flows[:len(flows)-1]
		}
	}
	// every counter of the two rule sets
	for ti, ta := range refRS.Tables {
		tb := engRS.Tables[ti]
		if ta == nil {
			continue
		}
		for ci, ca := range ta.Chains {
			cb := tb.Chains[ci]
			if ca.Builtin && ca.LiveCounters() != cb.LiveCounters() {
				t.Fatalf("seed %d: %v %s policy counters: reference %v, engine %v", seed, ta.ID, ca.Name, ca.LiveCounters(), cb.LiveCounters())
			}
			for ri, ra := range ca.Rules {
				if a, b := ra.LiveCounters(), cb.Rules[ri].LiveCounters(); a != b {
					t.Fatalf("seed %d: %v %s rule %d (%s): reference %v, engine %v\nrules:\n%s", seed, ta.ID, ca.Name, ri+1, iptables.RuleString(ra), a, b, text)
				}
			}
		}
	}
	if a, b := ref.CT.Count(), eng.CT.Count(); a != b {
		t.Fatalf("seed %d: conntrack entries: reference %d, engine %d", seed, a, b)
	}
	return total, cached
}

func describeSpec(s packet.Spec) string {
	return fmt.Sprintf("proto %d %08x:%d > %08x:%d flags %#x tos %#x ttl %d len %d", s.Proto, s.Src, s.SrcPort, s.Dst, s.DstPort, s.TCPFlags, s.TOS, s.TTL, len(s.Payload))
}

// TestFlowCacheSwap: a new rule set makes every recording stale at once:
// the established flow the cache carried is dropped by the next packet's
// traversal of the new FORWARD chain, and recorded again once the old
// rules are back; the counters go to the rule set that saw the packet.
func TestFlowCacheSwap(t *testing.T) {
	e := testEngine(t)
	tmpl := established(t, e)
	send := func() Fate {
		p := &packet.Packet{Data: append([]byte(nil), tmpl...), Meta: packet.Meta{InIf: "eth0"}}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		return e.Receive(p, 2e9, nil)
	}
	if f := send(); f.Kind != Forwarded || !f.FlowCached {
		t.Fatalf("before the swap: %v, from the flow cache %v", f, f.FlowCached)
	}
	old := e.Config()
	block, err := (&iptables.Loader{}).LoadString(strings.Replace(testRules, "-A FORWARD -m conntrack",
		"-A FORWARD -d 192.168.1.2/32 -p tcp --dport 8080 -j DROP\n-A FORWARD -m conntrack", 1))
	if err != nil {
		t.Fatal(err)
	}
	cfg := old
	cfg.Rules = block
	e.Swap(cfg)
	for i := range 3 {
		if f := send(); f.Kind != Dropped || f.FlowCached || f.By() != "filter:FORWARD:rule:1" && f.By() != "filter:FORWARD" {
			t.Fatalf("packet %d after the swap: %v, from the flow cache %v", i, f, f.FlowCached)
		}
	}
	if c := block.Tables[iptables.Filter].Chain("FORWARD").Rules[0].LiveCounters(); c.Packets != 3 {
		t.Fatalf("the new DROP rule counted %d packets, want 3", c.Packets)
	}
	e.Swap(old)
	if f := send(); f.Kind != Forwarded || f.FlowCached {
		t.Fatalf("back on the old rules, first packet: %v, from the flow cache %v", f, f.FlowCached)
	}
	before := old.Rules.Tables[iptables.Filter].Chain("FORWARD").Rules[0].LiveCounters()
	if f := send(); f.Kind != Forwarded || !f.FlowCached {
		t.Fatalf("back on the old rules, second packet: %v, from the flow cache %v", f, f.FlowCached)
	}
	if after := old.Rules.Tables[iptables.Filter].Chain("FORWARD").Rules[0].LiveCounters(); after.Packets != before.Packets+1 {
		t.Fatalf("the replayed ESTABLISHED rule counted %d -> %d packets", before.Packets, after.Packets)
	}
}
