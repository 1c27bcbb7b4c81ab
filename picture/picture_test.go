package picture

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// elem is a parsed XML element.
type elem struct {
	name  string
	attr  map[string]string
	kids  []*elem
	text  string
	outer *elem
}

func parse(t *testing.T, b []byte) *elem {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	root := &elem{name: "#root"}
	cur := root
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			e := &elem{name: x.Name.Local, attr: map[string]string{}, outer: cur}
			for _, a := range x.Attr {
				e.attr[a.Name.Local] = a.Value
			}
			cur.kids = append(cur.kids, e)
			cur = e
		case xml.EndElement:
			cur = cur.outer
		case xml.CharData:
			cur.text += string(x)
		}
	}
	return root
}

func (e *elem) hasClass(c string) bool {
	for _, x := range strings.Fields(e.attr["class"]) {
		if x == c {
			return true
		}
	}
	return false
}

// all lists the elements under e (e included) that f accepts.
func (e *elem) all(f func(*elem) bool) []*elem {
	var out []*elem
	var walk func(*elem)
	walk = func(x *elem) {
		if f(x) {
			out = append(out, x)
		}
		for _, k := range x.kids {
			walk(k)
		}
	}
	walk(e)
	return out
}

// textOf is the element's text with its descendants'.
func (e *elem) textOf() string {
	s := e.text
	for _, k := range e.kids {
		if k.name != "title" {
			s += k.textOf()
		}
	}
	return s
}

func hookBox(root *elem, level, hook string) *elem {
	l := root.all(func(x *elem) bool {
		return x.hasClass("hook") && x.attr["data-level"] == level && x.attr["data-hook"] == hook
	})
	if len(l) != 1 {
		return nil
	}
	return l[0]
}

