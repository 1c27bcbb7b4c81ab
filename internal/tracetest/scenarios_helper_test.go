package tracetest

import (
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// ftpPkt is a TCP segment of the FTP scenario with a payload.
func ftpPkt(src, dst uint32, sport, dport uint16, flags uint8, seq, ack uint32, payload, in string) Packet {
	return Packet{Spec: packet.Spec{Proto: packet.ProtoTCP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport,
		TCPFlags: flags, Seq: seq, Ack: ack, Payload: []byte(payload)}, In: in}
}

// TestFTPHelperTrace: an FTP control connection through MASQUERADE with
// the FTP helper, traced by xtables-monitor: the PORT command rewritten
// (2 bytes shorter: 10,0,1,200 -> 10,0,2,1), the server's ack and the
// client's next segment adjusted by those 2 bytes, the server's data
// connection RELATED (accepted by the helper rule, DNATed back to the
// client by the expectation), its packets ESTABLISHED after.
func TestFTPHelperTrace(t *testing.T) {
	const (
		cli = 0x0a0001c8 // 10.0.1.200
		srv = 0x0a000202 // 10.0.2.2
		rtr = 0x0a000201 // 10.0.2.1, the masquerade address
		S   = packet.TCPSyn
		A   = packet.TCPAck
		PA  = packet.TCPPsh | packet.TCPAck
	)
	port := "PORT 10,0,1,200,4,1\r\n" // 21 bytes; the server sees 19
	runScenarios(t, []Scenario{{
		Name:    "ftp-helper-masquerade",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j TRACE
-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o tun2 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A FORWARD -i tun1 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
`,
		Packets: []Packet{
			ftpPkt(cli, srv, 40000, 21, S, 1000, 0, "", "tun1"),
			ftpPkt(srv, rtr, 21, 40000, S|A, 5000, 1001, "", "tun2"),
			ftpPkt(cli, srv, 40000, 21, A, 1001, 5001, "", "tun1"),
			ftpPkt(srv, rtr, 21, 40000, PA, 5001, 1001, "220 hi\r\n", "tun2"),
			ftpPkt(cli, srv, 40000, 21, PA, 1001, 5009, "USER x\r\n", "tun1"),
			ftpPkt(srv, rtr, 21, 40000, PA, 5009, 1009, "331 ok\r\n", "tun2"),
			ftpPkt(cli, srv, 40000, 21, PA, 1009, 5017, port, "tun1"),
			// the server acknowledges the 19 bytes it got
			ftpPkt(srv, rtr, 21, 40000, PA, 5017, 1028, "200 ok\r\n", "tun2"),
			// the data connection, to the port the PORT named
			ftpPkt(srv, rtr, 20, 1025, S, 7000, 0, "", "tun2"),
			ftpPkt(cli, srv, 1025, 20, S|A, 9000, 7001, "", "tun1"),
			ftpPkt(srv, rtr, 20, 1025, PA, 7001, 9001, "data\n", "tun2"),
			// the client's next command, at its own sequence numbers
			ftpPkt(cli, srv, 40000, 21, PA, 1030, 5025, "QUIT\r\n", "tun1"),
			// a second data connection to the same port is not expected
			ftpPkt(srv, rtr, 20, 1025, S, 7000, 0, "", "tun2"),
		},
	}})
}
