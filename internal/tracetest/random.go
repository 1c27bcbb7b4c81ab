package tracetest

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// The random generator: rule sets drawn from fixed per-chain fragment
// lists, and random packets through the three-legged router. Everything
// is a function of the seed. Fragments avoid what the kernel decides at
// random: NAT port choices are compared modulo the port, statistic is
// nth only, limits and hashlimits refill slower than a scenario lasts,
// NFQUEUE uses one queue (--queue-balance hashes with a per-boot seed).

// RandomIfaces is the router of the random scenarios.
var RandomIfaces = []Iface{
	{Name: "tun1", Addrs: []string{"10.0.1.1/24"}},
	{Name: "tun2", Addrs: []string{"10.0.2.1/24"}},
	{Name: "tun3", Addrs: []string{"10.0.3.1/24"}},
}

var randomIP = []string{
	"route add 10.9.0.0/16 via 10.0.2.2",
	"route add 10.9.0.0/16 via 10.0.3.3 table 100",
	"rule add fwmark 0x1/0x1 table 100",
}

var fragments = map[string][]string{
	"mangle PREROUTING": {
		"-p tcp --dport 443 -j MARK --set-mark 0x1",
		"-s 10.0.1.0/25 -j MARK --set-xmark 0x2/0x2",
		"-j CONNMARK --restore-mark",
		"-m mark --mark 0x1/0x1 -j CONNMARK --save-mark",
		"-p udp --dport 53 -j MARK --set-mark 0x1",
		"-i tun3 -j MARK --or-mark 0x4",
		"-m connmark --mark 0x1/0x1 -j MARK --set-mark 0x1",
		"-p icmp -j ACCEPT",
		"-m tos --tos 0x10 -j MARK --or-mark 0x8",
		"-m dscp --dscp 0x04 -j MARK --or-mark 0x10",
		"-m statistic --mode nth --every 3 --packet 0 -j MARK --or-mark 0x20",
		"-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1200",
		"-p udp -j TTL --ttl-dec 1",
		"-m recent --set --name R --rsource",
		"-m rpfilter --invert -j DROP",
		"-m set --match-set rs src -j MARK --or-mark 0x40",
	},
	"mangle INPUT": {
		"-p tcp -j MARK --set-mark 0x20",
		"-m mark --mark 0x2/0x2 -j ACCEPT",
	},
	"mangle FORWARD": {
		"-m mark --mark 0x1/0x1 -j MARK --or-mark 0x100",
		"-o tun2 -j CONNMARK --set-mark 0x7/0xf",
		"-m conntrack --ctstate NEW -j MARK --and-mark 0xff",
		"-j DSCP --set-dscp 0x0a",
		"-p udp --dport 123 -j NFQUEUE --queue-num 1 --queue-bypass",
		"-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
	},
	"mangle OUTPUT": {
		"-p udp --dport 443 -j MARK --set-mark 0x1",
		"-o tun1 -j MARK --set-mark 0x40",
	},
	"mangle POSTROUTING": {
		"-m mark ! --mark 0x0 -j CONNMARK --save-mark",
		"-o tun3 -p tcp -j MARK --set-mark 0x9",
		"-p udp -j TOS --set-tos 0x08",
		"-p udp -j CHECKSUM --checksum-fill",
		"-j TTL --ttl-inc 1",
	},
	"nat PREROUTING": {
		"-d 10.0.1.1/32 -p tcp --dport 8080 -j DNAT --to-destination 10.0.2.2:80",
		"-p udp --dport 5353 -j DNAT --to-destination 10.0.3.3",
		"-i tun2 -p tcp --dport 2222 -j DNAT --to-destination 10.0.1.2:22",
		"-d 10.0.3.1/32 -p tcp -j REDIRECT --to-ports 8000",
		"-d 10.0.1.1/32 -p tcp --dport 8443 -j DNAT --to-destination 10.0.2.2-10.0.2.6",
		"-d 10.0.2.1/32 -p udp -j DNAT --to-destination 10.0.3.3:5000-5010",
		"-d 10.9.1.0/24 -j NETMAP --to 10.0.3.0/24",
	},
	"nat OUTPUT": {
		"-p udp --dport 53 -j DNAT --to-destination 10.0.2.2",
		"-d 10.0.3.1/32 -p tcp --dport 99 -j DNAT --to-destination 10.0.1.2:9",
	},
	"nat POSTROUTING": {
		"-o tun2 -j MASQUERADE",
		"-o tun3 -s 10.0.1.0/24 -j SNAT --to-source 10.0.3.1",
		"-o tun1 -p udp -j RETURN",
		"-o tun3 -p tcp -j SNAT --to-source 10.0.3.1-10.0.3.3 --persistent",
		"-o tun1 -s 10.0.2.0/24 -j NETMAP --to 10.0.66.0/24",
	},
	"filter INPUT": {
		"-p tcp --dport 22 -j DROP",
		"-p udp --dport 53 -j ACCEPT",
		"-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		"-m conntrack --ctstate INVALID -j DROP",
		"-p icmp --icmp-type echo-request -j ACCEPT",
		"-m addrtype --dst-type BROADCAST -j DROP",
		"-p tcp -m multiport --dports 80,443,8080 -j ACCEPT",
		"-p tcp --dport 23 -j REJECT --reject-with tcp-reset",
		"-p udp --dport 69 -j REJECT",
		"-j U1",
		"-s 10.0.3.0/24 -g U2",
		"-m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 3 --hashlimit-mode srcip --hashlimit-name rh -j ACCEPT",
		"-m limit --limit 1/hour --limit-burst 4 -j LOG --log-prefix in",
		"-m addrtype --dst-type LOCAL --limit-iface-in -p udp -j ACCEPT",
	},
	"filter FORWARD": {
		"-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		"-m conntrack --ctstate INVALID -j DROP",
		"-i tun2 -o tun1 -m state --state NEW -j REJECT",
		"-p tcp --tcp-flags SYN,ACK SYN -j U1",
		"-p tcp -g U2",
		"-m multiport -p udp --dports 53,123 -j ACCEPT",
		"-m ttl --ttl-lt 10 -j DROP",
		"-m length --length 0:60 -j ACCEPT",
		"-p tcp --dport 23 -j REJECT --reject-with tcp-reset",
		"-p udp --dport 69 -j REJECT --reject-with icmp-admin-prohibited",
		"-m iprange --src-range 10.0.1.2-10.0.1.4 -j DROP",
		"-m mark --mark 0x1/0x1 -j ACCEPT",
		"-d 10.9.0.0/16 -j ACCEPT",
		"-j U1",
		"-m conntrack --ctstate DNAT -j ACCEPT",
		"-p icmp --icmp-type echo-reply -j ACCEPT",
		"-j NFLOG --nflog-group 2",
		"-m recent --rcheck --name R --rsource --hitcount 3 -j DROP",
		"-m set --match-set rs dst -j DROP",
		"-p tcp -m tcp --syn -m connlimit --connlimit-above 2 --connlimit-mask 24 -j REJECT --reject-with tcp-reset",
		"-p tcp ! --sport 22 ! --dport 23 -j ACCEPT",
		"-m comment --comment \"random fragment\" -p udp --sport 1024:65535 -j RETURN",
	},
	"filter OUTPUT": {
		"-p udp --dport 9 -j DROP",
		"-o tun3 -j ACCEPT",
		"-p icmp -j U1",
		"-m owner --uid-owner 0 -p tcp -j ACCEPT",
		"-p tcp --dport 25 -j REJECT --reject-with tcp-reset",
		"-m pkttype --pkt-type unicast -p udp -j ACCEPT",
		"-m statistic --mode nth --every 2 --packet 1 -j ACCEPT",
	},
	"filter U1": {
		"-p tcp --dport 80 -j ACCEPT",
		"-p tcp --dport 22 -j RETURN",
		"-s 10.0.2.0/24 -j DROP",
		"-j U3",
		"-p udp -j ACCEPT",
		"-m mark --mark 0x2/0x2 -j RETURN",
		"-p icmp -j DROP",
	},
	"filter U2": {
		"-p tcp --dport 443 -j ACCEPT",
		"-p tcp --dport 23 -j U3",
		"-j RETURN",
		"-p tcp --dport 80 -j DROP",
	},
	"filter U3": {
		"-p tcp --sport 1024:2047 -j DROP",
		"-p tcp --dport 8080 -j ACCEPT",
		"-s 10.0.3.0/24 -j RETURN",
	},
}

