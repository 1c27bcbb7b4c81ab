package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/route"
)

// Nodes from snapshots. A [[node]] with snapshot = "DIR" is a real
// host's snapshot (what `uswitch snapshot` writes and `uswitch trace
// --snapshot` reads, loaded by package host) run as a lab node:
//
//   - its rule set, ipsets, IPVS table, ebtables, ip rules, routes and
//     the sysctls uswitch reads are the node engine's;
//   - each of its devices with IPv4 addresses becomes a device of the
//     node holding them (so its host namespace holds them too): a link
//     onto the lab's [[bridge]] named by [node.attach] (eth0 = "lan"), a
//     bridge when it is a bridge or the pod bridge (cni0, cbr0,
//     docker0, even when the snapshot's stand-in is another kind), a
//     dummy when it is down or a dummy (kube-ipvs0), and otherwise a
//     TAP (TUN for a non-Ethernet device) into a namespace of its own,
//     LAB-NODE-DEV, that plays the network behind it: it holds the
//     gateway of the snapshot's routes through the device (or the
//     subnet's first free address) and routes everything to the node;
//   - with pods = "auto" each address the snapshot routes to a pod is a
//     pod namespace LAB-NODE-pN (N from 1, in address order) holding
//     that address with a default route via the node, running the
//     pod_server built-in servers: the destinations of per-pod /32
//     routes through veth* and cali* devices (each pod on a TUN called
//     as that device), and the addresses behind a pod bridge: its
//     ip-neigh.json entries and the real servers and DNAT targets of the
//     snapshot's ipvsadm-save and iptables-save that its routes send
//     out of the bridge (each a TAP port of the bridge).
//
// A snapshot node takes its devices and state from the snapshot only: it
// has no [[node.interface]], [[node.bridge]], [[node.dummy]] and no
// state keys in [node.uswitch] (workers, queues, offload, inline and
// seed stay). Errors name the lab file's snapshot line and the snapshot
// file (and its line) at fault.

// SnapshotNode are a [[node]]'s snapshot keys.
type SnapshotNode struct {
	// Snapshot is the snapshot folder (relative to the lab file).
	Snapshot string `toml:"snapshot"`
	// Pods is "auto" (pod namespaces for the snapshot's pod addresses)
	// or "" (none).
	Pods string `toml:"pods"`
	// PodServer are the built-in servers every pod runs.
	PodServer PodServers `toml:"pod_server"`
	// Attach maps a snapshot device to the lab's [[bridge]] it plugs
	// into (eth0 = "lan").
	Attach map[string]string `toml:"attach"`
	// SnapshotPods are the pods made (namespace names and addresses,
	// in order); set by Parse.
	SnapshotPods []SnapshotPod `toml:"-"`
}

// SnapshotPod is a pod namespace made for a snapshot node's address.
type SnapshotPod struct {
	Netns string
	Addr  netip.Addr
	// Dev is the node's device the pod is on: its TUN (a veth* or
	// cali* of the snapshot) or its port of the pod bridge Bridge.
	Dev, Bridge string
}

// PodServers is pod_server: one server table or an array of them.
type PodServers []Server

// UnmarshalTOML takes a table or an array of tables.
func (p *PodServers) UnmarshalTOML(v any) error {
	var list []any
	switch x := v.(type) {
	case map[string]any:
		list = []any{x}
	case []any:
		list = x
	case []map[string]any:
		for _, m := range x {
			list = append(list, m)
		}
	default:
		return fmt.Errorf("pod_server: want a table {kind = ..., port = ...} or an array of them")
	}
	var out []Server
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("pod_server: want a table {kind = ..., port = ...}")
		}
		var s Server
		for k, v := range m {
			var err error
			switch k {
			case "kind":
				str, _ := v.(string)
				err = s.Kind.UnmarshalText([]byte(str))
			case "port":
				err = s.Port.UnmarshalTOML(v)
			case "bind":
				str, _ := v.(string)
				err = s.Bind.UnmarshalText([]byte(str))
			case "reply_src":
				str, _ := v.(string)
				err = s.ReplySrc.UnmarshalText([]byte(str))
			default:
				err = fmt.Errorf("pod_server: unknown key %q", k)
			}
			if err != nil {
				return err
			}
		}
		out = append(out, s)
	}
	*p = out
	return nil
}

