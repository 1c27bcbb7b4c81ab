package datapath

import (
	"strings"
	"syscall"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/internal/prom"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// TestDropNoAllocs: a dropped packet costs no allocation for its reason:
// a new UDP flow dropped by FORWARD's policy allocates exactly its
// conntrack entry, as an accepted one does (TestNewConnAllocs); the old
// string reason cost one more per drop.
func TestDropNoAllocs(t *testing.T) {
	e := testEngine(t)
	tmpl := mk(t, "udp 10.0.0.2:5000 > 192.168.1.9:53 iif eth0").Data
	buf := make([]byte, len(tmpl))
	p := &packet.Packet{}
	var f Fate
	run := func() {
		copy(buf, tmpl)
		*p = packet.Packet{Data: buf, Meta: packet.Meta{InIf: "eth0"}}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		f = e.Receive(p, 1e9, nil)
	}
	run()
	if f.Kind != Dropped || f.Reason != DropTable || f.Table != iptables.Filter || f.Hook != netfilter.Forward {
		t.Fatalf("fate %v (%+v)", f, f)
	}
	// untraced, the fate names the policy as a traced one does
	if s := f.String(); s != "dropped by filter:FORWARD:policy" {
		t.Errorf("untraced fate %q", s)
	}
	if n := testing.AllocsPerRun(200, run); n != 1 {
		t.Errorf("a dropped new flow allocates %v times, want 1 (its conntrack entry)", n)
	}
}

// TestDropBy: each reason prints as the engine always printed it.
func TestDropBy(t *testing.T) {
	for _, tc := range []struct {
		f    Fate
		want string
	}{
		{Fate{Reason: DropTable, Table: iptables.Filter, Hook: netfilter.Forward}, "filter:FORWARD"},
		{Fate{Reason: DropTable, Table: iptables.Filter, Hook: netfilter.Forward, Arg: "KUBE-SVC", Rule: 3}, "filter:KUBE-SVC:rule:3"},
		{Fate{Reason: DropTable, Table: iptables.Raw, Hook: netfilter.PreRouting, Arg: "PREROUTING"}, "raw:PREROUTING:policy"},
		{Fate{Reason: DropConntrack, Detail: uint32(conntrack.Verdict(0))}, "conntrack: " + conntrack.Verdict(0).String()},
		{Fate{Reason: DropRoute, Detail: uint32(syscall.EHOSTUNREACH)}, "route: no route to host"},
		{Fate{Reason: DropMasqNoAddr, Arg: "eth1"}, "nat: MASQUERADE found no address on eth1"},
		{Fate{Reason: DropIPVSNoRoute, Detail: packet.MustAddr("10.10.2.2")}, "ipvs: no route to real server 10.10.2.2"},
		{Fate{Reason: DropIPVS, Arg: "ipvs: destination not available"}, "ipvs: destination not available"},
		{Fate{Reason: DropTTL}, "ip_forward: TTL exceeded"},
		{Fate{}, ""},
	} {
		if got := tc.f.By(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.f, got, tc.want)
		}
	}
	for r := DropNone + 1; r < NumDropReasons; r++ {
		if r.String() == "" || strings.ContainsAny(r.String(), " :\"") {
			t.Errorf("reason %d has label %q", r, r.String())
		}
	}
}

// TestFateAppendText: AppendText writes String's text, and allocates
// nothing for the fates a replay prints most.
func TestFateAppendText(t *testing.T) {
	for _, f := range []Fate{
		{Kind: Forwarded, OutIf: "eth1"},
		{Kind: Sent, OutIf: "eth0", Frags: [][]byte{nil, nil, nil}},
		{Kind: Delivered},
		{Kind: Queued},
		{Kind: Dropped, Reason: DropTable, Table: iptables.Filter, Hook: netfilter.Forward},
		{Kind: Dropped, Reason: DropTable, Table: iptables.Nat, Hook: netfilter.PreRouting, Arg: "KUBE-SVC", Rule: 12},
		{Kind: Dropped, Reason: DropTable, Table: iptables.Raw, Hook: netfilter.PreRouting, Arg: "PREROUTING"},
		{Kind: Dropped, Reason: DropRoute, Detail: uint32(syscall.EHOSTUNREACH)},
		{Kind: Dropped, Reason: DropTTL},
	} {
		if got := string(f.AppendText([]byte("x "))); got != "x "+f.String() {
			t.Errorf("%+v: %q, want %q", f, got, "x "+f.String())
		}
		if f.Kind == Forwarded || f.Reason == DropTable {
			b := make([]byte, 0, 64)
			if n := testing.AllocsPerRun(100, func() { b = f.AppendText(b[:0]) }); n != 0 {
				t.Errorf("%v: %v allocations", f, n)
			}
		}
	}
}

// TestDropCounts: counts by key, a table's by table and hook, and the
// metric has one sample per key with bounded labels.
func TestDropCounts(t *testing.T) {
	var c DropCounts
	fwd := Fate{Kind: Dropped, Reason: DropTable, Table: iptables.Filter, Hook: netfilter.Forward, Arg: "X", Rule: 2}
	for range 3 {
		c.Add(&fwd)
	}
	c.Add(&Fate{Kind: Dropped, Reason: DropRoute, Detail: uint32(syscall.ENETUNREACH)})
	c.Add(&Fate{Kind: Dropped, Reason: DropRoute, Detail: uint32(syscall.EHOSTUNREACH)})
	c.Add(&Fate{Kind: Forwarded})
	got := c.Snapshot()
	want := map[DropKey]uint64{
		{Reason: DropTable, Table: iptables.Filter, Hook: netfilter.Forward}: 3,
		{Reason: DropRoute}: 2,
	}
	if len(got) != len(want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%v: %d, want %d", k, got[k], n)
		}
	}
	var b strings.Builder
	WriteDropMetrics(prom.New(&b), got)
	for _, line := range []string{
		`uswitch_drops_total{reason="table",table="filter",hook="FORWARD"} 3` + "\n",
		`uswitch_drops_total{reason="route"} 2` + "\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, b.String())
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.Add(&fwd) }); n != 0 {
		t.Errorf("Add allocates %v times", n)
	}
}
