package route

import (
	"fmt"
	"net/netip"
	"testing"
)

// mpFIB has one four-way multipath route with the given nexthop flags.
func mpFIB(t *testing.T, dead []bool, useNeigh bool, neigh []Neighbour) *FIB {
	t.Helper()
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	cfg := Config{
		Links: []Link{{Name: "lo", Index: 1, Up: true, Loopback: true}, {Name: "eth0", Index: 2, Up: true}},
		Addrs: []Addr{{Ifindex: 2, Local: a("10.0.0.1"), Prefix: p("10.0.0.0/24")}},
		Routes: []Route{
			{Table: TableMain, Type: Unicast, Dst: p("10.0.0.0/24"), Scope: ScopeLink, Nexthops: []Nexthop{{Dev: "eth0", Weight: 1}}},
			{Table: TableMain, Type: Unicast, Dst: p("10.9.0.0/16"), Nexthops: []Nexthop{
				{Gateway: a("10.0.0.11"), Dev: "eth0", Weight: 1, Dead: dead[0]},
				{Gateway: a("10.0.0.12"), Dev: "eth0", Weight: 2, Dead: dead[1]},
				{Gateway: a("10.0.0.13"), Dev: "eth0", Weight: 3, Dead: dead[2]},
				{Gateway: a("10.0.0.14"), Dev: "eth0", Weight: 4, Dead: dead[3]}}},
		},
		All:                 DevConf{Forwarding: true},
		MultipathHashPolicy: 1, MultipathHashSeed: 42, MultipathUseNeigh: useNeigh, Neighbours: neigh,
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// share counts the nexthops 4,000 flows take.
func share(f *FIB) [4]int {
	var n [4]int
	for i := range 4000 {
		r := f.Output(&Flow{Dst: netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), Proto: 17, SPort: uint16(i), DPort: 53, Packet: true})
		if r.Err != 0 {
			panic(fmt.Sprint(r.Err))
		}
		n[r.Nexthop]++
	}
	return n
}

// TestMultipathDeadAndNeigh: the flows split by weight over the live
// nexthops (fib_rebalance leaves a dead one out of the total), and
// fib_multipath_use_neigh skips a gateway whose neighbour failed.
func TestMultipathDeadAndNeigh(t *testing.T) {
	within := func(got, want int) bool { return got > want*85/100 && got < want*115/100 }
	n := share(mpFIB(t, []bool{false, false, false, false}, false, nil))
	for i, w := range []int{1, 2, 3, 4} {
		if !within(n[i], 4000*w/10) {
			t.Errorf("weights 1:2:3:4: %v", n)
		}
	}
	n = share(mpFIB(t, []bool{false, true, false, false}, false, nil))
	if n[1] != 0 || !within(n[0], 500) || !within(n[2], 1500) || !within(n[3], 2000) {
		t.Errorf("second dead, 1:3:4 of the rest: %v", n)
	}
	a := netip.MustParseAddr
	n = share(mpFIB(t, []bool{false, false, false, false}, true,
		[]Neighbour{{Dev: "eth0", Addr: a("10.0.0.13"), Valid: false}, {Dev: "eth0", Addr: a("10.0.0.14"), Valid: true}}))
	if n[2] != 0 || n[0]+n[1]+n[3] != 4000 {
		t.Errorf("use_neigh, third failed: %v", n)
	}
	// the third's flows go to a later live nexthop within its bound
	// (the fourth) or, past every bound, the first live one
	if n[3] < 2000 {
		t.Errorf("use_neigh: the fourth took %d", n[3])
	}
}

// TestMultipathSeed: another seed moves flows; the same one does not.
func TestMultipathSeed(t *testing.T) {
	f := mpFIB(t, []bool{false, false, false, false}, false, nil)
	g := mpFIB(t, []bool{false, false, false, false}, false, nil)
	if share(f) != share(g) {
		t.Errorf("the same seed chose differently")
	}
	g.mpKey[0]++
	moved := 0
	for i := range 1000 {
		fl := Flow{Dst: netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), Proto: 17, SPort: uint16(i), DPort: 53}
		if f.Output(&fl).Nexthop != g.Output(&fl).Nexthop {
			moved++
		}
	}
	if moved < 300 {
		t.Errorf("another key moved %d of 1000 flows", moved)
	}
}

// TestMultipathHashNoAllocs: the hash allocates nothing.
func TestMultipathHashNoAllocs(t *testing.T) {
	f := mpFIB(t, []bool{false, false, false, false}, false, nil)
	fl := flow{src: 1, dst: 2, proto: 6, sport: 3, dport: 4, pkt: true}
	if n := testing.AllocsPerRun(100, func() { f.multipathHash(&fl) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
