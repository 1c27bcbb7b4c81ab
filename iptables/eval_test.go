package iptables

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// Tests of the matches' Eval: each case loads a one-rule table ("-A
// CHAIN <rule> -j ACCEPT" under a DROP policy) and runs a built packet
// through Table.Run; the verdict says whether the rule matched.

// evalEnv is a fake Env with a settable clock, a seeded LCG, fixed route
// types and a fixed reverse-path answer.
type evalEnv struct {
	now   int64
	rnd   uint32
	types map[uint32]uint8
	rp    bool
}

func (e *evalEnv) AddrType(addr uint32, dev string) uint8 {
	if t, ok := e.types[addr]; ok && (dev == "" || dev == "eth0") {
		return t
	}
	return 1 // RTN_UNICAST
}
func (e *evalEnv) Now() int64 { return e.now }
func (e *evalEnv) Rand32() uint32 {
	e.rnd = e.rnd*1664525 + 1013904223
	return e.rnd
}
func (e *evalEnv) ReversePath(src, dst uint32, inIf string, mark uint32, tos uint8, loose, validMark, acceptLocal bool) bool {
	return e.rp || loose
}

func evIP(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.BigEndian.Uint32(a[:])
}

// evPkt builds and decodes a packet; mod adjusts its bytes or metadata.
func evPkt(t testing.TB, s packet.Spec, mod func(p *packet.Packet)) *packet.Packet {
	if s.Src == 0 {
		s.Src = evIP("10.0.0.1")
	}
	if s.Dst == 0 {
		s.Dst = evIP("10.0.0.2")
	}
	p := &packet.Packet{Data: packet.Build(s)}
	p.InIf = "eth0"
	if mod != nil {
		mod(p)
	}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return p
}

var evSets = func() Sets {
	in := `create ips hash:ip family inet
add ips 10.0.0.1
add ips 192.168.5.0/30
create nets hash:net family inet counters
add nets 10.0.0.0/8 packets 0 bytes 0
add nets 10.9.0.0/16 nomatch packets 0 bytes 0
create ipport hash:ip,port family inet
add ipport 10.0.0.2,tcp:80
add ipport 10.0.0.2,udp:53
add ipport 10.0.0.2,icmp:8/0
create netport hash:net,port family inet
add netport 10.0.0.0/24,tcp:22
create ports bitmap:port range 0-1024
add ports 80
create both list:set
add both ipport
add both ips
`
	s, err := ParseIPSetSave(strings.NewReader(in), "test")
	if err != nil {
		panic(err)
	}
	return s
}()

// evTable loads one rule into table tbl, chain ch.
func evTable(t testing.TB, tbl, ch, rule string) *Table {
	in := "*" + tbl + "\n:" + ch + " DROP [0:0]\n-A " + ch + " " + rule + " -j ACCEPT\nCOMMIT\n"
	ld := &Loader{Sets: evSets}
	rs, err := ld.LoadString(in)
	if err != nil {
		t.Fatalf("%s: %v", rule, err)
	}
	id, _ := ParseTable(tbl)
	return rs.Tables[id]
}

func evHook(ch string) netfilter.Hook {
	for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
		if h.String() == ch {
			return h
		}
	}
	panic(ch)
}

// ctOf tracks p (and, with reply, a reply first) in a fresh table and
// returns its Ref.
func ctOf(t testing.TB, p *packet.Packet, reply bool) conntrack.Ref {
	tab := conntrack.NewTable(conntrack.DefaultConfig(), 1)
	q := p.Clone()
	r, _ := tab.In(q, 0, netfilter.PreRouting, 0)
	r, _ = tab.Confirm(r, 0)
	if !reply {
		return r
	}
	// the answer to p
	rs := packet.Spec{Src: p.Dst, Dst: p.Src, Proto: p.Proto, SrcPort: p.DstPort, DstPort: p.SrcPort,
		TCPFlags: packet.TCPSyn | packet.TCPAck}
	rp := evPkt(t, rs, nil)
	rr, _ := tab.In(rp, 0, netfilter.PreRouting, 0)
	return rr
}

type evCase struct {
	rule    string
	spec    packet.Spec
	mod     func(p *packet.Packet)
	ct      func(t testing.TB, p *packet.Packet) conntrack.Ref
	want    bool
	hotdrop bool
	chain   string // default INPUT
	table   string // default filter
}

var (
	tcpSyn  = packet.Spec{Proto: packet.ProtoTCP, SrcPort: 1234, DstPort: 80, TCPFlags: packet.TCPSyn}
	tcpAck  = packet.Spec{Proto: packet.ProtoTCP, SrcPort: 1234, DstPort: 80, TCPFlags: packet.TCPAck}
	udp53   = packet.Spec{Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53}
	ping    = packet.Spec{Proto: packet.ProtoICMP, ICMPType: 8}
	unreach = packet.Spec{Proto: packet.ProtoICMP, ICMPType: 3, ICMPCode: 3}
)