// isPodServerKey reports whether k is inside a node's pod_server, which
// PodServers.UnmarshalTOML reads (and checks) itself.
func isPodServerKey(k toml.Key) bool { return len(k) > 2 && k[0] == "node" && k[1] == "pod_server" }

// snapTunnelKinds are the tunnel devices a snapshot node refuses (it
// would otherwise make one a TAP into a namespace of its own).
var snapTunnelKinds = map[string]bool{"vxlan": true, "ipip": true, "gre": true, "gretap": true, "geneve": true, "wireguard": true, "sit": true, "ip6tnl": true}

// podBridgeNames are the devices taken for the pod bridge whatever the
// snapshot's device is.
var podBridgeNames = map[string]bool{"cni0": true, "cbr0": true, "docker0": true}

// podVethRe are the per-pod routed devices (Calico's cali*, a ptp CNI's
// veth*).
var podVethRe = regexp.MustCompile(`^(veth|cali)`)

// snapLink is what the lab reads from ip-link.json beyond package host's
// links: the kind and the MAC.
type snapLink struct {
	Ifname   string `json:"ifname"`
	Address  string `json:"address"`
	LinkType string `json:"link_type"`
	LinkInfo *struct {
		InfoKind string `json:"info_kind"`
	} `json:"linkinfo"`
}

type snapNeigh struct {
	Dst    string   `json:"dst"`
	Dev    string   `json:"dev"`
	State  []string `json:"state"`
	LLAddr string   `json:"lladdr"`
}

