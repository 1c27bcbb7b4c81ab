package datapath

import (
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// bridgeEngine is an engine with a bridge br0 of two ports (bridged
// frames need no route, so the router's FIB serves), br_netfilter on
// and conntrack rules in FORWARD.
func bridgeEngine(t testing.TB) *Engine {
	rs, err := (&iptables.Loader{}).LoadString(`*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -m physdev --physdev-is-bridged -m conntrack --ctstate NEW -j ACCEPT
COMMIT
`)
	if err != nil {
		t.Fatal(err)
	}
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rules: rs, FIB: fib, Bridges: []BridgeConfig{{
		CallIPTables: true,
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "p1", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "p2", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}},
	}}}
	e := New(cfg, conntrack.DefaultConfig(), 1)
	if e.BridgeErr != nil {
		t.Fatal(e.BridgeErr)
	}
	return e
}

var (
	hostA = packet.MAC{2, 0, 0, 0, 0, 0xa}
	hostB = packet.MAC{2, 0, 0, 0, 0, 0xb}
)

func udpFrame(dst, src packet.MAC, s string) []byte {
	sp, _, err := packet.ParseSpec(s)
	if err != nil {
		panic(err)
	}
	return packet.BuildFrame(dst, src, packet.EtherTypeIPv4, packet.Build(sp))
}

// TestBridgeEstablished: an established bridged UDP flow through
// br_netfilter and conntrack goes to its learned port.
func TestBridgeEstablished(t *testing.T) {
	e := bridgeEngine(t)
	ab := udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53")
	ba := udpFrame(hostA, hostB, "udp 10.1.0.2:53 > 10.1.0.1:1000")
	if f := e.ReceiveFrame(append([]byte(nil), ab...), "p1", 1, nil); len(f.Out) != 1 || f.Out[0].Port != "p2" {
		t.Fatalf("first frame: %v", f)
	}
	if f := e.ReceiveFrame(append([]byte(nil), ba...), "p2", 2, nil); len(f.Out) != 1 || f.Out[0].Port != "p1" {
		t.Fatalf("answer: %v", f)
	}
	f := e.ReceiveFrame(append([]byte(nil), ab...), "p1", 3, nil)
	if len(f.Out) != 1 || f.Out[0].Port != "p2" || f.Drop != "" {
		t.Fatalf("established: %v", f)
	}
}

func BenchmarkBridgeEstablished(b *testing.B) { benchBridgeEstablished(b, bridgeEngine(b)) }

// establishBridgeFlow sends a UDP flow's first frame (hostA to hostB)
// in p1 and its answer in p2, at times 1 and 2, and returns the flow's
// frame from p1.
func establishBridgeFlow(e *Engine) []byte {
	ab := udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53")
	ba := udpFrame(hostA, hostB, "udp 10.1.0.2:53 > 10.1.0.1:1000")
	e.ReceiveFrame(append([]byte(nil), ab...), "p1", 1, nil)
	e.ReceiveFrame(append([]byte(nil), ba...), "p2", 2, nil)
	return ab
}

// benchBridgeEstablished establishes the hostA-hostB flow on e and
// times its frames from p1; it returns the last frame's fate.
func benchBridgeEstablished(b *testing.B, e *Engine) FrameFate {
	ab := establishBridgeFlow(e)
	buf := make([]byte, len(ab))
	var ff FrameFate
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		copy(buf, ab)
		e.ReceiveFrameInto(&ff, buf, "p1", int64(3+i), nil)
	}
	return ff
}

// TestBridgeEstablishedNoAllocs: an established bridged flow through
// br_netfilter and conntrack allocates nothing when the caller reuses
// its FrameFate (ReceiveFrameInto, as the lab's workers do).
func TestBridgeEstablishedNoAllocs(t *testing.T) {
	e := bridgeEngine(t)
	ab := establishBridgeFlow(e)
	buf := make([]byte, len(ab))
	var ff FrameFate
	now := int64(3)
	e.ReceiveFrameInto(&ff, append([]byte(nil), ab...), "p1", now, nil)
	n := testing.AllocsPerRun(1000, func() {
		now++
		copy(buf, ab)
		e.ReceiveFrameInto(&ff, buf, "p1", now, nil)
	})
	if n != 0 || len(ff.Out) != 1 || ff.Out[0].Port != "p2" {
		t.Errorf("%v allocations per frame; fate %v", n, ff)
	}
}

