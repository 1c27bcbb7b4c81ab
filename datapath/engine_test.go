package datapath

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/packet"
	"github.com/uswitch-lab/uswitch/datapath/route"
	"github.com/uswitch-lab/uswitch/datapath/rules"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ad(s string) netip.Addr    { return netip.MustParseAddr(s) }

// router: lo, eth0 10.0.0.1/24 (clients), eth1 192.168.1.1/24 (servers),
// forwarding on.
func testFIB(t testing.TB) *route.FIB {
	t.Helper()
	cfg := route.Config{
		Links: []route.Link{{Name: "lo", Index: 1, Up: true, Loopback: true}, {Name: "eth0", Index: 2, Up: true}, {Name: "eth1", Index: 3, Up: true}},
		Addrs: []route.Addr{
			{Ifindex: 1, Dev: "lo", Local: ad("127.0.0.1"), Prefix: pfx("127.0.0.0/8"), Scope: route.ScopeHost},
			{Ifindex: 2, Dev: "eth0", Local: ad("10.0.0.1"), Prefix: pfx("10.0.0.0/24"), Broadcast: ad("10.0.0.255")},
			{Ifindex: 3, Dev: "eth1", Local: ad("192.168.1.1"), Prefix: pfx("192.168.1.0/24"), Broadcast: ad("192.168.1.255")},
		},
		Routes: []route.Route{
			{Table: 255, Type: route.Local, Dst: pfx("127.0.0.0/8"), Scope: route.ScopeHost, PrefSrc: ad("127.0.0.1"), Nexthops: []route.Nexthop{{Dev: "lo"}}},
			{Table: 255, Type: route.Local, Dst: pfx("127.0.0.1/32"), Scope: route.ScopeHost, PrefSrc: ad("127.0.0.1"), Nexthops: []route.Nexthop{{Dev: "lo"}}},
			{Table: 255, Type: route.Local, Dst: pfx("10.0.0.1/32"), Scope: route.ScopeHost, PrefSrc: ad("10.0.0.1"), Nexthops: []route.Nexthop{{Dev: "eth0"}}},
			{Table: 255, Type: route.Broadcast, Dst: pfx("10.0.0.255/32"), Scope: route.ScopeLink, PrefSrc: ad("10.0.0.1"), Nexthops: []route.Nexthop{{Dev: "eth0"}}},
			{Table: 255, Type: route.Local, Dst: pfx("192.168.1.1/32"), Scope: route.ScopeHost, PrefSrc: ad("192.168.1.1"), Nexthops: []route.Nexthop{{Dev: "eth1"}}},
			{Table: 255, Type: route.Broadcast, Dst: pfx("192.168.1.255/32"), Scope: route.ScopeLink, PrefSrc: ad("192.168.1.1"), Nexthops: []route.Nexthop{{Dev: "eth1"}}},
			{Table: 254, Type: route.Unicast, Dst: pfx("10.0.0.0/24"), Scope: route.ScopeLink, PrefSrc: ad("10.0.0.1"), Protocol: "kernel", Nexthops: []route.Nexthop{{Dev: "eth0"}}},
			{Table: 254, Type: route.Unicast, Dst: pfx("192.168.1.0/24"), Scope: route.ScopeLink, PrefSrc: ad("192.168.1.1"), Protocol: "kernel", Nexthops: []route.Nexthop{{Dev: "eth1"}}},
		},
		All: route.DevConf{Forwarding: true, SendRedirects: true},
		Dev: map[string]route.DevConf{"eth0": {Forwarding: true}, "eth1": {Forwarding: true}, "lo": {Forwarding: true}},
	}
	f, err := route.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const testRules = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -j TRACE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2:8080
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:SVC - [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth0 -j SVC
-A SVC -d 192.168.1.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT
-A SVC -j RETURN
COMMIT
`

func testEngine(t testing.TB) *Engine {
	t.Helper()
	rs, err := (&rules.Loader{}).LoadString(testRules)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), 1)
}

func mk(t testing.TB, spec string) *packet.Packet {
	t.Helper()
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

func TestDNATMasqueradeFlow(t *testing.T) {
	e := testEngine(t)
	tr := &Tracer{}
	syn := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0")
	f := e.Receive(syn, 1e9, tr)
	if f.Kind != Forwarded || f.OutIf != "eth1" {
		t.Fatalf("fate %v\n%s", f, strings.Join(tr.Lines, "\n"))
	}
	if syn.Dst != 0xc0a80102 || syn.DstPort != 8080 || syn.Src != 0xc0a80101 || syn.IP.TTL() != 63 || !syn.TransportChecksumOK() {
		t.Fatalf("forwarded %08x:%d > %08x:%d ttl %d", syn.Src, syn.SrcPort, syn.Dst, syn.DstPort, syn.IP.TTL())
	}
	text := strings.Join(tr.Lines, "\n")
	for _, want := range []string{
		"raw:PREROUTING:rule:0x3:CONTINUE  -4 -t raw -A PREROUTING -p tcp -j TRACE",
		"nat:PREROUTING:rule:",
		"filter:FORWARD:rule:",
		"JUMP:SVC",
		"filter:SVC:rule:",
		"nat:POSTROUTING:rule:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("trace lacks %q:\n%s", want, text)
		}
	}
	// the reply comes back to the masqueraded address and port
	synack := mk(t, "tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7 iif eth1")
	f = e.Receive(synack, 1e9+1, nil)
	if f.Kind != Forwarded || f.OutIf != "eth0" {
		t.Fatalf("reply fate %v", f)
	}
	if synack.Src != 0x0a000001 || synack.SrcPort != 80 || synack.Dst != 0x0a000002 || synack.DstPort != 40000 || !synack.TransportChecksumOK() {
		t.Fatalf("reply %08x:%d > %08x:%d", synack.Src, synack.SrcPort, synack.Dst, synack.DstPort)
	}
}

func TestForwardPolicyDrop(t *testing.T) {
	e := testEngine(t)
	tr := &Tracer{All: true}
	p := mk(t, "udp 10.0.0.2:5000 > 192.168.1.9:53 iif eth0")
	f := e.Receive(p, 1e9, tr)
	if f.Kind != Dropped || f.By != "filter:FORWARD:policy" {
		t.Fatalf("fate %v\n%s", f, strings.Join(tr.Lines, "\n"))
	}
	if !strings.Contains(strings.Join(tr.Lines, "\n"), "filter:SVC:rule:0x") {
		t.Errorf("no trace of the SVC chain:\n%s", strings.Join(tr.Lines, "\n"))
	}
}

func TestHostAnswers(t *testing.T) {
	e := testEngine(t)
	for _, c := range []struct {
		spec   string
		answer string // the answer's type
	}{
		{"icmp 10.0.0.2 > 10.0.0.1 type 8 id 5 seq 1 iif eth0", "echo"},
		{"udp 10.0.0.2:5000 > 10.0.0.1:53 iif eth0", "unreach"},
		{"tcp 10.0.0.2:5000 > 192.168.1.1:22 syn seq 9 iif eth0", "rst"},
	} {
		p := mk(t, c.spec)
		f := e.Receive(p, 1e9, nil)
		if f.Kind != Delivered || len(f.Answers) != 1 {
			t.Fatalf("%s: fate %v, %d answers", c.spec, f, len(f.Answers))
		}
		a := f.Answers[0]
		if a.Fate.Kind != Sent || a.Fate.OutIf != "eth0" || a.Pkt.Dst != 0x0a000002 || !a.Pkt.TransportChecksumOK() {
			t.Fatalf("%s: answer %v to %08x", c.spec, a.Fate, a.Pkt.Dst)
		}
		switch c.answer {
		case "echo":
			if a.Pkt.ICMPType != packet.ICMPEchoReply || a.Pkt.ICMPID != 5 {
				t.Errorf("echo reply %+v", a.Pkt)
			}
		case "unreach":
			if a.Pkt.ICMPType != packet.ICMPDestUnreach || a.Pkt.ICMPCode != 3 || a.Pkt.Src != 0x0a000001 {
				t.Errorf("port unreachable %+v", a.Pkt)
			}
		case "rst":
			if a.Pkt.TCPFlags != packet.TCPRst|packet.TCPAck || packet.TCP(a.Pkt.L4).Ack() != 10 || a.Pkt.Src != 0xc0a80101 {
				t.Errorf("rst %+v", a.Pkt)
			}
		}
	}
}
