package datapath

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
)

// TestProbeReply: the reply probe's answer for a connection's reply is
// what the engine then does with the real reply packet (forwarded or
// delivered exactly when the probe finds it accepted), where names the
// rule, and the probe counts no hit.
func TestProbeReply(t *testing.T) {
	const (
		fwd   = "udp 10.0.0.2:5000 > 192.168.1.2:53 iif eth0"
		fwdRe = "udp 192.168.1.2:53 > 10.0.0.2:5000 iif eth1"
		local = "udp 10.0.0.2:5000 > 10.0.0.1:53 iif eth0"
		locRe = "udp 10.0.0.1:53 > 10.0.0.2:5000"
		tcp   = "tcp 10.0.0.2:5000 > 192.168.1.2:80 syn seq 1 iif eth0"
		tcpRe = "tcp 192.168.1.2:80 > 10.0.0.2:5000 ack 2 seq 9 iif eth1"
	)
	masq := "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth1 -j MASQUERADE\nCOMMIT\n"
	filter := func(policy, rules string) string {
		return "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD " + policy + " [0:0]\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\n" + rules + "COMMIT\n"
	}
	for _, c := range []struct {
		name, rules, orig, reply, want string
	}{
		{"established accepted", filter("DROP", "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -i eth0 -p udp -j ACCEPT\n"), fwd, fwdRe, ""},
		{"invalid dropped first", filter("DROP", "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n-A FORWARD -m state --state RELATED,ESTABLISHED -m comment --comment x -j ACCEPT\n-A FORWARD -i eth0 -j ACCEPT\n"), fwd, fwdRe, ""},
		{"new-only rule, then a drop", filter("ACCEPT", "-A FORWARD -m conntrack --ctstate NEW -j LOG\n-A FORWARD -s 192.168.1.2/32 -j DROP\n"), fwd, fwdRe, "reply: filter FORWARD rule 2"},
		{"established from one side", filter("DROP", "-A FORWARD -s 10.0.0.0/8 -m conntrack --ctstate ESTABLISHED -j ACCEPT\n-A FORWARD -i eth0 -j ACCEPT\n"), fwd, fwdRe, "reply: filter FORWARD policy"},
		{"one way only", filter("DROP", "-A FORWARD -i eth0 -j ACCEPT\n"), fwd, fwdRe, "reply: filter FORWARD policy"},
		{"server's source dropped", filter("ACCEPT", "-A FORWARD -s 192.168.1.2/32 -p udp -j DROP\n"), fwd, fwdRe, "reply: filter FORWARD rule 1"},
		{"out by the client's device", filter("ACCEPT", "-A FORWARD -o eth1 -j ACCEPT\n-A FORWARD -o eth0 -j DROP\n"), fwd, fwdRe, "reply: filter FORWARD rule 2"},
		{"rejected", filter("ACCEPT", "-A FORWARD -i eth1 -p udp -m udp --sport 53 -j REJECT\n"), fwd, fwdRe, "reply: filter FORWARD rule 1"},
		{"in a user chain", filter("ACCEPT", "-A FORWARD -j X\n-A X -d 10.0.0.2/32 -j DROP\n"), fwd, fwdRe, "reply: filter X rule 1"},
		{"user chain returns", filter("ACCEPT", "-A FORWARD -j X\n-A X -d 10.0.0.3/32 -j DROP\n"), fwd, fwdRe, ""},
		{"reply direction", filter("ACCEPT", "-A FORWARD -m conntrack --ctdir REPLY -j DROP\n"), fwd, fwdRe, "reply: filter FORWARD rule 1"},
		{"raw, before conntrack", "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -m conntrack --ctstate INVALID -s 192.168.1.2/32 -j DROP\nCOMMIT\n", fwd, fwdRe, "reply: raw PREROUTING rule 1"},
		{"mangle POSTROUTING", "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -p udp -j DROP\nCOMMIT\n", fwd, fwdRe, "reply: mangle POSTROUTING rule 1"},
		// a masqueraded flow: its reply comes to the router's address
		// and port, nat PREROUTING gives it the client's back before
		// FORWARD
		{"masqueraded, accepted", masq + filter("ACCEPT", "-A FORWARD -d 192.168.1.1/32 -j DROP\n"), fwd, "", ""},
		{"masqueraded, SNAT state dropped", masq + filter("ACCEPT", "-A FORWARD -m conntrack --ctstate SNAT -j DROP\n-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\n"), fwd, "", "reply: filter FORWARD rule 1"},
		{"masqueraded, dropped", masq + filter("ACCEPT", "-A FORWARD -d 10.0.0.2/32 -p udp -m udp --dport 5000 -j DROP\n"), fwd, "", "reply: filter FORWARD rule 1"},
		// the host's own reply to a local server
		{"local, accepted", filter("ACCEPT", "-A OUTPUT -d 10.0.0.3/32 -j DROP\n"), local, locRe, ""},
		{"local, dropped", filter("ACCEPT", "-A OUTPUT -d 10.0.0.2/32 -p udp -j DROP\n"), local, locRe, "reply: filter OUTPUT rule 1"},
		// TCP: a bare ACK
		{"tcp, flags", filter("ACCEPT", "-A FORWARD -i eth1 -p tcp -m tcp --tcp-flags ACK ACK -j DROP\n"), tcp, tcpRe, "reply: filter FORWARD rule 1"},
		{"tcp, accepted", filter("ACCEPT", "-A FORWARD -i eth1 -p tcp -m tcp --tcp-flags SYN SYN -j DROP\n"), tcp, tcpRe, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, rs, orig, f, ct := probeFlow(t, c.rules, c.orig)
			var before, after strings.Builder
			rs.Save(&before, iptables.SaveOptions{Counters: true})
			okp, where := e.ProbeReply(ct, orig, f, 2e9)
			if ct != nil && probeAccepts(e.cfg.Load(), f.Kind) {
				if ok, w := e.probe(e.cfg.Load(), ct, orig, f, 2e9); !ok {
					t.Errorf("probeAccepts says yes, the probe says %q", w)
				}
			}
			rs.Save(&after, iptables.SaveOptions{Counters: true})
			if okp != (c.want == "") || where != c.want {
				t.Errorf("probe: %v %q, want %q", okp, where, c.want)
			}
			if before.String() != after.String() {
				t.Errorf("the probe counted hits:\n%s\n---\n%s", before.String(), after.String())
			}
			// the real reply
			re := c.reply
			if re == "" {
				if ct == nil {
					t.Fatal("no conntrack entry")
				}
				r := ct.Tuple(conntrack.Reply)
				re = "udp " + addr4(r.Src).String() + ":" + itoa(r.SrcPort) + " > " + addr4(r.Dst).String() + ":" + itoa(r.DstPort) + " iif eth1"
			}
			rp := mk(t, re)
			var rf Fate
			if f.Kind == Delivered {
				rf = e.Send(rp, 2e9, nil)
			} else {
				rf = e.Receive(rp, 2e9, nil)
			}
			passed := rf.Kind == Forwarded || rf.Kind == Sent
			if passed != okp {
				t.Errorf("the reply %q: %v; the probe said %v %q", re, rf, okp, where)
			}
		})
	}
}

