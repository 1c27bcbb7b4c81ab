package tracetest

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bench/rulegen"
	"github.com/uswitch-lab/uswitch/packet"
)

// Bridged traffic against the kernel: a bridge with TAP ports, frames
// injected per port, the frames leaving every port and the IPv4 hooks
// br_netfilter runs (xtables-monitor, family 2) compared.

var (
	macA  = packet.MAC{2, 0, 0, 0, 0, 0x0a}
	macB  = packet.MAC{2, 0, 0, 0, 0, 0x0b}
	macC  = packet.MAC{2, 0, 0, 0, 0, 0x0c}
	macBr = packet.MAC{2, 0, 0, 0, 0, 0xfe}
)

// br0 has three TAP ports, and a routed TUN leg.
var br0 = []Bridge{{Name: "br0", Addrs: []string{"10.1.0.254/24"}, MAC: "02:00:00:00:00:fe",
	Ports: []BridgePort{{Name: "p1", MAC: "02:00:00:00:01:01"}, {Name: "p2", MAC: "02:00:00:00:01:02"}, {Name: "p3", MAC: "02:00:00:00:01:03"}}}}

// eth is the IPv4 packet form s (no iif) in a frame src -> dst arriving on in.
func eth(dst, src packet.MAC, s, in string) Packet {
	b := P(s + " iif x").Bytes()
	return Packet{Frame: packet.BuildFrame(dst, src, packet.EtherTypeIPv4, b), In: in}
}

// arpFrame is an ARP request (op 1) or reply (op 2).
func arpFrame(op uint16, dst, sha packet.MAC, spa string, tha packet.MAC, tpa string, in string) Packet {
	a := packet.ARP{Op: op, SHA: sha, SPA: packet.MustAddr(spa), THA: tha, TPA: packet.MustAddr(tpa)}.Bytes()
	return Packet{Frame: packet.BuildFrame(dst, sha, packet.EtherTypeARP, a), In: in}
}

