package datapath

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// pathText is a compact form of the events, one a line.
func pathText(evs []PathEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%08x %s", ev.ID, ev.Kind)
		switch ev.Kind {
		case PathStart:
			fmt.Fprintf(&b, " %s parent=%08x %s", ev.Cause, ev.Parent, ev.Text)
		case PathHook:
			fmt.Fprintf(&b, " %s in=%s out=%s", ev.HookName(), ev.In, ev.Out)
		case PathStage:
			fmt.Fprintf(&b, " %s %s gone=%v %s", ev.HookName(), ev.Stage, ev.Gone, ev.Text)
		case PathRule:
			fmt.Fprintf(&b, " %s:%s:%d %s", ev.Table, ev.Chain, ev.Rule, ev.Verdict)
		case PathRewrite:
			fmt.Fprintf(&b, " %s: %s -> %s", ev.Stage, ev.Before, ev.After)
		case PathRoute:
			fmt.Fprintf(&b, " %s", ev.Route)
		case PathEnd:
			fmt.Fprintf(&b, " %s", ev.Text)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TestPathEvents: a DNATed, masqueraded SYN's events name every stage
// it crossed in the order of the hook's list, the rules that matched,
// both rewrites with their addresses, the input route and the fate;
// a packet no TRACE rule marks leaves no events without All.
func TestPathEvents(t *testing.T) {
	e := testEngine(t)
	tr := &Tracer{Record: true}
	syn := mk(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0")
	if f := e.Receive(syn, 1e9, tr); f.Kind != Forwarded {
		t.Fatalf("fate %v", f)
	}
	got := pathText(tr.Path)
	for _, want := range []string{
		"start received parent=00000000 tcp 10.0.0.2:40000 > 10.0.0.1:80 SYN",
		"hook PREROUTING in=eth0 out=",
		"stage PREROUTING raw -300 gone=false",
		"rule raw:PREROUTING:1 TRACE CONTINUE",
		"rule nat:PREROUTING:1 DNAT ACCEPT",
		"rewrite nat -100: 10.0.0.2:40000 > 10.0.0.1:80 -> 10.0.0.2:40000 > 192.168.1.2:8080",
		"route input route: unicast dev eth1",
		"hook FORWARD in=eth0 out=eth1",
		"rule filter:FORWARD:2 JUMP:SVC",
		"rule filter:SVC:1 ACCEPT",
		"hook POSTROUTING in=eth0 out=eth1",
		"rule nat:POSTROUTING:1 MASQUERADE ACCEPT",
		"rewrite nat 100: 10.0.0.2:40000 > 192.168.1.2:8080 -> 192.168.1.1:40000 > 192.168.1.2:8080",
		"stage POSTROUTING confirm gone=false",
		"end forwarded out eth1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	// stages in their list's order
	var stages []string
	for _, ev := range tr.Path {
		if ev.Kind == PathStage && ev.Hook == uint8(netfilter.PreRouting) {
			stages = append(stages, ev.Stage)
		}
	}
	if s := strings.Join(stages, ", "); s != stageNames(e.cfg.Load().hooks[0][netfilter.PreRouting]) {
		t.Errorf("PREROUTING stages %s, list %s", s, stageNames(e.cfg.Load().hooks[0][netfilter.PreRouting]))
	}
	// UDP: no TRACE rule marks it
	tr = &Tracer{Record: true}
	e.Receive(mk(t, "udp 10.0.0.2:5000 > 192.168.1.9:53 iif eth0"), 1e9, tr)
	if len(tr.Path) != 0 {
		t.Errorf("untraced packet recorded:\n%s", pathText(tr.Path))
	}
	tr = &Tracer{Record: true, PathAll: true}
	if f := e.Receive(mk(t, "udp 10.0.0.2:5000 > 192.168.1.9:53 iif eth0"), 1e9, tr); f.Kind != Dropped {
		t.Fatalf("fate %v", f)
	}
	got = pathText(tr.Path)
	for _, want := range []string{"rule filter:FORWARD:0 DROP", "stage FORWARD filter 0 gone=true dropped by filter:FORWARD:policy", "end dropped by filter:FORWARD:policy"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	if len(tr.Lines) != 0 {
		t.Errorf("PathAll printed lines: %q", tr.Lines)
	}
}

// TestPathAnswer: a REJECT's RST is a path of its own, started by the
// rejected packet.
func TestPathAnswer(t *testing.T) {
	rs := loadRules(t, `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp --dport 22 -j REJECT --reject-with tcp-reset
COMMIT
`)
	e := New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, defaultCT(), 1)
	tr := &Tracer{All: true, Record: true}
	f := e.Receive(mk(t, "tcp 10.0.0.2:40000 > 192.168.1.9:22 syn iif eth0"), 1e9, tr)
	if f.Kind != Dropped || len(f.Answers) != 1 {
		t.Fatalf("fate %v, %d answers", f, len(f.Answers))
	}
	var first, ans uint32
	for _, ev := range tr.Path {
		if ev.Kind == PathStart && ev.Cause == "received" {
			first = ev.ID
		}
		if ev.Kind == PathStart && ev.Cause == "answer" {
			ans = ev.ID
			if ev.Parent != first || !strings.Contains(ev.Text, "192.168.1.9:22 > 10.0.0.2:40000 RST,ACK") {
				t.Errorf("answer start %+v", ev)
			}
		}
	}
	got := pathText(tr.Path)
	if ans == 0 || ans == first {
		t.Fatalf("no answer path:\n%s", got)
	}
	for _, want := range []string{
		fmt.Sprintf("%08x rule filter:FORWARD:1 REJECT DROP", first),
		fmt.Sprintf("%08x route output route: unicast dev eth0", ans),
		fmt.Sprintf("%08x hook OUTPUT", ans),
		fmt.Sprintf("%08x end sent out eth0", ans),
		fmt.Sprintf("%08x end dropped by filter:FORWARD:rule:1", first),
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
}

// TestLayout: the layout has every stage the engine's lists can hold,
// in priority order, and marks those this configuration has.
func TestLayout(t *testing.T) {
	rs := loadRules(t, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")
	e := New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, defaultCT(), 1)
	l := e.Layout()
	keys := func(h netfilter.Hook, active bool) string {
		var s []string
		for _, st := range l.IPv4[h] {
			if !active || st.Active {
				s = append(s, st.Key)
			}
		}
		return strings.Join(s, ", ")
	}
	want := [netfilter.NumHooks]string{
		netfilter.PreRouting:  "defrag -400, raw -300, conntrack -200, flowcache -200, mangle -150, nat -100",
		netfilter.LocalIn:     "mangle -150, filter 0, ipvs-out 98, ipvs-in 99, nat 100, security 150, confirm",
		netfilter.Forward:     "mangle -150, filter 0, ipvs-icmp 99, ipvs-out 100, security 150",
		netfilter.LocalOut:    "defrag -400, raw -300, conntrack -200, mangle -150, nat -100, ipvs-out -99, ipvs-in -98, filter 0, security 150",
		netfilter.PostRouting: "mangle -150, nat 100, confirm",
	}
	for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
		if got := keys(h, false); got != want[h] {
			t.Errorf("%v: %s, want %s", h, got, want[h])
		}
		// active: this configuration's own list
		if got, w := keys(h, true), stageNames(e.cfg.Load().hooks[0][h]); got != w {
			t.Errorf("%v active: %s, want %s", h, got, w)
		}
	}
	for _, st := range l.IPv4[netfilter.LocalIn] {
		if st.IPVS != strings.HasPrefix(st.Name, "ipvs") {
			t.Errorf("%s: IPVS %v", st.Key, st.IPVS)
		}
	}
	var br []string
	for h := range l.Bridge {
		for _, st := range l.Bridge[h] {
			br = append(br, st.Key)
		}
	}
	if got := strings.Join(br, ", "); got != "ebtables nat -300, br_netfilter 0, ebtables filter -200, ebtables filter -200, br_netfilter 0, ebtables filter -200, ebtables nat 100, ebtables nat 300, br_netfilter 2147483647" {
		t.Errorf("bridge stages %s", got)
	}
}

func loadRules(t *testing.T, text string) *iptables.Ruleset {
	t.Helper()
	rs, err := (&iptables.Loader{}).LoadString(text)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func defaultCT() conntrack.Config { return conntrack.DefaultConfig() }