// probeFlow runs a flow's first packet (spec orig) through an engine
// with rules, which must forward or deliver it; ct is its entry, nil
// when the rule set needs no conntrack.
func probeFlow(t *testing.T, rules, orig string) (e *Engine, rs *iptables.Ruleset, tu conntrack.Tuple, f Fate, ct *conntrack.Conn) {
	t.Helper()
	rs, err := (&iptables.Loader{Counters: true}).LoadString(rules)
	if err != nil {
		t.Fatal(err)
	}
	e = New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), 1)
	p := mk(t, orig)
	tu = conntrack.Tuple{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
	if f = e.Receive(p, 1e9, nil); f.Kind != Forwarded && f.Kind != Delivered {
		t.Fatalf("first packet: %v", f)
	}
	ct, _, _ = e.CT.Lookup(tu, 1e9)
	return e, rs, tu, f, ct
}

func itoa(n uint16) string {
	if n == 0 {
		return "0"
	}
	var b [5]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// BenchmarkProbeReply: the reply probe of a forwarded UDP flow, answered
// by probeAccepts (FORWARD's first rule accepts established packets)
// and by a walk (a rule that may touch the reply comes first).
func BenchmarkProbeReply(b *testing.B) {
	for _, c := range []struct{ name, rules string }{
		{"shortcut", "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -i eth0 -p udp -j ACCEPT\n"},
		{"walk", "-A FORWARD -i eth0 -p udp -j ACCEPT\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			rs, err := (&iptables.Loader{}).LoadString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" + c.rules + "COMMIT\n")
			if err != nil {
				b.Fatal(err)
			}
			e := New(Config{Rules: rs, FIB: testFIB(b), IPForward: true}, conntrack.DefaultConfig(), 1)
			p := mk(b, "udp 10.0.0.2:5000 > 192.168.1.2:53 iif eth0")
			orig := conntrack.Tuple{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
			f := e.Receive(p, 1e9, nil)
			ct, _, _ := e.CT.Lookup(orig, 1e9)
			b.ReportAllocs()
			for b.Loop() {
				if ok, where := e.ProbeReply(ct, orig, f, 2e9); !ok {
					b.Fatal(where)
				}
			}
		})
	}
}

