package trace

import (
	"encoding/binary"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

func arpPayload(op uint16, sha packet.MAC, spa uint32, tha packet.MAC, tpa uint32) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b, 1)
	binary.BigEndian.PutUint16(b[2:], 0x0800)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:], sha[:])
	binary.BigEndian.PutUint32(b[14:], spa)
	copy(b[18:], tha[:])
	binary.BigEndian.PutUint32(b[24:], tpa)
	return b
}

// The want lines were printed by kernel 6.18 (dmesg --notime, no
// trailing space) for one ping across a bridge with ports ve1 and ve2,
// with ebtables-nft 1.8.9 rules
//
//	-A FORWARD -p IPv4 --log --log-ip --log-prefix EBTX8681 -j ACCEPT
//	-A FORWARD -p ARP --log --log-arp --log-prefix EBTA8681 -j ACCEPT
func TestEbtLogLineKernel(t *testing.T) {
	m1 := packet.MAC{2, 0, 0, 0, 0, 1}
	m2 := packet.MAC{2, 0, 0, 0, 0, 2}
	const a1, a2 = 0x0a4d0001, 0x0a4d0002
	echo := packet.Build(packet.Spec{Src: a1, Dst: a2, Proto: packet.ProtoICMP, ICMPType: packet.ICMPEcho, DF: true, Payload: make([]byte, 56)})
	reply := packet.Build(packet.Spec{Src: a2, Dst: a1, Proto: packet.ProtoICMP, Payload: make([]byte, 56)})
	for _, c := range []struct {
		li    EbtLogInfo
		frame []byte
		want  string
	}{
		{EbtLogInfo{Prefix: "EBTA8681", Flags: EbtLogARP, In: "ve1", Out: "ve2"},
			packet.BuildFrame(packet.Broadcast, m1, etherTypeARP, arpPayload(1, m1, a1, packet.MAC{}, a2)),
			"EBTA8681 IN=ve1 OUT=ve2 MAC source = 02:00:00:00:00:01 MAC dest = ff:ff:ff:ff:ff:ff proto = 0x0806 ARP HTYPE=1, PTYPE=0x0800, OPCODE=1 ARP MAC SRC=02:00:00:00:00:01 ARP IP SRC=10.77.0.1 ARP MAC DST=00:00:00:00:00:00 ARP IP DST=10.77.0.2"},
		{EbtLogInfo{Prefix: "EBTA8681", Flags: EbtLogARP, In: "ve2", Out: "ve1"},
			packet.BuildFrame(m1, m2, etherTypeARP, arpPayload(2, m2, a2, m1, a1)),
			"EBTA8681 IN=ve2 OUT=ve1 MAC source = 02:00:00:00:00:02 MAC dest = 02:00:00:00:00:01 proto = 0x0806 ARP HTYPE=1, PTYPE=0x0800, OPCODE=2 ARP MAC SRC=02:00:00:00:00:02 ARP IP SRC=10.77.0.2 ARP MAC DST=02:00:00:00:00:01 ARP IP DST=10.77.0.1"},
		{EbtLogInfo{Prefix: "EBTX8681", Flags: EbtLogIP, In: "ve1", Out: "ve2", LogicalIn: "br0", LogicalOut: "br0"},
			packet.BuildFrame(m2, m1, packet.EtherTypeIPv4, echo),
			"EBTX8681 IN=ve1 OUT=ve2 MAC source = 02:00:00:00:00:01 MAC dest = 02:00:00:00:00:02 proto = 0x0800 IP SRC=10.77.0.1 IP DST=10.77.0.2, IP tos=0x00, IP proto=1"},
		{EbtLogInfo{Prefix: "EBTX8681", Flags: EbtLogIP, In: "ve2", Out: "ve1"},
			packet.BuildFrame(m1, m2, packet.EtherTypeIPv4, reply),
			"EBTX8681 IN=ve2 OUT=ve1 MAC source = 02:00:00:00:00:02 MAC dest = 02:00:00:00:00:01 proto = 0x0800 IP SRC=10.77.0.2 IP DST=10.77.0.1, IP tos=0x00, IP proto=1"},
		// from ebt_log.c's format strings: ports, no flag, a short header,
		// IPv6 with a destination options header
		{EbtLogInfo{Prefix: "p", Flags: EbtLogIP, In: "ve1"},
			packet.BuildFrame(m2, m1, packet.EtherTypeIPv4, packet.Build(packet.Spec{Src: a1, Dst: a2, Proto: packet.ProtoUDP, SrcPort: 5353, DstPort: 53, TOS: 0x10})),
			"p IN=ve1 OUT= MAC source = 02:00:00:00:00:01 MAC dest = 02:00:00:00:00:02 proto = 0x0800 IP SRC=10.77.0.1 IP DST=10.77.0.2, IP tos=0x10, IP proto=17 SPT=5353 DPT=53"},
		{EbtLogInfo{Prefix: "p", In: "ve1"},
			packet.BuildFrame(m2, m1, packet.EtherTypeIPv4, echo),
			"p IN=ve1 OUT= MAC source = 02:00:00:00:00:01 MAC dest = 02:00:00:00:00:02 proto = 0x0800"},
		{EbtLogInfo{Prefix: "p", Flags: EbtLogIP, In: "ve1"},
			packet.BuildFrame(m2, m1, packet.EtherTypeIPv4, echo[:12]),
			"p IN=ve1 OUT= MAC source = 02:00:00:00:00:01 MAC dest = 02:00:00:00:00:02 proto = 0x0800 INCOMPLETE IP header"},
		{EbtLogInfo{Prefix: "p", Flags: EbtLogIP6, In: "ve1"},
			packet.BuildFrame(m2, m1, packet.EtherTypeIPv6, ip6Packet()),
			"p IN=ve1 OUT= MAC source = 02:00:00:00:00:01 MAC dest = 02:00:00:00:00:02 proto = 0x86dd IPv6 SRC=2001:0db8:0000:0000:0000:0000:0000:0001 IPv6 DST=2001:0db8:0000:0000:0000:0000:0000:0002, IPv6 priority=0x2, Next Header=60 SPT=1000 DPT=2000"},
	} {
		f := &packet.Frame{Data: c.frame}
		if err := f.Decode(); err != nil {
			t.Fatal(err)
		}
		if got := EbtLogLine(&c.li, f); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

// ip6Packet is an IPv6 header (traffic class 0x2_: priority 2), a
// destination options header of 8 bytes and a UDP header.
func ip6Packet() []byte {
	b := make([]byte, 40+8+8)
	b[0] = 0x62
	binary.BigEndian.PutUint16(b[4:], 16)
	b[6], b[7] = 60, 64
	b[8], b[9], b[10], b[11], b[23] = 0x20, 0x01, 0x0d, 0xb8, 1
	b[24], b[25], b[26], b[27], b[39] = 0x20, 0x01, 0x0d, 0xb8, 2
	b[40] = packet.ProtoUDP
	binary.BigEndian.PutUint16(b[48:], 1000)
	binary.BigEndian.PutUint16(b[50:], 2000)
	return b
}
