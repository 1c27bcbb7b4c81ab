package iptables

import (
	"strconv"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestLiveCounters: matched rules and met policies count packets and
// skb->len bytes, without allocating; iptables-save -c prints them; a
// restore keeps the counters of what it leaves alone (--noflush, tables
// it does not name) and starts a flushed table's from zero.
func TestLiveCounters(t *testing.T) {
	const set = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\n-A FORWARD -p udp\nCOMMIT\n" +
		"*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
		"-A POSTROUTING -o eth1 -j MASQUERADE\nCOMMIT\n"
	rs, err := (&Loader{}).LoadString(set)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(spec string) *packet.Packet {
		sp, meta, err := packet.ParseSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		p := &packet.Packet{Data: packet.Build(sp), Meta: meta}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	web := mk("tcp 10.0.0.2:4000 > 10.0.1.2:80 syn len 20 iif eth0")
	dns := mk("udp 10.0.0.2:4000 > 10.0.1.2:53 len 12 iif eth0")
	var c Ctx
	run := func(rs *Ruleset, p *packet.Packet, n int) {
		for range n {
			c = Ctx{Pkt: p, Hook: netfilter.Forward}
			rs.Tables[Filter].Run(&c, nil)
		}
	}
	run(rs, web, 3)
	run(rs, dns, 2)
	if n := testing.AllocsPerRun(100, func() { run(rs, web, 1) }); n != 0 {
		t.Errorf("%v allocations per packet, want 0", n)
	}
	wl, dl := len(web.IP), len(dns.IP)
	save := func(rs *Ruleset) string {
		var b strings.Builder
		rs.Save(&b, SaveOptions{Counters: true, Table: "filter"})
		return b.String()
	}
	want := "*filter\n:INPUT ACCEPT [0:0]\n" +
		":FORWARD DROP [2:" + itoa(2*dl) + "]\n:OUTPUT ACCEPT [0:0]\n" +
		"[104:" + itoa(104*wl) + "] -A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\n" +
		"[2:" + itoa(2*dl) + "] -A FORWARD -p udp\nCOMMIT\n"
	if got := save(rs); got != want {
		t.Fatalf("iptables-save -c:\n%s\nwant\n%s", got, want)
	}
	// without -c only the chains' (policy) counters show
	var b strings.Builder
	rs.Save(&b, SaveOptions{Table: "filter"})
	if !strings.Contains(b.String(), ":FORWARD DROP [2:") || strings.Contains(b.String(), "[104:") {
		t.Errorf("iptables-save:\n%s", b.String())
	}

	// --noflush: the old rules and the FORWARD policy keep counting
	// from where they were; the new rule starts at zero
	nf, err := (&Loader{Base: rs, NoFlush: true}).LoadString("*filter\n-A FORWARD -p icmp -j ACCEPT\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	run(nf, web, 1)
	got := save(nf)
	if !strings.Contains(got, "[105:"+itoa(105*wl)+"] -A FORWARD -p tcp") || !strings.Contains(got, ":FORWARD DROP [2:") ||
		!strings.Contains(got, "[0:0] -A FORWARD -p icmp -j ACCEPT") {
		t.Errorf("after --noflush:\n%s", got)
	}
	// a flushing restore of filter: its counters start again; nat,
	// which the input does not name, is left alone with its counters
	c = Ctx{Pkt: web, Hook: netfilter.PostRouting}
	web.OutIf = "eth1"
	rs.Tables[Nat].Run(&c, nil)
	fl, err := (&Loader{Base: nf}).LoadString("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := save(fl); !strings.Contains(got, ":FORWARD DROP [0:0]\n") || !strings.Contains(got, "[0:0] -A FORWARD -p tcp") {
		t.Errorf("after a flushing restore:\n%s", got)
	}
	b.Reset()
	fl.Save(&b, SaveOptions{Counters: true, Table: "nat"})
	if !strings.Contains(b.String(), "[1:"+itoa(wl)+"] -A POSTROUTING -o eth1 -j MASQUERADE") {
		t.Errorf("nat, untouched by the restore, lost its counters:\n%s", b.String())
	}
	// a carried-over rule's counter is one counter, seen from both sets
	if got := save(rs); !strings.Contains(got, "[105:") {
		t.Errorf("old set:\n%s", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
