package tracetest

import (
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// IP options (issue 12 item 2): ip_rcv_options after the input route
// (ip_options_compile: invalid options are dropped with a parameter
// problem; source routes only with accept_source_route), the forwarding
// updates (ip_forward_options: record route, timestamps) and the echo of
// the options in the host's answers (__ip_options_echo). Timestamp
// values are masked in the comparison (maskTimestamps in compare.go).

// withIPOpts is the packet of form (a P form) with the IP options o
// (padded with end-of-list to a multiple of four) after its header.
func withIPOpts(form string, o ...byte) Packet {
	for len(o)%4 != 0 {
		o = append(o, packet.OptEnd)
	}
	p := P(form)
	b := p.Bytes()
	out := make([]byte, 0, len(b)+len(o))
	out = append(out, b[:packet.IPv4MinHeaderLen]...)
	out = append(out, o...)
	out = append(out, b[packet.IPv4MinHeaderLen:]...)
	out[0] = 0x40 | byte((packet.IPv4MinHeaderLen+len(o))/4)
	out[2], out[3] = byte(len(out)>>8), byte(len(out))
	packet.IPv4(out).SetChecksum()
	return RawPacket(out, p.In)
}

const (
	optUDP  = "udp 10.0.1.2:1000 > 10.0.2.2:53 iif tun1"
	optNAT  = traceAll + "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o tun2 -j MASQUERADE\nCOMMIT\n"
	optRR   = packet.OptRR
	optTS   = packet.OptTimestamp
	optLSRR = packet.OptLSRR
	optSSRR = packet.OptSSRR
	optRA   = packet.OptRA
	optNOP  = packet.OptNoop
)

var optionScenarios = []Scenario{
	{
		// invalid options: dropped after PREROUTING with a parameter
		// problem pointing at the byte at fault
		Name:    "options-invalid",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules:   optNAT,
		Packets: []Packet{
			withIPOpts(optUDP, optRR, 0, 4, 0),                                         // length 0
			withIPOpts(optUDP, optRR, 1, 4, 0),                                         // length 1
			withIPOpts(optUDP, optRR, 7, 3, 0, 0, 0, 0),                                // pointer below 4
			withIPOpts(optUDP, optRR, 7, 6, 0, 0, 0, 0),                                // pointer leaves no room
			withIPOpts(optUDP, optNOP, optTS, 12, 5),                                   // runs past the header
			withIPOpts(optUDP, optNOP, optNOP, optNOP, 0x44),                           // a lone option byte
			withIPOpts(optUDP, optRR, 3, 4, optRR, 3, 4),                               // two record routes
			withIPOpts(optUDP, optRA, 3, 0, 0),                                         // router alert of length 3
			withIPOpts(optUDP, optTS, 8, 9, 0xf0, 0, 0, 0, 0),                          // timestamp overflow at 15
			withIPOpts(optUDP, optTS, 8, 4, 0, 0, 0, 0),                                // timestamp pointer below 5
			withIPOpts(optUDP, optTS, 8, 5, 1, 0, 0, 0, 0),                             // address and time without room
			withIPOpts(optUDP, optLSRR, 2, optNOP, optNOP),                             // source route of length 2
			withIPOpts(optUDP, optLSRR, 3, 4, optSSRR, 3, 4),                           // two source routes
			withIPOpts("icmp 10.0.1.2 > 10.0.1.1 id 1 seq 1 iif tun1", optRR, 0, 4, 0), // to the router
		},
	},
	{
		// valid options forwarded through MASQUERADE
		Name:    "options-forward",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules:   optNAT,
		Packets: []Packet{
			withIPOpts(optUDP, optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),                              // record route: our address
			withIPOpts(optUDP, optRR, 7, 8, 1, 2, 3, 4),                                           // full
			withIPOpts(optUDP, optRR, 3, 4),                                                       // no room at all
			withIPOpts(optUDP, optTS, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0),                           // timestamps only
			withIPOpts(optUDP, optTS, 20, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),   // address and time
			withIPOpts(optUDP, optTS, 12, 5, 3, 10, 0, 1, 1, 0, 0, 0, 0),                          // prespecified: ours
			withIPOpts(optUDP, optTS, 12, 5, 3, 10, 9, 9, 9, 0, 0, 0, 0),                          // prespecified: not ours
			withIPOpts(optUDP, optTS, 8, 9, 0x30, 0, 0, 0, 0),                                     // full: overflow counted
			withIPOpts(optUDP, optTS, 8, 5, 2, 0, 0, 0, 0),                                        // unknown flag
			withIPOpts(optUDP, optRA, 4, 0, 0),                                                    // router alert
			withIPOpts(optUDP, optRA, 4, 0, 1),                                                    // router alert, other value
			withIPOpts(optUDP, 0x9e, 4, 1, 2),                                                     // unknown option
			withIPOpts(optUDP, packet.OptSec, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0),                      // security
			withIPOpts(optUDP, optNOP, packet.OptEnd, optRR, 0),                                   // garbage after the end
			withIPOpts(optUDP, optRR, 7, 4, 0, 0, 0, 0, optTS, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0),  // both
			withIPOpts("udp 10.0.1.2:1000 > 10.0.2.2:53 ttl 1 iif tun1", optRR, 7, 4, 0, 0, 0, 0), // time exceeded echoes
		},
	},
	{
		// source routes with accept_source_route at its default (all=0):
		// dropped, no answer, whether forwarded or for us
		Name:    "options-source-route",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules:   optNAT,
		Packets: []Packet{
			withIPOpts(optUDP, optLSRR, 7, 4, 10, 0, 3, 3),
			withIPOpts(optUDP, optSSRR, 7, 4, 10, 0, 3, 3),
			withIPOpts("udp 10.0.1.2:1000 > 10.0.1.1:53 iif tun1", optLSRR, 7, 4, 10, 0, 2, 2),
			withIPOpts("icmp 10.0.1.2 > 10.0.1.1 id 1 seq 1 iif tun1", optSSRR, 7, 4, 10, 0, 2, 2),
		},
	},
	{
		// accept_source_route on: a loose route to another host is
		// forwarded, a strict one is a parameter problem; through us
		// the packet goes on to the next hop (ip_options_rcv_srr,
		// ip_forward_options); a strict hop behind a gateway fails
		Name:    "options-source-route-accepted",
		Ifaces:  legs,
		Sysctls: append([]string{"net.ipv4.conf.all.accept_source_route=1", "net.ipv4.conf.tun1.accept_source_route=1"}, fwd...),
		IP:      []string{"route add 10.9.0.0/16 via 10.0.2.9"},
		Rules:   optNAT,
		Packets: []Packet{
			withIPOpts(optUDP, optLSRR, 7, 4, 10, 0, 3, 3),
			withIPOpts(optUDP, optSSRR, 7, 4, 10, 0, 3, 3),
			withIPOpts("udp 10.0.1.2:1001 > 10.0.1.1:53 iif tun1", optLSRR, 11, 4, 10, 0, 2, 2, 10, 0, 3, 3),
			withIPOpts("udp 10.0.1.2:1002 > 10.0.1.1:53 iif tun1", optSSRR, 7, 4, 10, 0, 3, 3),
			withIPOpts("udp 10.0.1.2:1003 > 10.0.1.1:53 iif tun1", optSSRR, 7, 4, 10, 9, 0, 1),
			withIPOpts("udp 10.0.1.2:1004 > 10.0.1.1:53 iif tun1", optLSRR, 7, 4, 10, 9, 0, 1),
			withIPOpts("udp 10.0.1.2:1005 > 10.0.1.1:53 iif tun1", optLSRR, 7, 8, 10, 0, 3, 3), // used up: ours
			withIPOpts("icmp 10.0.1.2 > 10.0.1.1 id 1 seq 1 iif tun1", optLSRR, 11, 12, 10, 0, 3, 3, 10, 0, 1, 1),
		},
	},
	{
		// options on packets for the router: the answers echo them
		Name:    "options-local",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules:   optNAT,
		Packets: []Packet{
			withIPOpts("icmp 10.0.1.2 > 10.0.1.1 id 1 seq 1 iif tun1", optRR, 15, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("icmp 10.0.1.2 > 10.0.1.1 id 1 seq 2 iif tun1", optRR, 7, 4, 0, 0, 0, 0),
			withIPOpts("icmp 10.0.1.2 > 10.0.2.1 id 1 seq 3 iif tun1", optTS, 20, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("icmp 10.0.1.2 > 10.0.1.1 id 1 seq 4 iif tun1", optTS, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("icmp 10.0.1.2 > 10.0.1.1 id 1 seq 5 iif tun1", optRA, 4, 0, 0, 0x9e, 4, 1, 2),
			withIPOpts("udp 10.0.1.2:1000 > 10.0.1.1:9999 iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("tcp 10.0.1.2:1000 > 10.0.1.1:9999 syn iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
		},
	},
}

var optionScenarios2 = []Scenario{
	{
		// options meeting the rest of the path: ip_error before the
		// options, a parameter problem before the TTL check, DNAT before
		// the record, REJECT echoing them, a broadcast, and the host's
		// own packets (sent as they are; looped back through lo they
		// are compiled like any received packet)
		Name:    "options-paths",
		Ifaces:  legs,
		Sysctls: fwd,
		IP:      []string{"route add unreachable 10.70.0.0/16", "route add blackhole 10.71.0.0/16", "route add prohibit 10.72.0.0/16"},
		Rules: traceAll + `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.1.1/32 -p udp -m udp --dport 8053 -j DNAT --to-destination 10.0.3.3:53
-A POSTROUTING -o tun2 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p udp -m udp --dport 69 -j REJECT
-A FORWARD -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset
COMMIT
`,
		Packets: []Packet{
			withIPOpts("udp 10.0.1.2:1000 > 10.70.0.1:53 iif tun1", optRR, 0, 4, 0),
			withIPOpts("udp 10.0.1.2:1000 > 10.70.0.1:53 iif tun1", optRR, 7, 4, 0, 0, 0, 0),
			withIPOpts("udp 10.0.1.2:1000 > 10.71.0.1:53 iif tun1", optRR, 0, 4, 0),
			withIPOpts("udp 10.0.1.2:1000 > 10.72.0.1:53 iif tun1", optRR, 0, 4, 0),
			withIPOpts("udp 10.0.1.2:1000 > 10.72.0.1:53 iif tun1", optRR, 7, 4, 0, 0, 0, 0),
			withIPOpts("udp 0.0.0.0:1000 > 10.0.2.2:53 iif tun1", optRR, 0, 4, 0),
			withIPOpts("udp 10.0.1.2:1001 > 10.0.2.2:53 ttl 1 iif tun1", optRR, 0, 4, 0),
			withIPOpts("udp 10.0.1.2:1002 > 10.0.1.1:8053 iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("udp 10.0.1.2:1003 > 10.0.2.2:69 iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("tcp 10.0.1.2:1004 > 10.0.2.2:25 syn iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("udp 10.0.1.2:1005 > 10.0.1.255:53 iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("udp 10.0.1.2:1006 > 10.0.3.3:53 iif tun1", optTS, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("udp 10.0.1.1:1007 > 10.0.2.2:53 local", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("icmp 10.0.1.1 > 10.0.1.1 id 9 seq 1 local", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("udp 10.0.1.1:1008 > 10.0.1.1:9999 local", optRR, 0, 4, 0),
		},
	},
	{
		// REJECT without conntrack: the reset's and the unreachable's
		// checksum check sums the header ip_options_compile rewrote
		// (stale checksum) and fails; a full record route is not
		// rewritten and is answered
		Name:    "options-reject-notrack",
		Ifaces:  legs,
		Sysctls: fwd,
		Rules: traceAll + `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset
-A FORWARD -p udp -m udp --dport 69 -j REJECT
-A FORWARD -p tcp -m tcp --dport 70 -j REJECT
-A INPUT -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset
-A INPUT -p udp -m udp --dport 69 -j REJECT
COMMIT
`,
		Packets: []Packet{
			withIPOpts("tcp 10.0.1.2:1000 > 10.0.2.2:25 syn iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("tcp 10.0.1.2:1001 > 10.0.2.2:25 syn iif tun1", optRR, 7, 8, 1, 2, 3, 4),
			withIPOpts("udp 10.0.1.2:1002 > 10.0.2.2:69 iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("tcp 10.0.1.2:1003 > 10.0.2.2:70 syn iif tun1", optTS, 8, 5, 0, 0, 0, 0, 0),
			withIPOpts("tcp 10.0.1.2:1004 > 10.0.1.1:25 syn iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("udp 10.0.1.2:1005 > 10.0.1.1:69 iif tun1", optRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0),
			withIPOpts("tcp 10.0.1.2:1006 > 10.0.1.1:25 syn iif tun1", optRA, 4, 0, 0),
		},
	},
}

func TestOptionsPaths(t *testing.T) { runScenarios(t, optionScenarios2) }

func TestOptionsScenarios(t *testing.T) { runScenarios(t, optionScenarios) }
