package tracetest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// Seeded random bridge scenarios: br0 with three TAP ports, a routed
// TUN leg, random iptables rules that see bridged packets (physdev,
// mac, mark, conntrack, addresses) and random frames between four hosts
// on the bridge, the bridge itself and the leg, a third of them answers.

var bridgeHosts = []struct {
	mac packet.MAC
	ip  string
}{
	{packet.MAC{2, 0, 0, 0, 0, 0x0a}, "10.1.0.1"},
	{packet.MAC{2, 0, 0, 0, 0, 0x0b}, "10.1.0.2"},
	{packet.MAC{2, 0, 0, 0, 0, 0x0c}, "10.1.0.3"},
	{packet.MAC{2, 0, 0, 0, 0, 0x0d}, "10.1.0.4"},
}

var bridgePortNames = []string{"p1", "p2", "p3"}

// bridgeFragments are rule bodies per table and chain.
var bridgeFragments = map[string][]string{
	"mangle PREROUTING": {
		"-m physdev --physdev-in p1 -j MARK --set-mark 0x1",
		"-m physdev --physdev-in p2 -j MARK --set-mark 0x2",
		"-m mac --mac-source 02:00:00:00:00:0c -j MARK --set-mark 0x3",
		"-p udp --dport 53 -j MARK --set-mark 0x53",
		"-m physdev ! --physdev-is-in -j RETURN",
	},
	"mangle FORWARD": {
		"-m physdev --physdev-is-bridged -j MARK --set-mark 0x10",
		"-m physdev --physdev-out p3 -j MARK --set-mark 0x30",
		"-m mark --mark 0x2 -j RETURN",
	},
	"mangle POSTROUTING": {
		"-m physdev --physdev-out p1 -j MARK --set-mark 0x100",
		"-m physdev --physdev-is-out -j RETURN",
	},
	"nat PREROUTING": {
		"-d 10.1.0.100 -p tcp --dport 80 -j DNAT --to-destination 10.1.0.3:8080",
		"-d 10.1.0.101 -p udp --dport 53 -j DNAT --to-destination 10.0.1.2:53",
	},
	"nat POSTROUTING": {
		"-s 10.1.0.0/24 -o tun1 -j MASQUERADE",
		"-m physdev --physdev-is-bridged -j RETURN",
	},
	"filter INPUT": {
		"-m physdev --physdev-in p3 -j DROP",
		"-p icmp -j ACCEPT",
		"-m mark --mark 0x3 -j DROP",
	},
	"filter FORWARD": {
		"-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		"-m physdev --physdev-in p1 --physdev-out p2 -j ACCEPT",
		"-m physdev --physdev-in p2 --physdev-out p1 -j DROP",
		"-m mark --mark 0x53 -j ACCEPT",
		"-p tcp --dport 8080 -j ACCEPT",
		"-m mac --mac-source 02:00:00:00:00:0d -j DROP",
		"-m physdev --physdev-is-bridged -p udp -j ACCEPT",
		"-m conntrack --ctstate NEW -s 10.1.0.0/24 -o tun1 -j ACCEPT",
	},
}

var bridgeTables = []struct {
	table  string
	chains []string
}{
	{"mangle", []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}},
	{"nat", []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}},
	{"filter", []string{"INPUT", "FORWARD", "OUTPUT"}},
}

