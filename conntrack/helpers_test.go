package conntrack

import (
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

const (
	cliIP = 0x0a010002 // 10.1.0.2
	srvIP = 0x0a020002 // 10.2.0.2
	sec   = int64(1e9)
)

// step is one packet of a scenario and what conntrack must say about it.
type step struct {
	name  string
	spec  packet.Spec
	raw   func([]byte) // optional corruption of the built bytes
	state StateBits    // expected Ref.State()
	dir   Dir          // expected direction when tracked
	tcp   TCPState     // expected TCP state after the packet (if TCP and tracked)
	drop  bool         // the packet is dropped before confirm
	dt    int64        // advance the clock before the packet
}

func mkpkt(tb testing.TB, s packet.Spec, raw func([]byte)) *packet.Packet {
	tb.Helper()
	b := packet.Build(s)
	if raw != nil {
		raw(b)
	}
	p := &packet.Packet{Data: b}
	if err := p.Decode(); err != nil {
		tb.Fatalf("decode: %v", err)
	}
	return p
}

func tcpSpec(fromCli bool, sport, dport uint16, flags uint8, seq, ack uint32, payload int) packet.Spec {
	s := packet.Spec{Proto: packet.ProtoTCP, Src: cliIP, Dst: srvIP, SrcPort: sport, DstPort: dport,
		TCPFlags: flags, Seq: seq, Ack: ack, Payload: make([]byte, payload)}
	if !fromCli {
		s.Src, s.Dst = srvIP, cliIP
	}
	return s
}

func udpSpec(fromCli bool, sport, dport uint16) packet.Spec {
	s := packet.Spec{Proto: packet.ProtoUDP, Src: cliIP, Dst: srvIP, SrcPort: sport, DstPort: dport, Payload: []byte("hi")}
	if !fromCli {
		s.Src, s.Dst = srvIP, cliIP
	}
	return s
}

func icmpSpec(src, dst uint32, typ, code uint8, id uint16, payload []byte) packet.Spec {
	return packet.Spec{Proto: packet.ProtoICMP, Src: src, Dst: dst, ICMPType: typ, ICMPCode: code, ICMPID: id, ICMPSeq: 1, Payload: payload}
}

// icmpErr builds an ICMP error from src to dst embedding the first 28
// bytes of the packet inner.
func icmpErr(src, dst uint32, typ, code uint8, inner packet.Spec) packet.Spec {
	b := packet.Build(inner)
	if len(b) > 28 {
		b = b[:28]
	}
	return packet.Spec{Proto: packet.ProtoICMP, Src: src, Dst: dst, ICMPType: typ, ICMPCode: code, Payload: b}
}

// run feeds steps through In and Confirm as a forwarded packet would go.
func run(t *testing.T, tb *Table, now *int64, steps []step) {
	t.Helper()
	for i, s := range steps {
		*now += s.dt
		p := mkpkt(t, s.spec, s.raw)
		ref, v := tb.In(p, 0, netfilter.PreRouting, *now)
		if v != Accept {
			t.Fatalf("step %d %s: verdict %v", i, s.name, v)
		}
		if got := ref.State(); got != s.state {
			t.Errorf("step %d %s: state %s, want %s", i, s.name, stateString(got), stateString(s.state))
		}
		if ref.Conn != nil && ref.Info.Dir() != s.dir {
			t.Errorf("step %d %s: dir %v, want %v", i, s.name, ref.Info.Dir(), s.dir)
		}
		if !s.drop {
			tb.Confirm(ref, *now)
		}
		if ref.Conn != nil && s.spec.Proto == packet.ProtoTCP && s.tcp != 0 {
			if got := ref.Conn.TCPState(); got != s.tcp {
				t.Errorf("step %d %s: tcp state %v, want %v", i, s.name, got, s.tcp)
			}
		}
	}
}

func stateString(s StateBits) string {
	names := []struct {
		b StateBits
		n string
	}{{StateInvalid, "INVALID"}, {StateNew, "NEW"}, {StateEstablished, "ESTABLISHED"},
		{StateRelated, "RELATED"}, {StateUntracked, "UNTRACKED"}, {StateSNAT, "SNAT"}, {StateDNAT, "DNAT"}}
	out := ""
	for _, n := range names {
		if s&n.b != 0 {
			if out != "" {
				out += ","
			}
			out += n.n
		}
	}
	if out == "" {
		return "none"
	}
	return out
}

func testTable() *Table {
	cfg := DefaultConfig()
	cfg.Buckets = 1024
	return NewTable(cfg, 42)
}
