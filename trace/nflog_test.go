package trace

import (
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// The want lines were printed by kernel 6.18 (dmesg --notime) in a
// namespace with nf_log_all_netns=1: iptables-legacy rules, a ping to
// 127.0.0.1 (raw OUTPUT -p icmp -j TRACE, filter INPUT -p icmp -j LOG
// --log-prefix "XLOGA " --log-uid --log-ip-options, filter OUTPUT -j U,
// U: -p tcp -j RETURN).
func TestLogLineKernelPing(t *testing.T) {
	echo := packet.Build(packet.Spec{Src: 0x7f000001, Dst: 0x7f000001, Proto: packet.ProtoICMP,
		ICMPType: packet.ICMPEcho, ICMPID: 20565, ICMPSeq: 1, ID: 4491, DF: true, Payload: make([]byte, 56)})
	reply := packet.Build(packet.Spec{Src: 0x7f000001, Dst: 0x7f000001, Proto: packet.ProtoICMP,
		ICMPType: 0, ICMPID: 20565, ICMPSeq: 1, ID: 4492, Payload: make([]byte, 56)})
	out := func(prefix string, sock bool) *LogInfo {
		return &LogInfo{Prefix: prefix, Flags: LogDefaultMask, Out: "lo", HasSocket: sock}
	}
	in := func(prefix string, flags uint8) *LogInfo {
		return &LogInfo{Prefix: prefix, Flags: flags, In: "lo", MAC: LoopbackMAC}
	}
	for _, c := range []struct {
		li   *LogInfo
		pkt  []byte
		want string
	}{
		{out(LegacyTracePrefix("raw", "OUTPUT", "policy", 2), true), echo,
			"TRACE: raw:OUTPUT:policy:2 IN= OUT=lo SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=4491 DF PROTO=ICMP TYPE=8 CODE=0 ID=20565 SEQ=1 UID=0 GID=0 "},
		{out(LegacyTracePrefix("filter", "U", "return", 2), true), echo,
			"TRACE: filter:U:return:2 IN= OUT=lo SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=4491 DF PROTO=ICMP TYPE=8 CODE=0 ID=20565 SEQ=1 UID=0 GID=0 "},
		{in(LegacyTracePrefix("raw", "PREROUTING", "policy", 1), LogDefaultMask), echo,
			"TRACE: raw:PREROUTING:policy:1 IN=lo OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=4491 DF PROTO=ICMP TYPE=8 CODE=0 ID=20565 SEQ=1 "},
		{in("XLOGA ", LogUID|LogIPOpt), echo,
			"XLOGA IN=lo OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=4491 DF PROTO=ICMP TYPE=8 CODE=0 ID=20565 SEQ=1 "},
		{out(LegacyTracePrefix("filter", "OUTPUT", "rule", 1), false), reply,
			"TRACE: filter:OUTPUT:rule:1 IN= OUT=lo SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=4492 PROTO=ICMP TYPE=0 CODE=0 ID=20565 SEQ=1 "},
	} {
		if got := LogLine(c.li, c.pkt); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

// TestLogLineFields covers the fields the kernel prints from
// nf_log_syslog.c's format strings, one case each.
func TestLogLineFields(t *testing.T) {
	syn := packet.Build(packet.Spec{Src: 0x0a000102, Dst: 0x0a000201, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 80,
		TCPFlags: packet.TCPSyn | 0x80 | 0x40, Seq: 1000, Window: 512, TOS: 0xb8, ID: 7, TTL: 63})
	// a TCP header with 4 bytes of options (MSS 1460)
	opt := append([]byte(nil), syn[:20]...)
	opt = append(opt, syn[20:40]...)
	opt = append(opt, 2, 4, 5, 0xb4)
	opt[2], opt[3] = 0, 44
	opt[32] = 6 << 4
	udp := packet.Build(packet.Spec{Src: 0x0a000102, Dst: 0x0a000201, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, Payload: []byte("abcd")})
	// port unreachable for udp, with the whole udp packet inside
	unr := packet.Build(packet.Spec{Src: 0x0a000201, Dst: 0x0a000102, Proto: packet.ProtoICMP, ICMPType: 3, ICMPCode: 3, Payload: udp})
	// a non-first fragment of udp
	frag := append([]byte(nil), udp...)
	frag[6], frag[7] = 0x00, 0x03
	mac := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0}
	for _, c := range []struct {
		li   LogInfo
		pkt  []byte
		want string
	}{
		{LogInfo{Prefix: "p ", In: "tun1", Flags: LogTCPSeq}, syn,
			"p IN=tun1 OUT= MAC= SRC=10.0.1.2 DST=10.0.2.1 LEN=40 TOS=0x18 PREC=0xA0 TTL=63 ID=7 PROTO=TCP SPT=40000 DPT=80 SEQ=1000 ACK=0 WINDOW=512 RES=0x00 CWR ECE SYN URGP=0 "},
		{LogInfo{In: "tun1", Out: "tun2", Flags: LogTCPOpt, Mark: 0x2a}, opt,
			"IN=tun1 OUT=tun2 MAC= SRC=10.0.1.2 DST=10.0.2.1 LEN=44 TOS=0x18 PREC=0xA0 TTL=63 ID=7 PROTO=TCP SPT=40000 DPT=80 WINDOW=512 RES=0x00 CWR ECE SYN URGP=0 OPT (020405B4) MARK=0x2a "},
		{LogInfo{In: "tap0", MAC: mac, Ether: true, Flags: LogMACDecode}, udp,
			"IN=tap0 OUT= MACSRC=02:00:00:00:00:01 MACDST=02:00:00:00:00:02 MACPROTO=0800 SRC=10.0.1.2 DST=10.0.2.1 LEN=32 TOS=0x00 PREC=0x00 TTL=64 ID=0 PROTO=UDP SPT=5000 DPT=53 LEN=12 "},
		{LogInfo{In: "tap0", MAC: mac}, udp,
			"IN=tap0 OUT= MAC=02:00:00:00:00:02:02:00:00:00:00:01:08:00 SRC=10.0.1.2 DST=10.0.2.1 LEN=32 TOS=0x00 PREC=0x00 TTL=64 ID=0 PROTO=UDP SPT=5000 DPT=53 LEN=12 "},
		{LogInfo{Out: "tun1"}, unr,
			"IN= OUT=tun1 SRC=10.0.2.1 DST=10.0.1.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=0 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.1.2 DST=10.0.2.1 LEN=32 TOS=0x00 PREC=0x00 TTL=64 ID=0 PROTO=UDP SPT=5000 DPT=53 LEN=12 ] "},
		{LogInfo{In: "tun1"}, frag,
			"IN=tun1 OUT= MAC= SRC=10.0.1.2 DST=10.0.2.1 LEN=32 TOS=0x00 PREC=0x00 TTL=64 ID=0 FRAG:3 PROTO=UDP "},
		{LogInfo{In: "br0", PhysIn: "veth0", Out: "br0", PhysOut: "veth1"}, frag,
			"IN=br0 OUT=br0 PHYSIN=veth0 PHYSOUT=veth1 MAC= SRC=10.0.1.2 DST=10.0.2.1 LEN=32 TOS=0x00 PREC=0x00 TTL=64 ID=0 FRAG:3 PROTO=UDP "},
		{LogInfo{In: "tun1"}, syn[:30], // cut short inside TCP
			"IN=tun1 OUT= MAC= SRC=10.0.1.2 DST=10.0.2.1 LEN=40 TOS=0x18 PREC=0xA0 TTL=63 ID=7 PROTO=TCP INCOMPLETE [10 bytes] "},
	} {
		if got := LogLine(&c.li, c.pkt); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}
