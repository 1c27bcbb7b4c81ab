package datapath

import (
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// TestNewConnAllocs: the first packet of a connection through DNAT and
// MASQUERADE allocates one object, its conntrack entry: the table runs
// reuse the packet's traversal stack and the NAT bindings (the by-source
// index included) allocate nothing.
func TestNewConnAllocs(t *testing.T) {
	e := testEngine(t)
	sp, _, err := packet.ParseSpec("tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := packet.Build(sp)
	buf := make([]byte, len(tmpl))
	p := &packet.Packet{}
	flow := 0
	run := func() {
		copy(buf, tmpl)
		*p = packet.Packet{Data: buf, Meta: packet.Meta{InIf: "eth0"}}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		flow++
		p.SetSrcPort(uint16(1024 + flow))
		if f := e.Receive(p, 1e9, nil); f.Kind != Forwarded {
			t.Fatalf("fate %v", f)
		}
	}
	run()
	if p.Dst != 0xc0a80102 || p.DstPort != 8080 || p.Src != 0xc0a80101 {
		t.Fatalf("not translated: %08x:%d > %08x:%d", p.Src, p.SrcPort, p.Dst, p.DstPort)
	}
	if n := testing.AllocsPerRun(200, run); n != 1 {
		t.Fatalf("first packet allocates %v times, want 1 (the entry)", n)
	}
	if got := e.CT.Count(); got != 202 {
		t.Fatalf("%d entries, want 202", got)
	}
}