// TestProbeReplyRandom: random rule sets from a pool of lines that may
// or may not touch the reply (state tests, addresses, devices, ports,
// marks, user chains, a masquerade): the probe's answer is what the
// engine does with the real reply, probeAccepts never says yes where
// the probe says no, and the hit counters do not move. Where the reply
// passed, ProbeOriginal's answer is what the engine does with the
// flow's next datagram (ESTABLISHED by then); a DNAT joins the
// masquerade among the sets' nat tables.
func TestProbeReplyRandom(t *testing.T) {
	pool := map[string][]string{
		"raw PREROUTING": {
			"-A PREROUTING -s 192.168.1.2/32 -p udp -j DROP",
			"-A PREROUTING -s 10.9.9.9/32 -j DROP",
			"-A PREROUTING -i eth1 -j ACCEPT",
		},
		"mangle PREROUTING": {
			"-A PREROUTING -m conntrack --ctstate ESTABLISHED -j ACCEPT",
			"-A PREROUTING -i eth1 -p udp -m udp --sport 53 -j DROP",
			"-A PREROUTING -j MARK --set-mark 7",
		},
		"mangle FORWARD": {
			"-A FORWARD -o eth0 -m conntrack --ctdir REPLY -j DROP",
			"-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
		},
		"mangle POSTROUTING": {
			"-A POSTROUTING -o eth0 -p udp -j DROP",
			"-A POSTROUTING -d 10.0.0.0/24 -j ACCEPT",
		},
		"filter FORWARD": {
			"-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			"-A FORWARD -m conntrack --ctstate INVALID -j DROP",
			"-A FORWARD -m conntrack --ctstate NEW -j ACCEPT",
			"-A FORWARD -i eth0 -j ACCEPT",
			"-A FORWARD -i eth1 -o eth0 -p udp -m udp --sport 53 -j DROP",
			"-A FORWARD -d 10.0.0.2/32 -j REJECT",
			"-A FORWARD -s 192.168.1.0/24 -j X",
			"-A FORWARD -j ACCEPT",
			"-A FORWARD -m conntrack --ctstate DNAT -j DROP",
			"-A FORWARD -m conntrack --ctstate SNAT -j DROP",
			"-A FORWARD -i eth0 -m conntrack --ctstate ESTABLISHED -j DROP",
			"-A FORWARD -d 192.168.1.3/32 -m state --state ESTABLISHED -j DROP",
		},
		"filter X": {
			"-A X -p udp -m udp --dport 5000 -j DROP",
			"-A X -j RETURN",
			"-A X -m conntrack --ctstate ESTABLISHED -j ACCEPT",
			"-A X -d 10.0.0.3/32 -j DROP",
		},
	}
	policies := []string{"ACCEPT", "DROP"}
	rng := uint64(0x9e3779b97f4a7c15)
	next := func(n int) int {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	pick := func(key string) string {
		var b strings.Builder
		lines := pool[key]
		for range next(3) {
			b.WriteString(lines[next(len(lines))] + "\n")
		}
		return b.String()
	}
	var shortcut, accepted, refused, origOK, origRefused int
	for i := range 1000 {
		rules := "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" + pick("raw PREROUTING") + "COMMIT\n" +
			"*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
			pick("mangle PREROUTING") + pick("mangle FORWARD") + pick("mangle POSTROUTING") + "COMMIT\n" +
			"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD " + policies[next(2)] + " [0:0]\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\n" +
			pick("filter FORWARD") + pick("filter X") + "COMMIT\n"
		switch next(4) {
		case 0:
			rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth1 -j MASQUERADE\nCOMMIT\n" + rules
		case 1:
			rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -d 192.168.1.2/32 -j DNAT --to-destination 192.168.1.3\nCOMMIT\n" + rules
		}
		if next(4) == 0 {
			// no mangle or raw rules: the shortcut's usual case
			rules = rules[strings.Index(rules, "*filter"):]
		}
		rs, err := (&iptables.Loader{Counters: true}).LoadString(rules)
		if err != nil {
			t.Fatalf("%v\n%s", err, rules)
		}
		e := New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), 1)
		p := mk(t, "udp 10.0.0.2:5000 > 192.168.1.2:53 iif eth0")
		orig := conntrack.Tuple{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
		f := e.Receive(p, 1e9, nil)
		if f.Kind != Forwarded {
			continue
		}
		ct, _, _ := e.CT.Lookup(orig, 1e9)
		var before, after strings.Builder
		rs.Save(&before, iptables.SaveOptions{Counters: true})
		ok, where := e.ProbeReply(ct, orig, f, 2e9)
		rs.Save(&after, iptables.SaveOptions{Counters: true})
		if before.String() != after.String() {
			t.Fatalf("set %d: the probe counted hits\n%s", i, rules)
		}
		if ct != nil && probeAccepts(e.cfg.Load(), f.Kind) {
			shortcut++
			if ok2, w := e.probe(e.cfg.Load(), ct, orig, f, 2e9); !ok2 {
				t.Fatalf("set %d: probeAccepts says yes, the probe %q\n%s", i, w, rules)
			}
		}
		r := orig
		if ct != nil {
			r = ct.Tuple(conntrack.Reply)
		} else {
			r = conntrack.Tuple{Src: orig.Dst, Dst: orig.Src, SrcPort: orig.DstPort, DstPort: orig.SrcPort, Proto: 17}
		}
		re := "udp " + addr4(r.Src).String() + ":" + itoa(r.SrcPort) + " > " + addr4(r.Dst).String() + ":" + itoa(r.DstPort) + " iif eth1"
		rp := mk(t, re)
		rf := e.Receive(rp, 2e9, nil)
		passed := rf.Kind == Forwarded && rf.OutIf == "eth0"
		if strings.HasSuffix(where, "(mark)") {
			// refused for what it does to the reply, not for a drop
			if rp.Mark == 0 {
				t.Fatalf("set %d: the probe saw a mark set, the reply has none\n%s", i, rules)
			}
			passed = false
		}
		if passed != ok {
			t.Fatalf("set %d: the reply %s: %v; the probe said %v %q\n%s", i, re, rf, ok, where, rules)
		}
		// the flow's next datagram, ESTABLISHED once a reply passed
		if rf.Kind == Forwarded && rf.OutIf == "eth0" {
			var b1, b2 strings.Builder
			rs.Save(&b1, iptables.SaveOptions{Counters: true})
			ook, owhere := e.ProbeOriginal(ct, orig, f, "eth0", 3e9)
			rs.Save(&b2, iptables.SaveOptions{Counters: true})
			if b1.String() != b2.String() {
				t.Fatalf("set %d: the original probe counted hits\n%s", i, rules)
			}
			np := mk(t, "udp 10.0.0.2:5000 > 192.168.1.2:53 iif eth0")
			nf := e.Receive(np, 3e9, nil)
			npassed := nf.Kind == Forwarded && nf.OutIf == f.OutIf
			if strings.HasSuffix(owhere, "(mark)") {
				if np.Mark == 0 {
					t.Fatalf("set %d: the original probe saw a mark set, the datagram has none\n%s", i, rules)
				}
				npassed = false
			}
			if npassed != ook {
				t.Fatalf("set %d: the next datagram: %v; the probe said %v %q\n%s", i, nf, ook, owhere, rules)
			}
			if ook {
				origOK++
			} else {
				origRefused++
			}
		}
		if ok {
			accepted++
		} else {
			refused++
		}
	}
	t.Logf("%d probed: %d accepted (%d by the shortcut), %d refused; the next datagram: %d accepted, %d refused", accepted+refused, accepted, shortcut, refused, origOK, origRefused)
	if shortcut == 0 || accepted == 0 || refused == 0 || origOK == 0 || origRefused == 0 {
		t.Errorf("the sets did not cover both answers and the shortcut: %d accepted, %d by the shortcut, %d refused", accepted, shortcut, refused)
	}
}

