package ebtables

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

var (
	macA   = packet.MAC{0x02, 0, 0, 0, 0, 0x0a}
	macB   = packet.MAC{0x02, 0, 0, 0, 0, 0x0b}
	macBr  = packet.MAC{0x02, 0, 0, 0, 0, 0xbb}
	macP1  = packet.MAC{0x02, 0, 0, 0, 0, 0x01}
	macNew = packet.MAC{0x02, 0, 0, 0, 0, 0x99}
)

type testEnv struct{}

func (testEnv) PortMAC(p string) (packet.MAC, bool)   { return macP1, p != "" }
func (testEnv) BridgeMAC(p string) (packet.MAC, bool) { return macBr, p != "" }

func ipv4Frame(proto uint8, sport, dport uint16) []byte {
	ip := make([]byte, 28)
	ip[0], ip[1], ip[9] = 0x45, 0x10, proto
	binary.BigEndian.PutUint16(ip[2:], 28)
	copy(ip[12:], []byte{10, 0, 0, 1})
	copy(ip[16:], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], dport)
	return packet.BuildFrame(macB, macA, packet.EtherTypeIPv4, ip)
}

func arpRequest() []byte {
	a := make([]byte, 28)
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], packet.EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1)
	copy(a[8:], macA[:])
	copy(a[14:], []byte{10, 0, 0, 1})
	copy(a[24:], []byte{10, 0, 0, 99})
	return packet.BuildFrame(packet.Broadcast, macA, packet.EtherTypeARP, a)
}

func vlanFrame(id uint16, prio uint8, inner uint16) []byte {
	b := make([]byte, 18+20)
	copy(b[0:], macB[:])
	copy(b[6:], macA[:])
	binary.BigEndian.PutUint16(b[12:], packet.EtherTypeVLAN)
	binary.BigEndian.PutUint16(b[14:], uint16(prio)<<13|id)
	binary.BigEndian.PutUint16(b[16:], inner)
	return b
}

func stpFrame(typ uint8, port uint16) []byte {
	p := make([]byte, 6+35)
	copy(p, []byte{0x42, 0x42, 0x03, 0, 0, typ})
	binary.BigEndian.PutUint16(p[6+21:], port)
	return packet.BuildFrame(packet.MAC{0x01, 0x80, 0xc2}, macA, uint16(len(p)), p)
}

func load(t testing.TB, text string) *Program {
	t.Helper()
	rs, err := (&Loader{Broute: true}).Load(text)
	if err != nil {
		t.Fatalf("load %q: %v", text, err)
	}
	return Compile(rs)
}

func newCtx(data []byte, in, out string) *Ctx {
	f := &packet.Frame{Data: data}
	f.Decode()
	return &Ctx{Frame: f, In: in, Out: out, LogicalIn: "br0", Env: testEnv{}, PktType: PacketOtherHost}
}

