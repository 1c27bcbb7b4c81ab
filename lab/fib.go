package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/route"
)

// sysctls are uswitch's sysctls, parsed by the host package's `sysctl -a`
// reader so a lab and a snapshot mean the same by each key.
type sysctls struct {
	host.Sysctl
	ct conntrack.Config
}

type sysctlError struct {
	key string
	err error
}

func (e *sysctlError) Error() string { return e.key + ": " + e.err.Error() }

// knownSysctl is what uswitch's datapath reads; other keys are errors
// rather than silently ignored.
var knownSysctl = regexp.MustCompile(`^(net\.ipv4\.ip_forward|net\.ipv4\.fib_multipath_(hash_policy|hash_seed|hash_fields|use_neigh)|` +
	`net\.ipv4\.ipfrag_(high_thresh|low_thresh|time|max_dist)|` +
	`net\.bridge\.bridge-nf-(call-iptables|call-ip6tables|call-arptables|filter-vlan-tagged|pass-vlan-input-dev)|` +
	`net\.ipv4\.vs\.(conntrack|expire_nodest_conn|expire_quiescent_template|snat_reroute|conn_reuse_mode|nat_icmp_send|sloppy_sctp)|` +
	`net\.ipv4\.conf\.[^.]+\.(forwarding|rp_filter|route_localnet|accept_local|src_valid_mark|send_redirects)|` +
	`net\.netfilter\.nf_conntrack_(max|tcp_loose|tcp_be_liberal|tcp_max_retrans|tcp_timeout_[a-z_]+|udp_timeout(_stream)?|icmp_timeout|generic_timeout))$`)

// parseSysctls flattens the [uswitch.sysctl] table (dotted keys may be
// quoted or nested) and reads it as `sysctl -a` lines.
func parseSysctls(m map[string]any) (sysctls, error) {
	kv, bad, err := flattenSysctls(m, func(key string) error {
		if !knownSysctl.MatchString(key) {
			return fmt.Errorf("not a sysctl uswitch reads")
		}
		return nil
	})
	if err != nil {
		return sysctls{}, &sysctlError{bad, err}
	}
	var b strings.Builder
	for _, e := range kv {
		fmt.Fprintf(&b, "%s = %s\n", e.Key, e.Value)
	}
	s, err := host.Parse(map[string][]byte{host.FileSysctl: []byte(b.String())})
	if err != nil {
		var pe *host.ParseError
		if errors.As(err, &pe) && pe.Line > 0 && pe.Line <= len(kv) {
			return sysctls{}, &sysctlError{kv[pe.Line-1].Key, pe.Err}
		}
		return sysctls{}, err
	}
	return sysctls{Sysctl: s.Sysctl, ct: s.ConntrackConfig()}, nil
}