// fragment makes the packet a non-first fragment (offset 8 units).
func fragment(off uint16) func(p *packet.Packet) {
	return func(p *packet.Packet) {
		binary.BigEndian.PutUint16(p.Data[6:], off)
		packet.IPv4(p.Data).SetChecksum()
	}
}

// truncate cuts the packet to n bytes of transport header.
func truncate(n int) func(p *packet.Packet) {
	return func(p *packet.Packet) {
		p.Data = p.Data[:20+n]
		binary.BigEndian.PutUint16(p.Data[2:], uint16(20+n))
		packet.IPv4(p.Data).SetChecksum()
	}
}

func meta(f func(m *packet.Meta)) func(p *packet.Packet) {
	return func(p *packet.Packet) { f(&p.Meta) }
}

func newCT(t testing.TB, p *packet.Packet) conntrack.Ref   { return ctOf(t, p, false) }
func replyCT(t testing.TB, p *packet.Packet) conntrack.Ref { return ctOf(t, p, true) }
func untracked(testing.TB, *packet.Packet) conntrack.Ref   { return conntrack.Untracked }

// tcpWithOpts is tcpSyn carrying TCP options opts (doff adjusted).
func tcpWithOpts(opts ...byte) func(p *packet.Packet) {
	return func(p *packet.Packet) {
		d := append([]byte(nil), p.Data[:40]...)
		d = append(d, opts...)
		d[32] = byte((20+len(opts))/4) << 4
		binary.BigEndian.PutUint16(d[2:], uint16(len(d)))
		packet.IPv4(d).SetChecksum()
		p.Data = d
	}
}

// sctpPkt builds an SCTP packet with the given chunks (type, flags, len).
func sctpPkt(chunks ...[3]int) func(p *packet.Packet) {
	return func(p *packet.Packet) {
		d := append([]byte(nil), p.Data[:20]...)
		d[9] = packet.ProtoSCTP
		hdr := make([]byte, 12)
		binary.BigEndian.PutUint16(hdr, 5000)
		binary.BigEndian.PutUint16(hdr[2:], 80)
		d = append(d, hdr...)
		for _, c := range chunks {
			ch := make([]byte, (c[2]+3)&^3)
			if len(ch) < 4 {
				ch = make([]byte, 4)
			}
			ch[0], ch[1] = byte(c[0]), byte(c[1])
			binary.BigEndian.PutUint16(ch[2:], uint16(c[2]))
			d = append(d, ch...)
		}
		binary.BigEndian.PutUint16(d[2:], uint16(len(d)))
		packet.IPv4(d).SetChecksum()
		p.Data = d
	}
}