// TestEvalMatches: one table per match family; each rule drops what it
// matches in a FORWARD chain with policy ACCEPT.
func TestEvalMatches(t *testing.T) {
	tcp := ipv4Frame(6, 1234, 22)
	udp := ipv4Frame(17, 53, 53)
	cases := []struct {
		rule  string
		frame []byte
		in    string
		mark  uint32
		pt    PktType
		drop  bool
	}{
		{"-p IPv4", tcp, "p1", 0, 3, true},
		{"-p ! IPv4", tcp, "p1", 0, 3, false},
		{"-p ARP", tcp, "p1", 0, 3, false},
		{"-p Length", stpFrame(0, 1), "p1", 0, 3, true},
		{"-s 02:00:00:00:00:0a", tcp, "p1", 0, 3, true},
		{"-s ! 02:00:00:00:00:0a", tcp, "p1", 0, 3, false},
		{"-d 02:00:00:00:00:00/ff:ff:ff:00:00:00", tcp, "p1", 0, 3, true},
		{"-d Broadcast", arpRequest(), "p1", 0, 3, true},
		{"-d Multicast", tcp, "p1", 0, 3, false},
		{"-s Unicast", tcp, "p1", 0, 3, true},
		{"-i p1", tcp, "p1", 0, 3, true},
		{"-i p+", tcp, "p1", 0, 3, true},
		{"-i q+", tcp, "p1", 0, 3, false},
		{"-i ! p1", tcp, "p1", 0, 3, false},
		{"--logical-in br0", tcp, "p1", 0, 3, true},
		{"-p IPv4 --ip-src 10.0.0.0/24", tcp, "p1", 0, 3, true},
		{"-p IPv4 --ip-dst ! 10.0.0.2", tcp, "p1", 0, 3, false},
		{"-p IPv4 --ip-tos 0x10", tcp, "p1", 0, 3, true},
		{"-p IPv4 --ip-proto tcp --ip-dport 22", tcp, "p1", 0, 3, true},
		{"-p IPv4 --ip-proto tcp --ip-dport 23:100", tcp, "p1", 0, 3, false},
		{"-p IPv4 --ip-proto udp --ip-sport 53", udp, "p1", 0, 3, true},
		{"-p IPv4 --ip-proto icmp --ip-icmp-type echo-request", ipv4Frame(1, 0x0800, 0), "p1", 0, 3, true},
		{"-p ARP --arp-op Request --arp-ip-dst 10.0.0.99", arpRequest(), "p1", 0, 3, true},
		{"-p ARP --arp-op Reply", arpRequest(), "p1", 0, 3, false},
		{"-p ARP --arp-mac-src 02:00:00:00:00:0a", arpRequest(), "p1", 0, 3, true},
		{"-p ARP --arp-gratuitous", arpRequest(), "p1", 0, 3, false},
		{"-p 802_1Q --vlan-id 10", vlanFrame(10, 3, 0x0800), "p1", 0, 3, true},
		{"-p 802_1Q --vlan-prio 3 --vlan-encap IPv4", vlanFrame(10, 3, 0x0800), "p1", 0, 3, true},
		{"-p 802_1Q --vlan-id ! 10", vlanFrame(10, 3, 0x0800), "p1", 0, 3, false},
		{"--mark 0x10/0xf0", tcp, "p1", 0x13, 3, true},
		{"--mark ! 0x10", tcp, "p1", 0x10, 3, false},
		{"--mark /0x4", tcp, "p1", 0x5, 3, true},
		{"--pkttype-type otherhost", tcp, "p1", 0, PacketOtherHost, true},
		{"--pkttype-type ! host", tcp, "p1", 0, PacketHost, false},
		{"--among-src 2:0:0:0:0:a=10.0.0.1", tcp, "p1", 0, 3, true},
		{"--among-src 2:0:0:0:0:a=10.0.0.7", tcp, "p1", 0, 3, false},
		{"--among-dst ! 2:0:0:0:0:b", tcp, "p1", 0, 3, false},
		{"--stp-type config --stp-port 1", stpFrame(0, 1), "p1", 0, 3, true},
		{"--stp-port 2:5", stpFrame(0, 1), "p1", 0, 3, false},
		{"-p Length --802_3-sap 0x42", stpFrame(0, 1), "p1", 0, 3, true},
		{"-p Length --802_3-sap ! 0x42", stpFrame(0, 1), "p1", 0, 3, false},
	}
	for _, c := range cases {
		p := load(t, "*filter\n-A FORWARD "+c.rule+" -j DROP\n")
		ctx := newCtx(append([]byte(nil), c.frame...), c.in, "p2")
		ctx.Mark, ctx.PktType = c.mark, c.pt
		v := p.Run(Filter, Forward, ctx)
		if (v == netfilter.Drop) != c.drop {
			t.Errorf("%s: verdict %v, want drop=%v", c.rule, v, c.drop)
		}
	}
}

