package datapath

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// routedBridgeEngine is RouterFIB's router with a bridge br0
// (10.1.0.254/24, ports p1 and p2) as a third routed device.
func routedBridgeEngine(t *testing.T) *Engine {
	t.Helper()
	cfg := datapathtest.RouterConfig()
	cfg.Links = append(cfg.Links, route.Link{Name: "br0", Index: 4, Up: true})
	cfg.Addrs = append(cfg.Addrs, route.Addr{Ifindex: 4, Dev: "br0", Local: netip.MustParseAddr("10.1.0.254"),
		Prefix: netip.MustParsePrefix("10.1.0.0/24"), Broadcast: netip.MustParseAddr("10.1.0.255")})
	cfg.Routes = append(cfg.Routes,
		route.Route{Table: 255, Type: route.Local, Dst: netip.MustParsePrefix("10.1.0.254/32"), Scope: route.ScopeHost,
			PrefSrc: netip.MustParseAddr("10.1.0.254"), Nexthops: []route.Nexthop{{Dev: "br0"}}},
		route.Route{Table: 254, Type: route.Unicast, Dst: netip.MustParsePrefix("10.1.0.0/24"), Scope: route.ScopeLink,
			PrefSrc: netip.MustParseAddr("10.1.0.254"), Protocol: "kernel", Nexthops: []route.Nexthop{{Dev: "br0"}}})
	cfg.Dev["br0"] = route.DevConf{Forwarding: true}
	fib, err := route.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{FIB: fib, IPForward: true, Bridges: []BridgeConfig{{
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "p1", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "p2", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}},
	}}}, conntrack.DefaultConfig(), 1)
	if e.BridgeErr != nil {
		t.Fatal(e.BridgeErr)
	}
	return e
}

const sec = int64(1e9)

// arpOut describes the ARP frames of fs: "p1:who-has 10.1.0.5 tell
// 10.1.0.254 to ff:ff:ff:ff:ff:ff", one per frame, sorted by port.
func arpOut(t *testing.T, fs []FrameOut) string {
	t.Helper()
	var s []string
	for _, o := range fs {
		fr := &packet.Frame{Data: o.Data}
		if fr.Decode() != nil || fr.InnerProto != packet.EtherTypeARP {
			s = append(s, o.Port+":not ARP")
			continue
		}
		a, ok := packet.ParseARP(fr.Payload)
		if !ok {
			t.Fatalf("bad ARP out of %s", o.Port)
		}
		s = append(s, fmt.Sprintf("%s:op%d who-has %s tell %s to %s", o.Port, a.Op, packet.AddrOf(a.TPA), packet.AddrOf(a.SPA), fr.Dst))
	}
	return strings.Join(s, ", ")
}

func neighState(e *Engine, a string) string {
	for _, n := range e.BridgeNeighbours("br0") {
		if n.Addr == packet.MustAddr(a) {
			return n.State
		}
	}
	return "none"
}

// An unanswered neighbour behind br0: three broadcast requests a second
// apart, then FAILED: the queued forwarded packet is answered with ICMP
// host unreachable from the router's address towards its sender; the
// next packet starts a new resolution.
func TestBridgeNeighFails(t *testing.T) {
	e := routedBridgeEngine(t)
	p := mk(t, "udp 10.0.0.2:5000 > 10.1.0.5:53 iif eth0")
	f := e.Receive(p, sec, nil)
	bcast := "p1:op1 who-has 10.1.0.5 tell 10.1.0.254 to ff:ff:ff:ff:ff:ff, p2:op1 who-has 10.1.0.5 tell 10.1.0.254 to ff:ff:ff:ff:ff:ff"
	if !f.ARPPending || arpOut(t, f.Frames) != bcast {
		t.Fatalf("first packet: %v pending %v frames %s", f, f.ARPPending, arpOut(t, f.Frames))
	}
	for i, at := range []int64{2, 3} {
		ff, as := e.BridgeNeighTick(at * sec)
		if arpOut(t, ff.Out) != bcast || len(as) != 0 || neighState(e, "10.1.0.5") != "INCOMPLETE" {
			t.Fatalf("tick %d: %s, %d answers, %s", i, arpOut(t, ff.Out), len(as), neighState(e, "10.1.0.5"))
		}
	}
	if ff, _ := e.BridgeNeighTick(3*sec + sec/2); len(ff.Out) != 0 {
		t.Fatalf("a tick between the timers sent %s", arpOut(t, ff.Out))
	}
	ff, as := e.BridgeNeighTick(4 * sec)
	if len(ff.Out) != 0 || len(as) != 1 || neighState(e, "10.1.0.5") != "FAILED" {
		t.Fatalf("after the third request: %s, %d answers, %s", arpOut(t, ff.Out), len(as), neighState(e, "10.1.0.5"))
	}
	a := as[0]
	if a.Fate.Kind != Forwarded && a.Fate.Kind != Sent || a.Fate.OutIf != "eth0" {
		t.Errorf("the ICMP error's fate: %v", a.Fate)
	}
	q := a.Pkt
	if q.Proto != packet.ProtoICMP || q.ICMPType != packet.ICMPDestUnreach || q.ICMPCode != 1 ||
		packet.AddrOf(q.Src).String() != "10.0.0.1" || packet.AddrOf(q.Dst).String() != "10.0.0.2" {
		t.Errorf("the error: %s > %s type %d code %d", packet.AddrOf(q.Src), packet.AddrOf(q.Dst), q.ICMPType, q.ICMPCode)
	}
	// the next packet: a new resolution, its request at once
	f = e.Receive(mk(t, "udp 10.0.0.2:5000 > 10.1.0.5:53 iif eth0"), 5*sec, nil)
	if arpOut(t, f.Frames) != bcast || neighState(e, "10.1.0.5") != "INCOMPLETE" {
		t.Fatalf("after FAILED: %s, %s", arpOut(t, f.Frames), neighState(e, "10.1.0.5"))
	}
}