var evCases = []evCase{
	// tcp (native form: no hotdrop) and xt form (--tcp-option)
	{rule: "-p tcp --dport 80", spec: tcpSyn, want: true},
	{rule: "-p tcp --dport 81:90", spec: tcpSyn},
	{rule: "-p tcp ! --dport 80", spec: tcpSyn},
	{rule: "-p tcp ! --dport 81", spec: tcpSyn, want: true},
	{rule: "-p tcp --sport 1000:2000", spec: tcpSyn, want: true},
	{rule: "-p tcp ! --sport 1000:2000", spec: tcpSyn},
	{rule: "-p tcp --syn", spec: tcpSyn, want: true},
	{rule: "-p tcp --syn", spec: tcpAck},
	{rule: "-p tcp ! --syn", spec: tcpAck, want: true},
	{rule: "-p tcp --tcp-flags SYN,ACK ACK", spec: tcpAck, want: true},
	{rule: "-p tcp ! --tcp-flags SYN,ACK ACK", spec: tcpAck},
	{rule: "-p tcp --dport 80", spec: tcpSyn, mod: fragment(8)},
	{rule: "-p tcp --dport 80", spec: tcpSyn, mod: truncate(3)},
	{rule: "-p tcp --dport 80", spec: tcpSyn, mod: truncate(4), want: true},
	{rule: "-p tcp --tcp-option 2", spec: tcpSyn, mod: tcpWithOpts(2, 4, 5, 0xb4), want: true},
	{rule: "-p tcp --tcp-option 3", spec: tcpSyn, mod: tcpWithOpts(1, 2, 4, 5, 0xb4, 0, 0, 0)},
	{rule: "-p tcp ! --tcp-option 3", spec: tcpSyn, mod: tcpWithOpts(2, 4, 5, 0xb4), want: true},
	{rule: "-p tcp ! --tcp-option 2", spec: tcpSyn, mod: tcpWithOpts(2, 4, 5, 0xb4)},
	{rule: "-p tcp --tcp-option 2", spec: tcpSyn, mod: truncate(10), hotdrop: true},
	{rule: "-p tcp --tcp-option 2", spec: tcpSyn, mod: fragment(1), hotdrop: true},
	{rule: "-p tcp --tcp-option 2", spec: tcpSyn, mod: fragment(2)},
	// udp
	{rule: "-p udp --dport 53", spec: udp53, want: true},
	{rule: "-p udp ! --dport 53", spec: udp53},
	{rule: "-p udp --sport 5000", spec: udp53, want: true},
	{rule: "-p udp ! --sport 5000", spec: udp53},
	{rule: "-p udp -m udp", spec: udp53, mod: truncate(6), hotdrop: true},
	{rule: "-p udp -m udp", spec: udp53, want: true},
	// icmp
	{rule: "-p icmp --icmp-type echo-request", spec: ping, want: true},
	{rule: "-p icmp ! --icmp-type echo-request", spec: ping},
	{rule: "-p icmp --icmp-type port-unreachable", spec: unreach, want: true},
	{rule: "-p icmp --icmp-type host-unreachable", spec: unreach},
	{rule: "-p icmp --icmp-type any", spec: unreach, want: true},
	{rule: "-p icmp --icmp-type 3", spec: unreach, want: true},
	{rule: "-p icmp --icmp-type 8", spec: ping, mod: truncate(4), hotdrop: true},
	{rule: "-p icmp --icmp-type any", spec: ping, mod: fragment(3)},
	// sctp
	{rule: "-p sctp --dport 80", spec: tcpSyn, mod: sctpPkt([3]int{1, 0, 20}), want: true},
	{rule: "-p sctp ! --dport 80", spec: tcpSyn, mod: sctpPkt([3]int{1, 0, 20})},
	{rule: "-p sctp --sport 5000", spec: tcpSyn, mod: sctpPkt([3]int{1, 0, 20}), want: true},
	{rule: "-p sctp --chunk-types any INIT", spec: tcpSyn, mod: sctpPkt([3]int{1, 0, 20}), want: true},
	{rule: "-p sctp --chunk-types any DATA", spec: tcpSyn, mod: sctpPkt([3]int{1, 0, 20})},
	{rule: "-p sctp ! --chunk-types any DATA", spec: tcpSyn, mod: sctpPkt([3]int{1, 0, 20}), want: true},
	{rule: "-p sctp --chunk-types all DATA,SACK", spec: tcpSyn, mod: sctpPkt([3]int{0, 0, 8}, [3]int{3, 0, 8}), want: true},
	{rule: "-p sctp --chunk-types all DATA,SACK", spec: tcpSyn, mod: sctpPkt([3]int{0, 0, 8})},
	{rule: "-p sctp --chunk-types only DATA", spec: tcpSyn, mod: sctpPkt([3]int{0, 0, 8}, [3]int{3, 0, 8})},
	{rule: "-p sctp --chunk-types only DATA:E", spec: tcpSyn, mod: sctpPkt([3]int{0, 1, 8}), want: true},
	{rule: "-p sctp --chunk-types only DATA:e", spec: tcpSyn, mod: sctpPkt([3]int{0, 1, 8})},
	{rule: "-p sctp --chunk-types any INIT", spec: tcpSyn, mod: sctpPkt([3]int{1, 0, 0}), hotdrop: true},
	// multiport
	{rule: "-p tcp -m multiport --dports 22,80:90", spec: tcpSyn, want: true},
	{rule: "-p tcp -m multiport --dports 22,443", spec: tcpSyn},
	{rule: "-p tcp -m multiport ! --dports 22,443", spec: tcpSyn, want: true},
	{rule: "-p tcp -m multiport --sports 1234", spec: tcpSyn, want: true},
	{rule: "-p tcp -m multiport --ports 1234", spec: tcpAck, want: true},
	{rule: "-p tcp -m multiport ! --ports 80", spec: tcpAck},
	{rule: "-p tcp -m multiport --dports 80", spec: tcpSyn, mod: fragment(4)},
	{rule: "-p tcp -m multiport --dports 80", spec: tcpSyn, mod: truncate(2), hotdrop: true},
	// comment
	{rule: "-m comment --comment hi", spec: tcpSyn, want: true},
	// mark
	{rule: "-m mark --mark 0x5", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.Mark = 5 }), want: true},
	{rule: "-m mark --mark 0x1/0x1", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.Mark = 4 })},
	{rule: "-m mark ! --mark 0x1/0x1", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.Mark = 4 }), want: true},
	// connmark
	{rule: "-m connmark --mark 0", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m connmark ! --mark 0", spec: tcpSyn, ct: newCT},
	{rule: "-m connmark ! --mark 1", spec: tcpSyn, ct: untracked},
	// conntrack / state
	{rule: "-m conntrack --ctstate NEW", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctstate ESTABLISHED", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack ! --ctstate ESTABLISHED", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctstate ESTABLISHED", spec: tcpSyn, ct: replyCT, want: true},
	{rule: "-m state --state NEW", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m state ! --state NEW", spec: tcpSyn, ct: newCT},
	{rule: "-m state --state INVALID", spec: tcpSyn, want: true},
	{rule: "-m conntrack --ctstate UNTRACKED", spec: tcpSyn, ct: untracked, want: true},
	{rule: "-m conntrack --ctstate UNTRACKED --ctproto udp", spec: tcpSyn, ct: untracked, want: true}, // the no-ct quirk
	{rule: "-m conntrack --ctproto tcp", spec: tcpSyn, ct: untracked},                                 // no ct, no --ctstate
	{rule: "-m conntrack --ctproto tcp", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack ! --ctproto tcp", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack --ctorigsrc 10.0.0.0/24", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack ! --ctorigsrc 10.0.0.0/24", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack --ctorigdst 10.0.0.2", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctreplsrc 10.0.0.2", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctrepldst 10.0.0.2", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack ! --ctrepldst 10.0.0.2", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctorigsrcport 1000:2000", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack ! --ctorigsrcport 1000:2000", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack --ctorigdstport 80", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctreplsrcport 80", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctrepldstport 80", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack --ctstatus CONFIRMED", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctstatus SEEN_REPLY", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack ! --ctstatus SEEN_REPLY", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctexpire 100:120", spec: tcpSyn, ct: newCT, want: true}, // SYN_SENT: 120 s
	{rule: "-m conntrack ! --ctexpire 100:120", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack --ctdir ORIGINAL", spec: tcpSyn, ct: newCT, want: true},
	{rule: "-m conntrack --ctdir REPLY", spec: tcpSyn, ct: newCT},
	{rule: "-m conntrack --ctdir REPLY", spec: tcpSyn, ct: replyCT, want: true},
	// addrtype (the fake Env: 10.0.0.2 is LOCAL on eth0)
	{rule: "-m addrtype --dst-type LOCAL", spec: tcpSyn, want: true},
	{rule: "-m addrtype ! --dst-type LOCAL", spec: tcpSyn},
	{rule: "-m addrtype --src-type LOCAL", spec: tcpSyn},
	{rule: "-m addrtype ! --src-type LOCAL,BROADCAST", spec: tcpSyn, want: true},
	{rule: "-m addrtype --src-type UNICAST --dst-type LOCAL --limit-iface-in", spec: tcpSyn, want: true},
	{rule: "-m addrtype --dst-type LOCAL --limit-iface-in", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.InIf = "eth1" })},
	// statistic random (P = 0 / 1)
	{rule: "-m statistic --mode random --probability 1", spec: tcpSyn, want: true},
	{rule: "-m statistic --mode random --probability 0", spec: tcpSyn},
	{rule: "-m statistic --mode random ! --probability 0", spec: tcpSyn, want: true},
	// physdev
	{rule: "-m physdev --physdev-in veth+", spec: tcpSyn},
	{rule: "-m physdev ! --physdev-in veth+", spec: tcpSyn, want: true}, // no bridge info
	{rule: "-m physdev ! --physdev-is-in ! --physdev-is-bridged", spec: tcpSyn, want: true},
	{rule: "-m physdev --physdev-in veth+", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.PhysIn = "veth1" }), want: true},
	{rule: "-m physdev ! --physdev-in veth+", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.PhysIn = "veth1" })},
	{rule: "-m physdev --physdev-is-in", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.PhysIn = "veth1" }), want: true},
	{rule: "-m physdev --physdev-is-bridged", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.PhysIn = "veth1" })},
	{rule: "-m physdev ! --physdev-is-bridged", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.PhysIn = "veth1" }), want: true},
	{rule: "-m physdev ! --physdev-out veth2", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.PhysIn = "veth1" }), chain: "FORWARD"},
	{rule: "-m physdev --physdev-out veth2 --physdev-is-bridged", spec: tcpSyn, chain: "FORWARD",
		mod: meta(func(m *packet.Meta) { m.PhysIn, m.PhysOut = "veth1", "veth2" }), want: true},
	{rule: "-m physdev ! --physdev-out veth2", spec: tcpSyn, chain: "FORWARD",
		mod: meta(func(m *packet.Meta) { m.PhysIn, m.PhysOut = "veth1", "veth3" }), want: true},
	{rule: "-m physdev --physdev-is-out", spec: tcpSyn, chain: "FORWARD",
		mod: meta(func(m *packet.Meta) { m.PhysIn, m.PhysOut = "veth1", "veth3" }), want: true},
	{rule: "-m physdev ! --physdev-is-out", spec: tcpSyn, chain: "FORWARD",
		mod: meta(func(m *packet.Meta) { m.PhysIn, m.PhysOut = "veth1", "veth3" })},
	// iprange
	{rule: "-m iprange --src-range 10.0.0.0-10.0.0.5", spec: tcpSyn, want: true},
	{rule: "-m iprange ! --src-range 10.0.0.0-10.0.0.5", spec: tcpSyn},
	{rule: "-m iprange --dst-range 10.0.0.3-10.0.0.5", spec: tcpSyn},
	{rule: "-m iprange ! --dst-range 10.0.0.3-10.0.0.5", spec: tcpSyn, want: true},
	// mac
	{rule: "-m mac --mac-source 02:00:00:00:00:01", spec: tcpSyn, mod: withL2, want: true},
	{rule: "-m mac ! --mac-source 02:00:00:00:00:01", spec: tcpSyn, mod: withL2},
	{rule: "-m mac ! --mac-source 02:00:00:00:00:01", spec: tcpSyn}, // no L2: never
	// length (SYN: 40 bytes)
	{rule: "-m length --length 40", spec: tcpSyn, want: true},
	{rule: "-m length --length 41:100", spec: tcpSyn},
	{rule: "-m length ! --length 41:100", spec: tcpSyn, want: true},
	// ttl (64)
	{rule: "-m ttl --ttl-eq 64", spec: tcpSyn, want: true},
	{rule: "-m ttl ! --ttl-eq 64", spec: tcpSyn},
	{rule: "-m ttl --ttl-lt 64", spec: tcpSyn},
	{rule: "-m ttl --ttl-gt 63", spec: tcpSyn, want: true},
	// tos / dscp (TOS 0xb8: EF)
	{rule: "-m tos --tos 0xb8/0xfc", spec: packet.Spec{Proto: 6, TOS: 0xb8}, want: true},
	{rule: "-m tos ! --tos 0xb8/0xfc", spec: packet.Spec{Proto: 6, TOS: 0xb8}},
	{rule: "-m dscp --dscp-class EF", spec: packet.Spec{Proto: 6, TOS: 0xb8}, want: true},
	{rule: "-m dscp ! --dscp 0x2e", spec: packet.Spec{Proto: 6, TOS: 0xb8}},
	// owner (OUTPUT)
	{rule: "-m owner --uid-owner 1000-2000", spec: tcpSyn, chain: "OUTPUT", mod: sock(1500, 100), want: true},
	{rule: "-m owner ! --uid-owner 1000-2000", spec: tcpSyn, chain: "OUTPUT", mod: sock(1500, 100)},
	{rule: "-m owner --gid-owner 100", spec: tcpSyn, chain: "OUTPUT", mod: sock(1500, 100), want: true},
	{rule: "-m owner ! --gid-owner 100", spec: tcpSyn, chain: "OUTPUT", mod: sock(1500, 100)},
	{rule: "-m owner --socket-exists", spec: tcpSyn, chain: "OUTPUT", mod: sock(0, 0), want: true},
	{rule: "-m owner ! --socket-exists", spec: tcpSyn, chain: "OUTPUT", mod: sock(0, 0)},
	{rule: "-m owner --uid-owner 0", spec: tcpSyn, chain: "OUTPUT"},                 // no socket
	{rule: "-m owner ! --uid-owner 0", spec: tcpSyn, chain: "OUTPUT", want: true},   // no socket, all negated
	{rule: "-m owner ! --socket-exists", spec: tcpSyn, chain: "OUTPUT", want: true}, // no socket
	// pkttype
	{rule: "-m pkttype --pkt-type unicast", spec: tcpSyn, want: true},
	{rule: "-m pkttype ! --pkt-type unicast", spec: tcpSyn},
	{rule: "-m pkttype --pkt-type broadcast", spec: tcpSyn, mod: meta(func(m *packet.Meta) { m.PktType = packet.PktLoopback }), want: true},
	{rule: "-m pkttype --pkt-type multicast", spec: packet.Spec{Proto: 17, Dst: 0xe0000001},
		mod: meta(func(m *packet.Meta) { m.PktType = packet.PktLoopback }), want: true},
	// helper: no connection has a master
	{rule: "-m helper --helper ftp", spec: tcpSyn, ct: newCT},
	{rule: "-m helper ! --helper ftp", spec: tcpSyn, ct: newCT, want: true},
	// rpfilter (the fake answers false unless --loose)
	{rule: "-m rpfilter", spec: tcpSyn, table: "raw", chain: "PREROUTING"},
	{rule: "-m rpfilter --invert", spec: tcpSyn, table: "raw", chain: "PREROUTING", want: true},
	{rule: "-m rpfilter --loose", spec: tcpSyn, table: "raw", chain: "PREROUTING", want: true},
	{rule: "-m rpfilter", spec: tcpSyn, table: "raw", chain: "PREROUTING", mod: meta(func(m *packet.Meta) { m.InIf = "lo" }), want: true},
	{rule: "-m rpfilter", spec: packet.Spec{Proto: 17, Src: 0x00000001, Dst: 0xffffffff}, table: "raw", chain: "PREROUTING", want: true},
	// set
	{rule: "-m set --match-set ips src", spec: tcpSyn, want: true},
	{rule: "-m set ! --match-set ips src", spec: tcpSyn},
	{rule: "-m set --match-set ips dst", spec: tcpSyn},
	{rule: "-m set --match-set ips dst", spec: packet.Spec{Proto: 6, Dst: evIP("192.168.5.3")}, want: true},
	{rule: "-m set --match-set nets src", spec: tcpSyn, want: true},
	{rule: "-m set --match-set nets src", spec: packet.Spec{Proto: 6, Src: evIP("10.9.1.1")}},
	{rule: "-m set --match-set nets src --return-nomatch", spec: packet.Spec{Proto: 6, Src: evIP("10.9.1.1")}, want: true},
	{rule: "-m set --match-set nets src --return-nomatch", spec: tcpSyn},
	{rule: "-m set --match-set nets src --packets-gt 100", spec: tcpSyn},
	{rule: "-m set --match-set ipport dst,dst", spec: tcpSyn, want: true},
	{rule: "-m set --match-set ipport dst,src", spec: tcpSyn},
	{rule: "-m set --match-set ipport dst", spec: tcpSyn}, // fewer directions than dimensions
	{rule: "-m set --match-set ipport dst,dst", spec: udp53, want: true},
	{rule: "-m set --match-set ipport dst,dst", spec: ping, want: true},
	{rule: "-m set --match-set ipport dst,dst", spec: tcpSyn, mod: fragment(5)},
	{rule: "-m set --match-set netport src,dst", spec: packet.Spec{Proto: 6, DstPort: 22}, want: true},
	{rule: "-m set --match-set netport src,dst", spec: packet.Spec{Proto: 17, DstPort: 22}},
	{rule: "-m set --match-set ports dst", spec: tcpSyn, want: true},
	{rule: "-m set --match-set ports dst", spec: packet.Spec{Proto: 132}},
	{rule: "-m set --match-set both dst,dst", spec: tcpSyn, want: true},
	{rule: "-m set --match-set both src,dst", spec: tcpSyn, want: true},
	{rule: "-m set ! --match-set both dst,src", spec: tcpSyn, want: true},
}

