package datapath

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

func testFIB(t testing.TB) *route.FIB {
	t.Helper()
	f, err := datapathtest.RouterFIB()
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
	rs, err := (&iptables.Loader{}).LoadString(testRules)
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
	if f.Kind != Dropped || f.By() != "filter:FORWARD:policy" {
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

// established sets up a DNAT+MASQUERADE TCP flow through the router and
// returns a data packet of the client's (as bytes, to copy per run).
func established(t testing.TB, e *Engine) []byte {
	t.Helper()
	for _, s := range []struct {
		spec string
		out  string
	}{
		{"tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0", "eth1"},
		{"tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7 iif eth1", "eth0"},
		{"tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2 iif eth0", "eth1"},
	} {
		if f := e.Receive(mk(t, s.spec), 1e9, nil); f.Kind != Forwarded || f.OutIf != s.out {
			t.Fatalf("%s: %v", s.spec, f)
		}
	}
	sp, _, _ := packet.ParseSpec("tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2 psh len 64 iif eth0")
	return packet.Build(sp)
}

// TestEstablishedNoAllocs: a packet of an established, NATed flow goes
// through every hook without allocating.
func TestEstablishedNoAllocs(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(fmt.Sprintf("flowcache=%v", cached), func(t *testing.T) { establishedNoAllocs(t, cached) })
	}
}

// establishedRun turns e's flow cache off unless cached, establishes
// the test connection and returns a run that sends its next packet
// (failing t unless it is forwarded, from the flow cache as asked) and
// the packet run decodes into.
func establishedRun(t *testing.T, e *Engine, cached bool) (func(), *packet.Packet) {
	if !cached {
		cfg := e.Config()
		cfg.NoFlowCache = true
		e.Swap(cfg)
	}
	tmpl := established(t, e)
	buf := make([]byte, len(tmpl))
	p := &packet.Packet{}
	run := func() {
		copy(buf, tmpl)
		*p = packet.Packet{Data: buf, Meta: packet.Meta{InIf: "eth0"}}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		if f := e.Receive(p, 2e9, nil); f.Kind != Forwarded || f.FlowCached != cached {
			t.Fatalf("fate %v, from the flow cache %v", f, f.FlowCached)
		}
	}
	return run, p
}

func establishedNoAllocs(t *testing.T, cached bool) {
	e := testEngine(t)
	run, p := establishedRun(t, e, cached)
	// the handshake's last packet recorded the flow
	run()
	if p.Dst != 0xc0a80102 || p.DstPort != 8080 || p.Src != 0xc0a80101 {
		t.Fatalf("not translated: %08x:%d > %08x:%d", p.Src, p.SrcPort, p.Dst, p.DstPort)
	}
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Fatalf("established packet allocates %v times", n)
	}
}

// TestIfindex: a reader's input index is taken when it is the
// configuration's for the name and ignored when it is not (a stale one
// gives the same fate as none); a forwarded packet's fate carries its
// output device's index.
func TestIfindex(t *testing.T) {
	e := testEngine(t)
	fib := e.Config().FIB
	eth0, eth1 := fib.Ifindex("eth0"), fib.Ifindex("eth1")
	if eth0 == 0 || eth1 == 0 || eth0 == eth1 {
		t.Fatalf("test FIB: eth0 %d, eth1 %d", eth0, eth1)
	}
	for _, idx := range []int{0, eth0, eth1, 99} {
		p := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0")
		p.InIndex = idx
		f := e.Receive(p, 1e9, nil)
		if f.Kind != Forwarded || f.OutIf != "eth1" || f.OutIndex != eth1 || len(f.Answers) != 0 {
			t.Errorf("InIndex %d: fate %v, out index %d, %d answers; want forwarded out eth1 (%d), no redirect", idx, f, f.OutIndex, len(f.Answers), eth1)
		}
	}
}