var bridgeScenarios = []Scenario{
	{
		// learning and flooding: unknown unicast floods, the answer
		// is learned, then known unicast goes to one port; broadcast
		// and ARP; IPv4 hooks with IN=br0
		Name:    "bridge-learn-flood",
		Ifaces:  []Iface{{Name: "tun1", Addrs: []string{"10.0.1.1/24"}}},
		Bridges: br0,
		Sysctls: fwd,
		Rules:   traceAll + ctForward,
		Packets: []Packet{
			eth(macB, macA, "udp 10.1.0.1:1000 > 10.1.0.2:7", "p1"),
			eth(macA, macB, "udp 10.1.0.2:7 > 10.1.0.1:1000", "p2"),
			eth(macB, macA, "udp 10.1.0.1:1000 > 10.1.0.2:7", "p1"),
			eth(packet.Broadcast, macC, "udp 10.1.0.3:68 > 10.1.0.255:67", "p3"),
			arpFrame(1, packet.Broadcast, macA, "10.1.0.1", packet.MAC{}, "10.1.0.254", "p1"),
			arpFrame(1, packet.Broadcast, macA, "10.1.0.1", packet.MAC{}, "10.1.0.2", "p1"),
		},
	},
	{
		// to and through the host: br0's own address (echo), and
		// routed out of the TUN leg and back in to the bridge
		Name:    "bridge-up-routed",
		Ifaces:  []Iface{{Name: "tun1", Addrs: []string{"10.0.1.1/24"}}},
		Bridges: br0,
		Sysctls: fwd,
		IP:      []string{"neigh replace 10.1.0.1 lladdr 02:00:00:00:00:0a dev br0 nud permanent"},
		Rules:   traceAll + ctForward,
		Packets: []Packet{
			eth(macBr, macA, "icmp 10.1.0.1 > 10.1.0.254 id 1 seq 1", "p1"),
			eth(macBr, macA, "udp 10.1.0.1:1000 > 10.0.1.2:7", "p1"),
			P("udp 10.0.1.2:7 > 10.1.0.1:1000 iif tun1"),
			P("udp 10.0.1.2:7 > 10.1.0.9:1000 iif tun1"),
		},
	},
	{
		// DNAT on the bridge: to another host on the same bridge it
		// stays bridged (bridged DNAT), to a routed address it goes up
		Name:    "bridge-dnat",
		Ifaces:  []Iface{{Name: "tun1", Addrs: []string{"10.0.1.1/24"}}},
		Bridges: br0,
		Sysctls: fwd,
		IP:      []string{"neigh replace 10.1.0.3 lladdr 02:00:00:00:00:0c dev br0 nud permanent"},
		Rules: traceAll + ctForward + `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.1.0.100 -p tcp --dport 80 -j DNAT --to-destination 10.1.0.3:8080
-A PREROUTING -d 10.1.0.101 -p tcp --dport 80 -j DNAT --to-destination 10.0.1.2:8080
COMMIT
`,
		Packets: []Packet{
			eth(macC, macC, "udp 10.1.0.3:1 > 10.1.0.1:1", "p3"),
			eth(macBr, macA, "tcp 10.1.0.1:40000 > 10.1.0.100:80 syn", "p1"),
			eth(macBr, macA, "tcp 10.1.0.1:40001 > 10.1.0.101:80 syn", "p1"),
		},
	},
	{
		// physdev in every hook iptables accepts it, marks set on
		// bridged packets, a bridged packet dropped by FORWARD
		Name:    "bridge-physdev-mark",
		Ifaces:  []Iface{{Name: "tun1", Addrs: []string{"10.0.1.1/24"}}},
		Bridges: br0,
		Sysctls: fwd,
		Rules: traceAll + `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -m physdev --physdev-in p1 -j MARK --set-mark 0x11
-A PREROUTING -m physdev --physdev-in p2 -j MARK --set-mark 0x22
-A FORWARD -m physdev --physdev-is-bridged --physdev-out p3 -j MARK --set-mark 0x33
-A POSTROUTING -m physdev --physdev-out p2 -j RETURN
-A POSTROUTING -m physdev --physdev-is-out -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m physdev --physdev-in p1 -j ACCEPT
-A INPUT -m physdev ! --physdev-is-in -j ACCEPT
-A FORWARD -m mark --mark 0x22 -j DROP
-A FORWARD -m physdev --physdev-in p1 --physdev-out p2 -j ACCEPT
-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT
COMMIT
`,
		Packets: []Packet{
			eth(macB, macA, "udp 10.1.0.1:1 > 10.1.0.2:2", "p1"),
			eth(macA, macB, "udp 10.1.0.2:2 > 10.1.0.1:1", "p2"),
			eth(macC, macA, "udp 10.1.0.1:1 > 10.1.0.3:2", "p1"),
			eth(macBr, macA, "icmp 10.1.0.1 > 10.1.0.254 id 2 seq 1", "p1"),
			P("udp 10.0.1.2:7 > 10.1.0.1:1000 iif tun1"),
		},
	},
	{
		// bridge-nf-call-iptables=0: bridged IPv4 does not cross
		// iptables; what goes up does, as on any device
		Name:    "bridge-no-call-iptables",
		Ifaces:  []Iface{{Name: "tun1", Addrs: []string{"10.0.1.1/24"}}},
		Bridges: br0,
		Sysctls: append([]string{"net.bridge.bridge-nf-call-iptables=0"}, fwd...),
		IP:      []string{"neigh replace 10.1.0.1 lladdr 02:00:00:00:00:0a dev br0 nud permanent"},
		Rules:   traceAll + ctForward,
		Packets: []Packet{
			eth(macB, macA, "udp 10.1.0.1:1 > 10.1.0.2:2", "p1"),
			eth(macBr, macA, "icmp 10.1.0.1 > 10.1.0.254 id 3 seq 1", "p1"),
			eth(macBr, macA, "udp 10.1.0.1:1000 > 10.0.1.2:7", "p1"),
		},
	},
	{
		// hairpin: a frame for a host learned on its own input port
		// goes back out of it only with hairpin on
		Name: "bridge-hairpin",
		Bridges: []Bridge{{Name: "br0", Addrs: []string{"10.1.0.254/24"}, MAC: "02:00:00:00:00:fe",
			Ports: []BridgePort{{Name: "p1", MAC: "02:00:00:00:01:01", Hairpin: true}, {Name: "p2", MAC: "02:00:00:00:01:02"}}}},
		Rules: traceAll,
		Packets: []Packet{
			eth(macC, macB, "udp 10.1.0.2:1 > 10.1.0.3:2", "p1"),
			eth(macB, macC, "udp 10.1.0.3:2 > 10.1.0.2:1", "p1"),
			eth(macC, macA, "udp 10.1.0.1:1 > 10.1.0.3:2", "p2"),
			eth(macA, macB, "udp 10.1.0.2:1 > 10.1.0.1:2", "p2"),
			eth(macA, macB, "udp 10.1.0.2:1 > 10.1.0.1:2", "p1"),
		},
	},
	{
		// out of the bridge through a MASQUERADE and back: the reply
		// is routed into the bridge to a known neighbour
		Name:    "bridge-masquerade",
		Ifaces:  []Iface{{Name: "tun1", Addrs: []string{"10.0.1.1/24"}}},
		Bridges: br0,
		Sysctls: fwd,
		IP:      []string{"neigh replace 10.1.0.1 lladdr 02:00:00:00:00:0a dev br0 nud permanent"},
		Rules: traceAll + ctForward + `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.1.0.0/24 -o tun1 -j MASQUERADE
COMMIT
`,
		Packets: []Packet{
			eth(macBr, macA, "tcp 10.1.0.1:40000 > 10.0.1.2:80 syn seq 1", "p1"),
			P("tcp 10.0.1.2:80 > 10.0.1.1:40000 syn ack 2 seq 100 iif tun1"),
			eth(macBr, macA, "tcp 10.1.0.1:40000 > 10.0.1.2:80 ack 101 seq 2", "p1"),
		},
	},
	{
		// fragments bridged with conntrack: br_netfilter's PREROUTING
		// reassembles them, and the datagram leaves the port in the
		// fragments it came in
		Name:    "bridge-fragments",
		Bridges: br0,
		Rules:   traceAll + ctForward,
		Packets: append(
			ethFrags(macB, macA, "p1", frags(big("udp 10.1.0.1:1000 > 10.1.0.2:7 iif x", 3000, 77), std(3008)...)),
			ethFrags(macA, macB, "p2", frags(big("udp 10.1.0.2:7 > 10.1.0.1:1000 iif x", 2000, 78), order(std(2008), 1, 0)...))...),
	},
}