// TestEvalTraversal: jumps, RETURN, CONTINUE, policies, counters.
func TestEvalTraversal(t *testing.T) {
	rules := `*filter
:INPUT ACCEPT
:FORWARD DROP
:OUTPUT ACCEPT
:sub RETURN
:deny DROP
-A FORWARD -j sub
-A FORWARD -p IPv4 -j ACCEPT
-A sub -p ARP -j deny
-A sub -j CONTINUE
-A sub -j RETURN
-A sub -j DROP
-A OUTPUT -j RETURN
-A OUTPUT -j DROP
`
	p := load(t, rules)
	cases := []struct {
		frame []byte
		want  netfilter.Verdict
	}{
		{ipv4Frame(6, 1, 2), netfilter.Accept},    // sub returns, then -p IPv4 ACCEPT
		{arpRequest(), netfilter.Drop},            // deny's policy DROP
		{vlanFrame(1, 0, 0x0800), netfilter.Drop}, // FORWARD policy
	}
	for i, c := range cases {
		if v := p.Run(Filter, Forward, newCtx(c.frame, "p1", "p2")); v != c.want {
			t.Errorf("case %d: %v, want %v", i, v, c.want)
		}
	}
	// RETURN on a base chain ends it with the policy (ebtables-nft)
	if v := p.Run(Filter, LocalOut, newCtx(ipv4Frame(6, 1, 2), "", "p2")); v != netfilter.Accept {
		t.Errorf("OUTPUT: %v, want ACCEPT (policy) after RETURN", v)
	}
	var b strings.Builder
	p.Ruleset().Save(&b, SaveOptions{Counters: true})
	for _, want := range []string{"[3:76] -A FORWARD -j sub", "[1:28] -A FORWARD -p IPv4 -j ACCEPT", "[1:28] -A sub -p ARP -j deny", "[0:0] -A OUTPUT -j DROP", "[2:48] -A sub -j CONTINUE"} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("counters: no %q in\n%s", want, b.String())
		}
	}
}

// TestEvalTargets: mark, dnat, snat, redirect, arpreply, log, nflog, broute.
func TestEvalTargets(t *testing.T) {
	p := load(t, "*filter\n-A FORWARD -j mark --mark-or 0x100 --mark-target CONTINUE\n-A FORWARD --log-prefix x --nflog-group 3 -j mark --mark-xor 0x1 --mark-target ACCEPT\n-A FORWARD -j DROP\n")
	c := newCtx(ipv4Frame(6, 1, 2), "p1", "p2")
	c.Mark = 0x10
	if v := p.Run(Filter, Forward, c); v != netfilter.Accept || c.Mark != 0x111 || c.NLogs != 2 {
		t.Errorf("mark: %v mark %#x logs %d", v, c.Mark, c.NLogs)
	}
	if _, ok := c.Logs[0].Watcher.(*LogWatcher); !ok {
		t.Errorf("first log request is %T", c.Logs[0].Watcher)
	}

	nat := load(t, "*nat\n-A PREROUTING -p IPv4 -j dnat --to-dst 02:00:00:00:00:bb --dnat-target CONTINUE\n-A PREROUTING -p ARP -j arpreply --arpreply-mac 02:00:00:00:00:99\n-A POSTROUTING -j snat --to-src 02:00:00:00:00:99 --snat-arp\n")
	c = newCtx(ipv4Frame(6, 1, 2), "p1", "")
	if v := nat.Run(NAT, PreRouting, c); v != netfilter.Accept || c.Frame.Dst != macBr || c.PktType != PacketHost {
		t.Errorf("dnat: %v dst %v pkttype %v", v, c.Frame.Dst, c.PktType)
	}
	if got := packet.MAC(c.Frame.Data[0:6]); got != macBr {
		t.Errorf("dnat did not rewrite the frame: %v", got)
	}
	c = newCtx(arpRequest(), "p1", "")
	if v := nat.Run(NAT, PreRouting, c); v != netfilter.Drop || c.ReplyLen != 42 {
		t.Fatalf("arpreply: %v reply %d", v, c.ReplyLen)
	}
	r := &packet.Frame{Data: c.Reply[:c.ReplyLen]}
	r.Decode()
	a := r.Payload
	if r.Dst != macA || r.Src != macNew || binary.BigEndian.Uint16(a[6:]) != 2 ||
		packet.MAC(a[8:14]) != macNew || string(a[14:18]) != string([]byte{10, 0, 0, 99}) ||
		packet.MAC(a[18:24]) != macA || string(a[24:28]) != string([]byte{10, 0, 0, 1}) {
		t.Errorf("arp reply % x", c.Reply[:c.ReplyLen])
	}
	c = newCtx(arpRequest(), "", "p2")
	nat.Run(NAT, PostRouting, c)
	if c.Frame.Src != macNew || packet.MAC(c.Frame.Data[14+8:14+14]) != macNew {
		t.Errorf("snat --snat-arp: src %v sha % x", c.Frame.Src, c.Frame.Data[22:28])
	}

	red := load(t, "*nat\n-A PREROUTING -j redirect --redirect-target CONTINUE\n")
	c = newCtx(ipv4Frame(6, 1, 2), "p1", "")
	red.Run(NAT, PreRouting, c)
	if c.Frame.Dst != macBr || c.PktType != PacketHost {
		t.Errorf("redirect in PREROUTING: dst %v pkttype %v", c.Frame.Dst, c.PktType)
	}

	br := load(t, "*broute\n-A BROUTING -p IPv4 -j DROP\n-A BROUTING -p ARP -j redirect\n")
	c = newCtx(ipv4Frame(6, 1, 2), "p1", "")
	if v := br.Run(BRoute, BRouting, c); v != netfilter.Accept || !c.Route {
		t.Errorf("broute DROP: %v route=%v", v, c.Route)
	}
	c = newCtx(arpRequest(), "p1", "")
	if v := br.Run(BRoute, BRouting, c); v != netfilter.Accept || c.Route || c.Frame.Dst != macP1 {
		t.Errorf("broute redirect: %v route=%v dst %v", v, c.Route, c.Frame.Dst)
	}
	// broute: a frame to the bridge's MAC but not the port's is OTHERHOST
	c = newCtx(ipv4Frame(6, 1, 2), "p1", "")
	setMAC(c, 0, macBr)
	c.PktType = PacketHost
	br.Run(BRoute, BRouting, c)
	if c.PktType != PacketOtherHost {
		t.Errorf("broute pkttype %v", c.PktType)
	}
}