// TestProbeOriginal: the original direction's probe against what the
// engine does with the flow's next datagram once a reply has made the
// connection ESTABLISHED, and no hit counted.
func TestProbeOriginal(t *testing.T) {
	dnat := "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 192.168.1.2:5353\nCOMMIT\n"
	filter := func(policy, rules string) string {
		return "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD " + policy + " [0:0]\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\n" + rules + "COMMIT\n"
	}
	const (
		fwd    = "udp 10.0.0.2:5000 > 192.168.1.2:53 iif eth0"
		fwdRe  = "udp 192.168.1.2:53 > 10.0.0.2:5000 iif eth1"
		svc    = "udp 10.0.0.2:5000 > 10.0.0.1:53 iif eth0"
		svcRe  = "udp 192.168.1.2:5353 > 10.0.0.2:5000 iif eth1"
		local  = "udp 10.0.0.2:5000 > 10.0.0.1:99 iif eth0"
		locRe  = "udp 10.0.0.1:99 > 10.0.0.2:5000"
		replyX = "-A FORWARD -i eth1 -j ACCEPT\n"
	)
	for _, c := range []struct{ name, rules, orig, reply, want string }{
		{"established accepted", filter("DROP", "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -m conntrack --ctstate NEW -j ACCEPT\n"), fwd, fwdRe, ""},
		{"only new accepted", filter("DROP", replyX+"-A FORWARD -m conntrack --ctstate NEW -j ACCEPT\n"), fwd, fwdRe, "original: filter FORWARD policy"},
		{"established dropped", filter("ACCEPT", "-A FORWARD -i eth0 -m state --state ESTABLISHED -j DROP\n"), fwd, fwdRe, "original: filter FORWARD rule 1"},
		{"stateless", filter("DROP", replyX+"-A FORWARD -i eth0 -p udp -j ACCEPT\n"), fwd, fwdRe, ""},
		// the later datagrams reach FORWARD with the service's endpoint
		{"dnat, endpoint dropped", dnat + filter("ACCEPT", "-A FORWARD -i eth0 -d 192.168.1.2/32 -m conntrack --ctstate ESTABLISHED -j DROP\n"), svc, svcRe, "original: filter FORWARD rule 1"},
		{"dnat, service address", dnat + filter("ACCEPT", "-A FORWARD -i eth0 -d 10.0.0.1/32 -m conntrack --ctstate ESTABLISHED -j DROP\n"), svc, svcRe, ""},
		{"dnat, mangle before nat", dnat + "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -d 10.0.0.1/32 -m conntrack --ctstate ESTABLISHED -j DROP\nCOMMIT\n", svc, svcRe, "original: mangle PREROUTING rule 1"},
		{"local server", filter("ACCEPT", "-A INPUT -m conntrack --ctstate ESTABLISHED -p udp -m udp --dport 99 -j DROP\n"), local, locRe, "original: filter INPUT rule 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, rs, orig, f, ct := probeFlow(t, c.rules, c.orig)
			var before, after strings.Builder
			rs.Save(&before, iptables.SaveOptions{Counters: true})
			ok, where := e.ProbeOriginal(ct, orig, f, "eth0", 2e9)
			rs.Save(&after, iptables.SaveOptions{Counters: true})
			if ok != (c.want == "") || where != c.want {
				t.Errorf("probe: %v %q, want %q", ok, where, c.want)
			}
			if before.String() != after.String() {
				t.Errorf("the probe counted hits")
			}
			var rf Fate
			if f.Kind == Delivered {
				rf = e.Send(mk(t, c.reply), 2e9, nil)
			} else {
				rf = e.Receive(mk(t, c.reply), 2e9, nil)
			}
			if rf.Kind != Forwarded && rf.Kind != Sent {
				t.Fatalf("the reply did not pass: %v", rf)
			}
			nf := e.Receive(mk(t, c.orig), 3e9, nil)
			if passed := nf.Kind == f.Kind; passed != ok {
				t.Errorf("the next datagram: %v; the probe said %v %q", nf, ok, where)
			}
		})
	}
}