// expandSnapshots turns every snapshot node into the node tables and
// namespaces it stands for (before check, which then checks them as
// written ones).
func (c *Config) expandSnapshots(src string) error {
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if n.Snapshot == "" {
			if n.Pods != "" || len(n.PodServer) > 0 || len(n.Attach) > 0 {
				return &ConfigError{File: c.File, Line: keyLine(src, toml.Key{"node", "pods"}), Key: "node.pods",
					Err: fmt.Errorf("node %q: pods, pod_server and attach are for a node made from a snapshot (snapshot = DIR)", n.Name)}
			}
			continue
		}
		if err := c.expandSnapshot(src, n); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) expandSnapshot(src string, n *Node) error {
	line := valueLine(src, "node.snapshot", n.Snapshot)
	fail := func(format string, a ...any) error {
		return &ConfigError{File: c.File, Line: line, Key: "node.snapshot", Err: fmt.Errorf("node %q: %s", n.Name, fmt.Sprintf(format, a...))}
	}
	if c.Name == "" {
		return &ConfigError{File: c.File, Line: 1, Key: "name", Err: errors.New("a lab with [[node]] tables needs a name")}
	}
	if len(n.Interfaces)+len(n.Bridges)+len(n.Dummies) > 0 {
		return fail("a snapshot node's devices are the snapshot's: leave out [[node.interface]], [[node.bridge]] and [[node.dummy]] (attach a device to a switch with [node.attach])")
	}
	u := n.Uswitch
	if len(u.Routes)+len(u.IPRules)+len(u.Sysctl) > 0 || u.NoDefaultRules || u.Rules != "" || u.RulesFile != "" || u.IPVS != "" ||
		u.IPVSFile != "" || u.IPSet != "" || u.Ebtables != "" || u.EbtablesFile != "" {
		return fail("a snapshot node's routes, rules, ipsets, IPVS and sysctls are the snapshot's: [node.uswitch] may set only workers, queues, offload, inline and seed")
	}
	if n.Pods != "" && n.Pods != "auto" {
		return &ConfigError{File: c.File, Line: valueLine(src, "node.pods", n.Pods), Key: "node.pods", Err: fmt.Errorf("node %q: pods %q: want \"auto\" (or leave it out)", n.Name, n.Pods)}
	}
	if len(n.PodServer) > 0 && n.Pods == "" {
		return &ConfigError{File: c.File, Line: keyLine(src, toml.Key{"node", "pod_server"}), Key: "node.pod_server", Err: fmt.Errorf("node %q: pod_server needs pods = \"auto\"", n.Name)}
	}
	dir := n.Snapshot
	if !filepath.IsAbs(dir) && c.File != "" {
		dir = filepath.Join(filepath.Dir(c.File), dir)
	}
	snapFile := func(name string) string { return filepath.Join(dir, name) }
	s, err := host.Load(dir)
	if err != nil {
		var pe *host.ParseError
		var re *iptables.RestoreError
		switch {
		case errors.As(err, &pe):
			return fail("%s: %v", snapFile(pe.File), err)
		case errors.As(err, &re) && re.Line > 0:
			return fail("%s:%d: %s", snapFile(host.FileIPTables), re.Line, re.Msg)
		}
		return fail("%v", err)
	}
	var links []snapLink
	if b, ok := s.Raw[host.FileLink]; ok {
		if err := json.Unmarshal(b, &links); err != nil {
			return fail("%s: %v", snapFile(host.FileLink), err)
		}
	}
	info := map[string]snapLink{}
	for _, l := range links {
		info[l.Ifname] = l
	}
	addrs := map[string][]PrefixValue{}
	own := map[netip.Addr]bool{}
	for _, a := range s.Addrs {
		if a.Local.Is4() && a.Dev != "lo" {
			addrs[a.Dev] = append(addrs[a.Dev], PrefixValue{netip.PrefixFrom(a.Local, a.Prefix.Bits())})
			own[a.Local] = true
		}
	}
	bridge := map[string]bool{}
	for _, b := range s.Bridges {
		bridge[b.FDB.Name] = true
	}
	isBridge := func(name string) bool { return bridge[name] || podBridgeNames[name] }
	linkNames := map[string]bool{}
	for _, l := range s.Links {
		linkNames[l.Name] = true
	}
	for _, dev := range sortedKeys(n.Attach) {
		if !linkNames[dev] {
			return &ConfigError{File: c.File, Line: keyLine(src, toml.Key{"node", "attach", dev}), Key: "node.attach." + dev,
				Err: fmt.Errorf("node %q: the snapshot %s has no device %q", n.Name, snapFile(host.FileLink), dev)}
		}
	}
	nsName := func(suffix string) (string, error) {
		name := c.Name + "-" + n.Name + "-" + suffix
		if !validDevName(name) {
			return "", fail("the namespace %q for its %s is not a valid namespace name (at most 15 characters): shorten the lab's or the node's name", name, suffix)
		}
		return name, nil
	}
	// the node's devices
	made := map[string]bool{}
	var outside []Namespace
	for _, l := range s.Links {
		if l.Loopback || l.Name == "lo" {
			continue
		}
		li := info[l.Name]
		mac := MACValue{}
		if li.LinkType == "ether" {
			if err := mac.UnmarshalText([]byte(li.Address)); err != nil {
				mac = MACValue{}
			}
		}
		kind := ""
		if li.LinkInfo != nil {
			kind = li.LinkInfo.InfoKind
		}
		as := addrs[l.Name]
		switch {
		case n.Attach[l.Name] != "":
			n.Interfaces = append(n.Interfaces, Interface{Name: l.Name, Switch: n.Attach[l.Name], Addresses: as, MTU: l.MTU, MAC: mac, Kind: KindTAP})
		case isBridge(l.Name):
			n.Bridges = append(n.Bridges, Bridge{Name: l.Name, Addresses: as, MAC: mac})
		case len(as) == 0:
			continue // a pod's veth (pods), a bridge port or an unused device
		case snapTunnelKinds[kind] || li.LinkType == "ipip" || li.LinkType == "none" && kind != "":
			return fail("%s: device %s is a %s device: a snapshot node does not make tunnel devices yet (write the node's tables by hand, [[node.interface]] kind = \"vxlan\" or \"ipip\")",
				snapFile(host.FileLink), l.Name, kind)
		case !l.Up || kind == "dummy":
			n.Dummies = append(n.Dummies, Dummy{Name: l.Name, Addresses: as})
		default:
			name, err := nsName(l.Name)
			if err != nil {
				return err
			}
			k := KindTUN
			if li.LinkType == "ether" {
				k = KindTAP
			}
			it := Interface{Name: l.Name, Netns: name, Addresses: as, MTU: l.MTU, Kind: k}
			if k == KindTAP {
				it.MAC = mac
			}
			n.Interfaces = append(n.Interfaces, it)
			peer, ok := outsideAddr(s, l.Name, as[0], own)
			if !ok {
				return fail("device %s (%s): no free address on its subnet for the namespace behind it (attach it to a switch with [node.attach])", l.Name, as[0])
			}
			ns := Namespace{Name: name, Addresses: []PrefixValue{{netip.PrefixFrom(peer, as[0].Bits())}}}
			var r NSRoute
			if err := r.UnmarshalText([]byte("default via " + as[0].Addr().String())); err != nil {
				return fail("%v", err)
			}
			ns.Routes = []NSRoute{r}
			outside = append(outside, ns)
		}
		made[l.Name] = true
	}
	// pods
	var pods []SnapshotPod
	if n.Pods == "auto" {
		pods = snapshotPods(s, isBridge, own)
		for k := range pods {
			p := &pods[k]
			name, err := nsName("p" + strconv.Itoa(k+1))
			if err != nil {
				return err
			}
			p.Netns = name
			ns := Namespace{Name: name, Servers: append([]Server(nil), n.PodServer...)}
			var rt string
			if p.Bridge != "" {
				gw, bits := bridgeGateway(addrs[p.Bridge], p.Addr)
				p.Dev = "pod" + strconv.Itoa(k+1)
				for made[p.Dev] || linkNames[p.Dev] {
					p.Dev += "x"
				}
				ns.Addresses = []PrefixValue{{netip.PrefixFrom(p.Addr, bits)}}
				rt = "default via " + gw.String()
				n.Interfaces = append(n.Interfaces, Interface{Name: p.Dev, Kind: KindTAP, Bridge: p.Bridge, Netns: name})
			} else {
				ns.Addresses = []PrefixValue{{netip.PrefixFrom(p.Addr, 32)}}
				rt = "default"
				n.Interfaces = append(n.Interfaces, Interface{Name: p.Dev, Netns: name, MTU: mtuOf(s, p.Dev)})
			}
			made[p.Dev] = true
			var r NSRoute
			if err := r.UnmarshalText([]byte(rt)); err != nil {
				return fail("%v", err)
			}
			ns.Routes = []NSRoute{r}
			outside = append(outside, ns)
		}
	}
	n.SnapshotPods = pods
	// the engine's state
	for _, r := range s.Routes {
		if !r.Dst.Addr().Is4() || kernelRoute(r) {
			continue
		}
		for _, nh := range r.Nexthops {
			if nh.Dev != "" && nh.Dev != "lo" && !made[nh.Dev] {
				return fail("%s: route entry %d (%s): its device %s is not one the lab makes (a device with IPv4 addresses, a pod bridge, a pod's veth with pods = \"auto\", or one in [node.attach])",
					snapFile(host.FileRoute), routeEntry(s.Raw[host.FileRoute], r, nh.Dev), snapRouteText(r), nh.Dev)
			}
		}
		n.Uswitch.Routes = append(n.Uswitch.Routes, RouteSpec{Route: r, Text: snapRouteText(r)})
	}
	if s.Rules != nil {
		n.Uswitch.NoDefaultRules = true
		for _, r := range s.Rules {
			n.Uswitch.IPRules = append(n.Uswitch.IPRules, RuleSpec{Rule: r, Text: fmt.Sprintf("%s: priority %d", snapFile(host.FileRule), r.Priority)})
		}
	}
	n.Uswitch.Rules = s.IPTables
	n.Uswitch.IPSet = s.IPSet
	n.Uswitch.IPVS = string(s.Raw[host.FileIPVS])
	n.Uswitch.Ebtables = string(s.Raw[host.FileEbtables])
	n.Uswitch.Sysctl = map[string]any{}
	for k, v := range s.Sysctl.Raw {
		if !knownSysctl.MatchString(k) {
			continue
		}
		if x, err := strconv.ParseInt(v, 10, 64); err == nil {
			n.Uswitch.Sysctl[k] = x
		}
	}
	c.Namespaces = append(c.Namespaces, outside...)
	return nil
}