const rules = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -j TRACE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2:8080
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:SVC - [0:0]
-A FORWARD -p tcp --dport 22 -j REJECT --reject-with tcp-reset
-A FORWARD -i eth0 -j SVC
-A SVC -d 192.168.1.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT
COMMIT
`

func engine(t *testing.T, faults ...datapath.FaultStage) *datapath.Engine {
	t.Helper()
	rs, err := (&iptables.Loader{}).LoadString(rules)
	if err != nil {
		t.Fatal(err)
	}
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	return datapath.New(datapath.Config{Rules: rs, FIB: fib, IPForward: true, Faults: faults}, conntrack.DefaultConfig(), 1)
}

func receive(t *testing.T, e *datapath.Engine, spec string) Packet {
	t.Helper()
	sp, meta, err := packet.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := &packet.Packet{Data: packet.Build(sp), Meta: meta}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	tr := &datapath.Tracer{Record: true}
	e.Receive(p, 1e9, tr)
	return Group("packet 1", tr.Path)
}

func draw(t *testing.T, e *datapath.Engine, pk Packet) (*elem, string) {
	t.Helper()
	var b bytes.Buffer
	if err := SVG(&b, e.Layout(), pk, Options{}); err != nil {
		t.Fatal(err)
	}
	return parse(t, b.Bytes()), b.String()
}

var hooks = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// checkLayout: every hook box of both levels is there with every stage
// of the layout, in its order.
func checkLayout(t *testing.T, root *elem, l datapath.Layout) {
	t.Helper()
	for _, lv := range []string{"bridge", "ipv4"} {
		for h, name := range hooks {
			box := hookBox(root, lv, name)
			if box == nil {
				t.Errorf("no %s %s box", lv, name)
				continue
			}
			stages := l.IPv4[h]
			if lv == "bridge" {
				stages = l.Bridge[h]
			}
			var got, want []string
			for _, s := range box.all(func(x *elem) bool { return x.hasClass("stage") }) {
				got = append(got, s.attr["data-key"])
			}
			for _, s := range stages {
				want = append(want, s.Key)
			}
			if strings.Join(got, ", ") != strings.Join(want, ", ") {
				t.Errorf("%s %s stages %q, want %q", lv, name, got, want)
			}
		}
	}
}

// TestSVGForwarded: a DNATed, masqueraded SYN: every hook box, the
// boxes it crossed marked and no other, the rules that matched, NAT
// before and after, the route and the fate.
func TestSVGForwarded(t *testing.T) {
	e := engine(t)
	pk := receive(t, e, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0")
	if len(pk.Paths) != 1 {
		t.Fatalf("%d paths", len(pk.Paths))
	}
	root, text := draw(t, e, pk)
	checkLayout(t, root, e.Layout())
	taken := map[string]bool{"PREROUTING": true, "FORWARD": true, "POSTROUTING": true}
	for _, h := range hooks {
		box := hookBox(root, "ipv4", h)
		if box == nil {
			continue
		}
		if got := box.hasClass("taken"); got != taken[h] {
			t.Errorf("ipv4 %s taken=%v", h, got)
		}
		if box := hookBox(root, "bridge", h); box != nil && box.hasClass("taken") {
			t.Errorf("bridge %s taken", h)
		}
	}
	// the stages crossed in PREROUTING, and not mangle (no table)
	pre := hookBox(root, "ipv4", "PREROUTING")
	for _, s := range pre.all(func(x *elem) bool { return x.hasClass("stage") }) {
		want := s.attr["data-key"] != "mangle -150"
		if s.hasClass("taken") != want {
			t.Errorf("PREROUTING stage %s taken=%v", s.attr["data-key"], s.hasClass("taken"))
		}
	}
	nat := root.all(func(x *elem) bool { return x.hasClass("nat") })
	var dnat, snat bool
	for _, n := range nat {
		b, a := n.attr["data-before"], n.attr["data-after"]
		switch {
		case b == "10.0.0.2:40000 > 10.0.0.1:80" && a == "10.0.0.2:40000 > 192.168.1.2:8080":
			dnat = strings.Contains(n.textOf(), "dst 10.0.0.1:80 → 192.168.1.2:8080")
		case b == "10.0.0.2:40000 > 192.168.1.2:8080" && a == "192.168.1.1:40000 > 192.168.1.2:8080":
			snat = strings.Contains(n.textOf(), "src 10.0.0.2:40000 → 192.168.1.1:40000")
		}
	}
	if !dnat || !snat {
		t.Errorf("NAT notes: DNAT %v, SNAT %v\n%s", dnat, snat, text)
	}
	// the DNAT note sits in the nat stage of PREROUTING
	if len(pre.all(func(x *elem) bool { return x.hasClass("nat") && x.outer.attr["data-key"] == "nat -100" })) == 0 {
		t.Error("the DNAT note is not in PREROUTING's nat stage")
	}
	fwd := hookBox(root, "ipv4", "FORWARD")
	var rules []string
	for _, r := range fwd.all(func(x *elem) bool { return x.hasClass("rule") }) {
		rules = append(rules, r.attr["data-chain"]+"#"+r.attr["data-rule"]+" "+r.attr["data-verdict"])
	}
	if strings.Join(rules, ", ") != "FORWARD#2 JUMP:SVC, SVC#1 ACCEPT" {
		t.Errorf("FORWARD rules %q", rules)
	}
	ways := root.all(func(x *elem) bool { return x.name == "g" && x.hasClass("way") })
	if len(ways) != 1 || ways[0].attr["data-nodes"] != "ipv4-in ipv4-PREROUTING ipv4-decision ipv4-FORWARD ipv4-POSTROUTING ipv4-out" {
		t.Errorf("ways %v", ways[0].attr)
	}
	if len(ways[0].all(func(x *elem) bool { return x.name == "line" })) != 5 {
		t.Error("the way is not drawn as 5 arrows")
	}
	for _, want := range []string{"→ eth1", "FATE: forwarded out eth1", "in eth0"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q", want)
		}
	}
}

// TestSVGAnswer: a REJECTed SYN ends in FORWARD's filter stage, and its
// RST is drawn as a path of its own from there out through OUTPUT and
// POSTROUTING.
func TestSVGAnswer(t *testing.T) {
	e := engine(t)
	pk := receive(t, e, "tcp 10.0.0.2:40000 > 192.168.1.9:22 syn iif eth0")
	if len(pk.Paths) != 2 || !pk.Paths[1].Answer {
		t.Fatalf("paths %+v", pk.Paths)
	}
	root, _ := draw(t, e, pk)
	checkLayout(t, root, e.Layout())
	ways := root.all(func(x *elem) bool { return x.name == "g" && x.hasClass("way") })
	if len(ways) != 2 {
		t.Fatalf("%d ways", len(ways))
	}
	if got := ways[0].attr["data-nodes"]; got != "ipv4-in ipv4-PREROUTING ipv4-decision ipv4-FORWARD" {
		t.Errorf("packet's way %s", got)
	}
	if got := ways[1].attr["data-nodes"]; got != "ipv4-FORWARD ipv4-routeout ipv4-OUTPUT ipv4-POSTROUTING ipv4-out" {
		t.Errorf("answer's way %s", got)
	}
	gone := hookBox(root, "ipv4", "FORWARD").all(func(x *elem) bool { return x.hasClass("gone") })
	if len(gone) != 1 || gone[0].attr["data-key"] != "filter 0" {
		t.Errorf("gone stages %v", gone)
	}
	all := root.textOf()
	for _, want := range []string{"filter #1 REJECT DROP", "answer: tcp 192.168.1.9:22 > 10.0.0.2:40000 RST,ACK — sent out eth0", "FATE: dropped by filter:FORWARD:rule:1"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q", want)
		}
	}
	out := hookBox(root, "ipv4", "OUTPUT")
	if !out.hasClass("taken") || out.attr["data-paths"] != "1" {
		t.Errorf("OUTPUT %v", out.attr)
	}
}

// fault is a FaultStage that passes everything.
type fault struct{}

func (fault) FaultHook() (netfilter.Hook, netfilter.Priority) { return netfilter.Forward, -10 }
func (fault) FaultName() string                               { return "slow" }
func (fault) Act(c *iptables.Ctx, now int64, traced bool) (bool, bool, string) {
	return true, false, "pass"
}

// TestSVGNewStage: a stage the engine adds (here a fault's) is drawn in
// its hook at its priority, and crossed.
func TestSVGNewStage(t *testing.T) {
	e := engine(t, fault{})
	pk := receive(t, e, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0")
	root, _ := draw(t, e, pk)
	checkLayout(t, root, e.Layout())
	var keys []string
	for _, s := range hookBox(root, "ipv4", "FORWARD").all(func(x *elem) bool { return x.hasClass("stage") }) {
		keys = append(keys, s.attr["data-key"])
		if s.attr["data-key"] == "fault slow -10" && !s.hasClass("taken") {
			t.Error("the fault stage is not marked taken")
		}
	}
	if len(keys) < 2 || keys[1] != "fault slow -10" {
		t.Errorf("FORWARD stages %q", keys)
	}
}

// TestHTML: one page, one section and picture per packet, nothing
// loaded from outside.
func TestHTML(t *testing.T) {
	e := engine(t)
	pks := []Packet{receive(t, e, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0"), receive(t, e, "tcp 10.0.0.2:40001 > 192.168.1.9:22 syn iif eth0")}
	pks[1].Title = "packet 2"
	var b bytes.Buffer
	if err := HTML(&b, e.Layout(), "test", pks); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if n := strings.Count(s, "<svg "); n != 2 {
		t.Errorf("%d pictures", n)
	}
	for _, bad := range []string{"<script", "src=", "@import", "url(http", "href=\"http"} {
		if strings.Contains(s, bad) {
			t.Errorf("the page has %q", bad)
		}
	}
	if !strings.Contains(s, `id="p2-ipv4-FORWARD"`) || !strings.Contains(s, `id="p1-ipv4-FORWARD"`) {
		t.Error("ids are not prefixed per picture")
	}
}
