package nfqueue

import (
	"encoding/binary"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

const unitRules = `*mangle
:FORWARD ACCEPT [0:0]
-A FORWARD -p udp -m udp --dport 53 -j MARK --set-xmark 0x7/0xffffffff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.10:8080
-A POSTROUTING -o eth1 -p tcp -m tcp --dport 443 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 22 -j DROP
COMMIT
`

// RouterFIB: lo 1, eth0 2 (10.0.0.1/24), eth1 3 (192.168.1.1/24, default).
func newDecider(t *testing.T) *Decider {
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := (&iptables.Loader{}).LoadString(unitRules)
	if err != nil {
		t.Fatal(err)
	}
	eng := datapath.New(datapath.Config{Rules: rs, FIB: fib, IPForward: true}, conntrack.DefaultConfig(), 1)
	var clock int64
	return &Decider{Eng: eng, Name: fib.LinkName, Now: func() int64 { clock += 1000; return clock }}
}

func ip4(a, b, c, d byte) uint32 { return uint32(a)<<24 | uint32(b)<<16 | uint32(c)<<8 | uint32(d) }

func TestDecide(t *testing.T) {
	d := newDecider(t)
	client := ip4(10, 0, 0, 2)
	cases := []struct {
		name    string
		hook    netfilter.Hook
		spec    packet.Spec
		verdict netfilter.Verdict
		mark    uint32
		setMark bool
		rewrite bool
		dst     uint32 // after, when rewritten
		src     uint32
	}{
		{name: "forward accept", hook: netfilter.Forward,
			spec: packet.Spec{Src: client, Dst: ip4(8, 8, 8, 8), Proto: packet.ProtoTCP, SrcPort: 1000, DstPort: 80, TCPFlags: 0x02, TTL: 63}, verdict: netfilter.Accept},
		{name: "forward drop", hook: netfilter.Forward,
			spec: packet.Spec{Src: client, Dst: ip4(8, 8, 8, 8), Proto: packet.ProtoTCP, SrcPort: 1001, DstPort: 22, TCPFlags: 0x02, TTL: 63}, verdict: netfilter.Drop},
		{name: "forward mark", hook: netfilter.Forward,
			spec: packet.Spec{Src: client, Dst: ip4(8, 8, 8, 8), Proto: packet.ProtoUDP, SrcPort: 1002, DstPort: 53, TTL: 63}, verdict: netfilter.Accept, mark: 7, setMark: true},
		{name: "forward masquerade", hook: netfilter.Forward,
			spec:    packet.Spec{Src: client, Dst: ip4(8, 8, 8, 8), Proto: packet.ProtoTCP, SrcPort: 1003, DstPort: 443, TCPFlags: 0x02, TTL: 63},
			verdict: netfilter.Accept, rewrite: true, src: ip4(192, 168, 1, 1), dst: ip4(8, 8, 8, 8)},
		{name: "prerouting dnat", hook: netfilter.PreRouting,
			spec:    packet.Spec{Src: client, Dst: ip4(10, 96, 0, 10), Proto: packet.ProtoTCP, SrcPort: 1004, DstPort: 80, TCPFlags: 0x02, TTL: 64},
			verdict: netfilter.Accept, rewrite: true, src: client, dst: ip4(192, 168, 1, 10)},
		// TTL 1 at FORWARD arrived with 2: forwarded, not expired
		{name: "forward ttl 1", hook: netfilter.Forward,
			spec: packet.Spec{Src: client, Dst: ip4(8, 8, 8, 8), Proto: packet.ProtoTCP, SrcPort: 1005, DstPort: 80, TCPFlags: 0x02, TTL: 1}, verdict: netfilter.Accept},
		{name: "prerouting ttl 1", hook: netfilter.PreRouting,
			spec: packet.Spec{Src: client, Dst: ip4(8, 8, 8, 8), Proto: packet.ProtoTCP, SrcPort: 1006, DstPort: 80, TCPFlags: 0x02, TTL: 1}, verdict: netfilter.Drop},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := packet.Build(c.spec)
			q := Queued{ID: uint32(i + 1), Hook: c.hook, InDev: 2, OutDev: 3, Payload: b}
			dec := d.Decide(&q)
			if dec.Verdict != c.verdict || dec.SetMark != c.setMark || (c.setMark && dec.Mark != c.mark) {
				t.Fatalf("verdict %d mark %#x (set %v), want %d %#x (%v); fate %v", dec.Verdict, dec.Mark, dec.SetMark, c.verdict, c.mark, c.setMark, dec.Fate)
			}
			if dec.Verdict == netfilter.Drop {
				return
			}
			if (dec.Payload != nil) != c.rewrite {
				t.Fatalf("rewritten %v, want %v", dec.Payload != nil, c.rewrite)
			}
			if dec.Batchable() != (!c.rewrite && !c.setMark) {
				t.Errorf("batchable %v", dec.Batchable())
			}
			if dec.RouteMismatch {
				t.Errorf("route mismatch: %v", dec.Fate)
			}
			if !c.rewrite {
				return
			}
			p := packet.Packet{Data: dec.Payload}
			if err := p.Decode(); err != nil {
				t.Fatal(err)
			}
			if p.Src != c.src || p.Dst != c.dst {
				t.Errorf("rewritten to %08x > %08x, want %08x > %08x", p.Src, p.Dst, c.src, c.dst)
			}
			if p.IP.TTL() != c.spec.TTL {
				t.Errorf("TTL %d, want the queued %d (the kernel decrements)", p.IP.TTL(), c.spec.TTL)
			}
			if !p.TransportChecksumOK() {
				t.Errorf("bad transport checksum")
			}
		})
	}
	if dec := d.Decide(&Queued{ID: 99, Hook: netfilter.Forward, Payload: []byte{0x45, 0, 0}}); dec.Verdict != netfilter.Drop || !dec.Malformed {
		t.Errorf("malformed: %+v", dec)
	}
}

