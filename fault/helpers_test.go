package fault

import (
	"testing"

	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// mustFault compiles a spec or fails the test.
func mustFault(t testing.TB, s Spec, seed uint64) *Fault {
	t.Helper()
	f, err := Compile(&s, seed, nil)
	if err != nil {
		t.Fatalf("%+v: %v", s, err)
	}
	return f
}

// udp is a decoded UDP packet from src:sport to dst:dport (addresses
// as uint32) with payload bytes.
func udp(t testing.TB, src, dst uint32, sport, dport uint16, payload int) *packet.Packet {
	t.Helper()
	p := &packet.Packet{Data: packet.Build(packet.Spec{Src: src, Dst: dst, Proto: packet.ProtoUDP, SrcPort: sport, DstPort: dport, Payload: make([]byte, payload)})}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return p
}

// decide runs f on p at now with a fresh context.
func decide(f *Fault, p *packet.Packet, now int64) (Decision, bool) {
	var d Decision
	c := iptables.Ctx{Pkt: p}
	ok := f.Decide(&c, now, &d)
	return d, ok
}