func randomBridgeRules(r *rand.Rand) string {
	var b strings.Builder
	b.WriteString(traceAllRules)
	b.WriteString("COMMIT\n")
	for _, tc := range bridgeTables {
		if tc.table != "filter" && r.IntN(3) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", tc.table)
		for _, c := range tc.chains {
			pol := "ACCEPT"
			if tc.table == "filter" && c == "FORWARD" && r.IntN(3) == 0 {
				pol = "DROP"
			}
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, pol)
		}
		for _, c := range tc.chains {
			fr := bridgeFragments[tc.table+" "+c]
			if len(fr) == 0 {
				continue
			}
			for range r.IntN(4) {
				fmt.Fprintf(&b, "-A %s %s\n", c, fr[r.IntN(len(fr))])
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// randomBridgeFrames draws n frames: hosts sit behind fixed ports (host
// i on port i%3, so two share p1), frames go host to host (to the
// peer's MAC, or broadcast), to br0 (its MAC, its address or a routed
// address), ARP requests, and answers to earlier frames.
func randomBridgeFrames(r *rand.Rand, n int) []Packet {
	type sent struct {
		src, dst int // host index; dst -1: br0
		spec     string
		proto    string
	}
	var out []Packet
	var hist []sent
	protos := []string{"udp", "tcp", "icmp"}
	for len(out) < n {
		s := r.IntN(len(bridgeHosts))
		in := bridgePortNames[s%3]
		h := bridgeHosts[s]
		switch k := r.IntN(10); {
		case k == 0:
			// ARP request for a host or br0
			target := "10.1.0.254"
			if r.IntN(2) == 0 {
				target = bridgeHosts[r.IntN(len(bridgeHosts))].ip
			}
			out = append(out, arpFrame(1, packet.Broadcast, h.mac, h.ip, packet.MAC{}, target, in))
		case k <= 2 && len(hist) > 0:
			// an answer
			p := hist[r.IntN(len(hist))]
			if p.dst < 0 {
				continue
			}
			d := bridgeHosts[p.dst]
			o := bridgeHosts[p.src]
			out = append(out, eth(o.mac, d.mac, p.spec, bridgePortNames[p.dst%3]))
		default:
			proto := protos[r.IntN(len(protos))]
			sport, dport := 1000+r.IntN(4), []int{53, 80, 8080, 7}[r.IntN(4)]
			var dstIP string
			var dstMAC packet.MAC
			d := -1
			switch r.IntN(6) {
			case 0:
				dstIP, dstMAC = "10.1.0.254", macBr
			case 1:
				dstIP, dstMAC = []string{"10.0.1.2", "10.1.0.100", "10.1.0.101"}[r.IntN(3)], macBr
			case 2:
				dstIP, dstMAC = "10.1.0.255", packet.Broadcast
			default:
				d = r.IntN(len(bridgeHosts))
				if d == s {
					d = (d + 1) % len(bridgeHosts)
				}
				dstIP, dstMAC = bridgeHosts[d].ip, bridgeHosts[d].mac
			}
			var spec, back string
			if proto == "icmp" {
				id := 1 + r.IntN(3)
				spec = fmt.Sprintf("icmp %s > %s id %d seq 1", h.ip, dstIP, id)
				back = fmt.Sprintf("icmp %s > %s type 0 id %d seq 1", dstIP, h.ip, id)
			} else {
				flags := ""
				if proto == "tcp" {
					flags = []string{" syn", " ack 1 seq 1", " syn ack 1 seq 1", " rst"}[r.IntN(4)]
				}
				spec = fmt.Sprintf("%s %s:%d > %s:%d%s", proto, h.ip, sport, dstIP, dport, flags)
				back = fmt.Sprintf("%s %s:%d > %s:%d%s", proto, dstIP, dport, h.ip, sport, strings.Replace(flags, "syn", "syn ack 1", 1))
			}
			out = append(out, eth(dstMAC, h.mac, spec, in))
			if d >= 0 {
				hist = append(hist, sent{src: s, dst: d, spec: back, proto: proto})
			}
		}
	}
	return out
}

// RandomBridgeScenario is the i-th random bridge scenario of seed.
func RandomBridgeScenario(seed uint64, i, frames int) Scenario {
	r := rand.New(rand.NewPCG(seed, uint64(i)*0x9e3779b97f4a7c15+7))
	// no redirects: a frame to br0's MAC for another host on the
	// bridge is routed back out of br0, and the redirect's per-peer
	// backoff counts jiffies, which a replay matches only to within a
	// tick (the ICMP scenarios test redirects on their own)
	sys := append([]string{"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.br0.send_redirects=0"}, fwd...)
	if r.IntN(5) == 0 {
		sys = append([]string{"net.bridge.bridge-nf-call-iptables=0"}, sys...)
	}
	return Scenario{
		Name:    fmt.Sprintf("random-bridge-%d-%d", seed, i),
		Ifaces:  []Iface{{Name: "tun1", Addrs: []string{"10.0.1.1/24"}}},
		Bridges: br0,
		Sysctls: sys,
		IP: []string{"neigh replace 10.1.0.3 lladdr 02:00:00:00:00:0c dev br0 nud permanent",
			"neigh replace 10.1.0.1 lladdr 02:00:00:00:00:0a dev br0 nud permanent"},
		Rules:   randomBridgeRules(r),
		Packets: randomBridgeFrames(r, frames),
	}
}

// TestRandomBridge runs 30 random bridge scenarios of 50 frames (1,500
// frames per CI run); USWITCH_TRACE_SEED and USWITCH_TRACE_RANDOM as
// for TestRandom.
func TestRandomBridge(t *testing.T) {
	runRandom(t, func(seed uint64, i int) Scenario { return RandomBridgeScenario(seed, i, 50) })
}
