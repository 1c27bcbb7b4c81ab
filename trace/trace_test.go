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

// TestOptionBytes: xtables-monitor prints IP option bytes of 0x80 and
// above sign-extended (a char through %02X), as the kernel-differential
// options scenarios recorded: "OPT (FFFFFF8307040A00030300)" for a loose
// source route.
func TestOptionBytes(t *testing.T) {
	b := packet.Build(packet.Spec{Src: 0x0a000102, Dst: 0x0a000202, Proto: packet.ProtoUDP, TTL: 64, SrcPort: 1000, DstPort: 53})
	opts := []byte{packet.OptLSRR, 7, 4, 10, 0, 3, 3, 0}
	d := append(append(append([]byte(nil), b[:20]...), opts...), b[20:]...)
	d[0], d[3] = 0x47, byte(len(d))
	packet.IPv4(d).SetChecksum()
	p := &packet.Packet{Data: d}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	want := "PACKET: 2 00000001 IN=tun1 SRC=10.0.1.2 DST=10.0.2.2 LEN=36 TOS=0x0 TTL=64 ID=0 OPT (FFFFFF8307040A00030300) SPORT=1000 DPORT=53 "
	if got := PacketLine(1, p, "tun1", "", false); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