func withL2(p *packet.Packet) {
	p.L2 = []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0}
}

func sock(uid, gid uint32) func(p *packet.Packet) {
	return meta(func(m *packet.Meta) { m.HasSocket, m.UID, m.GID = true, uid, gid; m.InIf, m.OutIf = "", "eth0" })
}

func newEvalEnv() *evalEnv {
	return &evalEnv{rnd: 1, types: map[uint32]uint8{evIP("10.0.0.2"): 2}}
}

// evRun runs the Ctx through t and reports whether the rule matched.
func evRun(t *Table, c *Ctx) bool {
	return t.Run(c, nil) == TAccept
}

func TestEvalMatches(t *testing.T) {
	for _, tc := range evCases {
		table, chain := tc.table, tc.chain
		if table == "" {
			table = "filter"
		}
		if chain == "" {
			chain = "INPUT"
		}
		name := chain + " " + tc.rule
		tab := evTable(t, table, chain, tc.rule)
		p := evPkt(t, tc.spec, tc.mod)
		c := &Ctx{Pkt: p, Hook: evHook(chain), Env: newEvalEnv(), State: &State{}}
		if tc.ct != nil {
			c.CT = tc.ct(t, p)
		}
		got := evRun(tab, c)
		if got != tc.want || c.HotDrop != tc.hotdrop {
			t.Errorf("%s: matched %v hotdrop %v, want %v %v", name, got, c.HotDrop, tc.want, tc.hotdrop)
		}
	}
	t.Logf("%d cases", len(evCases))
}

