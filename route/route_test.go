package route

import (
	"net/netip"
	"syscall"
	"testing"
)

func testFIB(t testing.TB) *FIB {
	t.Helper()
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	gw := func(g, dev string) []Nexthop { return []Nexthop{{Gateway: a(g), Dev: dev, Weight: 1}} }
	dev := func(d string) []Nexthop { return []Nexthop{{Dev: d, Weight: 1}} }
	cfg := Config{
		Links: []Link{{Name: "lo", Index: 1, Up: true, Loopback: true}, {Name: "eth0", Index: 2, Up: true}, {Name: "eth1", Index: 3, Up: true}},
		Addrs: []Addr{
			{Ifindex: 1, Local: a("127.0.0.1"), Prefix: p("127.0.0.0/8"), Scope: ScopeHost},
			{Ifindex: 2, Local: a("10.0.0.1"), Prefix: p("10.0.0.0/24")},
			{Ifindex: 3, Local: a("10.1.0.1"), Prefix: p("10.1.0.0/24")},
		},
		Routes: []Route{
			{Table: TableLocal, Type: Local, Dst: p("10.0.0.1/32"), Scope: ScopeHost, Protocol: "kernel", PrefSrc: a("10.0.0.1"), Nexthops: dev("eth0")},
			{Table: TableLocal, Type: Broadcast, Dst: p("10.0.0.255/32"), Scope: ScopeLink, Protocol: "kernel", Nexthops: dev("eth0")},
			{Table: TableLocal, Type: Local, Dst: p("10.1.0.1/32"), Scope: ScopeHost, Protocol: "kernel", Nexthops: dev("eth1")},
			{Table: TableLocal, Type: Local, Dst: p("127.0.0.0/8"), Scope: ScopeHost, Protocol: "kernel", Nexthops: dev("lo")},
			{Table: TableMain, Type: Unicast, Dst: p("10.0.0.0/24"), Scope: ScopeLink, Nexthops: dev("eth0")},
			{Table: TableMain, Type: Unicast, Dst: p("10.1.0.0/24"), Scope: ScopeLink, Nexthops: dev("eth1")},
			{Table: TableMain, Type: Unicast, Dst: p("0.0.0.0/0"), Nexthops: gw("10.0.0.254", "eth0")},
			{Table: TableMain, Type: Unicast, Dst: p("10.9.0.0/16"), Metric: 10, Nexthops: gw("10.1.0.254", "eth1")},
			{Table: TableMain, Type: Unicast, Dst: p("10.9.0.0/16"), Metric: 5, Nexthops: gw("10.0.0.9", "eth0")},
			{Table: TableMain, Type: Unicast, Dst: p("10.9.0.0/16"), TOS: 0x10, Metric: 50, Nexthops: gw("10.1.0.9", "eth1")},
			{Table: TableMain, Type: Throw, Dst: p("10.7.0.0/16")},
			{Table: TableMain, Type: Unreachable, Dst: p("10.8.0.0/16")},
			{Table: TableMain, Type: Unicast, Dst: p("10.6.0.0/16"), Nexthops: []Nexthop{
				{Gateway: a("10.0.0.6"), Dev: "eth0", Weight: 1}, {Gateway: a("10.1.0.6"), Dev: "eth1", Weight: 2}}},
			{Table: 100, Type: Unicast, Dst: p("0.0.0.0/0"), Nexthops: gw("10.1.0.254", "eth1")},
			{Table: TableDefault, Type: Prohibit, Dst: p("10.7.0.0/16")},
		},
		Rules: append(DefaultRules()[:1], Rule{Priority: 10, Mark: 1, Mask: 0xff, Action: ActToTable, Table: 100, UIDEnd: ^uint32(0), SuppressPrefixLen: -1, SuppressIfgroup: -1},
			Rule{Priority: 20, Mark: 2, Mask: 0xff, Action: ActGoto, Goto: 40, UIDEnd: ^uint32(0), SuppressPrefixLen: -1, SuppressIfgroup: -1},
			Rule{Priority: 30, Mark: 2, Mask: 0xff, Action: ActProhibit, UIDEnd: ^uint32(0), SuppressPrefixLen: -1, SuppressIfgroup: -1},
			Rule{Priority: 40, Action: ActToTable, Table: TableMain, UIDEnd: ^uint32(0), SuppressPrefixLen: 0, SuppressIfgroup: -1},
			DefaultRules()[1], DefaultRules()[2]),
		All: DevConf{Forwarding: true, SendRedirects: true},
		Dev: map[string]DevConf{"eth0": {Forwarding: true, SendRedirects: true}, "eth1": {SendRedirects: true}},
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLookupTable(t *testing.T) {
	f := testFIB(t)
	a := netip.MustParseAddr
	cases := []struct {
		name string
		fl   Flow
		err  Errno
		typ  Type
		gw   string
		dev  int
		src  string
		tbl  uint32
	}{
		{"default", Flow{Dst: a("8.8.8.8")}, 0, Unicast, "10.0.0.254", 2, "10.0.0.1", TableMain},
		{"metric", Flow{Dst: a("10.9.1.1")}, 0, Unicast, "10.0.0.9", 2, "10.0.0.1", TableMain},
		{"tos beats metric", Flow{Dst: a("10.9.1.1"), TOS: 0x10}, 0, Unicast, "10.1.0.9", 3, "10.1.0.1", TableMain},
		{"tos legacy bits", Flow{Dst: a("10.9.1.1"), TOS: 0x30}, 0, Unicast, "10.1.0.9", 3, "10.1.0.1", TableMain},
		{"throw continues", Flow{Dst: a("10.7.0.1")}, syscall.EACCES, 0, "", 0, "", 0},
		{"unreachable route", Flow{Dst: a("10.8.0.1")}, syscall.EHOSTUNREACH, 0, "", 0, "", 0},
		{"fwmark table", Flow{Dst: a("8.8.8.8"), Mark: 0x301}, 0, Unicast, "10.1.0.254", 3, "10.1.0.1", 100},
		{"goto skips prohibit; suppress /0", Flow{Dst: a("8.8.8.8"), Mark: 2}, 0, Unicast, "10.0.0.254", 2, "10.0.0.1", TableMain},
		{"goto then specific", Flow{Dst: a("10.1.0.5"), Mark: 2}, 0, Unicast, "", 3, "10.1.0.1", TableMain},
		{"local", Flow{Dst: a("10.0.0.1")}, 0, Local, "", 1, "10.0.0.1", TableLocal},
		{"broadcast", Flow{Dst: a("10.0.0.255")}, 0, Broadcast, "", 2, "10.0.0.1", TableLocal},
		{"non-local source", Flow{Dst: a("8.8.8.8"), Src: a("1.2.3.4")}, syscall.ENETUNREACH, 0, "", 0, "", 0},
		{"input forward", Flow{Dst: a("8.8.8.8"), Src: a("10.0.0.7"), IIF: 2}, 0, Unicast, "10.0.0.254", 2, "", TableMain},
		{"input no forwarding", Flow{Dst: a("8.8.8.8"), Src: a("10.1.0.7"), IIF: 3}, syscall.EHOSTUNREACH, 0, "", 0, "", 0},
		{"input local", Flow{Dst: a("10.1.0.1"), Src: a("10.1.0.7"), IIF: 3}, 0, Local, "", 1, "", TableLocal},
		{"martian local source", Flow{Dst: a("10.1.0.1"), Src: a("10.0.0.1"), IIF: 3}, syscall.EINVAL, 0, "", 0, "", 0},
		{"martian loopback", Flow{Dst: a("127.0.0.1"), Src: a("10.0.0.7"), IIF: 2}, syscall.EINVAL, 0, "", 0, "", 0},
	}
	for _, c := range cases {
		r := f.Route(&c.fl)
		if r.Err != c.err {
			t.Errorf("%s: err %v, want %v", c.name, r.Err, c.err)
			continue
		}
		if c.err != 0 {
			continue
		}
		gw := ""
		if r.Gateway.IsValid() {
			gw = r.Gateway.String()
		}
		src := ""
		if r.Src.IsValid() {
			src = r.Src.String()
		}
		if r.Type != c.typ || gw != c.gw || r.Dev != c.dev || src != c.src || r.Table != c.tbl {
			t.Errorf("%s: got %v gw %q dev %d src %q table %d; want %v %q %d %q %d", c.name, r.Type, gw, r.Dev, src, r.Table, c.typ, c.gw, c.dev, c.src, c.tbl)
		}
	}
}

func TestMultipathWeights(t *testing.T) {
	f := testFIB(t)
	n := [4]int{}
	for i := 0; i < 3000; i++ {
		r := f.Output(&Flow{Dst: netip.AddrFrom4([4]byte{10, 6, byte(i >> 8), byte(i)})})
		n[r.Dev]++
	}
	if n[2] < 700 || n[2] > 1300 || n[3] < 1700 || n[3] > 2300 {
		t.Errorf("weights 1:2 gave eth0=%d eth1=%d", n[2], n[3])
	}
}

func TestAddrTypeAndSelectSource(t *testing.T) {
	f := testFIB(t)
	a := netip.MustParseAddr
	for _, c := range []struct {
		addr  string
		dev   int
		limit bool
		want  Type
	}{
		{"10.0.0.1", 0, false, Local}, {"10.0.0.1", 3, true, Unicast}, {"10.0.0.255", 2, true, Broadcast},
		{"127.3.3.3", 0, false, Local}, {"224.1.1.1", 0, false, Multicast}, {"0.0.0.0", 0, false, Broadcast},
		{"255.255.255.255", 0, false, Broadcast}, {"8.8.8.8", 0, false, Unicast},
	} {
		if got := f.AddrType(a(c.addr), c.dev, c.limit); got != c.want {
			t.Errorf("AddrType(%s,%d,%v) = %v, want %v", c.addr, c.dev, c.limit, got, c.want)
		}
	}
	if got := f.SelectSource(3, a("8.8.8.8"), ScopeUniverse); got != a("10.1.0.1") {
		t.Errorf("SelectSource(eth1) = %v", got)
	}
	if got := f.SelectSource(1, netip.Addr{}, ScopeUniverse); got != a("10.0.0.1") {
		t.Errorf("SelectSource(lo) = %v, want the first non-loopback address", got)
	}
	if got := f.SelectSource(1, netip.Addr{}, ScopeHost); got != a("127.0.0.1") {
		t.Errorf("SelectSource(lo, host) = %v", got)
	}
	// SelectSource4 is SelectSource on uint32s
	for dev := 0; dev < 5; dev++ {
		for _, dst := range []string{"8.8.8.8", "10.0.0.9", "10.1.0.7", "127.0.0.1", "0.0.0.0"} {
			for _, sc := range []Scope{ScopeUniverse, ScopeLink, ScopeHost} {
				if got, want := f.SelectSource4(dev, u32(a(dst)), sc), u32(f.SelectSource(dev, a(dst), sc)); got != want {
					t.Errorf("SelectSource4(%d, %s, %v) = %08x, SelectSource %08x", dev, dst, sc, got, want)
				}
			}
		}
	}
}

// A lookup allocates nothing.
func TestLookupNoAllocs(t *testing.T) {
	f := testFIB(t)
	flows := []Flow{
		{Dst: netip.MustParseAddr("8.8.8.8")},
		{Dst: netip.MustParseAddr("10.6.1.1")},
		{Dst: netip.MustParseAddr("10.9.1.1"), Mark: 2},
		{Dst: netip.MustParseAddr("8.8.8.8"), Src: netip.MustParseAddr("10.0.0.7"), IIF: 2},
		{Dst: netip.MustParseAddr("10.1.0.1"), Src: netip.MustParseAddr("10.1.0.7"), IIF: 3},
	}
	for i := range flows {
		if n := testing.AllocsPerRun(100, func() { _ = f.Route(&flows[i]) }); n != 0 {
			t.Errorf("flow %d: %v allocs per lookup", i, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = f.AddrType(flows[0].Dst, 0, false) }); n != 0 {
		t.Errorf("AddrType: %v allocs", n)
	}
}

func BenchmarkLookupLargeTable(b *testing.B) {
	cfg := testFIB(b).Config()
	for i := 0; i < 100000; i++ {
		cfg.Routes = append(cfg.Routes, Route{Table: TableMain, Type: Unicast,
			Dst:      netip.PrefixFrom(netip.AddrFrom4([4]byte{20, byte(i >> 16), byte(i >> 8), byte(i)}), 32-(i%3)*4).Masked(),
			Nexthops: []Nexthop{{Gateway: netip.MustParseAddr("10.0.0.254"), Dev: "eth0", Weight: 1}}})
	}
	f, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	fl := Flow{Dst: netip.MustParseAddr("20.1.2.3")}
	b.ReportAllocs()
	for b.Loop() {
		_ = f.Output(&fl)
	}
}