// ethFrags puts raw IPv4 packets into frames src -> dst arriving on in.
func ethFrags(dst, src packet.MAC, in string, ps []Packet) []Packet {
	var out []Packet
	for _, p := range ps {
		out = append(out, Packet{Frame: packet.BuildFrame(dst, src, packet.EtherTypeIPv4, p.Raw), In: in})
	}
	return out
}

func TestBridgeScenarios(t *testing.T) { runScenarios(t, bridgeScenarios) }

// ebtables on the bridge path, against the kernel's ebtables-nft: nat
// PREROUTING marks and dnat before iptables, filter FORWARD drops and
// marks, nat POSTROUTING snat, filter INPUT, OUTPUT for what the host
// sends, arpreply; the bridge chains of traced frames print the bridge
// family's trace lines (PACKET: 7).
var ebtScenarios = []Scenario{
	{
		Name:    "ebtables-filter-mark",
		Ifaces:  []Iface{{Name: "tun1", Addrs: []string{"10.0.1.1/24"}}},
		Bridges: br0,
		Sysctls: fwd,
		IP:      []string{"neigh replace 10.1.0.1 lladdr 02:00:00:00:00:0a dev br0 nud permanent"},
		Rules: traceAll + ctForward + `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A FORWARD -m mark --mark 0x7 -j MARK --set-mark 0x8
COMMIT
`,
		Ebtables: `*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
-A INPUT -p IPv4 --ip-proto udp -j DROP
-A FORWARD -s 02:00:00:00:00:0c -j DROP
-A FORWARD -p IPv4 -j mark --mark-or 0x100 --mark-target CONTINUE
-A OUTPUT -p IPv4 -j mark --mark-set 0x9 --mark-target ACCEPT
*nat
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING -p IPv4 -j mark --mark-set 0x7 --mark-target CONTINUE
-A POSTROUTING -o p3 -j snat --to-src 02:00:00:00:00:ee --snat-target ACCEPT
`,
		Packets: []Packet{
			eth(macB, macA, "udp 10.1.0.1:1 > 10.1.0.2:2", "p1"),
			eth(macA, macB, "udp 10.1.0.2:2 > 10.1.0.1:1", "p2"),
			eth(macA, macC, "udp 10.1.0.3:1 > 10.1.0.1:2", "p3"),
			eth(macBr, macA, "icmp 10.1.0.1 > 10.1.0.254 id 5 seq 1", "p1"),
			eth(macBr, macA, "udp 10.1.0.1:5 > 10.1.0.254:9", "p1"),
			P("udp 10.0.1.2:7 > 10.1.0.1:1000 iif tun1"),
		},
	},
	{
		Name:    "ebtables-dnat-arpreply",
		Bridges: br0,
		Rules:   traceAll,
		Ebtables: `*nat
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING -p ARP --arp-op Request --arp-ip-dst 10.1.0.77 -j arpreply --arpreply-mac 02:00:00:00:00:77
-A PREROUTING -d 02:00:00:00:00:77 -j dnat --to-dst 02:00:00:00:00:0b --dnat-target ACCEPT
`,
		Packets: []Packet{
			eth(macA, macB, "udp 10.1.0.2:1 > 10.1.0.1:1", "p2"),
			arpFrame(1, packet.Broadcast, macA, "10.1.0.1", packet.MAC{}, "10.1.0.77", "p1"),
			eth(packet.MAC{2, 0, 0, 0, 0, 0x77}, macA, "udp 10.1.0.1:1 > 10.1.0.77:2", "p1"),
		},
	},
}

