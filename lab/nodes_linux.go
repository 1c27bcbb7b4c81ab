package lab

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/internal/prom"
	"github.com/uswitch-lab/uswitch/iproute"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/route"
)

// The running side of a lab's nodes (node.go): each node's engine and
// datapath over its devices, the wires that join the nodes to the
// switch and to each other, and the host namespace whose TUNs stand for
// the node's own devices:
//
//	node b's engine ── eth0 (wire to the switch's port b-eth0)
//	                ├─ cni0 (bridge) ── TAP ports into the pods
//	                └─ host-eth0, host-cni0: TUNs in usw-k8s-b-host, called
//	                   eth0 and cni0 there, with the node's addresses
//
// What the engine delivers locally is written to the host TUN standing
// for the device it came in on (link.WithHost), and the host namespace's
// kernel answers it from its sockets; what the host namespace sends out
// of any of its TUNs is the node's own traffic and runs from OUTPUT
// (Engine.Send). The host namespace's routes are the node's: the same
// prefixes, each with the source the node's routing chooses (its
// inet_select_addr), so an unbound socket's source is the node's choice.

// engineDevs are the devices one engine's datapath will run over.
type engineDevs struct {
	devs []link.Device
	mtus map[string]int
}

func (e *engineDevs) add(d link.Device, mtu int) {
	e.devs = append(e.devs, d)
	e.mtus[d.Name()] = mtu
}

func (e *engineDevs) close() {
	for _, d := range e.devs {
		d.Close()
	}
	e.devs = nil
}

// nodeRun is a running node.
type nodeRun struct {
	n    Node
	devs engineDevs
	// mirrors are the node's devices with addresses, each with a TUN
	// in the host namespace (HostDevName in the datapath)
	mirrors []string
	eng     *datapath.Engine
	dp      *link.Datapath
	ec      control.Engine
	ecInit  sync.Once
	// cfgMu serialises the node engine's configuration changes: the
	// control socket's (ec.Lock) and a demo step's sysctls
	cfgMu sync.Mutex
}

// attachment is the engine config and interface that attach namespace
// ns: the lab's, a node's (its Engine), or none.
func (c *Config) attachment(ns string) (*Config, *Interface) {
	if it := c.iface(ns); it != nil {
		return c, it
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		for j := range n.Interfaces {
			if n.Interfaces[j].Netns == ns && ns != "" {
				return n.Engine, &n.Interfaces[j]
			}
		}
	}
	return nil, nil
}

// node is the running node called name (nil: none).
func (l *Lab) node(name string) *nodeRun {
	for _, nr := range l.nodes {
		if nr.n.Name == name {
			return nr
		}
	}
	return nil
}

// mirrorDevs are a node's devices that have addresses: its interfaces',
// its bridges' and its dummies', in config order.
func (n *Node) mirrorDevs() (names []string, addrs [][]PrefixValue, mtus []int) {
	for _, it := range n.Interfaces {
		if len(it.Addresses) > 0 && it.Bridge == "" {
			mtu := it.MTU
			if mtu == 0 {
				mtu = link.DefaultMTU
			}
			names, addrs, mtus = append(names, it.Name), append(addrs, it.Addresses), append(mtus, mtu)
		}
	}
	for _, b := range n.Bridges {
		if len(b.Addresses) > 0 {
			names, addrs, mtus = append(names, b.Name), append(addrs, b.Addresses), append(mtus, link.DefaultMTU)
		}
	}
	// a dummy's addresses are the node's too (kube-ipvs0's service
	// addresses: the node's own sockets reach them through its engine)
	for _, d := range n.Dummies {
		names, addrs, mtus = append(names, d.Name), append(addrs, d.Addresses), append(mtus, link.DefaultMTU)
	}
	return names, addrs, mtus
}