// routeEntry is the number (from 1) of r's entry in ip-route.json (0:
// not found): the first whose dst and dev are r's.
func routeEntry(data []byte, r route.Route, dev string) int {
	var arr []map[string]any
	if json.Unmarshal(data, &arr) != nil {
		return 0
	}
	dst := r.Dst.String()
	if r.Dst.Bits() == 32 {
		dst = r.Dst.Addr().String()
	} else if r.Dst.Bits() == 0 {
		dst = "default"
	}
	for i, e := range arr {
		if e["dst"] == dst && e["dev"] == dev {
			return i + 1
		}
	}
	return 0
}

// kernelRoute is a route the kernel made for an address (the lab makes
// it again from the device's addresses): proto kernel in the local
// table, or a link-scope prefix route in main.
func kernelRoute(r route.Route) bool {
	if r.Protocol != "kernel" {
		return false
	}
	if r.Table == route.TableLocal {
		return true
	}
	return r.Table == route.TableMain && r.Type == route.Unicast && r.Scope == route.ScopeLink &&
		len(r.Nexthops) == 1 && !r.Nexthops[0].Gateway.IsValid()
}

// snapRouteText is a route as `ip route` shows it, for messages.
func snapRouteText(r route.Route) string {
	var b strings.Builder
	if r.Type != route.Unicast {
		fmt.Fprintf(&b, "%v ", r.Type)
	}
	if r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	for _, nh := range r.Nexthops {
		if nh.Gateway.IsValid() {
			fmt.Fprintf(&b, " via %v", nh.Gateway)
		}
		if nh.Dev != "" {
			fmt.Fprintf(&b, " dev %s", nh.Dev)
		}
	}
	if r.Table != route.TableMain {
		fmt.Fprintf(&b, " table %d", r.Table)
	}
	return b.String()
}

