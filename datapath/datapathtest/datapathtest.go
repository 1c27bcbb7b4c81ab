// Package datapathtest holds small, fixed host configurations for tests
// and benchmarks of the datapath that need no root and no snapshot.
package datapathtest

import (
	"net/netip"
	"strings"

	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/route"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ad(s string) netip.Addr    { return netip.MustParseAddr(s) }

// RouterFIB is a router: lo, eth0 10.0.0.1/24 (clients), eth1
// 192.168.1.1/24 (servers) with the default route via 192.168.1.254,
// forwarding on.
func RouterFIB() (*route.FIB, error) { return route.New(RouterConfig()) }

// DirectorFIB is RouterFIB with 10.96.0.0/16 routed as local (the VIPs
// of an IPVS director, as kube-proxy's kube-ipvs0 makes them local).
func DirectorFIB() (*route.FIB, error) {
	cfg := RouterConfig()
	cfg.Routes = append(cfg.Routes, route.Route{Table: 255, Type: route.Local, Dst: pfx("10.96.0.0/16"), Scope: route.ScopeHost,
		PrefSrc: ad("10.0.0.1"), Nexthops: []route.Nexthop{{Dev: "lo"}}})
	return route.New(cfg)
}

// RouterConfig is RouterFIB's configuration.
func RouterConfig() route.Config {
	cfg := route.Config{
		Links: []route.Link{{Name: "lo", Index: 1, Up: true, Loopback: true}, {Name: "eth0", Index: 2, Up: true}, {Name: "eth1", Index: 3, Up: true}},
		Addrs: []route.Addr{
			{Ifindex: 1, Dev: "lo", Local: ad("127.0.0.1"), Prefix: pfx("127.0.0.0/8"), Scope: route.ScopeHost},
			{Ifindex: 2, Dev: "eth0", Local: ad("10.0.0.1"), Prefix: pfx("10.0.0.0/24"), Broadcast: ad("10.0.0.255")},
			{Ifindex: 3, Dev: "eth1", Local: ad("192.168.1.1"), Prefix: pfx("192.168.1.0/24"), Broadcast: ad("192.168.1.255")},
		},
		Routes: []route.Route{
			{Table: 255, Type: route.Local, Dst: pfx("127.0.0.0/8"), Scope: route.ScopeHost, PrefSrc: ad("127.0.0.1"), Nexthops: []route.Nexthop{{Dev: "lo"}}},
			{Table: 255, Type: route.Local, Dst: pfx("127.0.0.1/32"), Scope: route.ScopeHost, PrefSrc: ad("127.0.0.1"), Nexthops: []route.Nexthop{{Dev: "lo"}}},
			{Table: 255, Type: route.Local, Dst: pfx("10.0.0.1/32"), Scope: route.ScopeHost, PrefSrc: ad("10.0.0.1"), Nexthops: []route.Nexthop{{Dev: "eth0"}}},
			{Table: 255, Type: route.Broadcast, Dst: pfx("10.0.0.255/32"), Scope: route.ScopeLink, PrefSrc: ad("10.0.0.1"), Nexthops: []route.Nexthop{{Dev: "eth0"}}},
			{Table: 255, Type: route.Local, Dst: pfx("192.168.1.1/32"), Scope: route.ScopeHost, PrefSrc: ad("192.168.1.1"), Nexthops: []route.Nexthop{{Dev: "eth1"}}},
			{Table: 255, Type: route.Broadcast, Dst: pfx("192.168.1.255/32"), Scope: route.ScopeLink, PrefSrc: ad("192.168.1.1"), Nexthops: []route.Nexthop{{Dev: "eth1"}}},
			{Table: 254, Type: route.Unicast, Dst: pfx("10.0.0.0/24"), Scope: route.ScopeLink, PrefSrc: ad("10.0.0.1"), Protocol: "kernel", Nexthops: []route.Nexthop{{Dev: "eth0"}}},
			{Table: 254, Type: route.Unicast, Dst: pfx("192.168.1.0/24"), Scope: route.ScopeLink, PrefSrc: ad("192.168.1.1"), Protocol: "kernel", Nexthops: []route.Nexthop{{Dev: "eth1"}}},
			{Table: 254, Type: route.Unicast, Dst: pfx("0.0.0.0/0"), Protocol: "static", Nexthops: []route.Nexthop{{Gateway: ad("192.168.1.254"), Dev: "eth1"}}},
		},
		All: route.DevConf{Forwarding: true, SendRedirects: true},
		Dev: map[string]route.DevConf{"eth0": {Forwarding: true}, "eth1": {Forwarding: true}, "lo": {Forwarding: true}},
	}
	return cfg
}

// Table is the iptables-restore text of a table with each of its
// builtin chains (policy ACCEPT, in hook order) and the rules lines,
// e.g. Table("filter", "-A FORWARD -j ACCEPT").
func Table(name string, rules ...string) string {
	id, ok := iptables.ParseTable(name)
	if !ok {
		panic("datapathtest: no table " + name)
	}
	var b strings.Builder
	b.WriteString("*" + name + "\n")
	for h := range netfilter.NumHooks {
		if iptables.TableHooks(id).Has(h) {
			b.WriteString(":" + h.String() + " ACCEPT [0:0]\n")
		}
	}
	for _, r := range rules {
		b.WriteString(r + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
