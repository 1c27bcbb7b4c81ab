package link_test

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/encap"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/lab"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/link/linktest"
	"github.com/uswitch-lab/uswitch/packet"
)

// calNode is one node of examples/labs/k8s-calico-vxlan.toml run in
// process: its engine and datapath over a wire to the other node's
// eth0, a fake pod device and fake host ports.
type calNode struct {
	eng                   *datapath.Engine
	dp                    *link.Datapath
	pod, hostEth0, hostVX *linktest.Dev
}

// startCalico runs the example's two nodes joined by one wire (their
// eth0s, Ethernet both ways: a two-port segment instead of the lab's
// switch), each with its pod and host ports as fakes.
func startCalico(t *testing.T, file string) (a, b *calNode, c *lab.Config) {
	t.Helper()
	c, err := lab.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	wa, wb := link.NewWire("eth0", "eth0")
	wires := []*link.WireEnd{wa, wb}
	var nodes []*calNode
	for i, n := range c.Nodes {
		ecfg, ctcfg, err := n.Engine.EngineConfig()
		if err != nil {
			t.Fatal(err)
		}
		eng := datapath.New(ecfg, ctcfg, uint64(i+1))
		podName := map[string]string{"a": "calia1", "b": "calib1"}[n.Name]
		cn := &calNode{eng: eng, pod: linktest.New(podName), hostEth0: linktest.New(lab.HostDevName("eth0")),
			hostVX: linktest.New(lab.HostDevName("vxlan.calico"))}
		opts := append(n.Engine.DatapathOptions(), link.WithInline(),
			link.WithHost(cn.hostEth0.Name(), "eth0"), link.WithHost(cn.hostVX.Name(), "vxlan.calico"))
		cn.dp = link.NewDatapath(eng, []link.Device{wires[i], cn.pod, cn.hostEth0, cn.hostVX},
			map[string]int{cn.hostVX.Name(): 1450}, 1, opts...)
		t.Cleanup(func() { cn.dp.Close() })
		nodes = append(nodes, cn)
	}
	return nodes[0], nodes[1], c
}

func decode(t *testing.T, b []byte) packet.Packet {
	t.Helper()
	p := packet.Packet{Data: b}
	if err := p.Decode(); err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return p
}