// FuzzReceiveFrame: any frame on a bridge port (with br_netfilter,
// conntrack rules and ebtables on the way) never panics, and every frame
// that leaves decodes as Ethernet.
func FuzzReceiveFrame(f *testing.F) {
	f.Add(udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53"), uint8(0))
	f.Add(udpFrame(packet.Broadcast, hostA, "udp 10.1.0.1:1000 > 10.1.0.255:53"), uint8(1))
	f.Add(udpFrame(packet.MAC{2, 0, 0, 0, 0, 0xfe}, hostA, "icmp 10.1.0.1 > 10.1.0.254 id 1 seq 1"), uint8(0))
	f.Add(packet.BuildFrame(packet.Broadcast, hostA, packet.EtherTypeARP, make([]byte, 28)), uint8(0))
	e := bridgeEngine(f)
	rs, rerr := (&ebtables.Loader{}).Load("*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n-A FORWARD -p IPv4 --ip-proto udp -j mark --mark-set 0x5 --mark-target CONTINUE\n*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n-A PREROUTING -p ARP -j arpreply --arpreply-mac 02:00:00:00:00:77\n")
	if rerr != nil {
		f.Fatal(rerr)
	}
	cfg := e.Config()
	cfg.Ebtables = rs
	e.Swap(cfg)
	now := int64(1)
	f.Fuzz(func(t *testing.T, b []byte, port uint8) {
		now += 1e6
		ff := e.ReceiveFrame(append([]byte(nil), b...), []string{"p1", "p2"}[port&1], now, nil)
		for _, o := range ff.Out {
			fr := packet.Frame{Data: o.Data}
			if err := fr.Decode(); err != nil {
				t.Fatalf("a frame left %s undecodable: %v", o.Port, err)
			}
		}
	})
}

// benchEbtables is a small ebtables rule set on the bridged path: a
// mark in nat PREROUTING (read by nothing), filter FORWARD rules the
// flow passes over before the one that accepts it, and a nat
// POSTROUTING rule.
const benchEbtables = `*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
-A FORWARD -p ARP -j ACCEPT
-A FORWARD -p IPv4 --ip-proto tcp --ip-dport 22 -j DROP
-A FORWARD -s 02:00:00:00:00:99 -j DROP
-A FORWARD -p IPv4 --ip-src 10.1.0.0/24 -j ACCEPT
*nat
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING -p IPv4 --ip-proto udp -j mark --mark-or 0x1 --mark-target CONTINUE
-A POSTROUTING -o p2 -p IPv4 -j CONTINUE
`

// bridgeEngineEbtables is bridgeEngine with benchEbtables.
func bridgeEngineEbtables(t testing.TB) *Engine {
	e := bridgeEngine(t)
	rs, err := (&ebtables.Loader{}).Load(benchEbtables)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Config()
	cfg.Ebtables = rs
	e.Swap(cfg)
	return e
}

// BenchmarkBridgeEstablishedEbtables is BenchmarkBridgeEstablished with
// ebtables rules in nat PREROUTING, filter FORWARD and nat POSTROUTING.
func BenchmarkBridgeEstablishedEbtables(b *testing.B) {
	ff := benchBridgeEstablished(b, bridgeEngineEbtables(b))
	if len(ff.Out) != 1 || !ff.FlowCached {
		b.Fatalf("fate %v (cached %v)", ff, ff.FlowCached)
	}
}

// TestBridgeEstablishedEbtablesNoAllocs: the same through ebtables.
func TestBridgeEstablishedEbtablesNoAllocs(t *testing.T) {
	e := bridgeEngineEbtables(t)
	ab := establishBridgeFlow(e)
	buf := make([]byte, len(ab))
	var ff FrameFate
	now := int64(3)
	n := testing.AllocsPerRun(1000, func() {
		now++
		copy(buf, ab)
		e.ReceiveFrameInto(&ff, buf, "p1", now, nil)
	})
	if n != 0 || len(ff.Out) != 1 || ff.Out[0].Port != "p2" || !ff.FlowCached {
		t.Errorf("%v allocations per frame; fate %v (cached %v)", n, ff, ff.FlowCached)
	}
}