func TestVerdictMsg(t *testing.T) {
	m := appendVerdict([]byte{0xaa}, 7, 0x01020304, netfilter.Accept, false, true, 0x42, []byte{0x45})
	if m[0] != 0xaa {
		t.Fatalf("the buffer's first byte was overwritten")
	}
	m = m[1:]
	if l := binary.NativeEndian.Uint32(m); int(l) != len(m) || l != 16+32 {
		t.Errorf("length %d of %d bytes", l, len(m))
	}
	if typ, flags := binary.NativeEndian.Uint16(m[4:]), binary.NativeEndian.Uint16(m[6:]); typ != 3<<8|1 || flags != 1 {
		t.Errorf("type %#x flags %#x", typ, flags)
	}
	want := []byte{
		2, 0, 0, 7, // nfgenmsg: AF_INET, v0, queue 7
		12, 0, 2, 0, 0, 0, 0, 1, 1, 2, 3, 4, // NFQA_VERDICT_HDR
		8, 0, 3, 0, 0, 0, 0, 0x42, // NFQA_MARK
		5, 0, 10, 0, 0x45, 0, 0, 0, // NFQA_PAYLOAD, padded
	}
	if string(m[16:]) != string(want) {
		t.Errorf("data\n% x\nwant\n% x", m[16:], want)
	}
	b := appendVerdict(nil, 7, 9, netfilter.Accept, true, false, 0, nil)
	if typ := binary.NativeEndian.Uint16(b[4:]); typ != 3<<8|3 || len(b) != 16+16 {
		t.Errorf("batch: type %#x, % x", typ, b)
	}
	// two messages back to back: the second starts where the first
	// says it ends
	two := appendVerdict(appendVerdict(nil, 1, 2, netfilter.Drop, false, false, 0, []byte{1, 2, 3, 4, 5, 6}), 1, 3, netfilter.Accept, true, false, 0, nil)
	l := binary.NativeEndian.Uint32(two)
	if l != 16+16+12 || binary.NativeEndian.Uint32(two[l:]) != 32 || len(two) != int(l)+32 {
		t.Errorf("two messages: % x", two)
	}
	buf := make([]byte, 0, 4096)
	p := make([]byte, 1500)
	if n := testing.AllocsPerRun(100, func() {
		buf = appendVerdict(buf[:0], 1, 2, netfilter.Accept, false, true, 3, p)
	}); n != 0 {
		t.Errorf("appendVerdict into a buffer with room: %v allocations", n)
	}
}

// TestInstallsAsked: a flow asks for its install once within
// installWindow; another flow, and the same one after the window, may.
func TestInstallsAsked(t *testing.T) {
	a := new(installsAsked)
	f := conntrack.Tuple{Src: 0x0a000001, Dst: 0x0a000002, SrcPort: 1000, DstPort: 53, Proto: 17}
	g := f
	g.SrcPort++
	if !a.ask(f, 1) || a.ask(f, 2) || a.ask(f, installWindow) {
		t.Errorf("the same flow within the window")
	}
	if !a.ask(g, 3) {
		t.Errorf("another flow")
	}
	if !a.ask(f, 1+installWindow) {
		t.Errorf("the same flow after the window")
	}
	if n := testing.AllocsPerRun(100, func() { a.ask(f, 5) }); n != 0 {
		t.Errorf("ask allocates %v times", n)
	}
}