// TestCalicoVXLANInProcess runs the Calico example's nodes in process
// and checks the tunnel byte by byte: pod to pod crosses as VXLAN (the
// outer headers as vxlan_xmit_one builds them) without SNAT; a host
// socket bound to eth0's address is masqueraded to vxlan.calico's by
// the cali-POSTROUTING rule and its answer comes back de-masqueraded;
// without the rule, b's strict rp_filter drops the inner packet.
func TestCalicoVXLANInProcess(t *testing.T) {
	a, b, c := startCalico(t, "../examples/labs/k8s-calico-vxlan.toml")
	outer, cancel := a.dp.SubscribeCapture("eth0", 64)
	defer cancel()
	podA, podB := packet.MustAddr("10.244.0.5"), packet.MustAddr("10.244.1.5")

	// pod to pod
	a.pod.In <- packet.Build(packet.Spec{Src: podA, Dst: podB, Proto: packet.ProtoTCP, SrcPort: 40000, DstPort: 80,
		TCPFlags: packet.TCPSyn, Seq: 1, TOS: 0x02})
	got := b.pod.WaitWritten(1, 3*time.Second)
	if len(got) != 1 {
		t.Fatalf("pod b got %d packets (a: %v; b: %v)", len(got), a.dp.Stats(), b.dp.Stats())
	}
	p := decode(t, got[0])
	if p.Src != podA || p.Dst != podB || p.DstPort != 80 || p.IP.TTL() != 62 {
		t.Fatalf("pod b got %v -> %v:%d ttl %d, want 10.244.0.5 -> 10.244.1.5:80 ttl 62 (a and b each forward once)",
			packet.AddrOf(p.Src), packet.AddrOf(p.Dst), p.DstPort, p.IP.TTL())
	}
	// the outer packet on a's eth0
	var o []byte
	for o == nil {
		select {
		case c := <-outer:
			if q := decode(t, c.Data); q.Proto == packet.ProtoUDP {
				o = c.Data
			}
		case <-time.After(2 * time.Second):
			t.Fatal("no outer packet captured on a's eth0")
		}
	}
	op := decode(t, o)
	if op.Src != packet.MustAddr("192.168.0.1") || op.Dst != packet.MustAddr("192.168.0.2") || op.DstPort != 4789 {
		t.Fatalf("outer %v -> %v:%d", packet.AddrOf(op.Src), packet.AddrOf(op.Dst), op.DstPort)
	}
	if op.IP.TTL() != 64 || op.IP.DF() || op.IP.TOS() != 0x02 {
		t.Errorf("outer ttl %d df %v tos %#x, want 64, no DF (df unset), the inner ECN bits (0x02)", op.IP.TTL(), op.IP.DF(), op.IP.TOS())
	}
	if op.SrcPort < encap.LocalPortMin || op.SrcPort >= encap.LocalPortMax {
		t.Errorf("outer source port %d outside the local port range", op.SrcPort)
	}
	vp, err := encap.ParseVXLAN(o, 4789)
	if err != nil {
		t.Fatalf("outer does not parse: %v", err)
	}
	if binary.BigEndian.Uint16(o[26:28]) == 0 {
		t.Error("outer UDP checksum zero; the device computes it (udpcsum is the default)")
	}
	if vp.VNI != 4096 || packet.MAC(vp.Frame[0:6]).String() != "66:6b:c1:00:00:0b" || packet.MAC(vp.Frame[6:12]).String() != "66:6b:c1:00:00:0a" {
		t.Errorf("vni %d, inner %v <- %v", vp.VNI, packet.MAC(vp.Frame[0:6]), packet.MAC(vp.Frame[6:12]))
	}
	if ip := decode(t, vp.Frame[14:]); ip.Src != podA || ip.IP.TTL() != 63 {
		t.Errorf("inner in the tunnel from %v ttl %d, want 10.244.0.5 ttl 63", packet.AddrOf(ip.Src), ip.IP.TTL())
	}
	// the same flow keeps its source port; the answer comes back
	b.pod.In <- packet.Build(packet.Spec{Src: podB, Dst: podA, Proto: packet.ProtoTCP, SrcPort: 80, DstPort: 40000,
		TCPFlags: packet.TCPSyn | packet.TCPAck, Seq: 9, Ack: 2})
	if got := a.pod.WaitWritten(1, 3*time.Second); len(got) != 1 || decode(t, got[0]).Src != podB {
		t.Fatalf("pod a got %d packets back", len(got))
	}

	// a host socket bound to 192.168.0.1: masqueraded to 10.244.0.0
	nodeA, vxA := packet.MustAddr("192.168.0.1"), packet.MustAddr("10.244.0.0")
	a.hostVX.In <- packet.Build(packet.Spec{Src: nodeA, Dst: podB, Proto: packet.ProtoTCP, SrcPort: 41000, DstPort: 80, TCPFlags: packet.TCPSyn, Seq: 5})
	got = b.pod.WaitWritten(1, 3*time.Second)
	if len(got) != 1 {
		t.Fatalf("pod b got %d packets from a's host", len(got))
	}
	if p := decode(t, got[0]); p.Src != vxA {
		t.Fatalf("pod b saw a's host as %v, want 10.244.0.0 (cali-POSTROUTING MASQUERADE)", packet.AddrOf(p.Src))
	} else {
		b.pod.In <- packet.Build(packet.Spec{Src: podB, Dst: vxA, Proto: packet.ProtoTCP, SrcPort: 80, DstPort: p.SrcPort,
			TCPFlags: packet.TCPSyn | packet.TCPAck, Seq: 9, Ack: 6})
	}
	got = append(a.hostVX.WaitWritten(1, 3*time.Second), a.hostEth0.Take()...)
	if len(got) != 1 {
		t.Fatalf("a's host got %d answers", len(got))
	}
	if p := decode(t, got[0]); p.Dst != nodeA || p.DstPort != 41000 || p.Src != podB {
		t.Fatalf("a's host got %v -> %v:%d, want 10.244.1.5 -> 192.168.0.1:41000", packet.AddrOf(p.Src), packet.AddrOf(p.Dst), p.DstPort)
	}
	if s, _ := a.dp.Tunnel("vxlan.calico"); s.Encapsulated < 2 || s.Decapsulated < 2 {
		t.Errorf("a's tunnel counters %+v", s)
	}

	// without the rule: b's rp_filter drops the inner packet
	t.Run("without the rule", func(t *testing.T) {
		noRule(t, a, c.Nodes[0].Engine.Sets)
		before := dropsOf(b.dp.Stats(), "route")
		a.hostVX.In <- packet.Build(packet.Spec{Src: nodeA, Dst: podB, Proto: packet.ProtoTCP, SrcPort: 41001, DstPort: 80, TCPFlags: packet.TCPSyn, Seq: 5})
		if got := b.pod.WaitWritten(1, 500*time.Millisecond); len(got) != 0 {
			t.Fatalf("pod b got the SYN from %v without the rule", packet.AddrOf(decode(t, got[0]).Src))
		}
		if after := dropsOf(b.dp.Stats(), "route"); after != before+1 {
			t.Fatalf("b's route (rp_filter) drops %d -> %d, want one more; b: %v", before, after, b.dp.Stats())
		}
	})
}

