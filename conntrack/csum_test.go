package conntrack

import (
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestChecksumVouched: nf_ip_checksum skips packets whose checksum the
// device vouched for (CHECKSUM_UNNECESSARY or CHECKSUM_PARTIAL, the
// packet's CsumValid), so a broken checksum there does not make the
// packet INVALID; without the flag it does; and the check is PREROUTING's
// only.
func TestChecksumVouched(t *testing.T) {
	for _, tc := range []struct {
		name  string
		valid bool
		hook  netfilter.Hook
		want  StateBits
	}{
		{"verified at PREROUTING", false, netfilter.PreRouting, StateInvalid},
		{"vouched for", true, netfilter.PreRouting, StateNew},
		{"OUTPUT does not verify", false, netfilter.LocalOut, StateNew},
	} {
		for _, proto := range []uint8{packet.ProtoTCP, packet.ProtoUDP} {
			sp := tcpSpec(true, 3000, 80, fS, 1, 0, 0)
			off := 36 // the TCP checksum's high byte (20 + 16)
			if proto == packet.ProtoUDP {
				sp = packet.Spec{Proto: packet.ProtoUDP, Src: cliIP, Dst: srvIP, SrcPort: 3000, DstPort: 53, Payload: make([]byte, 8)}
				off = 26
			}
			p := mkpkt(t, sp, func(b []byte) { b[off] ^= 0x5a })
			p.CsumValid = tc.valid
			ref, _ := testTable().In(p, 0, tc.hook, 1)
			if got := ref.State(); got != tc.want {
				t.Errorf("%s, proto %d: state %v, want %v", tc.name, proto, got, tc.want)
			}
		}
	}
}
