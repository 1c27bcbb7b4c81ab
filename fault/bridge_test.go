package fault

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// TestBridgeFault: a fault at hook:bridge:FORWARD drops the bridged
// IPv4 frames its iptables match takes (every 2nd of the flow) and
// shows in the trace; one with ebt_match "-p ARP" at PREROUTING drops
// ARP, which an iptables match could not see; IPv4 frames pass it.
func TestBridgeFault(t *testing.T) {
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet([]Spec{
		{Name: "br-dns", At: "hook:bridge:FORWARD@-250", Match: "-p udp --dport 53 -m physdev --physdev-in p1", Action: "loss", Every: 2},
		{Name: "no-arp", At: "hook:bridge:PREROUTING", EbtMatch: "-p ARP", Action: "loss"},
	}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bs []datapath.BridgeFaultStage
	for _, f := range s.Bridge() {
		bs = append(bs, f)
	}
	e := datapath.New(datapath.Config{FIB: fib, BridgeFaults: bs, Bridges: []datapath.BridgeConfig{{
		CallIPTables: true,
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "p1", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "p2", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}}}}}, conntrack.DefaultConfig(), 1)
	if e.BridgeErr != nil {
		t.Fatal(e.BridgeErr)
	}
	a, b := packet.MAC{2, 0, 0, 0, 0, 0xa}, packet.MAC{2, 0, 0, 0, 0, 0xb}
	sp, _, err := packet.ParseSpec("udp 10.0.0.2:5353 > 10.0.0.3:53")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		tr := &datapath.Tracer{All: true}
		ff := e.ReceiveFrame(packet.BuildFrame(b, a, packet.EtherTypeIPv4, packet.Build(sp)), "p1", int64(i)*1e6, tr)
		lines := strings.Join(tr.Lines, "\n")
		if i%2 == 0 {
			if len(ff.Out) != 0 || !strings.Contains(ff.Drop, "fault: br-dns") || !strings.Contains(lines, "fault:FORWARD:rule:0x0:DROP") {
				t.Errorf("frame %d: %v\n%s", i, ff, lines)
			}
		} else if len(ff.Out) == 0 {
			t.Errorf("frame %d: %v, want flooded", i, ff)
		}
	}
	arp := make([]byte, 28)
	ff := e.ReceiveFrame(packet.BuildFrame(packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, a, packet.EtherTypeARP, arp), "p1", 1e9, nil)
	if !strings.Contains(ff.Drop, "fault: no-arp") {
		t.Errorf("ARP: %v", ff)
	}
	if s.Faults[1].Dropped.Load() != 1 {
		t.Errorf("no-arp dropped %d", s.Faults[1].Dropped.Load())
	}
	for _, bad := range []Spec{
		{Name: "x", At: "hook:bridge:OUTPUT", Action: "loss"},
		{Name: "x", At: "hook:bridge:FORWARD", EbtMatch: "-p ARP -j DROP", Action: "loss"},
		{Name: "x", At: "hook:bridge:FORWARD", EbtMatch: "--nope", Action: "loss"},
		{Name: "x", At: "hook:ipv4:FORWARD", EbtMatch: "-p ARP", Action: "loss"},
	} {
		if _, err := Compile(&bad, 1, nil); err == nil {
			t.Errorf("%s %s: accepted", bad.At, bad.EbtMatch)
		} else {
			t.Logf("%s %q: %v", bad.At, bad.EbtMatch, err)
		}
	}
}

// TestBridgePreroutingAfterBrNF: a bridge PREROUTING fault at priority
// 0 or above runs after br_netfilter (NF_BR_PRI_BRNF): it sees the
// packet as the IPv4 PREROUTING hook left it, DNAT done, and its trace
// line comes after the nat rule's; one below 0 (after ebtables nat)
// sees the destination before the DNAT.
func TestBridgePreroutingAfterBrNF(t *testing.T) {
	rc := datapathtest.RouterConfig()
	rc.Links = append(rc.Links, route.Link{Name: "br0", Index: 4, Up: true})
	rc.Dev["br0"] = route.DevConf{Forwarding: true}
	fib, err := route.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet([]Spec{
		{Name: "early", At: "hook:bridge:PREROUTING@-10", Match: "-d 192.168.1.5", Action: "loss"},
		{Name: "late", At: "hook:bridge:PREROUTING@10", Match: "-d 192.168.1.5", Action: "loss"},
	}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bs []datapath.BridgeFaultStage
	for _, f := range s.Bridge() {
		bs = append(bs, f)
	}
	rs, err := (&iptables.Loader{}).LoadString(datapathtest.Table("nat", "-A PREROUTING -d 10.0.0.3/32 -p udp --dport 53 -j DNAT --to-destination 192.168.1.5"))
	if err != nil {
		t.Fatal(err)
	}
	e := datapath.New(datapath.Config{FIB: fib, Rules: rs, BridgeFaults: bs, Bridges: []datapath.BridgeConfig{{
		CallIPTables: true,
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "p1", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "p2", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}}}}}, conntrack.DefaultConfig(), 1)
	if e.BridgeErr != nil {
		t.Fatal(e.BridgeErr)
	}
	sp, _, err := packet.ParseSpec("udp 10.0.0.2:5353 > 10.0.0.3:53")
	if err != nil {
		t.Fatal(err)
	}
	tr := &datapath.Tracer{All: true}
	ff := e.ReceiveFrame(packet.BuildFrame(packet.MAC{2, 0, 0, 0, 0, 0xb}, packet.MAC{2, 0, 0, 0, 0, 0xa}, packet.EtherTypeIPv4, packet.Build(sp)), "p1", 1e6, tr)
	lines := strings.Join(tr.Lines, "\n")
	if !strings.Contains(ff.Drop, "fault: late") {
		t.Errorf("frame: %+v, want dropped by the late fault\n%s", ff, lines)
	}
	if m := s.Faults[0].Matched.Load(); m != 0 {
		t.Errorf("the fault before br_netfilter matched the DNATed address %d times", m)
	}
	nat, flt := strings.Index(lines, "nat:PREROUTING:rule:0x"), strings.Index(lines, "fault:PREROUTING:rule:0x0:DROP")
	if nat < 0 || flt < nat {
		t.Errorf("want the nat rule's line, then the fault's:\n%s", lines)
	}
}