var tableChains = []struct {
	table  string
	chains []string
	user   []string
}{
	{"mangle", []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}, nil},
	{"nat", []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}, nil},
	{"filter", []string{"INPUT", "FORWARD", "OUTPUT"}, []string{"U1", "U2", "U3"}},
}

// RandomRules draws a rule set: raw TRACE in PREROUTING and OUTPUT,
// then up to four fragments per chain, random filter policies.
func RandomRules(r *rand.Rand) string {
	var b strings.Builder
	b.WriteString(traceAllRules)
	if r.IntN(4) == 0 {
		b.WriteString("-A PREROUTING -p udp --dport 9 -j CT --notrack\n")
	}
	if r.IntN(4) == 0 {
		b.WriteString("-A PREROUTING -p udp --dport 123 -j NOTRACK\n")
	}
	b.WriteString("COMMIT\n")
	for _, tc := range tableChains {
		if tc.table != "filter" && r.IntN(3) == 0 {
			continue // the table is absent
		}
		fmt.Fprintf(&b, "*%s\n", tc.table)
		for _, c := range tc.chains {
			pol := "ACCEPT"
			if tc.table == "filter" && r.IntN(4) == 0 {
				pol = "DROP"
			}
			fmt.Fprintf(&b, ":%s %s [0:0]\n", c, pol)
		}
		for _, c := range tc.user {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range append(append([]string(nil), tc.chains...), tc.user...) {
			fr := fragments[tc.table+" "+c]
			if len(fr) == 0 {
				continue
			}
			n := r.IntN(5)
			for range n {
				fmt.Fprintf(&b, "-A %s %s\n", c, fr[r.IntN(len(fr))])
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

const traceAllRules = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j TRACE
-A OUTPUT -j TRACE
`

var (
	legNets   = []uint32{0x0a000100, 0x0a000200, 0x0a000300} // 10.0.{1,2,3}.0
	routerIPs = []uint32{0x0a000101, 0x0a000201, 0x0a000301}
	ports     = []uint16{22, 23, 25, 53, 69, 80, 123, 443, 2222, 5353, 8000, 8080, 9, 99, 1500}
)

// RandomPackets draws n packets. About a third answer an earlier packet
// from the other side (addresses and ports swapped), so conntrack sees
// both directions.
func RandomPackets(r *rand.Rand, n int) []Packet {
	var out []Packet
	for len(out) < n {
		if len(out) > 0 && r.IntN(3) == 0 {
			prev := out[r.IntN(len(out))]
			if prev.In != Local {
				if p, ok := reply(r, prev); ok {
					out = append(out, p)
					continue
				}
			}
		}
		out = append(out, randomPacket(r))
	}
	return out
}

func ifaceOf(a uint32) (string, bool) {
	for i, n := range legNets {
		if a&0xffffff00 == n {
			return RandomIfaces[i].Name, true
		}
	}
	return "", false
}

func reply(r *rand.Rand, p Packet) (Packet, bool) {
	s := p.Spec
	in, ok := ifaceOf(s.Dst)
	if !ok || s.Dst&0xff == 1 {
		return Packet{}, false
	}
	q := s
	q.Src, q.Dst = s.Dst, s.Src
	q.SrcPort, q.DstPort = s.DstPort, s.SrcPort
	q.TTL = 64
	switch s.Proto {
	case packet.ProtoTCP:
		q.Seq, q.Ack = 9000+uint32(r.IntN(100)), s.Seq+1
		switch {
		case s.TCPFlags == packet.TCPSyn:
			q.TCPFlags = packet.TCPSyn | packet.TCPAck
		case s.TCPFlags&packet.TCPFin != 0:
			q.TCPFlags = packet.TCPFin | packet.TCPAck
		default:
			q.TCPFlags = packet.TCPAck
		}
	case packet.ProtoICMP:
		if s.ICMPType != packet.ICMPEcho {
			return Packet{}, false
		}
		q.ICMPType = packet.ICMPEchoReply
	}
	return Packet{Spec: q, In: in}, true
}

func randomPacket(r *rand.Rand) Packet {
	var s packet.Spec
	var in string
	if r.IntN(7) == 0 {
		in = Local
		s.Src = routerIPs[r.IntN(3)]
		s.ID = uint16(1 + r.IntN(60000))
	} else {
		leg := r.IntN(3)
		in = RandomIfaces[leg].Name
		s.Src = legNets[leg] | uint32(2+r.IntN(5))
		if r.IntN(25) == 0 {
			s.Src = legNets[(leg+1)%3] | 7 // from the wrong side
		}
	}
	switch x := r.IntN(20); {
	case x < 10:
		s.Dst = legNets[r.IntN(3)] | uint32(2+r.IntN(5))
	case x < 15:
		s.Dst = routerIPs[r.IntN(3)]
	case x < 17:
		s.Dst = 0x0a090000 | uint32(r.IntN(65536)) // 10.9/16: policy routed
	case x < 18:
		s.Dst = routerIPs[r.IntN(3)]
	case x < 18 && in != Local:
		// subnet broadcast (not from a local socket: without
		// SO_BROADCAST the kernel refuses to send it, EACCES)
		s.Dst = legNets[r.IntN(3)] | 0xff
	case x == 19 && in != Local:
		// unroutable (no default route): ip_error answers with a net
		// unreachable when the sender's inet_peer has tokens
		s.Dst = 0xcb007100 | uint32(1+r.IntN(254)) // 203.0.113.0/24
	default:
		// any host of the legs
		s.Dst = legNets[r.IntN(3)] | uint32(7+r.IntN(247))
	}
	s.TTL = 64
	switch r.IntN(12) {
	case 0:
		s.TTL = 1
	case 1:
		s.TTL = 2
	case 2:
		s.TTL = 9
	}
	if r.IntN(8) == 0 {
		s.TOS = 0x10
	}
	if r.IntN(6) == 0 {
		s.DF = true
	}
	if r.IntN(4) == 0 {
		s.Payload = make([]byte, r.IntN(64))
	}
	switch x := r.IntN(10); {
	case x < 5:
		s.Proto = packet.ProtoTCP
		s.SrcPort = uint16(1024 + r.IntN(60000))
		s.DstPort = ports[r.IntN(len(ports))]
		s.Seq = uint32(r.IntN(1 << 20))
		s.TCPFlags = []uint8{packet.TCPSyn, packet.TCPSyn, packet.TCPAck, packet.TCPAck | packet.TCPPsh,
			packet.TCPRst, packet.TCPFin | packet.TCPAck, packet.TCPSyn | packet.TCPAck}[r.IntN(7)]
		if s.TCPFlags&packet.TCPAck != 0 {
			s.Ack = uint32(r.IntN(1 << 20))
		}
	case x < 8:
		s.Proto = packet.ProtoUDP
		s.SrcPort = uint16(1024 + r.IntN(60000))
		s.DstPort = ports[r.IntN(len(ports))]
	case x < 9:
		s.Proto = packet.ProtoICMP
		s.ICMPType = packet.ICMPEcho
		s.ICMPID = uint16(r.IntN(65536))
		s.ICMPSeq = uint16(r.IntN(100))
	default:
		s.Proto = []uint8{47, 50}[r.IntN(2)]
		// at least the 8 bytes of GRE header NAT writes (a shorter one
		// is a known difference, see the package notes)
		s.Payload = make([]byte, 8+r.IntN(16))
	}
	return Packet{Spec: s, In: in}
}

// RandomSysctls are the router's: forwarding on, no ICMP redirects,
// everything else the kernel's defaults (the ICMP rate limits
// included). A redirect's per-peer backoff counts jiffies, which a
// replay matches only to within a tick: random-1-22 once got one
// redirect more from the kernel than from uswitch in CI (the ICMP
// scenarios test redirects on their own, as the random bridge
// scenarios leave them to them too).
var RandomSysctls = []string{
	"net.ipv4.ip_forward=1",
	"net.ipv4.conf.all.send_redirects=0",
	"net.ipv4.conf.tun1.send_redirects=0",
	"net.ipv4.conf.tun2.send_redirects=0",
	"net.ipv4.conf.tun3.send_redirects=0",
}

// randomIPSet is the ipset the "rs" fragments match.
var randomIPSet = []string{"create rs hash:ip", "add rs 10.0.1.3", "add rs 10.0.2.4", "add rs 10.0.3.5"}

// RandomScenario is scenario number i of the seed. It makes the ipset
// only when its rules use it, so that the others run without ipset.
func RandomScenario(seed uint64, i, packets int) Scenario {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	scn := Scenario{
		Name:    fmt.Sprintf("random-%d-%d", seed, i),
		Ifaces:  RandomIfaces,
		Sysctls: RandomSysctls,
		IP:      randomIP,
		Rules:   RandomRules(r),
		Packets: RandomPackets(r, packets),
	}
	if strings.Contains(scn.Rules, "--match-set") {
		scn.IPSet = randomIPSet
	}
	return scn
}