// A resolved neighbour: REACHABLE after a unicast reply (the queue
// flushed to it), STALE after reachable_time unused, DELAY when a packet
// goes to it, PROBE with unicast requests to its MAC (packets still go),
// FAILED after three; a reply in PROBE makes it REACHABLE again.
func TestBridgeNeighStates(t *testing.T) {
	hostMAC := packet.MAC{2, 0, 0, 0, 0, 5}
	e := routedBridgeEngine(t)
	reply := func(at int64) FrameFate {
		a := packet.ARP{Op: packet.ARPReply, SHA: hostMAC, SPA: packet.MustAddr("10.1.0.5"), THA: packet.MAC{2, 0, 0, 0, 0, 0xfe}, TPA: packet.MustAddr("10.1.0.254")}.Bytes()
		return e.ReceiveFrame(packet.BuildFrame(packet.MAC{2, 0, 0, 0, 0, 0xfe}, hostMAC, packet.EtherTypeARP, a), "p1", at, nil)
	}
	send := func(at int64) Fate {
		return e.Receive(mk(t, "udp 10.0.0.2:5000 > 10.1.0.5:53 iif eth0"), at, nil)
	}
	send(sec)
	ff := reply(sec + sec/10)
	if len(ff.Out) != 1 || ff.Out[0].Port != "p1" || neighState(e, "10.1.0.5") != "REACHABLE" {
		t.Fatalf("the reply: %d frames out, %s", len(ff.Out), neighState(e, "10.1.0.5"))
	}
	if f := send(2 * sec); len(f.Frames) != 1 || f.Frames[0].Port != "p1" || f.ARPPending {
		t.Fatalf("to a REACHABLE neighbour: %v", f)
	}
	// unused for reachable_time: STALE (no probe)
	e.BridgeNeighTick(20 * sec)
	if s := neighState(e, "10.1.0.5"); s != "REACHABLE" {
		t.Fatalf("at 20s: %s", s)
	}
	if ff, _ := e.BridgeNeighTick(32 * sec); len(ff.Out) != 0 || neighState(e, "10.1.0.5") != "STALE" {
		t.Fatalf("at 32s: %s %s", arpOut(t, ff.Out), neighState(e, "10.1.0.5"))
	}
	// used: DELAY, the packet goes to the old MAC
	if f := send(33 * sec); len(f.Frames) != 1 || neighState(e, "10.1.0.5") != "DELAY" {
		t.Fatalf("to a STALE neighbour: %v, %s", f, neighState(e, "10.1.0.5"))
	}
	uni := "p1:op1 who-has 10.1.0.5 tell 10.1.0.254 to 02:00:00:00:00:05"
	if ff, _ := e.BridgeNeighTick(38 * sec); arpOut(t, ff.Out) != uni || neighState(e, "10.1.0.5") != "PROBE" {
		t.Fatalf("delay_first_probe_time later: %s, %s", arpOut(t, ff.Out), neighState(e, "10.1.0.5"))
	}
	if f := send(38*sec + sec/2); len(f.Frames) != 1 || f.ARPPending {
		t.Fatalf("to a PROBE neighbour: %v", f)
	}
	for _, at := range []int64{39, 40} {
		if ff, _ := e.BridgeNeighTick(at * sec); arpOut(t, ff.Out) != uni {
			t.Fatalf("probe at %ds: %s", at, arpOut(t, ff.Out))
		}
	}
	if ff, as := e.BridgeNeighTick(41 * sec); len(ff.Out) != 0 || len(as) != 0 || neighState(e, "10.1.0.5") != "FAILED" {
		t.Fatalf("after three probes: %s, %d answers, %s", arpOut(t, ff.Out), len(as), neighState(e, "10.1.0.5"))
	}
	// a reply while probing: REACHABLE again
	e = routedBridgeEngine(t)
	send(sec)
	reply(sec + 1)
	e.BridgeNeighTick(32 * sec)
	send(33 * sec)
	e.BridgeNeighTick(38 * sec)
	if s := neighState(e, "10.1.0.5"); s != "PROBE" {
		t.Fatalf("second engine at 38s: %s", s)
	}
	reply(38*sec + 1)
	if ff, _ := e.BridgeNeighTick(39 * sec); len(ff.Out) != 0 || neighState(e, "10.1.0.5") != "REACHABLE" {
		t.Fatalf("after a reply in PROBE: %s, %s", arpOut(t, ff.Out), neighState(e, "10.1.0.5"))
	}
}