func dropsOf(s link.Stats, key string) uint64 {
	var n uint64
	for k, v := range s.Drops {
		if k.String() == key {
			n += v
		}
	}
	return n
}

// noRule swaps in node n's rule set without the cali-POSTROUTING
// vxlan.calico MASQUERADE rule.
func noRule(t *testing.T, n *calNode, sets iptables.Sets) {
	t.Helper()
	text, err := os.ReadFile("../examples/labs/k8s-calico-vxlan.rules")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, ln := range strings.Split(string(text), "\n") {
		if !strings.Contains(ln, "-o vxlan.calico") {
			kept = append(kept, ln)
		}
	}
	rs, err := (&iptables.Loader{Sets: sets}).LoadString(strings.Join(kept, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.eng.Config()
	cfg.Rules = rs
	n.eng.Swap(cfg)
}

// ipipLab is Calico's IPIP mode between two nodes joined by a routed
// link: tunl0 on each (remote and local any, ttl inherit), felix's
// masquerade rule on tunl0.
const ipipLab = `
name = "ip"
[[namespace]]
name = "pa"
addresses = ["10.244.0.5/32"]
[[namespace]]
name = "pb"
addresses = ["10.244.1.5/32"]
[[node]]
name = "a"
[node.uswitch]
routes = ["10.244.0.5/32 dev calia1", "10.244.1.0/26 via 192.168.0.2 dev tunl0 onlink"]
rules = """
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o tunl0 -m addrtype ! --src-type LOCAL --limit-iface-out -m addrtype --src-type LOCAL -j MASQUERADE
COMMIT
"""
[node.uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[node.interface]]
name = "eth0"
peer = "b:eth0"
addresses = ["192.168.0.1/24"]
[[node.interface]]
name = "tunl0"
kind = "ipip"
addresses = ["10.244.0.1/32"]
[[node.interface]]
name = "calia1"
netns = "pa"
[[node]]
name = "b"
[node.uswitch]
routes = ["10.244.1.5/32 dev calib1", "10.244.0.0/26 via 192.168.0.1 dev tunl0 onlink"]
[node.uswitch.sysctl]
"net.ipv4.ip_forward" = 1
"net.ipv4.conf.all.rp_filter" = 1
[[node.interface]]
name = "eth0"
peer = "a:eth0"
addresses = ["192.168.0.2/24"]
[[node.interface]]
name = "tunl0"
kind = "ipip"
addresses = ["10.244.1.1/32"]
[[node.interface]]
name = "calib1"
netns = "pb"
`

// TestIPIPInProcess: Calico's IPIP mode between two nodes in process
// (this kernel has no ipip module to compare with): the outer packet
// as ip_tunnel_xmit builds it for tunl0 (to the route's next hop, the
// node's source, the inner TTL, TOS ECN and DF), received on the other
// node's tunl0 and forwarded to its pod; a host socket bound to eth0's
// address masqueraded to tunl0's by felix's rule.
func TestIPIPInProcess(t *testing.T) {
	c, err := lab.Parse("ip.toml", []byte(ipipLab))
	if err != nil {
		t.Fatal(err)
	}
	wa, wb := link.NewWire("eth0", "eth0")
	wires := []*link.WireEnd{wa, wb}
	var nodes []*calNode
	for i, n := range c.Nodes {
		ecfg, ctcfg, err := n.Engine.EngineConfig()
		if err != nil {
			t.Fatal(err)
		}
		cn := &calNode{eng: datapath.New(ecfg, ctcfg, uint64(i+1)), pod: linktest.New(map[string]string{"a": "calia1", "b": "calib1"}[n.Name]),
			hostEth0: linktest.New(lab.HostDevName("eth0")), hostVX: linktest.New(lab.HostDevName("tunl0"))}
		opts := append(n.Engine.DatapathOptions(), link.WithInline(), link.WithHost(cn.hostEth0.Name(), "eth0"), link.WithHost(cn.hostVX.Name(), "tunl0"))
		cn.dp = link.NewDatapath(cn.eng, []link.Device{wires[i], cn.pod, cn.hostEth0, cn.hostVX}, nil, 1, opts...)
		t.Cleanup(func() { cn.dp.Close() })
		nodes = append(nodes, cn)
	}
	a, b := nodes[0], nodes[1]
	outer, cancel := a.dp.SubscribeCapture("eth0", 16)
	defer cancel()
	podA, podB := packet.MustAddr("10.244.0.5"), packet.MustAddr("10.244.1.5")
	a.pod.In <- packet.Build(packet.Spec{Src: podA, Dst: podB, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, TOS: 0x11, DF: true, Payload: []byte("q")})
	got := b.pod.WaitWritten(1, 3*time.Second)
	if len(got) != 1 {
		t.Fatalf("pod b got %d packets (a %v, b %v)", len(got), a.dp.Stats(), b.dp.Stats())
	}
	if p := decode(t, got[0]); p.Src != podA || p.IP.TTL() != 62 || p.IP.TOS() != 0x11 {
		t.Errorf("pod b got from %v ttl %d tos %#x", packet.AddrOf(p.Src), p.IP.TTL(), p.IP.TOS())
	}
	var o packet.Packet
	select {
	case cp := <-outer:
		o = decode(t, cp.Data)
	case <-time.After(time.Second):
		t.Fatal("no outer packet")
	}
	if o.Proto != encap.ProtoIPIP || o.Src != packet.MustAddr("192.168.0.1") || o.Dst != packet.MustAddr("192.168.0.2") ||
		o.IP.TTL() != 63 || o.IP.TOS() != 0x01 || !o.IP.DF() {
		t.Errorf("outer proto %d %v -> %v ttl %d tos %#x df %v; want 4, 192.168.0.1 -> 192.168.0.2, the inner ttl 63, tos 0 with the inner ECT(1), DF copied",
			o.Proto, packet.AddrOf(o.Src), packet.AddrOf(o.Dst), o.IP.TTL(), o.IP.TOS(), o.IP.DF())
	}
	a.hostVX.In <- packet.Build(packet.Spec{Src: packet.MustAddr("192.168.0.1"), Dst: podB, Proto: packet.ProtoUDP, SrcPort: 6000, DstPort: 53, Payload: []byte("q")})
	got = b.pod.WaitWritten(1, 3*time.Second)
	if len(got) != 1 || decode(t, got[0]).Src != packet.MustAddr("10.244.0.1") {
		t.Fatalf("pod b got %d packets from a's host (want one from tunl0's 10.244.0.1)", len(got))
	}
	if s, ok := b.dp.Tunnel("tunl0"); !ok || s.Decapsulated != 2 {
		t.Errorf("b's tunl0 %+v", s)
	}
}