// outsideAddr is the address the namespace behind dev takes: the
// gateway of a snapshot route through dev on its subnet, else the
// subnet's first address that is not the node's.
func outsideAddr(s *host.Snapshot, dev string, a PrefixValue, own map[netip.Addr]bool) (netip.Addr, bool) {
	p := a.Masked()
	for _, r := range s.Routes {
		for _, nh := range r.Nexthops {
			if nh.Dev == dev && nh.Gateway.Is4() && p.Contains(nh.Gateway) && !own[nh.Gateway] {
				return nh.Gateway, true
			}
		}
	}
	if a.Bits() >= 31 {
		return netip.Addr{}, false
	}
	for x := p.Addr().Next(); p.Contains(x) && x != lastAddr(a.Prefix); x = x.Next() {
		if !own[x] {
			return x, true
		}
	}
	return netip.Addr{}, false
}

// bridgeGateway is the bridge's address on x's subnet and that subnet's
// length (the bridge's first address if none holds x).
func bridgeGateway(as []PrefixValue, x netip.Addr) (netip.Addr, int) {
	for _, a := range as {
		if a.Masked().Contains(x) {
			return a.Addr(), a.Bits()
		}
	}
	return as[0].Addr(), 32
}

func mtuOf(s *host.Snapshot, dev string) int {
	for _, l := range s.Links {
		if l.Name == dev && l.MTU >= 576 {
			return l.MTU
		}
	}
	return 0
}

