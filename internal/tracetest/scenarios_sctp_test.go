package tracetest

import (
	"encoding/binary"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// sctpRaw is an IPv4 SCTP packet with one chunk (type, flags, body) and
// its CRC32c; bad breaks the CRC.
func sctpRaw(src, dst uint32, sport, dport uint16, vtag uint32, typ, flags uint8, body []byte, bad bool) []byte {
	n := 4 + len(body)
	l4 := make([]byte, 12+(n+3)&^3)
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], vtag)
	l4[12], l4[13] = typ, flags
	binary.BigEndian.PutUint16(l4[14:], uint16(n))
	copy(l4[16:], body)
	packet.SetSCTPChecksum(l4)
	if bad {
		l4[8] ^= 1
	}
	return packet.Build(packet.Spec{Proto: packet.ProtoSCTP, Src: src, Dst: dst, TTL: 64, Payload: l4})
}

// TestSCTPConntrackScenarios compares the kernel's SCTP tracker with
// uswitch's through ctstate/ctstatus/ctdir matches in traced rules: an
// association (INIT, INIT-ACK, COOKIE-ECHO, COOKIE-ACK, DATA, SHUTDOWN,
// SHUTDOWN-ACK, SHUTDOWN-COMPLETE), a wrong verification tag, a bad
// CRC32c, an ABORT with the T bit and out-of-the-blue chunks.
func TestSCTPConntrackScenarios(t *testing.T) {
	const cli, srv = 0x0a000102, 0x0a000202 // 10.0.1.2, 10.0.2.2
	const A, B = 0xa1a1a1a1, 0xb2b2b2b2
	c := func(vtag uint32, typ, flags uint8, body []byte) Packet {
		return RawPacket(sctpRaw(cli, srv, 4000, 80, vtag, typ, flags, body, false), "tun1")
	}
	s := func(vtag uint32, typ, flags uint8, body []byte) Packet {
		return RawPacket(sctpRaw(srv, cli, 80, 4000, vtag, typ, flags, body, false), "tun2")
	}
	data := make([]byte, 16)
	runScenarios(t, []Scenario{{
		Name:    "sctp-conntrack",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: mangleOnly(`-A PREROUTING -p sctp -m conntrack --ctstate NEW
-A PREROUTING -p sctp -m conntrack --ctstate ESTABLISHED
-A PREROUTING -p sctp -m conntrack --ctstate INVALID
-A PREROUTING -p sctp -m conntrack --ctstatus ASSURED
-A PREROUTING -p sctp -m conntrack --ctdir REPLY
`),
		Packets: []Packet{
			RawPacket(sctpRaw(cli, srv, 4000, 80, 0, 1, 0, packet.SCTPInitValue(A, 1), true), "tun1"), // bad CRC
			c(5, 1, 0, packet.SCTPInitValue(A, 1)),                                                    // INIT with a vtag
			c(0, 1, 0, packet.SCTPInitValue(A, 1)),
			s(A, 2, 0, packet.SCTPInitValue(B, 1)),
			c(B, 10, 0, make([]byte, 8)),
			s(A, 11, 0, nil),
			c(B, 0, 3, data),
			c(A, 0, 3, data), // wrong vtag
			s(A, 3, 0, make([]byte, 12)),
			c(B, 7, 0, make([]byte, 4)),
			s(A, 8, 0, nil),
			c(B, 14, 0, nil),
			RawPacket(sctpRaw(cli, srv, 4001, 80, 7, 6, 0, nil, false), "tun1"),  // out-of-the-blue ABORT
			RawPacket(sctpRaw(cli, srv, 4002, 80, 7, 11, 0, nil, false), "tun1"), // out-of-the-blue COOKIE-ACK
			RawPacket(sctpRaw(cli, srv, 4003, 80, 0, 1, 0, packet.SCTPInitValue(A, 1), false), "tun1"),
			RawPacket(sctpRaw(srv, cli, 80, 4003, A, 2, 0, packet.SCTPInitValue(B, 1), false), "tun2"),
			RawPacket(sctpRaw(cli, srv, 4003, 80, B, 10, 0, make([]byte, 8), false), "tun1"),
			RawPacket(sctpRaw(srv, cli, 80, 4003, A, 11, 0, nil, false), "tun2"),
			RawPacket(sctpRaw(srv, cli, 80, 4003, A, 6, 1, nil, false), "tun2"), // T bit, own tag: invalid
			RawPacket(sctpRaw(srv, cli, 80, 4003, B, 6, 1, nil, false), "tun2"), // T bit, peer's tag
			RawPacket(sctpRaw(cli, srv, 4003, 80, B, 0, 3, data, false), "tun1"),
		},
	}})
}