func TestEbtablesScenarios(t *testing.T) { runScenarios(t, ebtScenarios) }

// ebtables chains long enough for the compiled classifier (16 rules or
// more, bench/rulegen's filler rules that none of the frames match)
// against the kernel: the rules that do match sit between them, a dnat
// with CONTINUE changes the destination MAC a later rule of the same
// chain tests, a mark set in nat PREROUTING and filter FORWARD is tested
// further down FORWARD.
var ebtClassifierScenarios = []Scenario{{
	Name:    "ebtables-classifier",
	Bridges: br0,
	Rules:   traceAll,
	Ebtables: "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n" + ebtFiller("FORWARD", 200, map[int]string{
		50:  "-p IPv4 -s 02:00:00:00:00:0c --ip-dst 10.1.0.1 -j DROP",
		120: "-p IPv4 -i p1 --ip-proto udp -j mark --mark-or 0x40 --mark-target CONTINUE",
		150: "-p IPv4 --mark 0x45 --ip-proto udp --ip-dport 9 -j DROP",
		199: "-p ARP -i p1 --arp-ip-dst 10.1.0.3 -j DROP",
	}) + "*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n" + ebtFiller("PREROUTING", 40, map[int]string{
		10: "-d 02:00:00:00:00:77 -j dnat --to-dst 02:00:00:00:00:0b --dnat-target CONTINUE",
		20: "-d 02:00:00:00:00:0b -j mark --mark-set 0x5 --mark-target CONTINUE",
	}),
	Packets: []Packet{
		eth(macA, macB, "udp 10.1.0.2:2 > 10.1.0.1:1", "p2"),
		eth(macB, macA, "udp 10.1.0.1:1 > 10.1.0.2:2", "p1"),
		eth(macB, macA, "udp 10.1.0.1:1 > 10.1.0.2:9", "p1"),
		eth(macA, macC, "udp 10.1.0.3:1 > 10.1.0.1:2", "p3"),
		eth(macB, macC, "udp 10.1.0.3:1 > 10.1.0.2:9", "p3"),
		eth(packet.MAC{2, 0, 0, 0, 0, 0x77}, macA, "udp 10.1.0.1:1 > 10.1.0.2:3", "p1"),
		arpFrame(1, packet.Broadcast, macA, "10.1.0.1", packet.MAC{}, "10.1.0.2", "p1"),
		arpFrame(1, packet.Broadcast, macA, "10.1.0.1", packet.MAC{}, "10.1.0.3", "p1"),
	},
}}

// ebtFiller is n rules of chain: rulegen.EbtablesForward's (which none
// of the scenario's frames match) with the rules of at in their places.
func ebtFiller(chain string, n int, at map[int]string) string {
	var fill []string
	for _, l := range strings.Split(rulegen.EbtablesForward(n), "\n") {
		if strings.HasPrefix(l, "-A FORWARD ") {
			fill = append(fill, "-A "+chain+" "+strings.TrimPrefix(l, "-A FORWARD "))
		}
	}
	for i, r := range at {
		fill[i] = "-A " + chain + " " + r
	}
	return strings.Join(fill, "\n") + "\n"
}

func TestEbtablesClassifierScenarios(t *testing.T) { runScenarios(t, ebtClassifierScenarios) }