func TestLimit(t *testing.T) {
	p := load(t, "*filter\n-A FORWARD --limit 10/sec --limit-burst 2 -j ACCEPT\n-A FORWARD -j DROP\n")
	c := newCtx(ipv4Frame(6, 1, 2), "p1", "p2")
	var got []netfilter.Verdict
	for _, now := range []int64{0, 0, 0, 50e6, 100e6, 100e6} {
		c.Now = now
		got = append(got, p.Run(Filter, Forward, c))
	}
	want := []netfilter.Verdict{1, 1, 0, 0, 1, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("limit verdicts %v, want %v", got, want)
		}
	}
}

func TestStages(t *testing.T) {
	// ebtables-nft order on OUTPUT: filter (-200) before nat (100)
	var fo, no netfilter.Priority
	for _, s := range Stages {
		if s.NFHook == LocalOut && s.Table == Filter {
			fo = s.Priority
		}
		if s.NFHook == LocalOut && s.Table == NAT {
			no = s.Priority
		}
	}
	if fo != netfilter.BrPriFilterBridged || no != netfilter.BrPriNATDstOther {
		t.Errorf("OUTPUT priorities filter %d nat %d", fo, no)
	}
}

// TestRunNoAllocs: the evaluation path allocates nothing per frame.
func TestRunNoAllocs(t *testing.T) {
	p := load(t, `*filter
:sub RETURN
-A FORWARD -p IPv4 --ip-src 10.0.0.0/8 --ip-proto tcp --ip-dport 22 -j sub
-A FORWARD --among-src 2:0:0:0:0:a --limit 1000/sec -j CONTINUE
-A FORWARD --stp-type config -j CONTINUE
-A FORWARD -p IPv6 --ip6-proto tcp -j CONTINUE
-A FORWARD --log-prefix x -j mark --mark-set 1 --mark-target CONTINUE
-A sub -i p+ -s Unicast -j RETURN
*nat
-A PREROUTING -j dnat --to-dst 02:00:00:00:00:bb --dnat-target CONTINUE
-A PREROUTING -p ARP -j arpreply --arpreply-mac 02:00:00:00:00:99
`)
	c := newCtx(ipv4Frame(6, 1, 22), "p1", "p2")
	arp := newCtx(arpRequest(), "p1", "")
	stp := newCtx(stpFrame(0, 1), "p1", "p2")
	n := testing.AllocsPerRun(1000, func() {
		c.Reset()
		p.Run(Filter, Forward, c)
		p.Run(NAT, PreRouting, c)
		arp.Reset()
		p.Run(NAT, PreRouting, arp)
		stp.Reset()
		p.Run(Filter, Forward, stp)
	})
	if n != 0 {
		t.Errorf("%v allocations per frame", n)
	}
}