// upNodeDevices makes the wires (each node's switch links, with their
// other ends added to top, the lab's engine, and the links between
// nodes) and each node's host namespace: its TUNs, addresses and routes.
func (l *Lab) upNodeDevices(top *engineDevs) error {
	cfg := l.cfg
	for _, nr := range l.nodes {
		n := &nr.n
		for _, it := range n.Interfaces {
			mtu := it.MTU
			if mtu == 0 {
				mtu = link.DefaultMTU
			}
			switch {
			case it.Switch != "":
				a, b := link.NewWire(SwitchPortName(n.Name, it.Name), it.Name)
				top.add(a, mtu)
				nr.devs.add(b, mtu)
			case it.Peer != "":
				pn, pi, _ := splitPeer(it.Peer)
				if pn < n.Name {
					continue // made from the other end
				}
				a, b := link.NewWire(it.Name, pi)
				nr.devs.add(a, mtu)
				l.node(pn).devs.add(b, mtu)
			}
		}
		if err := l.upHost(nr); err != nil {
			return fmt.Errorf("node %s: host namespace %s: %w", n.Name, n.HostNetns, err)
		}
	}
	_ = cfg
	return nil
}

func splitPeer(s string) (node, iface string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}

// upHost makes a node's host namespace: lo up, a TUN for each of the
// node's devices with addresses (called as the device, holding its
// addresses), the node's routes with the node's sources, and the
// sysctls that let the namespace take back what it sent to its own
// addresses through the node (accept_local; no rp_filter).
func (l *Lab) upHost(nr *nodeRun) error {
	n := &nr.n
	h := l.nss[n.HostNetns]
	names, addrs, mtus := n.mirrorDevs()
	if len(names) == 0 {
		return errors.New("the node has no address (give an interface or bridge addresses)")
	}
	nr.mirrors = names
	ne := n.Engine
	_, queues := ne.Uswitch.threads()
	offload := ne.Uswitch.Offload == nil || *ne.Uswitch.Offload
	for i, dev := range names {
		qs, err := link.OpenTUN(h, dev, link.Options{Queues: queues, Offload: offload})
		for _, q := range qs {
			q.Rename(HostDevName(dev))
			nr.devs.add(q, mtus[i])
		}
		if err != nil {
			return err
		}
	}
	var sc []NSSysctl
	sc = append(sc, NSSysctl{"net.ipv4.conf.all.rp_filter", "0"}, NSSysctl{"net.ipv4.conf.default.rp_filter", "0"})
	for _, dev := range names {
		k := "net.ipv4.conf." + strings.ReplaceAll(dev, ".", "/") // sysctl(8)'s name of vxlan.calico
		sc = append(sc, NSSysctl{k + ".rp_filter", "0"}, NSSysctl{k + ".accept_local", "1"}, NSSysctl{k + ".route_localnet", "1"})
	}
	if err := withHandle(h, func(nh *netlink.Handle) error {
		lo, err := nh.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := nh.LinkSetUp(lo); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
		for i, dev := range names {
			d, err := nh.LinkByName(dev)
			if err != nil {
				return err
			}
			if err := nh.LinkSetMTU(d, mtus[i]); err != nil {
				return fmt.Errorf("%s mtu: %w", dev, err)
			}
			if err := addAddrs(nh, d, addrs[i]); err != nil {
				return err
			}
			if err := nh.LinkSetUp(d); err != nil {
				return fmt.Errorf("%s up: %w", dev, err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := writeSysctls(h, sc, false); err != nil {
		return err
	}
	if err := writeSysctls(h, sc, true); err != nil {
		return err
	}
	if err := l.hostRoutes(nr); err != nil {
		return err
	}
	return l.hostLoopback(nr, names, addrs)
}

// hostTable is the host namespace's routing table for its own traffic to
// itself (hostLoopback).
const hostTable = 200

// hostLoopback sends what the host namespace sends to itself (its own
// addresses, 127.0.0.0/8) through the node's engine, as the node's
// traffic over lo crosses the node's netfilter hooks (OUTPUT, then
// PREROUTING and INPUT on lo: the NodePort rules apply to
// 127.0.0.1:30080): a rule for the namespace's own packets (iif lo
// matches only locally generated ones) looks up a table that routes
// those destinations out of the TUNs, before the local table, which
// moves from priority 0 to 1. The engine sends them back on the TUN,
// which takes them in because accept_local and route_localnet are on
// (fib_validate_source, ip_route_input_slow's martian checks); a 127/8
// source may leave the TUN because route_localnet is on there
// (__mkroute_output).
func (l *Lab) hostLoopback(nr *nodeRun, names []string, addrs [][]PrefixValue) error {
	return withHandle(l.nss[nr.n.HostNetns], func(nh *netlink.Handle) error {
		for i, dev := range names {
			d, err := nh.LinkByName(dev)
			if err != nil {
				return err
			}
			for _, a := range addrs[i] {
				rt := &netlink.Route{LinkIndex: d.Attrs().Index, Scope: netlink.SCOPE_LINK, Src: a.Addr().AsSlice(), Table: hostTable,
					Dst: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}}
				if err := nh.RouteAdd(rt); err != nil && !errors.Is(err, syscall.EEXIST) {
					return fmt.Errorf("route %v dev %s table %d: %w", a.Addr(), dev, hostTable, err)
				}
			}
			if i == 0 {
				rt := &netlink.Route{LinkIndex: d.Attrs().Index, Scope: netlink.SCOPE_LINK, Src: net.IPv4(127, 0, 0, 1).To4(), Table: hostTable,
					Dst: &net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}}
				if err := nh.RouteAdd(rt); err != nil {
					return fmt.Errorf("route 127.0.0.0/8 dev %s table %d: %w", dev, hostTable, err)
				}
			}
		}
		own := netlink.NewRule()
		own.Priority, own.IifName, own.Table = 0, "lo", hostTable
		if err := nh.RuleAdd(own); err != nil {
			return fmt.Errorf("ip rule iif lo lookup %d: %w", hostTable, err)
		}
		local := netlink.NewRule()
		local.Priority, local.Table = 1, 255
		if err := nh.RuleAdd(local); err != nil {
			return fmt.Errorf("ip rule pref 1 lookup local: %w", err)
		}
		// the kernel's own local rule at 0, now after ours
		old := netlink.NewRule()
		old.Priority, old.Table = 0, 255
		if err := nh.RuleDel(old); err != nil {
			return fmt.Errorf("ip rule del pref 0 lookup local: %w", err)
		}
		return nil
	})
}

// hostRoutes gives the host namespace the node's own routes of its main
// table (the kernel made the connected ones from the addresses): each
// out of the TUN standing for the route's device (or the first), with
// the source the node's routing picks for the destination, so a socket
// that binds no address gets the node's source (inet_select_addr).
func (l *Lab) hostRoutes(nr *nodeRun) error {
	ne := nr.n.Engine
	rc, err := ne.fibConfig(nil)
	if err != nil {
		return err
	}
	fib, err := route.New(rc)
	if err != nil {
		return err
	}
	mirrored := map[string]bool{}
	for _, m := range nr.mirrors {
		mirrored[m] = true
	}
	return withHandle(l.nss[nr.n.HostNetns], func(nh *netlink.Handle) error {
		for _, r := range ne.Uswitch.Routes {
			if r.Table != route.TableMain || r.Type != route.Unicast {
				continue
			}
			res := fib.Output(&route.Flow{Dst: routeProbe(r.Route)})
			if res.Err != 0 || !res.Src.IsValid() {
				continue // the node has no route or no source for it either
			}
			dev := nr.mirrors[0]
			if d := fib.LinkName(res.Dev); mirrored[d] {
				dev = d
			}
			ld, err := nh.LinkByName(dev)
			if err != nil {
				return err
			}
			rt := &netlink.Route{LinkIndex: ld.Attrs().Index, Scope: netlink.SCOPE_LINK, Src: res.Src.AsSlice(),
				Dst: &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)}, Priority: int(r.Metric)}
			if err := nh.RouteAdd(rt); err != nil && !errors.Is(err, syscall.EEXIST) {
				return fmt.Errorf("route %q: %w", r.Text, err)
			}
		}
		return nil
	})
}

// routeProbe is the destination whose output route gives a route's
// source: its gateway (inet_select_addr towards the next hop), else the
// first address of its prefix (not the network address: 0.0.0.0, the
// default route's, is local to the lookup).
func routeProbe(r route.Route) netip.Addr {
	for _, nh := range r.Nexthops {
		if nh.Gateway.IsValid() {
			return nh.Gateway
		}
	}
	a := r.Dst.Masked().Addr()
	if r.Dst.Bits() < 31 {
		a = a.Next()
	}
	return a
}

// start makes the node's engine and runs its datapath.
func (nr *nodeRun) start(labSeed uint64) error {
	ne := nr.n.Engine
	ecfg, ctcfg, err := ne.EngineConfig()
	if err != nil {
		return err
	}
	seed := ne.Uswitch.Seed
	if seed == 0 {
		// each node draws its own numbers, repeatably with the lab's
		h := fnv.New64a()
		h.Write([]byte(nr.n.Name))
		seed = labSeed ^ h.Sum64()
	}
	nr.eng = datapath.New(ecfg, ctcfg, seed)
	// the node's own kernel log and NFLOG groups (uswitch log --node)
	nr.eng.SetKernelLog(datapath.NewKernelLog())
	if nr.eng.LVS, err = ne.Director(); err != nil {
		return err
	}
	opts := ne.DatapathOptions()
	if ne.Uswitch.Inline == nil || *ne.Uswitch.Inline {
		opts = append(opts, link.WithInline())
	}
	for _, m := range nr.mirrors {
		opts = append(opts, link.WithHost(HostDevName(m), m))
	}
	workers, _ := ne.Uswitch.threads()
	nr.dp = link.NewDatapath(nr.eng, nr.devs.devs, nr.devs.mtus, workers, opts...)
	return nil
}

// Control answers a control request for the node (control.Handler).
func (nr *nodeRun) Control(req control.Request) control.Response {
	if req.Cmd == "fault" {
		return control.Response{Code: 2, Stderr: "uswitch: fault: the faults of a lab are on its own engine, not a node's (leave out --node)\n"}
	}
	nr.ecInit.Do(func() {
		nr.ec = control.Engine{Eng: nr.eng, Now: nr.dp.Now, Metrics: nr.metrics, Sets: nr.n.Engine.Sets, Lock: &nr.cfgMu,
			Neighbours: func() []iproute.Neighbour { return tapNeighbours(nr.dp) }}
	})
	return nr.ec.Control(req)
}

func (nr *nodeRun) metrics() string {
	var b bytes.Buffer
	m := prom.New(&b)
	nr.dp.WriteMetrics(m)
	control.WriteConntrack(m, nr.eng)
	return b.String()
}

// KernelLog is the node engine's kernel log and NFLOG groups
// (control.KernelLogSource: log -f and nflog --node).
func (nr *nodeRun) KernelLog() *datapath.KernelLog { return nr.eng.KernelLog() }

// ConntrackTable is the node's conntrack table and clock (conntrack -E).
func (nr *nodeRun) ConntrackTable() (*conntrack.Table, func() int64) { return nr.eng.CT, nr.dp.Now }

// Node returns the control handler and datapath of the node called
// name, for `--node NAME` requests (control.NodeHandler).
func (l *Lab) Node(name string) (control.Handler, *link.Datapath, error) {
	nr := l.node(name)
	if nr == nil || nr.dp == nil {
		var names []string
		for _, x := range l.nodes {
			names = append(names, x.n.Name)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return nil, nil, fmt.Errorf("--node %s: lab %q has no nodes", name, l.cfg.Name)
		}
		return nil, nil, fmt.Errorf("--node %s: lab %q has no node of that name (its nodes: %v)", name, l.cfg.Name, names)
	}
	return nr, nr.dp, nil
}

// NodeEngine is the engine of the node called name (nil: none).
func (l *Lab) NodeEngine(name string) *datapath.Engine {
	if nr := l.node(name); nr != nil {
		return nr.eng
	}
	return nil
}

// NodeStats are the counters of the node called name's datapath.
func (l *Lab) NodeStats(name string) link.Stats {
	if nr := l.node(name); nr != nil && nr.dp != nil {
		return nr.dp.Stats()
	}
	return link.Stats{}
}
