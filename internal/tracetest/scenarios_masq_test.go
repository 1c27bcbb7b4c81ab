package tracetest

import "testing"

// TestMasqueradeOifChanged: a masqueraded connection whose packet is
// routed out of another device (here by TOS policy routing) is killed
// and the packet dropped (nf_nat_oif_changed); the next packet makes a
// new connection.
func TestMasqueradeOifChanged(t *testing.T) {
	runScenarios(t, []Scenario{{
		Name:    "masquerade-oif-changed",
		Ifaces:  legs,
		Sysctls: fwd,
		IP:      []string{"route add 10.9.0.0/16 via 10.0.2.2", "route add 10.9.0.0/16 via 10.0.3.2 table 100", "rule add tos 0x10 table 100"},
		Rules: traceAll + ctForward + `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o tun2 -j MASQUERADE
-A POSTROUTING -o tun3 -j MASQUERADE
COMMIT
`,
		Packets: []Packet{
			P("udp 10.0.1.2:1000 > 10.9.0.2:7 iif tun1"),
			P("udp 10.0.1.2:1000 > 10.9.0.2:7 tos 0x10 iif tun1"),
			P("udp 10.0.1.2:1000 > 10.9.0.2:7 tos 0x10 iif tun1"),
			P("udp 10.0.1.2:1000 > 10.9.0.2:7 iif tun1"),
		},
	}})
}
