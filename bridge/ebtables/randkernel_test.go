package ebtables

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

// TestEvalKernelRandom: random rules (basic part plus an ip, ip6, arp,
// vlan, 802_3, stp, among, pkttype or mark match) and random frames,
// bridged through ebtables-nft and through Program.Run; every rule's
// counters must agree. The seeds are fixed, so a failure reproduces.
func TestEvalKernelRandom(t *testing.T) {
	seeds := []uint64{13, 1, 2, 3}
	if v, err := strconv.ParseUint(os.Getenv("USWITCH_EBT_SEED"), 10, 64); err == nil {
		seeds = []uint64{v} // USWITCH_EBT_SEED=n tries another rule set and frames
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { evalKernelRandom(t, seed) })
	}
}

func evalKernelRandom(t *testing.T, seed uint64) {
	ns := bridgeNS(t)
	r := rand.New(rand.NewPCG(seed, 2))
	macs := []string{"02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0d", "ff:ff:ff:ff:ff:ff"}
	pick := func(l ...string) string { return l[r.IntN(len(l))] }
	inv := func() string {
		if r.IntN(3) == 0 {
			return "! "
		}
		return ""
	}
	ext := map[string][]func() string{
		"IPv4": {
			func() string { return "--ip-src " + inv() + pick("10.0.0.1", "10.0.0.0/30", "10.0.1.0/24") },
			func() string { return "--ip-dst " + inv() + pick("10.0.0.2", "10.0.0.0/31") },
			func() string { return "--ip-tos " + inv() + pick("0x00", "0x10") },
			func() string { return "--ip-proto " + inv() + pick("tcp", "udp", "icmp") },
			func() string {
				return "--ip-proto " + pick("tcp", "udp") + " --ip-dport " + inv() + pick("22", "53", "1:100", "1000:65535")
			},
			func() string { return "--ip-proto tcp --ip-sport " + inv() + pick("22", "1024:65535") },
			func() string {
				return "--ip-proto icmp --ip-icmp-type " + inv() + pick("echo-request", "echo-reply", "3:5/0:255")
			},
		},
		"ARP": {
			func() string { return "--arp-op " + inv() + pick("Request", "Reply") },
			func() string { return "--arp-ip-src " + inv() + pick("10.0.0.1", "10.0.0.0/24") },
			func() string { return "--arp-ip-dst " + inv() + pick("10.0.0.2", "10.0.0.3") },
			func() string { return "--arp-mac-src " + inv() + pick(macs[:3]...) },
			func() string { return inv() + "--arp-gratuitous" },
		},
		"IPv6": {
			func() string { return "--ip6-src " + inv() + pick("fe80::1", "fe80::/64", "2001:db8::/32") },
			func() string { return "--ip6-dst " + inv() + pick("2001:db8::2", "ff02::/16") },
			func() string { return "--ip6-tclass " + inv() + pick("0x00", "0x10") },
			func() string { return "--ip6-proto " + inv() + pick("tcp", "udp", "ipv6-icmp") },
			func() string {
				return "--ip6-proto " + pick("tcp", "udp") + " --ip6-dport " + inv() + pick("22", "53", "1:100")
			},
			func() string {
				return "--ip6-proto ipv6-icmp --ip6-icmp-type " + inv() + pick("echo-request", "neighbour-solicitation", "1:4/0:255")
			},
		},
		"Length": {
			func() string { return "--802_3-sap " + inv() + pick("0x42", "0xaa") },
			func() string { return "--802_3-type " + inv() + pick("0x1234", "0x0800") },
		},
		"802_1Q": {
			func() string { return "--vlan-id " + inv() + pick("1", "10", "20") },
			func() string { return "--vlan-prio " + inv() + pick("0", "3") },
			func() string { return "--vlan-encap " + inv() + pick("IPv4", "ARP") },
		},
		"": {
			func() string { return "--pkttype-type " + inv() + pick("otherhost", "broadcast") },
			func() string { return "--among-src " + inv() + pick(macs[:3]...) },
			func() string { return "--among-dst " + inv() + pick("2:0:0:0:0:b=10.0.0.2", "2:0:0:0:0:c") },
			func() string { return "--mark " + inv() + "0" },
			func() string { return "--stp-type " + inv() + pick("config", "tcn") },
			func() string { return "--stp-port " + inv() + pick("1", "2:10") },
			func() string { return "--stp-root-prio " + inv() + pick("0", "32768") },
		},
	}
	var rules strings.Builder
	rules.WriteString("*filter\n")
	for i := 0; i < 120; i++ {
		var w []string
		proto := pick("", "", "IPv4", "IPv4", "ARP", "802_1Q", "IPv6", "Length")
		if proto != "" {
			w = append(w, "-p", strings.TrimSpace(inv()+proto))
			if strings.HasPrefix(w[1], "!") {
				w[1] = "! " + proto
				proto = "" // no extension needs an inverted -p
			}
		}
		if r.IntN(3) == 0 {
			w = append(w, "-s", inv()+pick(macs[:3]...))
		}
		if r.IntN(3) == 0 {
			w = append(w, "-d", inv()+pick(append(macs, "Multicast", "Unicast", "02:00:00:00:00:00/ff:ff:ff:ff:ff:fe")...))
		}
		if r.IntN(4) == 0 {
			w = append(w, "-i", inv()+pick("vetha", "vethb", "veth+"))
		}
		if fs := ext[proto]; len(fs) > 0 && r.IntN(4) != 0 {
			w = append(w, fs[r.IntN(len(fs))]())
		} else if r.IntN(2) == 0 {
			fs := ext[""]
			w = append(w, fs[r.IntN(len(fs))]())
		}
		fmt.Fprintf(&rules, "-A FORWARD %s -j CONTINUE\n", strings.Join(w, " "))
	}
	if _, stderr, code, err := ns.Run(rules.String(), "ebtables-restore"); err != nil || code != 0 {
		t.Fatalf("ebtables-restore: exit %d %s %v\n%s", code, stderr, err, rules.String())
	}

	var frames []namedFrame
	for i := 0; i < 200; i++ {
		frames = append(frames, randomFrame(r))
	}
	sendFrames(t, ns, frames)
	p := Compile(mustLoad(rules.String()))
	for _, f := range frames {
		fr := &packet.Frame{Data: append([]byte(nil), f.data...)}
		if fr.Decode() != nil {
			continue
		}
		pt := PacketOtherHost
		switch {
		case fr.Dst.IsBroadcast():
			pt = PacketBroadcast
		case fr.Dst.IsMulticast():
			pt = PacketMulticast
		}
		p.Run(Filter, Forward, &Ctx{Frame: fr, In: "vetha", Out: "vethb", LogicalIn: "br0", LogicalOut: "br0", PktType: pt})
	}
	compareCounters(t, ns, p, len(frames))
}

