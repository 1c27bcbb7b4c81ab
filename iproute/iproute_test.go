package iproute

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/route"
)

// testFIB is a small routing state: two devices, a multipath route,
// reject routes, a second table and custom rules.
func testFIB(t testing.TB) *route.FIB {
	nh := func(gw, dev string) route.Nexthop {
		n := route.Nexthop{Dev: dev, Weight: 1}
		if gw != "" {
			n.Gateway = netip.MustParseAddr(gw)
		}
		return n
	}
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	cfg := route.Config{
		Links: []route.Link{{Name: "lo", Index: 1, Up: true, Loopback: true}, {Name: "tun1", Index: 2, Up: true}, {Name: "tun2", Index: 3, Up: true}},
		Addrs: []route.Addr{{Dev: "lo", Local: a("127.0.0.1"), Prefix: p("127.0.0.0/8")},
			{Dev: "tun1", Local: a("10.0.1.1"), Prefix: p("10.0.1.0/24")},
			{Dev: "tun2", Local: a("10.0.2.1"), Prefix: p("10.0.2.0/24")}},
		Routes: []route.Route{
			{Table: route.TableMain, Type: route.Unicast, Dst: p("10.0.1.0/24"), Scope: route.ScopeLink, Protocol: "kernel", PrefSrc: a("10.0.1.1"), Nexthops: []route.Nexthop{nh("", "tun1")}},
			{Table: route.TableMain, Type: route.Unicast, Dst: p("10.0.2.0/24"), Scope: route.ScopeLink, Protocol: "kernel", PrefSrc: a("10.0.2.1"), Nexthops: []route.Nexthop{nh("", "tun2")}},
			{Table: route.TableMain, Type: route.Unicast, Dst: p("0.0.0.0/0"), Nexthops: []route.Nexthop{nh("10.0.1.9", "tun1")}},
			{Table: route.TableMain, Type: route.Unicast, Dst: p("10.9.0.0/16"), Metric: 20, Nexthops: []route.Nexthop{nh("10.0.1.9", "tun1"), {Gateway: a("10.0.2.9"), Dev: "tun2", Weight: 3, LinkDown: true}}},
			{Table: route.TableMain, Type: route.Unreachable, Dst: p("10.7.0.0/16")},
			{Table: route.TableMain, Type: route.Blackhole, Dst: p("10.8.0.0/16")},
			{Table: 100, Type: route.Prohibit, Dst: p("10.6.0.0/16")},
			{Table: route.TableLocal, Type: route.Local, Dst: p("10.0.1.1/32"), Scope: route.ScopeHost, Protocol: "kernel", PrefSrc: a("10.0.1.1"), Nexthops: []route.Nexthop{nh("", "tun1")}},
			{Table: route.TableLocal, Type: route.Local, Dst: p("127.0.0.0/8"), Scope: route.ScopeHost, Protocol: "kernel", PrefSrc: a("127.0.0.1"), Nexthops: []route.Nexthop{nh("", "lo")}},
		},
		Rules: append(route.DefaultRules(), route.Rule{Priority: 100, Mark: 1, Mask: 0xff, UIDEnd: ^uint32(0),
			Action: route.ActToTable, Table: 100, SuppressPrefixLen: -1, SuppressIfgroup: -1, IIF: "ghost"},
			route.Rule{Priority: 200, Not: true, Src: p("10.0.0.0/8"), Dst: p("10.6.0.0/16"), UIDStart: 5, UIDEnd: 9, IPProto: 6,
				DPort: route.PortRange{Start: 80, End: 90}, Action: route.ActGoto, Goto: 300, SuppressPrefixLen: -1, SuppressIfgroup: -1},
			route.Rule{Priority: 210, TOS: 0x28, UIDEnd: ^uint32(0), Action: route.ActToTable, Table: route.TableMain, SuppressPrefixLen: 0, SuppressIfgroup: -1},
			route.Rule{Priority: 220, UIDEnd: ^uint32(0), Action: route.ActProhibit, SuppressPrefixLen: -1, SuppressIfgroup: -1, SPort: route.PortRange{Start: 53, End: 53}}),
	}
	f, err := route.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRun(t *testing.T) {
	f := testFIB(t)
	cases := []struct {
		args     string
		out, err string
		code     int
		uid      uint32
	}{
		{args: "route get 10.0.2.2", out: "10.0.2.2 dev tun2 src 10.0.2.1 uid 0 \n    cache \n"},
		{args: "route get 8.8.8.8", uid: 1000, out: "8.8.8.8 via 10.0.1.9 dev tun1 src 10.0.1.1 uid 1000 \n    cache \n"},
		{args: "r g 10.0.1.1", out: "local 10.0.1.1 dev lo table local src 10.0.1.1 uid 0 \n    cache <local> \n"},
		{args: "-j route get 10.0.1.1", out: `[{"type":"local","dst":"10.0.1.1","dev":"lo","table":"local","prefsrc":"10.0.1.1","flags":[],"uid":0,"cache":["local"]}]` + "\n"},
		{args: "route get 10.0.1.1 from 10.0.2.5 iif tun2 mark 0x20", out: "local 10.0.1.1 from 10.0.2.5 dev lo table local mark 0x20 \n    cache <local> iif tun2 \n"},
		{args: "route get to 8.8.8.8 from 10.0.2.5 iif tun2 mark 7", err: "RTNETLINK answers: No route to host\n", code: 2},
		{args: "route get 10.7.1.1", err: "RTNETLINK answers: No route to host\n", code: 2},
		{args: "route get 10.8.1.1", err: "RTNETLINK answers: Invalid argument\n", code: 2},
		{args: "route get 10.6.1.1 mark 1", out: "10.6.1.1 via 10.0.1.9 dev tun1 src 10.0.1.1 mark 1 uid 0 \n    cache \n"},
		{args: "route get 10.6.1.1 sport 53", err: "RTNETLINK answers: Permission denied\n", code: 2},
		{args: "route get 10.6.1.1 ipproto gre", err: "Error: Unsupported ip proto.\n", code: 2},
		{args: "route get 10.0.2.2/24", out: "10.0.2.2 dev tun2 src 10.0.2.1 uid 0 \n    cache \n", err: "Warning: /24 as prefix is invalid, only /32 (or none) is supported.\n"},
		{args: "route get 10.0.2.2 oif nope", err: "Cannot find device \"nope\"\n", code: 1},
		{args: "route get mark 5", err: "need at least a destination address\n", code: 1},
		{args: "route get 10.0.2.2 mark", err: "Command line is not complete. Try option \"help\"\n", code: 255},
		{args: "route get 10.0.2.2 mark x", err: "Error: argument \"x\" is wrong: invalid mark value\n", code: 255},
		{args: "route get 10.0.2.2 sport 70000", err: "Error: argument \"70000\" is wrong: invalid sport\n\n", code: 255},
		{args: "route get 10.0.2.2 tos 0x100", err: "Error: argument \"0x100\" is wrong: TOS value is invalid\n\n", code: 255},
		{args: "route get 10.0.2.300", err: "Error: any valid prefix is expected rather than \"10.0.2.300\".\n", code: 1},
		{args: "route get 10.0.2.2 from x", err: "Error: inet prefix is expected rather than \"x\".\n", code: 1},
		{args: "route get 10.0.2.2 ipproto nosuch", err: "Error: argument \"nosuch\" is wrong: Invalid \"ipproto\" value\n\n", code: 255},
		{args: "foo", err: "Object \"foo\" is unknown, try \"ip help\".\n", code: 1},
		{args: "route show", out: "default via 10.0.1.9 dev tun1 \n10.0.1.0/24 dev tun1 proto kernel scope link src 10.0.1.1 \n" +
			"10.0.2.0/24 dev tun2 proto kernel scope link src 10.0.2.1 \nunreachable 10.7.0.0/16 \nblackhole 10.8.0.0/16 \n" +
			"10.9.0.0/16 metric 20 \n\tnexthop via 10.0.1.9 dev tun1 weight 1 \n\tnexthop via 10.0.2.9 dev tun2 weight 3 linkdown \n"},
		{args: "-j route show table 100", out: `[{"type":"prohibit","dst":"10.6.0.0/16","flags":[]}]` + "\n"},
		{args: "route show table 5", err: "Error: ipv4: FIB table does not exist.\nDump terminated\n", code: 2},
		{args: "route show table nosuch", err: "Error: argument \"nosuch\" is wrong: table id value is invalid\n\n", code: 255},
		{args: "-j route show table all", out: `[{"type":"prohibit","dst":"10.6.0.0/16","table":"100","flags":[]},` +
			`{"dst":"default","gateway":"10.0.1.9","dev":"tun1","flags":[]},` +
			`{"dst":"10.0.1.0/24","dev":"tun1","protocol":"kernel","scope":"link","prefsrc":"10.0.1.1","flags":[]},` +
			`{"dst":"10.0.2.0/24","dev":"tun2","protocol":"kernel","scope":"link","prefsrc":"10.0.2.1","flags":[]},` +
			`{"type":"unreachable","dst":"10.7.0.0/16","flags":[]},{"type":"blackhole","dst":"10.8.0.0/16","flags":[]},` +
			`{"dst":"10.9.0.0/16","metric":20,"flags":[],"nexthops":[{"gateway":"10.0.1.9","dev":"tun1","weight":1,"flags":[]},{"gateway":"10.0.2.9","dev":"tun2","weight":3,"flags":["linkdown"]}]},` +
			`{"type":"local","dst":"10.0.1.1","dev":"tun1","table":"local","protocol":"kernel","scope":"host","prefsrc":"10.0.1.1","flags":[]},` +
			`{"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local","protocol":"kernel","scope":"host","prefsrc":"127.0.0.1","flags":[]}]` + "\n"},
		{args: "rule show", out: "0:\tfrom all lookup local\n100:\tfrom all fwmark 0x1/0xff iif ghost [detached] lookup 100\n" +
			"200:\tnot from 10.0.0.0/8 to 10.6.0.0/16 uidrange 5-9 ipproto tcp dport 80-90 goto 300 [unresolved]\n" +
			"210:\tfrom all tos AF11 lookup main suppress_prefixlength 0\n220:\tfrom all sport 53 prohibit\n" +
			"32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n"},
		{args: "-j ru", out: `[{"priority":0,"src":"all","table":"local"},{"priority":100,"src":"all","fwmark":"0x1","fwmask":"0xff","iif":"ghost","iif_detached":null,"table":"100"},` +
			`{"priority":200,"not":null,"src":"10.0.0.0","srclen":8,"dst":"10.6.0.0","dstlen":16,"uid_start":5,"uid_end":9,"ipproto":"tcp","dport_start":80,"dport_end":90,"goto":300,"unresolved":null},` +
			`{"priority":210,"src":"all","tos":"AF11","table":"main","suppress_prefixlen":0},{"priority":220,"src":"all","sport":53,"action":"prohibit"},` +
			`{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"}]` + "\n"},
	}
	for _, c := range cases {
		var o, e bytes.Buffer
		code := Run(Env{FIB: f, UID: c.uid}, strings.Fields(c.args), &o, &e)
		if o.String() != c.out || e.String() != c.err || code != c.code {
			t.Errorf("ip %s:\n got (exit %d) %q %q\nwant (exit %d) %q %q", c.args, code, o.String(), e.String(), c.code, c.out, c.err)
		}
	}
}

func TestStrtoul(t *testing.T) {
	cases := []struct {
		s    string
		base int
		v    uint64
		ok   bool
	}{{"10", 0, 10, true}, {"0x1f", 0, 31, true}, {"010", 0, 8, true}, {"1f", 16, 31, true}, {"0x1f", 16, 31, true},
		{"", 0, 0, false}, {"x", 0, 0, false}, {"12a", 0, 0, false}, {" 7", 10, 7, true}, {"-1", 0, ^uint64(0), true},
		{"99999999999999999999999", 10, 0, false}, {"08", 0, 0, false}}
	for _, c := range cases {
		v, ok := strtoul(c.s, c.base)
		if v != c.v || ok != c.ok {
			t.Errorf("strtoul(%q, %d) = %d %v, want %d %v", c.s, c.base, v, ok, c.v, c.ok)
		}
	}
}

func TestNames(t *testing.T) {
	n := DefaultNames()
	n.AddRTTables([]byte("# comment\n100 web\n0x65 db\n"))
	if n.Table(100) != "web" || n.Table(101) != "db" || n.Table(102) != "102" || n.Table(254) != "main" {
		t.Errorf("table names: %s %s %s %s", n.Table(100), n.Table(101), n.Table(102), n.Table(254))
	}
	if id, ok := n.TableID("web"); !ok || id != 100 {
		t.Errorf("TableID(web) = %d %v", id, ok)
	}
	if v, ok := n.DSFieldValue("AF11"); !ok || v != 0x28 {
		t.Errorf("DSFieldValue(AF11) = %#x %v", v, ok)
	}
	if v, ok := n.DSFieldValue("1c"); !ok || v != 0x1c {
		t.Errorf("DSFieldValue(1c) = %#x %v", v, ok)
	}
	if n.DSField(0x10) != "0x10" || n.DSField(0xb8) != "EF" {
		t.Errorf("DSField: %s %s", n.DSField(0x10), n.DSField(0xb8))
	}
	if n.Proto(6) != "tcp" || n.Proto(253) != "ipproto-253" {
		t.Errorf("Proto: %s %s", n.Proto(6), n.Proto(253))
	}
}

// FuzzRouteGetArgs: any argument list parses or fails with ip's kind of
// message, never panics, and a parsed one answers without panicking;
// a destination that parsed prints back as the address asked.
func FuzzRouteGetArgs(f *testing.F) {
	for _, s := range []string{"10.0.2.2", "to 10.0.1.1 from 10.0.2.5 iif tun2 mark 0x20", "8.8.8.8 oif tun1 uid 5 tos 0x10",
		"10.6.1.1 ipproto tcp sport 1 dport 2", "default", "1.2.3/8 from 0x0a.1.2.3", "mark", "10.0.2.2 tos AF11 dsfield 4",
		"1.2.3.4 from 0.0.0.0 iif lo", "255.255.255.255 oif tun2"} {
		f.Add(s)
	}
	fib := testFIB(f)
	names := DefaultNames()
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, " ")
		c, err := Parse(append([]string{"route", "get"}, args...), names)
		if err != nil {
			if err.Msg == "" || !strings.HasSuffix(err.Msg, "\n") || (err.Code != 1 && err.Code != 2 && err.Code != 255) {
				t.Fatalf("%q: bad error %q (exit %d)", s, err.Msg, err.Code)
			}
			return
		}
		if !c.Get.Dst.Is4() {
			t.Fatalf("%q: parsed without an IPv4 destination", s)
		}
		out, _, rerr := c.Answer(Env{FIB: fib, Names: names})
		if rerr == nil && !strings.Contains(out, c.Get.Dst.String()+" ") {
			t.Fatalf("%q: answer %q does not name the destination %v", s, out, c.Get.Dst)
		}
	})
}