var (
	ipvsRealRe = regexp.MustCompile(`(?m)^-a\s.*-r\s+(\d+\.\d+\.\d+\.\d+)`)
	dnatToRe   = regexp.MustCompile(`--to-destination\s+(\d+\.\d+\.\d+\.\d+)`)
)

// snapshotPods are the addresses the snapshot routes to its pods, in
// address order: /32 routes through veth*/cali* devices, a pod bridge's
// neighbours, and IPVS real servers and DNAT targets that its routes
// send out of a pod bridge, on one of its subnets. The node's own
// addresses are never pods.
func snapshotPods(s *host.Snapshot, isBridge func(string) bool, own map[netip.Addr]bool) []SnapshotPod {
	found := map[netip.Addr]SnapshotPod{}
	for _, r := range s.Routes {
		if r.Table != route.TableMain || r.Type != route.Unicast || !r.Dst.Addr().Is4() || r.Dst.Bits() != 32 || len(r.Nexthops) != 1 {
			continue
		}
		nh := r.Nexthops[0]
		if podVethRe.MatchString(nh.Dev) && !nh.Gateway.IsValid() && !own[r.Dst.Addr()] {
			found[r.Dst.Addr()] = SnapshotPod{Addr: r.Dst.Addr(), Dev: nh.Dev}
		}
	}
	// a pod behind a bridge is on one of the bridge's subnets (its
	// default route goes via the bridge's address there)
	bridgeNets := map[string][]netip.Prefix{}
	for _, a := range s.Addrs {
		if a.Local.Is4() && isBridge(a.Dev) {
			bridgeNets[a.Dev] = append(bridgeNets[a.Dev], a.Prefix)
		}
	}
	onSubnet := func(dev string, x netip.Addr) bool {
		for _, p := range bridgeNets[dev] {
			if p.Contains(x) {
				return true
			}
		}
		return false
	}
	onBridge := func(x netip.Addr) {
		if _, ok := found[x]; ok || own[x] || !x.Is4() {
			return
		}
		res := s.FIB.Output(&route.Flow{Dst: x})
		if res.Err != 0 || res.Gateway.IsValid() || res.Type != route.Unicast {
			return
		}
		if d := s.FIB.LinkName(res.Dev); isBridge(d) && onSubnet(d, x) {
			found[x] = SnapshotPod{Addr: x, Bridge: d}
		}
	}
	var neigh []snapNeigh
	if b, ok := s.Raw[host.FileNeigh]; ok && json.Unmarshal(b, &neigh) == nil {
		for _, e := range neigh {
			x, err := netip.ParseAddr(e.Dst)
			bad := false
			for _, st := range e.State {
				bad = bad || st == "FAILED" || st == "INCOMPLETE"
			}
			if err == nil && !bad && isBridge(e.Dev) {
				onBridge(x)
			}
		}
	}
	for _, m := range ipvsRealRe.FindAllStringSubmatch(string(s.Raw[host.FileIPVS]), -1) {
		if x, err := netip.ParseAddr(m[1]); err == nil {
			onBridge(x)
		}
	}
	for _, m := range dnatToRe.FindAllStringSubmatch(s.IPTables, -1) {
		if x, err := netip.ParseAddr(m[1]); err == nil {
			onBridge(x)
		}
	}
	out := make([]SnapshotPod, 0, len(found))
	for _, p := range found {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