// randomFrame makes a unicast-to-unknown or broadcast frame from a
// small space of addresses, protocols, ports and tags.
func randomFrame(r *rand.Rand) namedFrame {
	// sources and destinations apart: the bridge learns sources, and a
	// frame to a MAC learned on its own port is not forwarded
	srcs := []packet.MAC{macA, {0x02, 0, 0, 0, 0, 0x0d}}
	dsts := []packet.MAC{macB, {0x02, 0, 0, 0, 0, 0x0c}, packet.Broadcast}
	src, dst := srcs[r.IntN(len(srcs))], dsts[r.IntN(len(dsts))]
	ip4 := func() []byte {
		proto := []uint8{6, 17, 1}[r.IntN(3)]
		h := make([]byte, 28)
		h[0], h[1], h[9] = 0x45, []byte{0, 0x10}[r.IntN(2)], proto
		binary.BigEndian.PutUint16(h[2:], 28)
		copy(h[12:], []byte{10, 0, byte(r.IntN(2)), byte(1 + r.IntN(3))})
		copy(h[16:], []byte{10, 0, 0, byte(1 + r.IntN(3))})
		ports := []uint16{22, 53, 80, 2000}
		binary.BigEndian.PutUint16(h[20:], ports[r.IntN(4)])
		binary.BigEndian.PutUint16(h[22:], ports[r.IntN(4)])
		if proto == 1 {
			h[20], h[21] = []byte{0, 3, 8}[r.IntN(3)], byte(r.IntN(2))
		}
		return h
	}
	arp := func() []byte {
		a := make([]byte, 28)
		binary.BigEndian.PutUint16(a[0:], 1)
		binary.BigEndian.PutUint16(a[2:], packet.EtherTypeIPv4)
		a[4], a[5] = 6, 4
		binary.BigEndian.PutUint16(a[6:], uint16(1+r.IntN(2)))
		copy(a[8:], src[:])
		copy(a[14:], []byte{10, 0, 0, byte(1 + r.IntN(3))})
		copy(a[24:], []byte{10, 0, 0, byte(1 + r.IntN(3))})
		return a
	}
	ip6 := func() []byte {
		next := []uint8{6, 17, 58, 0}[r.IntN(4)]
		h := make([]byte, 40+28)
		h[0], h[1] = 0x60|byte(r.IntN(2)), 0
		binary.BigEndian.PutUint16(h[4:], 28)
		h[6], h[7] = next, 64
		h[8], h[9] = 0xfe, 0x80
		h[23] = byte(1 + r.IntN(2))
		if r.IntN(2) == 0 {
			h[24], h[25], h[39] = 0x20, 0x01, 2
		} else {
			h[24], h[25], h[39] = 0xff, 0x02, 1
		}
		l4 := h[40:]
		if next == 0 { // hop-by-hop, then UDP
			l4[0], l4[1] = 17, 0
			l4 = l4[8:]
		}
		binary.BigEndian.PutUint16(l4[0:], []uint16{22, 53, 80}[r.IntN(3)])
		binary.BigEndian.PutUint16(l4[2:], []uint16{22, 53, 80}[r.IntN(3)])
		if next == 58 {
			l4[0], l4[1] = []byte{128, 135, 1}[r.IntN(3)], 0
		}
		return h
	}
	llc := func() []byte {
		if r.IntN(2) == 0 { // a configuration or TCN BPDU
			b := make([]byte, 6+31)
			copy(b, []byte{0x42, 0x42, 0x03, 0, 0, []byte{0, 0x80}[r.IntN(2)]})
			binary.BigEndian.PutUint16(b[7:], []uint16{0, 32768}[r.IntN(2)])
			binary.BigEndian.PutUint16(b[6+21:], uint16(r.IntN(4)))
			return b
		}
		b := []byte{0xaa, 0xaa, 0x03, 0, 0, 0, 0x12, 0x34, 1, 2}
		if r.IntN(2) == 0 {
			b[7] = 0x00
			b[6] = 0x08
		}
		return b
	}
	switch r.IntN(7) {
	case 5:
		return namedFrame{"ipv6", packet.BuildFrame(dst, src, packet.EtherTypeIPv6, ip6())}
	case 6:
		b := llc()
		d := dst
		if b[0] == 0x42 {
			d = packet.MAC{0x01, 0x80, 0xc2}
		}
		return namedFrame{"llc", packet.BuildFrame(d, src, uint16(len(b)), b)}
	case 0, 1:
		return namedFrame{"ipv4", packet.BuildFrame(dst, src, packet.EtherTypeIPv4, ip4())}
	case 2:
		return namedFrame{"arp", packet.BuildFrame(dst, src, packet.EtherTypeARP, arp())}
	case 3:
		inner, body := uint16(packet.EtherTypeIPv4), ip4()
		if r.IntN(2) == 0 {
			inner, body = packet.EtherTypeARP, arp()
		}
		b := make([]byte, 18+len(body))
		copy(b[0:], dst[:])
		copy(b[6:], src[:])
		binary.BigEndian.PutUint16(b[12:], packet.EtherTypeVLAN)
		binary.BigEndian.PutUint16(b[14:], uint16(r.IntN(2)*3)<<13|[]uint16{1, 10, 20}[r.IntN(3)])
		binary.BigEndian.PutUint16(b[16:], inner)
		copy(b[18:], body)
		return namedFrame{"vlan", b}
	default:
		p := make([]byte, 40)
		p[0] = 0x60
		p[6] = 59
		return namedFrame{"ipv6", packet.BuildFrame(dst, src, packet.EtherTypeIPv6, p)}
	}
}