// fibConfig is uswitch's routing state: lo and one link per interface
// (ifindex 1, 2, ... in config order), their addresses, the routes the
// kernel adds for each address (fib_add_ifaddr, net/ipv4/fib_frontend.c:
// a local /32 in table local, the subnet broadcast, the prefix route in
// main), then the configured routes and rules. ifindex maps interface
// names to the indexes used (nil: 2, 3, ...).
func (c *Config) fibConfig(ifindex map[string]int) (route.Config, error) {
	lo := route.Link{Name: "lo", Index: 1, Up: true, Loopback: true, MTU: 65536}
	cfg := route.Config{Links: []route.Link{lo}, Dev: map[string]route.DevConf{}}
	idx := func(i int, name string) int {
		if ifindex != nil {
			if n, ok := ifindex[name]; ok {
				return n
			}
		}
		return i + 2
	}
	loAddr := netip.MustParsePrefix("127.0.0.1/8")
	cfg.Addrs = append(cfg.Addrs, route.Addr{Ifindex: 1, Dev: "lo", Local: loAddr.Addr(), Prefix: loAddr.Masked(), Scope: route.ScopeHost})
	cfg.Routes = append(cfg.Routes,
		route.Route{Table: route.TableLocal, Type: route.Local, Dst: loAddr.Masked(), Scope: route.ScopeHost, Protocol: "kernel", PrefSrc: loAddr.Addr(), Nexthops: []route.Nexthop{{Dev: "lo"}}},
		route.Route{Table: route.TableLocal, Type: route.Local, Dst: netip.PrefixFrom(loAddr.Addr(), 32), Scope: route.ScopeHost, Protocol: "kernel", PrefSrc: loAddr.Addr(), Nexthops: []route.Nexthop{{Dev: "lo"}}})
	type l3 struct {
		name  string
		mtu   int
		addrs []PrefixValue
		down  bool
	}
	var devs []l3
	ifaces := c.engineIfaces()
	for _, it := range ifaces {
		mtu := it.MTU
		if mtu == 0 {
			mtu = link.DefaultMTU
		}
		devs = append(devs, l3{it.Name, mtu, it.Addresses, false})
	}
	for _, b := range c.Bridges {
		// a bridge's MTU is its ports' smallest (br_mtu_auto)
		mtu := 0
		for _, it := range ifaces {
			if it.Bridge == b.Name {
				m := it.MTU
				if m == 0 {
					m = link.DefaultMTU
				}
				if mtu == 0 || m < mtu {
					mtu = m
				}
			}
		}
		if mtu == 0 {
			mtu = link.DefaultMTU
		}
		devs = append(devs, l3{b.Name, mtu, b.Addresses, false})
	}
	for _, d := range c.Dummies {
		// a dummy is down (kube-ipvs0 is never set up): its local
		// routes are there, its prefix routes are not
		// (fib_add_ifaddr returns before them)
		devs = append(devs, l3{d.Name, link.DefaultMTU, d.Addresses, true})
	}
	for i, it := range devs {
		mtu := it.mtu
		// a TUN is point-to-point without ARP; multicast is off
		cfg.Links = append(cfg.Links, route.Link{Name: it.name, Index: idx(i, it.name), Up: !it.down, MTU: mtu})
		for _, a := range it.addrs {
			p := a.Prefix
			ad := route.Addr{Ifindex: idx(i, it.name), Dev: it.name, Local: p.Addr(), Prefix: p.Masked()}
			if p.Bits() < 31 {
				ad.Broadcast = lastAddr(p)
			}
			cfg.Addrs = append(cfg.Addrs, ad)
			nh := []route.Nexthop{{Dev: it.name}}
			cfg.Routes = append(cfg.Routes, route.Route{Table: route.TableLocal, Type: route.Local, Dst: netip.PrefixFrom(p.Addr(), 32),
				Scope: route.ScopeHost, Protocol: "kernel", PrefSrc: p.Addr(), Nexthops: nh})
			if it.down {
				continue
			}
			if p.Bits() < 32 {
				cfg.Routes = append(cfg.Routes, route.Route{Table: route.TableMain, Type: route.Unicast, Dst: p.Masked(),
					Scope: route.ScopeLink, Protocol: "kernel", PrefSrc: p.Addr(), Nexthops: nh})
			}
			if ad.Broadcast.IsValid() {
				cfg.Routes = append(cfg.Routes, route.Route{Table: route.TableLocal, Type: route.Broadcast, Dst: netip.PrefixFrom(ad.Broadcast, 32),
					Scope: route.ScopeLink, Protocol: "kernel", PrefSrc: p.Addr(), Nexthops: nh})
			}
		}
	}
	for _, r := range c.Uswitch.Routes {
		rt := r.Route
		rt.Nexthops = append([]route.Nexthop(nil), rt.Nexthops...)
		for j := range rt.Nexthops {
			nh := &rt.Nexthops[j]
			if nh.Dev != "" {
				continue
			}
			// `ip route add X via GW` finds the device of the gateway
			gw := nh.Gateway
			if !gw.IsValid() {
				return cfg, fmt.Errorf("route %q: give dev or via", r.Text)
			}
			for _, a := range cfg.Addrs {
				if a.Dev != "lo" && a.Prefix.Contains(gw) {
					nh.Dev = a.Dev
					break
				}
			}
			if nh.Dev == "" {
				return cfg, fmt.Errorf("route %q: gateway %v is on no interface's subnet", r.Text, gw)
			}
		}
		cfg.Routes = append(cfg.Routes, rt)
	}
	if len(c.Uswitch.IPRules) > 0 || c.Uswitch.NoDefaultRules {
		if !c.Uswitch.NoDefaultRules {
			cfg.Rules = route.DefaultRules()
		} else {
			cfg.Rules = []route.Rule{}
		}
		for _, r := range c.Uswitch.IPRules {
			cfg.Rules = append(cfg.Rules, r.Rule)
		}
		sort.SliceStable(cfg.Rules, func(i, j int) bool { return cfg.Rules[i].Priority < cfg.Rules[j].Priority })
	}
	s := c.Sysctl.Sysctl
	if s.Conf == nil {
		s = host.DefaultSysctl()
	}
	cfg.All = s.DevConf("all")
	cfg.MultipathHashPolicy = s.MultipathHashPolicy
	cfg.MultipathHashSeed = s.MultipathHashSeed
	cfg.MultipathHashFields = s.MultipathHashFields
	cfg.MultipathUseNeigh = s.MultipathUseNeigh
	for _, l := range cfg.Links {
		cfg.Dev[l.Name] = s.DevConf(l.Name)
	}
	// net.ipv4.ip_forward sets forwarding on all and every device
	// (devinet_sysctl_forward -> inet_forward_change)
	if s.IPForward {
		cfg.All.Forwarding = true
		for n, d := range cfg.Dev {
			d.Forwarding = true
			cfg.Dev[n] = d
		}
	}
	if _, err := route.New(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= ^uint32(0) >> p.Bits()
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// EngineConfig builds the datapath configuration of the lab.
func (c *Config) EngineConfig() (datapath.Config, conntrack.Config, error) {
	rc, err := c.fibConfig(nil)
	if err != nil {
		return datapath.Config{}, conntrack.Config{}, err
	}
	fib, err := route.New(rc)
	if err != nil {
		return datapath.Config{}, conntrack.Config{}, err
	}
	ct := c.Sysctl.ct
	if ct.Max == 0 {
		ct = conntrack.DefaultConfig()
	}
	fc := c.Sysctl.FragConfig()
	// a node's host namespace answers what is delivered to it
	return datapath.Config{Rules: c.Ruleset, FIB: fib, IPForward: c.Sysctl.IPForward, Frag: &fc, Bridges: c.bridgeConfigs(fib), Ebtables: c.Ebtables,
		HostStack: c.node != ""}, ct, nil
}

// bridgeConfigs are the lab's bridges for the engine: each with its
// ports (the TAP interfaces naming it, their MACs the ports' own) and
// net.bridge.bridge-nf-call-iptables (default 1).
func (c *Config) bridgeConfigs(fib *route.FIB) []datapath.BridgeConfig {
	callIPT := true
	if v, ok := c.Sysctl.Raw["net.bridge.bridge-nf-call-iptables"]; ok {
		callIPT = v != "0"
	}
	vlan := c.Sysctl.Raw["net.bridge.bridge-nf-filter-vlan-tagged"] == "1"
	var out []datapath.BridgeConfig
	for _, b := range c.Bridges {
		bc := datapath.BridgeConfig{CallIPTables: callIPT, FilterVLANTagged: vlan}
		bc.FDB = fdb.Config{Name: b.Name, Index: fib.Ifindex(b.Name)}
		if b.MAC.Set {
			bc.FDB.MAC, bc.FDB.MACSet = b.MAC.Addr, true
		}
		if b.AgeingTime != nil {
			if *b.AgeingTime == 0 {
				bc.FDB.AgeingZero = true
			} else {
				bc.FDB.AgeingTime = int64(*b.AgeingTime) * 1e9
			}
		}
		ifaces := c.engineIfaces()
		for i := range ifaces {
			it := &ifaces[i]
			if it.Bridge != b.Name {
				continue
			}
			fl := fdb.DefaultPortFlags
			if it.Hairpin {
				fl |= fdb.Hairpin
			}
			bc.FDB.Ports = append(bc.FDB.Ports, fdb.PortConfig{Name: it.Name, Index: fib.Ifindex(it.Name), MAC: it.LinkMAC(), Flags: fl})
		}
		if len(bc.FDB.Ports) == 0 && !bc.FDB.MACSet {
			bc.FDB.MAC, bc.FDB.MACSet = DefaultMAC(b.Name), true
		}
		out = append(out, bc)
	}
	return out
}