// evSeq runs the same packet through a rule repeatedly, advancing the
// clock by step ns each time, and returns the match pattern.
func evSeq(t *testing.T, rule string, n int, step int64, st *State, mod func(i int, p *packet.Packet)) string {
	tab := evTable(t, "filter", "INPUT", rule)
	env := newEvalEnv()
	var b strings.Builder
	for i := 0; i < n; i++ {
		p := evPkt(t, tcpSyn, nil)
		if mod != nil {
			mod(i, p)
			if err := p.Decode(); err != nil {
				t.Fatal(err)
			}
		}
		c := &Ctx{Pkt: p, Hook: netfilter.LocalIn, Env: env, State: st}
		if evRun(tab, c) {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
		env.now += step
	}
	return b.String()
}

func TestEvalStateful(t *testing.T) {
	st := &State{}
	ms := int64(1e6)
	cases := []struct {
		name, rule string
		n          int
		step       int64
		mod        func(i int, p *packet.Packet)
		want       string
	}{
		{"nth", "-m statistic --mode nth --every 3 --packet 1", 7, 0, nil, "0100100"},
		{"nth!", "-m statistic --mode nth ! --every 2 --packet 0", 4, 0, nil, "0101"},
		// 10/s, burst 2: 2 at once, then one per 100 ms
		{"limit", "-m limit --limit 10/s --limit-burst 2", 8, 30 * ms, nil, "11001001"},
		// hashlimit 10/s burst 2 per source
		{"hashlimit", "-m hashlimit --hashlimit-upto 10/s --hashlimit-burst 2 --hashlimit-mode srcip --hashlimit-name h1", 8, 30 * ms, nil, "11001001"},
		{"hashlimit-above", "-m hashlimit --hashlimit-above 10/s --hashlimit-burst 2 --hashlimit-mode srcip --hashlimit-name h2", 4, 0, nil, "0011"},
		{"hashlimit-keys", "-m hashlimit --hashlimit-upto 1/s --hashlimit-burst 1 --hashlimit-mode srcip --hashlimit-name h3", 4, 0,
			func(i int, p *packet.Packet) { evSetSrc(p, uint32(i%2)) }, "1100"},
		// recent: --set then --rcheck --hitcount
		{"recent-set", "-m recent --set --name r1", 3, 0, nil, "111"},
		{"recent-rcheck", "-m recent --rcheck --name r1 --hitcount 3", 1, 0, nil, "1"},
		{"recent-rcheck4", "-m recent --rcheck --name r1 --hitcount 4", 1, 0, nil, "0"},
		{"recent-update", "-m recent --update --name r1 --seconds 1", 2, 0, nil, "11"},
		{"recent-remove", "-m recent --remove --name r1", 2, 0, nil, "10"},
		{"recent-unknown", "-m recent ! --rcheck --name r2", 1, 0, nil, "1"},
	}
	for _, tc := range cases {
		if got := evSeq(t, tc.rule, tc.n, tc.step, st, tc.mod); got != tc.want {
			t.Errorf("%s: %s: got %s, want %s", tc.name, tc.rule, got, tc.want)
		}
	}
	// recent --seconds: a stamp older than the window does not count
	st2 := &State{}
	evSeq(t, "-m recent --set --name w", 1, 0, st2, nil)
	tab := evTable(t, "filter", "INPUT", "-m recent --rcheck --seconds 2 --name w")
	env := newEvalEnv()
	env.now = 3e9
	if evRun(tab, &Ctx{Pkt: evPkt(t, tcpSyn, nil), Hook: netfilter.LocalIn, Env: env, State: st2}) {
		t.Error("recent --seconds 2 matched a 3 s old stamp")
	}
	env.now = 1e9
	if !evRun(tab, &Ctx{Pkt: evPkt(t, tcpSyn, nil), Hook: netfilter.LocalIn, Env: env, State: st2}) {
		t.Error("recent --seconds 2 did not match a 1 s old stamp")
	}
}

func evSetSrc(p *packet.Packet, i uint32) {
	binary.BigEndian.PutUint32(p.Data[12:], evIP("10.1.0.1")+i)
	packet.IPv4(p.Data).SetChecksum()
}

// TestEvalConnlimit counts confirmed connections per source.
func TestEvalConnlimit(t *testing.T) {
	tab := evTable(t, "filter", "INPUT", "-p tcp -m connlimit --connlimit-above 2")
	ctt := conntrack.NewTable(conntrack.DefaultConfig(), 1)
	env := newEvalEnv()
	var got strings.Builder
	for i := 0; i < 4; i++ {
		s := tcpSyn
		s.SrcPort = uint16(2000 + i)
		p := evPkt(t, s, nil)
		r, _ := ctt.In(p, 0, netfilter.PreRouting, 0)
		c := &Ctx{Pkt: p, Hook: netfilter.LocalIn, Env: env, CT: r}
		if evRun(tab, c) {
			got.WriteByte('1')
		} else {
			got.WriteByte('0')
		}
		ctt.Confirm(r, 0)
	}
	// the same connection again does not count twice
	s := tcpSyn
	s.SrcPort = 2000
	s.TCPFlags = packet.TCPAck
	p := evPkt(t, s, nil)
	r, _ := ctt.In(p, 0, netfilter.PreRouting, 0)
	if evRun(tab, &Ctx{Pkt: p, Hook: netfilter.LocalIn, Env: env, CT: r}) {
		got.WriteByte('1')
	} else {
		got.WriteByte('0')
	}
	if got.String() != "00111" {
		t.Errorf("connlimit-above 2: got %s, want 00111", got.String())
	}
}

// evAllRules is one rule set that uses every match, for the allocation
// test.
var evAllRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:m - [0:0]
-A INPUT -j m
-A m -p tcp --dport 80 --tcp-flags SYN,ACK SYN
-A m -p tcp -m tcp --tcp-option 2
-A m -p udp --dport 53
-A m -p icmp --icmp-type echo-request
-A m -p sctp --chunk-types any INIT
-A m -p tcp -m multiport --dports 22,80:90
-A m -m comment --comment "x y"
-A m -m mark --mark 0x1/0x1
-A m -m connmark --mark 0x1
-A m -m conntrack --ctstate NEW,ESTABLISHED --ctorigsrc 10.0.0.0/8 --ctstatus CONFIRMED --ctexpire 1:1000 --ctdir ORIGINAL --ctorigdstport 80
-A m -m state --state NEW
-A m -m addrtype --dst-type LOCAL
-A m -m statistic --mode random --probability 0.5
-A m -m statistic --mode nth --every 3 --packet 0
-A m -m physdev ! --physdev-in veth0
-A m -m iprange --src-range 10.0.0.0-10.0.0.9
-A m -m mac --mac-source 02:00:00:00:00:01
-A m -m length --length 0:100
-A m -m ttl --ttl-gt 1
-A m -m limit --limit 100/s
-A m -m hashlimit --hashlimit-upto 100/s --hashlimit-mode srcip,dstport --hashlimit-name all
-A m -p tcp -m connlimit --connlimit-upto 100
-A m -m recent --update --name all
-A m -m recent --set --name all
-A m -m set --match-set nets src
-A m -m set --match-set ipport dst,dst
-A m -m set --match-set both dst,dst
-A m -m pkttype --pkt-type unicast
-A m -m tos --tos 0x10
-A m -m dscp --dscp 0
-A m -m helper --helper ftp
-A m -j RETURN
-A OUTPUT -m owner --uid-owner 0
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -m rpfilter --loose
COMMIT
`

func TestEvalNoAllocs(t *testing.T) {
	ld := &Loader{Sets: evSets}
	rs, err := ld.LoadString(evAllRules)
	if err != nil {
		t.Fatal(err)
	}
	// every registered match appears in the rule set
	used := map[string]bool{}
	for _, tb := range rs.Tables {
		if tb == nil {
			continue
		}
		for _, ch := range tb.Chains {
			for _, r := range ch.Rules {
				for _, m := range r.Matches {
					used[m.Name()] = true
				}
			}
		}
	}
	for _, n := range Matches() {
		if !used[n] {
			t.Errorf("match %s not in the allocation test's rule set", n)
		}
	}
	ctt := conntrack.NewTable(conntrack.DefaultConfig(), 1)
	pkts := []*packet.Packet{evPkt(t, tcpSyn, withL2), evPkt(t, udp53, nil), evPkt(t, ping, nil), evPkt(t, tcpAck, nil)}
	refs := make([]conntrack.Ref, len(pkts))
	for i, p := range pkts {
		refs[i], _ = ctt.In(p.Clone(), 0, netfilter.PreRouting, 0)
		refs[i], _ = ctt.Confirm(refs[i], 0)
	}
	env := newEvalEnv()
	st := &State{}
	out := evPkt(t, tcpSyn, sock(0, 0))
	// the engine keeps one Ctx per worker and resets it per packet
	c := new(Ctx)
	run := func() {
		for i, p := range pkts {
			*c = Ctx{Pkt: p, Hook: netfilter.LocalIn, Env: env, State: st, CT: refs[i]}
			rs.Tables[Filter].Run(c, nil)
			*c = Ctx{Pkt: p, Hook: netfilter.PreRouting, Env: env, State: st, CT: refs[i]}
			rs.Tables[Raw].Run(c, nil)
		}
		*c = Ctx{Pkt: out, Hook: netfilter.LocalOut, Env: env, State: st}
		rs.Tables[Filter].Run(c, nil)
		env.now += 1e6
	}
	run() // warm up: tables, entries, set indexes, caches
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("steady state: %v allocations per run, want 0", n)
	}
}
