package trace

import (
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// The lines below were printed by xtables-monitor --trace (iptables-nft
// 1.8.9) on this project's CI machine for a ping to 127.0.0.1.
func TestLinesMatchXtablesMonitor(t *testing.T) {
	p := &packet.Packet{Data: packet.Build(packet.Spec{Src: 0x7f000001, Dst: 0x7f000001, Proto: packet.ProtoICMP,
		ICMPType: packet.ICMPEcho, ID: 55829, DF: true, Payload: make([]byte, 56)})}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		PacketLine(0x816be422, p, "", "lo", false):                              "PACKET: 2 816be422 OUT=lo SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x0 TTL=64 ID=55829 DF ",
		PacketLine(0xff490361, p, "lo", "", true):                               "PACKET: 2 ff490361 IN=lo LOOPBACK SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x0 TTL=64 ID=55829 DF ",
		RuleLine(0x816be422, "raw", "OUTPUT", 3, Continue, " -p icmp -j TRACE"): " TRACE: 2 816be422 raw:OUTPUT:rule:0x3:CONTINUE  -4 -t raw -A OUTPUT -p icmp -j TRACE",
		PolicyLine(0x816be422, "raw", "OUTPUT", Accept):                         " TRACE: 2 816be422 raw:OUTPUT:policy:ACCEPT ",
	} {
		if got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	}
}
