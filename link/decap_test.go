package link

import (
	"net/netip"
	"testing"

	"github.com/uswitch-lab/uswitch/link/linktest"
)

// TestDecapApply: the write path opens exactly the tunnel packets of the
// device's kind addressed to its namespace, in place, without
// allocating.
func TestDecapApply(t *testing.T) {
	inner := linktest.InnerUDP(40000, "hello")
	mine := []netip.Prefix{netip.MustParsePrefix("10.10.2.2/24"), netip.MustParsePrefix("10.20.0.100/32")}
	ipip := newDecapSpec(DecapValue{Kind: DecapIPIP}, mine)
	gre := newDecapSpec(DecapValue{Kind: DecapGRE}, mine)
	gue := newDecapSpec(DecapValue{Kind: DecapGUE, Port: 6080}, mine)
	var none *decapSpec
	for _, tc := range []struct {
		name   string
		spec   *decapSpec
		pkt    []byte
		decaps bool
	}{
		{"ipip", ipip, linktest.Encap("ipip", "10.10.2.2", inner), true},
		{"ipip to the lo address", ipip, linktest.Encap("ipip", "10.20.0.100", inner), true},
		{"gre", gre, linktest.Encap("gre", "10.10.2.2", inner), true},
		{"gue", gue, linktest.Encap("gue", "10.10.2.2", inner), true},
		{"ipip to another host", ipip, linktest.Encap("ipip", "10.10.2.3", inner), false},
		{"gre on an ipip device", ipip, linktest.Encap("gre", "10.10.2.2", inner), false},
		{"ipip on a gue device", gue, linktest.Encap("ipip", "10.10.2.2", inner), false},
		{"gue on another port", newDecapSpec(DecapValue{Kind: DecapGUE, Port: 5555}, mine), linktest.Encap("gue", "10.10.2.2", inner), false},
		{"plain udp", gue, inner, false},
		{"no decap", none, linktest.Encap("ipip", "10.10.2.2", inner), false},
		{"truncated", ipip, linktest.Encap("ipip", "10.10.2.2", inner)[:30], false},
		{"short", ipip, []byte{0x45, 0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.spec.apply(tc.pkt)
			if !tc.decaps {
				if len(got) != len(tc.pkt) || (len(got) > 0 && &got[0] != &tc.pkt[0]) {
					t.Fatalf("changed a packet it should pass: %x", got)
				}
				return
			}
			if string(got) != string(inner) {
				t.Fatalf("inner %x, want %x", got, inner)
			}
			// a subslice of the packet: no copy
			if &got[len(got)-1] != &tc.pkt[len(tc.pkt)-1] {
				t.Errorf("inner is not a subslice of the packet")
			}
		})
	}
	pkt := linktest.Encap("gue", "10.10.2.2", inner)
	if n := testing.AllocsPerRun(1000, func() { gue.apply(pkt) }); n != 0 {
		t.Errorf("apply allocates %v times", n)
	}
}
