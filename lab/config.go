package lab

import (
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	// BurntSushi/toml: the lab file format the issue asks for; its
	// MetaData.Undecoded finds unknown keys and its ParseError carries
	// the line of a bad value.
	"github.com/BurntSushi/toml"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/lvs"
	"github.com/uswitch-lab/uswitch/route"
)

//go:embed default.toml
var defaultTOML string

// DefaultTOML is the text of the default lab (default.toml).
func DefaultTOML() string { return defaultTOML }

// Default is the default lab: a client, two web servers behind the
// service 10.96.0.10:80 and an outside host, routed by uswitch.
func Default() *Config {
	c, err := Parse("default.toml", []byte(defaultTOML))
	if err != nil {
		panic("lab: the embedded default lab does not load: " + err.Error())
	}
	return c
}

// Config is a lab: the namespaces uswitch connects, its own interfaces
// (one TUN per attached namespace), its routing state, rule set and
// sysctls. Load or Parse it; every field has been checked.
type Config struct {
	// Name is only printed.
	Name string `toml:"name"`
	// Uswitch is the router's own state.
	Uswitch Router `toml:"uswitch"`
	// Interfaces are uswitch's TUN (or TAP) devices, each living in one
	// namespace.
	Interfaces []Interface `toml:"interface"`
	// Bridges are uswitch's bridges; their ports are TAP interfaces.
	Bridges []Bridge `toml:"bridge"`
	// Dummies are devices with addresses and no link (kube-ipvs0).
	Dummies []Dummy `toml:"dummy"`
	// Namespaces are the network namespaces the lab makes.
	Namespaces []Namespace `toml:"namespace"`
	// Links are veth pairs straight between two namespaces, outside
	// uswitch (topology.go).
	Links []Link `toml:"link"`
	// Demo is what `uswitch lab` does to show traffic crossing uswitch.
	Demo []Demo `toml:"demo"`
	// Experiment and Faults are the fault-injection tables (package
	// fault, faults.go); Workloads, Steps and NFQueue the rest of an
	// experiment (experiment.go; package experiment runs them).
	Experiment Experiment   `toml:"experiment"`
	Faults     []fault.Spec `toml:"fault"`
	Workloads  []Workload   `toml:"workload"`
	Steps      []Step       `toml:"step"`
	NFQueue    *NFQueue     `toml:"nfqueue"`
	// Nodes are the lab's hosts of their own, each an engine with a
	// host namespace (node.go); the lab's own engine ([uswitch],
	// [[interface]], [[bridge]]) is then the switch or router between
	// them.
	Nodes []Node `toml:"node"`

	// File is where the config came from ("" for an embedded one).
	File string `toml:"-"`
	// Ebtables is the bridges' ebtables rule set (Uswitch.Ebtables or
	// EbtablesFile; nil: none).
	Ebtables *ebtables.Ruleset `toml:"-"`
	// Ruleset is the compiled rule set (Uswitch.Rules or RulesFile).
	Ruleset *iptables.Ruleset `toml:"-"`
	// IPVSRules are the checked IPVS commands (Uswitch.IPVS or IPVSFile).
	IPVSRules []lvs.Rule `toml:"-"`
	// Sets are the parsed Uswitch.IPSet (nil without).
	Sets iptables.Sets `toml:"-"`
	// Sysctl holds the parsed sysctls (Uswitch.Sysctl).
	Sysctl sysctls `toml:"-"`

	// switchPorts are the ports of the lab's bridges that the nodes'
	// switch links plug into (node.go); set by check
	switchPorts []Interface
	// node is set on a node's engine config (Node.Engine): its name
	node string
}

// Router is the [uswitch] table.
type Router struct {
	// Workers is the number of datapath workers (0 = one per CPU).
	Workers int `toml:"workers"`
	// Queues is the number of queues of each TUN (IFF_MULTI_QUEUE),
	// each with a reader of its own (0 = as many as workers; a TAP
	// has one).
	Queues int `toml:"queues"`
	// Offload gives the TUNs a virtio-net header with checksum and
	// segmentation offloads: the namespaces hand uswitch TCP
	// super-packets, which it cuts into segments, and it coalesces
	// the segments it writes (offload.go). Default true; an
	// interface's own offload overrides it; a TAP has none.
	Offload *bool `toml:"offload"`
	// Inline makes each queue's reader run the engine itself (run to
	// completion) instead of handing its packets to the workers by
	// flow hash. Default true.
	Inline *bool `toml:"inline"`
	// Seed makes the engine's random choices (statistic, NAT ports)
	// repeatable; 0 picks one from the clock.
	Seed uint64 `toml:"seed"`
	// Routes are uswitch's own routes, `ip route` syntax: "PREFIX [via
	// GW] [dev DEV] [table T] [metric M] [src A] [proto P] [scope S]",
	// with an optional leading type (unreachable, blackhole, prohibit,
	// local...). The kernel's own routes for the interface addresses
	// are added as the kernel adds them.
	Routes []RouteSpec `toml:"routes"`
	// IPRules are `ip rule` lines: "[not] [from P] [to P] [iif D] [oif D]
	// [fwmark M[/MASK]] [tos T] [ipproto N] [sport N[-M]] [dport N[-M]]
	// (lookup T | goto P | blackhole | unreachable | prohibit | nop)
	// [priority N]"; the default three rules stay unless NoDefaultRules.
	IPRules        []RuleSpec `toml:"ip_rules"`
	NoDefaultRules bool       `toml:"no_default_rules"`
	// Rules is an iptables-restore input; RulesFile names one (relative
	// to the config file). At most one of them.
	Rules     string `toml:"rules"`
	RulesFile string `toml:"rules_file"`
	// Ebtables is an ebtables-restore input for the bridges; EbtablesFile
	// names one (relative to the lab file).
	Ebtables     string `toml:"ebtables"`
	EbtablesFile string `toml:"ebtables_file"`
	// IPVS is an ipvsadm -S (ipvsadm-save / ipvsadm -R) input: the
	// virtual services of uswitch's IPVS; IPVSFile names one. The
	// net.ipv4.vs.* sysctls go in Sysctl.
	IPVS     string `toml:"ipvs"`
	IPVSFile string `toml:"ipvs_file"`
	// IPSet is an `ipset save` text: the sets -m set and -j SET name
	// (kube-proxy's IPVS mode matches its KUBE-* sets).
	IPSet string `toml:"ipset"`
	// Sysctl is uswitch's sysctls by their dotted name.
	Sysctl map[string]any `toml:"sysctl"`
}

// Interface is one of uswitch's TUN devices, or with Kind "tap" a TAP
// device (an Ethernet link, tap.go). It is created inside its
// namespace, where the namespace's addresses and routes are put on it;
// uswitch's side has Addresses (in uswitch's routing state only).
type Interface struct {
	Name      string        `toml:"name"`
	Netns     string        `toml:"netns"`
	Addresses []PrefixValue `toml:"addresses"`
	MTU       int           `toml:"mtu"`
	// Decap makes uswitch play the namespace's tunnel device: a tunnel
	// packet it writes to this TUN addressed to one of the namespace's
	// addresses is handed over as its inner packet (decap.go).
	Decap link.DecapValue `toml:"decap"`
	// Kind is "tun" (the default: IPv4 packets, no link header) or
	// "tap" (Ethernet frames, with ARP: tap.go).
	Kind IfaceKind `toml:"kind"`
	// Offload overrides [uswitch] offload for this TUN.
	Offload *bool `toml:"offload"`
	// MAC is uswitch's own MAC address on a TAP (the source of what it
	// writes there, the address its ARP replies give); zero: derived
	// from the interface's name (DefaultMAC). On a bridge port it is
	// the port's own address.
	MAC MACValue `toml:"mac"`
	// Bridge makes this TAP a port of the [[bridge]] of that name: its
	// frames are bridged (it has no addresses of its own).
	Bridge string `toml:"bridge"`
	// Hairpin is the port's hairpin mode: frames may leave by the port
	// they came in on.
	Hairpin bool `toml:"hairpin"`
	// Switch (a [[node.interface]] only, without netns) plugs the
	// node's device into the lab's [[bridge]] of that name: an
	// Ethernet link whose other end is the bridge's port NODE-NAME.
	Switch string `toml:"switch"`
	// Peer (a [[node.interface]] only, without netns) is a routed link
	// to another node's interface, "NODE:INTERFACE", which names this
	// one back.
	Peer string `toml:"peer"`

	// Tunnel is a kind = "vxlan" or "ipip" [[node.interface]]: a
	// tunnel device of the node that uswitch plays (tunnel.go).
	Tunnel
}

// Bridge is one of uswitch's bridges (a Linux bridge device, br0): its
// addresses are uswitch's on the bridge; its ports are the kind = "tap"
// interfaces that name it.
type Bridge struct {
	Name      string        `toml:"name"`
	Addresses []PrefixValue `toml:"addresses"`
	// MAC is the bridge's address; zero: its lowest port's, as the
	// kernel chooses.
	MAC MACValue `toml:"mac"`
	// AgeingTime is the forwarding database's ageing time in seconds
	// (ageing_time; nil: 300; 0: no learning).
	AgeingTime *int `toml:"ageing_time"`
}

// Dummy is a device of the engine with addresses and no link, as `ip
// link add NAME type dummy` makes: kube-proxy's IPVS mode puts every
// service address on one, kube-ipvs0, so the kernel adds a local route
// for each (fib_add_ifaddr adds it before its IFF_UP test, so it is
// there although kube-proxy never sets kube-ipvs0 up: the device is
// down here too) and the packets to them are delivered locally, where
// IPVS takes them. Nothing is ever sent out of it.
type Dummy struct {
	Name      string        `toml:"name"`
	Addresses []PrefixValue `toml:"addresses"`
}

// Namespace is a network namespace of the lab.
type Namespace struct {
	Name string `toml:"name"`
	// Addresses are put on the namespace's TUN.
	Addresses []PrefixValue `toml:"addresses"`
	// Loopback are extra addresses put on the namespace's lo (a DR or
	// TUN real server holds the VIP there).
	Loopback []PrefixValue `toml:"loopback"`
	// Routes are "PREFIX [via GW] [dev NAME] [table N]" (or "default
	// ..."). NAME is a device of the namespace: its TUN or one end of a
	// [[link]]; without dev a route goes out of the namespace's TUN, or,
	// in a namespace without one, where the kernel finds the gateway.
	// Devices are the lab's own, so a namespace never has a route out of
	// the machine.
	Routes []NSRoute `toml:"routes"`
	// IPRules are the namespace's `ip rule` lines, as [uswitch]'s
	// ip_rules, except that priority may be left to the kernel.
	IPRules []NSRule `toml:"ip_rules"`
	// Sysctl is written into the namespace's /proc/sys: net.ipv4.* keys
	// only, integer (or boolean) values.
	Sysctl map[string]any `toml:"sysctl"`
	// Sysctls is Sysctl checked and flattened, sorted by key.
	Sysctls []NSSysctl `toml:"-"`
	Servers []Server   `toml:"server"`
}

// Demo is one step of the demonstration: from a namespace, exactly one
// of an HTTP GET (Count times), a ping, a UDP echo exchange or a TCP
// connection to a tcp-echo server (or one that should be refused).
type Demo struct {
	From  string `toml:"from"`
	HTTP  string `toml:"http"`
	Ping  string `toml:"ping"`
	UDP   string `toml:"udp"`
	TCP   string `toml:"tcp"`
	Count int    `toml:"count"`
	// Note is printed after the step's result.
	Note string `toml:"note"`
	// ExpectFail: the step shows something that does not work (a
	// connection that hangs, a refused one): its failure is printed as
	// expected and does not fail the demo; a success does.
	ExpectFail bool `toml:"expect_fail"`
	// ExpectRefused: a tcp step whose connection must be refused (a
	// TCP reset: REJECT --reject-with tcp-reset, or no listener), not
	// time out or succeed.
	ExpectRefused bool `toml:"expect_refused"`
	// Sysctl changes the sysctls of Node's engine ("": the lab's)
	// before the step, live, as `sysctl -w` would: the ones a running
	// engine follows (faulthost.Host.Sysctl: ip_forward,
	// net.ipv4.conf.{all,DEV}.{route_localnet,rp_filter,accept_local,
	// src_valid_mark,send_redirects,forwarding},
	// bridge-nf-call-iptables, nf_conntrack_tcp_be_liberal,
	// nf_conntrack_tcp_loose, nf_conntrack_max).
	Sysctl map[string]any `toml:"sysctl"`
	// Timeout bounds the step's request (a Go duration, "10s"; 0: 2s),
	// for a step that moves much data.
	Timeout DemoDuration `toml:"timeout"`
	// Server replaces, before the step, Node's built-in server of the
	// same protocol and port in its host namespace with this one (a
	// hostNetwork server restarted with another bind or reply_src).
	Server *Server `toml:"server"`
	// IPTablesRestore is an iptables-restore input loaded before the
	// step (as `uswitch iptables-restore` does: the tables it names are
	// replaced, atomically) into the engine of Node ("": the lab's). A
	// step may be only that (no from and no traffic): a rule swap that
	// the next steps run under.
	IPTablesRestore string `toml:"iptables_restore"`
	// IPTablesRestoreFile names a file (relative to the lab file)
	// loaded as IPTablesRestore is: a step that puts a node's whole
	// rule set back.
	IPTablesRestoreFile string `toml:"iptables_restore_file"`
	Node                string `toml:"node"`
	// Src binds an http, udp or tcp step's socket to this address of
	// its namespace (none: the route's source).
	Src AddrValue `toml:"src"`
}

// Server is a built-in server: "tcp-echo", "udp-echo", "http" or "ftp".
type Server struct {
	Kind ServerKind `toml:"kind"`
	Port PortValue  `toml:"port"`
	// Bind is the address the server binds (zero: 0.0.0.0).
	Bind AddrValue `toml:"bind"`
	// ReplySrc is how a udp-echo server picks its answers' source:
	// "dst" (the default, IP_PKTINFO) or "route" (node.go).
	ReplySrc ReplySource `toml:"reply_src"`
}

// ServerKind names a built-in server.
type ServerKind string

// The server kinds.
const (
	TCPEcho ServerKind = "tcp-echo"
	UDPEcho ServerKind = "udp-echo"
	HTTP    ServerKind = "http"
	// FTP is the FTP-like server of ftp.go, for the conntrack helper
	FTP ServerKind = "ftp"
)

// UnmarshalText checks the kind.
func (k *ServerKind) UnmarshalText(b []byte) error {
	switch ServerKind(b) {
	case TCPEcho, UDPEcho, HTTP, FTP:
		*k = ServerKind(b)
		return nil
	}
	return fmt.Errorf("server kind %q: want tcp-echo, udp-echo, http or ftp", b)
}

// PortValue is a TCP/UDP port, 1-65535.
type PortValue uint16

// UnmarshalTOML checks the range.
func (p *PortValue) UnmarshalTOML(v any) error {
	n, ok := v.(int64)
	if !ok || n < 1 || n > 65535 {
		return fmt.Errorf("port %v: want an integer 1-65535", v)
	}
	*p = PortValue(n)
	return nil
}

// PrefixValue is an address with its prefix length, "10.10.1.2/24".
type PrefixValue struct{ netip.Prefix }

// UnmarshalText parses an IPv4 address/length.
func (p *PrefixValue) UnmarshalText(b []byte) error {
	q, err := netip.ParsePrefix(string(b))
	if err != nil || !q.Addr().Is4() {
		return fmt.Errorf("address %q: want an IPv4 ADDRESS/LENGTH", b)
	}
	p.Prefix = q
	return nil
}

// NSRoute is a route inside a namespace: Dst via Gateway (optional), out
// of Dev (empty: the namespace's TUN, or where the gateway is) in Table
// (0: main).
type NSRoute struct {
	Dst     netip.Prefix
	Gateway netip.Addr
	Dev     string
	Table   uint32
	Text    string
}

// UnmarshalText parses "PREFIX|default [via GW] [dev NAME] [table N]".
func (r *NSRoute) UnmarshalText(b []byte) error {
	f := strings.Fields(string(b))
	fail := func(format string, a ...any) error {
		return fmt.Errorf("route %q: %s", b, fmt.Sprintf(format, a...))
	}
	if len(f) == 0 {
		return fail("want PREFIX [via GATEWAY] [dev NAME] [table N]")
	}
	d, err := parseDst(f[0])
	if err != nil {
		return fail("%v", err)
	}
	rt := NSRoute{Dst: d, Text: string(b)}
	seen := map[string]bool{}
	for i := 1; i < len(f); i += 2 {
		k := f[i]
		if k != "via" && k != "dev" && k != "table" {
			return fail("unknown word %q (want PREFIX [via GATEWAY] [dev NAME] [table N])", k)
		}
		if seen[k] {
			return fail("%q given twice", k)
		}
		seen[k] = true
		if i+1 >= len(f) {
			return fail("%q needs a value", k)
		}
		v := f[i+1]
		switch k {
		case "via":
			if rt.Gateway, err = netip.ParseAddr(v); err != nil || !rt.Gateway.Is4() {
				return fail("bad gateway %q", v)
			}
		case "dev":
			if !validDevName(v) {
				return fail("bad device name %q", v)
			}
			rt.Dev = v
		case "table":
			if rt.Table, err = tableID(v); err != nil {
				return fail("%v", err)
			}
			if rt.Table == route.TableMain {
				rt.Table = 0
			}
		}
	}
	*r = rt
	return nil
}

func parseDst(s string) (netip.Prefix, error) {
	if s == "default" {
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	}
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("bad IPv4 prefix %q", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("prefix %s has host bits set (want %s)", s, p.Masked())
	}
	return p, nil
}

// RouteSpec is one of uswitch's routes; Route.Nexthops[0].Dev may be
// empty until the config is checked (then it is the connected device).
type RouteSpec struct {
	route.Route
	Text string
}

var routeTypes = map[string]route.Type{"unicast": route.Unicast, "local": route.Local, "broadcast": route.Broadcast,
	"blackhole": route.Blackhole, "unreachable": route.Unreachable, "prohibit": route.Prohibit, "throw": route.Throw}

// UnmarshalText parses `ip route add` arguments.
func (r *RouteSpec) UnmarshalText(b []byte) error {
	f := strings.Fields(string(b))
	fail := func(format string, a ...any) error { return fmt.Errorf("route %q: %s", b, fmt.Sprintf(format, a...)) }
	rt := route.Route{Table: route.TableMain, Type: route.Unicast, Protocol: "static"}
	if len(f) > 0 {
		if t, ok := routeTypes[f[0]]; ok {
			rt.Type, f = t, f[1:]
		}
	}
	if len(f) == 0 {
		return fail("no destination")
	}
	d, err := parseDst(f[0])
	if err != nil {
		return fail("%v", err)
	}
	rt.Dst = d
	var nh route.Nexthop
	scopeSet := false
	for i := 1; i < len(f); i += 2 {
		if f[i] == "onlink" {
			// a flag word: the gateway is on the link even if no
			// address's subnet holds it (RTNH_F_ONLINK)
			nh.OnLink = true
			i--
			continue
		}
		if i+1 >= len(f) {
			return fail("%q needs a value", f[i])
		}
		k, v := f[i], f[i+1]
		switch k {
		case "via":
			if nh.Gateway, err = netip.ParseAddr(v); err != nil || !nh.Gateway.Is4() {
				return fail("bad gateway %q", v)
			}
		case "dev":
			nh.Dev = v
		case "table":
			if rt.Table, err = tableID(v); err != nil {
				return fail("%v", err)
			}
		case "metric", "preference":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fail("bad metric %q", v)
			}
			rt.Metric = uint32(n)
		case "src":
			if rt.PrefSrc, err = netip.ParseAddr(v); err != nil || !rt.PrefSrc.Is4() {
				return fail("bad src %q", v)
			}
		case "proto":
			rt.Protocol = v
		case "scope":
			s, ok := route.ParseScope(v)
			if !ok {
				return fail("bad scope %q", v)
			}
			rt.Scope, scopeSet = s, true
		default:
			return fail("unknown word %q", k)
		}
	}
	switch rt.Type {
	case route.Unicast, route.Local, route.Broadcast:
		rt.Nexthops = []route.Nexthop{nh}
		if !scopeSet {
			// iproute2's defaults: link for a route without a gateway,
			// host for local
			switch {
			case rt.Type == route.Local:
				rt.Scope = route.ScopeHost
			case rt.Type == route.Broadcast || !nh.Gateway.IsValid():
				rt.Scope = route.ScopeLink
			}
		}
	default:
		if nh.Dev != "" || nh.Gateway.IsValid() {
			return fail("a %s route has no nexthop", rt.Type)
		}
	}
	r.Route, r.Text = rt, string(b)
	return nil
}

func tableID(v string) (uint32, error) {
	if id, ok := route.TableByName(v); ok && id != route.TableUnspec {
		return id, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad table %q (a number, main, local or default)", v)
	}
	return uint32(n), nil
}

// RuleSpec is one `ip rule`.
type RuleSpec struct {
	route.Rule
	Text string
}

// UnmarshalText parses `ip rule add` arguments.
func (r *RuleSpec) UnmarshalText(b []byte) error {
	ru, hasPrio, err := parseRule(string(b))
	if err != nil {
		return err
	}
	if !hasPrio {
		return fmt.Errorf("ip rule %q: give a priority (the order is otherwise that of `ip rule add`)", b)
	}
	r.Rule, r.Text = ru, string(b)
	return nil
}

// parseRule parses `ip rule add` arguments; hasPrio reports whether a
// priority was given.
func parseRule(b string) (ru route.Rule, hasPrio bool, err error) {
	f := strings.Fields(b)
	fail := func(format string, a ...any) (route.Rule, bool, error) {
		return route.Rule{}, false, fmt.Errorf("ip rule %q: %s", b, fmt.Sprintf(format, a...))
	}
	ru = route.Rule{UIDEnd: ^uint32(0), SuppressPrefixLen: -1, SuppressIfgroup: -1}
	for i := 0; i < len(f); i++ {
		k := f[i]
		switch k {
		case "not":
			ru.Not = true
			continue
		case "blackhole":
			ru.Action = route.ActBlackhole
			continue
		case "unreachable":
			ru.Action = route.ActUnreachable
			continue
		case "prohibit":
			ru.Action = route.ActProhibit
			continue
		case "nop":
			ru.Action = route.ActNop
			continue
		}
		if i+1 >= len(f) {
			return fail("%q needs a value", k)
		}
		i++
		v := f[i]
		switch k {
		case "from", "to":
			var p netip.Prefix
			if v != "all" {
				if p, err = parseDst(v); err != nil {
					return fail("%v", err)
				}
			}
			if k == "from" {
				ru.Src = p
			} else {
				ru.Dst = p
			}
		case "iif":
			ru.IIF = v
		case "oif":
			ru.OIF = v
		case "fwmark":
			m, mask, hasMask := strings.Cut(v, "/")
			n, err := strconv.ParseUint(m, 0, 32)
			if err != nil {
				return fail("bad fwmark %q", v)
			}
			ru.Mark, ru.Mask = uint32(n), ^uint32(0)
			if hasMask {
				n, err := strconv.ParseUint(mask, 0, 32)
				if err != nil {
					return fail("bad fwmark mask %q", v)
				}
				ru.Mask = uint32(n)
			}
		case "tos":
			n, err := strconv.ParseUint(v, 0, 8)
			if err != nil {
				return fail("bad tos %q", v)
			}
			ru.TOS = uint8(n)
		case "ipproto":
			n, err := strconv.ParseUint(v, 0, 8)
			if err != nil {
				return fail("bad ipproto %q (a number)", v)
			}
			ru.IPProto = uint8(n)
		case "sport", "dport":
			lo, hi, rng := strings.Cut(v, "-")
			a, err1 := strconv.ParseUint(lo, 10, 16)
			c := a
			var err2 error
			if rng {
				c, err2 = strconv.ParseUint(hi, 10, 16)
			}
			if err1 != nil || err2 != nil || c < a {
				return fail("bad port range %q", v)
			}
			pr := route.PortRange{Start: uint16(a), End: uint16(c)}
			if k == "sport" {
				ru.SPort = pr
			} else {
				ru.DPort = pr
			}
		case "lookup", "table":
			if ru.Table, err = tableID(v); err != nil {
				return fail("%v", err)
			}
			ru.Action = route.ActToTable
		case "goto":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fail("bad goto %q", v)
			}
			ru.Action, ru.Goto = route.ActGoto, uint32(n)
		case "priority", "pref", "preference":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return fail("bad priority %q", v)
			}
			ru.Priority, hasPrio = uint32(n), true
		default:
			return fail("unknown word %q", k)
		}
	}
	if ru.Action == 0 {
		return fail("no action (lookup TABLE, goto PRIO, blackhole, unreachable, prohibit or nop)")
	}
	return ru, hasPrio, nil
}

// ConfigError is a lab file that does not load: the file, the line (0
// when unknown), the key and what is wrong.
type ConfigError struct {
	File string
	Line int
	Key  string
	Err  error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Load reads a lab file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse reads a lab from TOML text; file names it in errors and anchors
// rules_file.
func Parse(file string, data []byte) (*Config, error) {
	c := &Config{File: file}
	src := string(data)
	md, err := toml.Decode(src, c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if strings.HasSuffix(pe.Message, `got '\n' instead`) && line > 1 {
				line-- // the lexer stands on the next line already
			}
			return nil, &ConfigError{File: file, Line: line, Key: pe.LastKey, Err: errors.New(pe.Message)}
		}
		// type mismatches come as "toml: line N (last key "K"): msg"
		if m := decodeErrRe.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return nil, &ConfigError{File: file, Line: n, Key: m[2], Err: errors.New(m[3])}
		}
		return nil, &ConfigError{File: file, Err: err}
	}
	for _, k := range md.Keys() {
		// toml matches a key to a field case-insensitively, and which of
		// [[namespace]] and [[Namespace]] wins is up to map order: every
		// key is lower case, as written here (a sysctl's name is not a key)
		if isSysctlKey(k) {
			continue
		}
		if s := k.String(); s != strings.ToLower(s) {
			return nil, &ConfigError{File: file, Line: keyLine(src, k), Key: s, Err: errors.New("unknown key (keys are lower case)")}
		}
	}
	for _, k := range md.Undecoded() {
		// toml lists the nested keys of a sysctl table as undecoded
		// although they are in its map[string]any (pod_server's too)
		if isSysctlKey(k) || isPodServerKey(k) {
			continue
		}
		return nil, &ConfigError{File: file, Line: keyLine(src, k), Key: k.String(), Err: errors.New("unknown key")}
	}
	if err := c.expandSnapshots(src); err != nil {
		return nil, err
	}
	if err := c.check(src); err != nil {
		return nil, err
	}
	return c, nil
}

// isSysctlKey reports whether k is a sysctl's name inside a sysctl
// table ([uswitch.sysctl], a namespace's, a node's [node.uswitch.sysctl]).
func isSysctlKey(k toml.Key) bool {
	if len(k) > 2 && (k[0] == "uswitch" || k[0] == "namespace") && k[1] == "sysctl" {
		return true
	}
	return len(k) > 3 && k[0] == "node" && k[1] == "uswitch" && k[2] == "sysctl"
}

var decodeErrRe = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// keyLine finds the line where a key is set. toml's MetaData keeps key
// positions private, so this scans the text: table headers set the
// current path, and the first "KEY =" whose full path matches wins;
// failing that (inline tables), the first "LAST =" after the parent's
// header.
func keyLine(src string, k toml.Key) int {
	want := strings.Join(k, ".")
	parent := strings.Join(k[:len(k)-1], ".")
	last := k[len(k)-1]
	var cur string
	fallback, parentLine := 0, 0
	lineRe := regexp.MustCompile(`^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.\-" ]+?)\s*=`)
	for i, ln := range strings.Split(src, "\n") {
		t := strings.TrimSpace(ln)
		if strings.HasPrefix(t, "[") {
			h := strings.Trim(t, "[] \t")
			if j := strings.IndexByte(h, ']'); j >= 0 {
				h = h[:j]
			}
			cur = unquoteKey(h)
			if cur == want {
				return i + 1
			}
			if cur == parent && parentLine == 0 {
				parentLine = i + 1
			}
			continue
		}
		m := lineRe.FindStringSubmatch(ln)
		if m == nil {
			if parentLine > 0 && fallback == 0 && regexp.MustCompile(`[{,]\s*`+regexp.QuoteMeta(last)+`\s*=`).MatchString(ln) {
				fallback = i + 1
			}
			continue
		}
		full := unquoteKey(m[1])
		if cur != "" {
			full = cur + "." + full
		}
		if full == want {
			return i + 1
		}
		if fallback == 0 && parentLine > 0 && strings.HasSuffix(full, "."+last) {
			fallback = i + 1
		}
	}
	return fallback
}

func unquoteKey(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// ifNameRe is what the kernel accepts as a device name (dev_valid_name),
// restricted to a safe set.
var ifNameRe = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,15}$`)

// validDevName is ifNameRe without the two names dev_valid_name
// (net/core/dev.c) refuses although they fit it: "." and "..".
func validDevName(s string) bool { return ifNameRe.MatchString(s) && s != "." && s != ".." }

// check validates what the types could not: names, references between
// sections, the rule set and the sysctls. Errors name the key and line.
// ruleText is the rule set a [uswitch] key gives inline (name) or as a
// file (name_file, relative to the lab file), and the key it came from.
func (c *Config) ruleText(inline, file, name string, fail func(string, string, ...any) error) (string, string, error) {
	if inline != "" && file != "" {
		return "", "", fail("uswitch."+name+"_file", "give %s or %s_file, not both", name, name)
	}
	if file == "" {
		return inline, "uswitch." + name, nil
	}
	key := "uswitch." + name + "_file"
	p := file
	if !filepath.IsAbs(p) && c.File != "" {
		p = filepath.Join(filepath.Dir(c.File), p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", "", fail(key, "%v", err)
	}
	return string(b), key, nil
}

func (c *Config) check(src string) error {
	fail := func(key string, format string, a ...any) error {
		return &ConfigError{File: c.File, Line: valueLine(src, key, a...), Key: key, Err: fmt.Errorf(format, a...)}
	}
	if c.Uswitch.Workers < 0 || c.Uswitch.Workers > 256 {
		return fail("uswitch.workers", "%d: want 0 (one per CPU) to 256", c.Uswitch.Workers)
	}
	if c.Uswitch.Queues < 0 || c.Uswitch.Queues > 256 {
		return fail("uswitch.queues", "%d: want 0 (as many as workers) to 256", c.Uswitch.Queues)
	}
	if len(c.Namespaces) == 0 {
		// an empty file would otherwise load as a lab named "" that
		// makes nothing
		return &ConfigError{File: c.File, Line: 1, Key: "namespace", Err: errors.New("the lab has no [[namespace]] (an empty file is no lab)")}
	}
	ns := map[string]int{}
	for i, n := range c.Namespaces {
		if !validDevName(n.Name) || n.Name == "lo" {
			// `ip netns add` refuses "/", "." and ".."; "lo" would read
			// as the loopback device wherever a namespace and a device
			// name share a place
			return fail("namespace.name", "%q: want 1-15 characters of A-Z a-z 0-9 _ . - (not lo, . or ..)", n.Name)
		}
		if _, dup := ns[n.Name]; dup {
			return fail("namespace.name", "%q appears twice", n.Name)
		}
		ns[n.Name] = i
		if err := checkServers(n.Servers, n.Name, "namespace.server", fail); err != nil {
			return err
		}
	}
	ifs := map[string]bool{}
	attached := map[string]string{}
	for _, it := range c.Interfaces {
		if !validDevName(it.Name) || it.Name == "lo" {
			return fail("interface.name", "%q: want 1-15 characters of A-Z a-z 0-9 _ . - (not lo, . or ..)", it.Name)
		}
		if ifs[it.Name] {
			return fail("interface.name", "%q appears twice", it.Name)
		}
		ifs[it.Name] = true
		if err := it.checkTunnel(c.node != "", fail); err != nil {
			return err
		}
		link := it.Switch != "" || it.Peer != "" || it.Kind.IsTunnel()
		switch {
		case link && c.node == "":
			return fail("interface.name", "%q: switch and peer are for a node's interfaces ([[node.interface]])", it.Name)
		case link && it.Netns != "":
			return fail("interface.netns", "%q: a link to a switch or peer is in no namespace", it.Netns)
		case link && it.Kind.IsTunnel() && (it.Switch != "" || it.Peer != "" || it.Bridge != ""):
			return fail("interface.kind", "%q: a tunnel device is no switch, peer or bridge port", it.Kind)
		case link && len(it.Addresses) == 0 && it.Peer != "":
			return fail("interface.peer", "%q: a routed link needs addresses", it.Peer)
		case link:
		default:
			if _, ok := ns[it.Netns]; !ok {
				return fail("interface.netns", "%q: no [[namespace]] of that name", it.Netns)
			}
			if o, dup := attached[it.Netns]; dup {
				return fail("interface.netns", "%q already has interface %q (one TUN per namespace)", it.Netns, o)
			}
			attached[it.Netns] = it.Name
		}
		if it.MTU != 0 && (it.MTU < 576 || it.MTU > 65535) {
			return fail("interface.mtu", "%d: want 576-65535", it.MTU)
		}
		if it.MAC.Set && it.Kind != KindTAP && it.Kind != KindVXLAN {
			return fail("interface.mac", "%q: only a kind = \"tap\" or \"vxlan\" interface has a MAC address", it.MAC.String())
		}
		if it.Offload != nil && *it.Offload && it.Kind == KindTAP {
			return fail("interface.offload", "%q: a kind = \"tap\" interface has no offloads", it.Name)
		}
		if it.Hairpin && it.Bridge == "" {
			return fail("interface.hairpin", "%q: hairpin is for a bridge port (bridge = ...)", it.Name)
		}
		if it.Bridge != "" {
			if it.Kind != KindTAP {
				return fail("interface.bridge", "%q: a bridge port is a kind = \"tap\" interface", it.Bridge)
			}
			if len(it.Addresses) > 0 {
				return fail("interface.addresses", "%q: a bridge port has no addresses (give them to the [[bridge]])", it.Name)
			}
			found := false
			for _, b := range c.Bridges {
				found = found || b.Name == it.Bridge
			}
			if !found {
				return fail("interface.bridge", "%q: no [[bridge]] of that name", it.Bridge)
			}
		}
	}
	for _, b := range c.Bridges {
		if !validDevName(b.Name) || b.Name == "lo" {
			return fail("bridge.name", "%q: want 1-15 characters of A-Z a-z 0-9 _ . - (not lo, . or ..)", b.Name)
		}
		if ifs[b.Name] {
			return fail("bridge.name", "%q is also an interface's name, or appears twice", b.Name)
		}
		ifs[b.Name] = true
		if b.AgeingTime != nil && (*b.AgeingTime < 0 || *b.AgeingTime > 1000000) {
			return fail("bridge.ageing_time", "%d: want 0 to 1000000 seconds", *b.AgeingTime)
		}
	}
	for _, d := range c.Dummies {
		if !validDevName(d.Name) || d.Name == "lo" {
			return fail("dummy.name", "%q: want 1-15 characters of A-Z a-z 0-9 _ . - (not lo, . or ..)", d.Name)
		}
		if ifs[d.Name] {
			return fail("dummy.name", "%q is also an interface's or bridge's name, or appears twice", d.Name)
		}
		ifs[d.Name] = true
		if len(d.Addresses) == 0 {
			return fail("dummy.name", "%q: a dummy device is there for its addresses: give addresses", d.Name)
		}
	}
	if c.node != "" {
		// a node's engine: its own devices' addresses; the lab
		// checks its namespaces
		if err := c.checkAddresses(src); err != nil {
			return err
		}
	} else {
		if err := c.checkNodes(src, ns, attached, ifs); err != nil {
			return err
		}
		for _, n := range c.Namespaces {
			if _, ok := attached[n.Name]; !ok && len(n.Addresses) > 0 {
				return fail("namespace.addresses", "%q has addresses but no [[interface]] attaches it", n.Name)
			}
		}
		if err := c.checkTopology(src, ns, attached); err != nil {
			return err
		}
	}
	for _, r := range c.Uswitch.Routes {
		for _, nh := range r.Nexthops {
			if nh.Dev != "" && !ifs[nh.Dev] && nh.Dev != "lo" {
				return fail("uswitch.routes", "%q: no interface %q", r.Text, nh.Dev)
			}
		}
	}
	for i := range c.Demo {
		d := &c.Demo[i]
		if d.IPTablesRestoreFile != "" {
			if d.IPTablesRestore != "" {
				return fail("demo.iptables_restore_file", "%q: give iptables_restore or iptables_restore_file, not both", d.IPTablesRestoreFile)
			}
			text, _, err := c.ruleText("", d.IPTablesRestoreFile, "x", func(_ string, format string, a ...any) error {
				return fail("demo.iptables_restore_file", format, a...)
			})
			if err != nil {
				return err
			}
			d.IPTablesRestore = text
		}
	}
	for i, d := range c.Demo {
		n := 0
		for _, v := range []string{d.HTTP, d.Ping, d.UDP, d.TCP} {
			if v != "" {
				n++
			}
		}
		if d.Node != "" && c.Node(d.Node) == nil {
			return fail("demo.node", "%q: no [[node]] of that name", d.Node)
		}
		if d.Node != "" && d.IPTablesRestore == "" && len(d.Sysctl) == 0 && d.Server == nil {
			return fail("demo.node", "%q: node names the engine of an iptables_restore or sysctl step, or the host of a server step", d.Node)
		}
		for k, v := range d.Sysctl {
			if !demoSysctl.MatchString(k) {
				return fail("demo.sysctl", "%q: a demo step can change ip_forward, net.ipv4.conf.{all,DEV}.{route_localnet,rp_filter,accept_local,src_valid_mark,send_redirects,forwarding}, net.bridge.bridge-nf-call-iptables, nf_conntrack_tcp_be_liberal, nf_conntrack_tcp_loose, nf_conntrack_max", k)
			}
			if _, ok := sysctlValue(v); !ok {
				return fail("demo.sysctl", "%q: %v: want a number or a boolean", k, v)
			}
		}
		if d.Server != nil {
			if d.Node == "" {
				return fail("demo.server", "%q: a server step names the node whose host runs it (node = ...)", d.Server.Kind)
			}
			if err := checkServers([]Server{*d.Server}, d.Node, "demo.server", fail); err != nil {
				return err
			}
			if findServer(c.Node(d.Node).Servers, *d.Server) < 0 {
				return fail("demo.server", "%q: node %q has no %s server on port %d to replace", d.Server.Kind, d.Node, d.Server.Kind, d.Server.Port)
			}
		}
		if d.IPTablesRestore != "" {
			if err := c.checkDemoRestore(src, i, d); err != nil {
				return err
			}
		}
		if d.IPTablesRestore != "" || len(d.Sysctl) > 0 || d.Server != nil {
			if n == 0 && d.From == "" {
				continue // a rule swap, sysctl or server change only
			}
		}
		if _, ok := ns[d.From]; !ok {
			return fail("demo.from", "%q: no [[namespace]] of that name", d.From)
		}
		if n != 1 {
			return fail("demo.from", "%q: a demo step has exactly one of http, ping, udp, tcp", d.From)
		}
		if d.Ping != "" {
			if a, err := netip.ParseAddr(d.Ping); err != nil || !a.Is4() {
				return fail("demo.ping", "%q: want an IPv4 address", d.Ping)
			}
		}
		if d.Count < 0 || d.Count > 1000 {
			return fail("demo.count", "%d: want 0-1000", d.Count)
		}
		if d.Src.IsValid() && (d.Ping != "" || d.TCP != "") {
			return fail("demo.src", "%v: src is for http and udp steps", d.Src)
		}
		if d.ExpectRefused && (d.TCP == "" || d.ExpectFail) {
			return fail("demo.expect_refused", "%v: only a tcp step without expect_fail can expect a refusal", d.ExpectRefused)
		}
	}
	text, key, err := c.ruleText(c.Uswitch.Rules, c.Uswitch.RulesFile, "rules", fail)
	if err != nil {
		return err
	}
	ld := &iptables.Loader{}
	if c.Uswitch.IPSet != "" {
		sets, err := iptables.ParseIPSetSave(strings.NewReader(c.Uswitch.IPSet), "ipset")
		if err != nil {
			return fail("uswitch.ipset", "%v", err)
		}
		c.Sets, ld.Sets = sets, sets
	}
	rs, err := ld.LoadString(text)
	if err != nil {
		var re *iptables.RestoreError
		if errors.As(err, &re) && key == "uswitch.rules" {
			// the text starts on the line after `rules = """`
			if l := keyLine(src, toml.Key{"uswitch", "rules"}); l > 0 && re.Line > 0 {
				return &ConfigError{File: c.File, Line: l + re.Line, Key: key, Err: fmt.Errorf("rule set line %d: %s", re.Line, re.Msg)}
			}
		}
		return fail(key, "%v", err)
	}
	c.Ruleset = rs
	etext, ekey, err := c.ruleText(c.Uswitch.Ebtables, c.Uswitch.EbtablesFile, "ebtables", fail)
	if err != nil {
		return err
	}
	if strings.TrimSpace(etext) != "" {
		ers, rerr := (&ebtables.Loader{}).Load(etext)
		if rerr != nil {
			if l := keyLine(src, toml.Key{"uswitch", "ebtables"}); l > 0 && rerr.Line > 0 && ekey == "uswitch.ebtables" {
				return &ConfigError{File: c.File, Line: l + rerr.Line, Key: ekey, Err: fmt.Errorf("rule set line %d: %s", rerr.Line, strings.TrimSpace(rerr.Stderr))}
			}
			return fail(ekey, "%s", strings.TrimSpace(rerr.Stderr))
		}
		c.Ebtables = ers
	}
	if err := c.checkIPVS(src); err != nil {
		return err
	}
	sc, err := parseSysctls(c.Uswitch.Sysctl)
	if err != nil {
		var se *sysctlError
		if errors.As(err, &se) {
			return &ConfigError{File: c.File, Line: keyLine(src, append(toml.Key{"uswitch", "sysctl"}, strings.Split(se.key, ".")...)), Key: "uswitch.sysctl." + se.key, Err: se.err}
		}
		return fail("uswitch.sysctl", "%v", err)
	}
	c.Sysctl = sc
	if _, err := c.fibConfig(nil); err != nil {
		return fail("uswitch.routes", "%v", err)
	}
	if err := c.checkExperiment(src); err != nil {
		return err
	}
	return c.checkFaults(src)
}

// demoSysctl are the sysctls a demo step may change: those a running
// engine follows (faulthost.Host.Sysctl).
var demoSysctl = regexp.MustCompile(`^(net\.ipv4\.ip_forward|net\.ipv4\.conf\.[^.]+\.(route_localnet|rp_filter|accept_local|src_valid_mark|send_redirects|forwarding)|` +
	`net\.bridge\.bridge-nf-call-iptables|net\.netfilter\.nf_conntrack_(tcp_be_liberal|tcp_loose|max))$`)

// sysctlValue is a demo sysctl's value as `sysctl -w` takes it.
func sysctlValue(v any) (string, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return "1", true
		}
		return "0", true
	case int64:
		return strconv.FormatInt(x, 10), x >= 0
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return x, err == nil && n >= 0
	}
	return "", false
}

// DemoDuration is a demo step's timeout: a Go duration, 1ms to 5m.
type DemoDuration struct{ D time.Duration }

// UnmarshalText parses the duration.
func (d *DemoDuration) UnmarshalText(b []byte) error {
	x, err := time.ParseDuration(string(b))
	if err != nil || x < time.Millisecond || x > 5*time.Minute {
		return fmt.Errorf("timeout %q: want a duration from 1ms to 5m (\"10s\")", b)
	}
	d.D = x
	return nil
}

// findServer is the index of the server in ss with s's protocol and
// port (-1: none).
func findServer(ss []Server, s Server) int {
	for i, x := range ss {
		if x.Port == s.Port && (x.Kind == UDPEcho) == (s.Kind == UDPEcho) {
			return i
		}
	}
	return -1
}

// checkDemoRestore loads a demo step's iptables_restore input as the
// step would (the engine's sets: the node's or the lab's), so a lab whose
// demo would fail to swap its rules does not load.
func (c *Config) checkDemoRestore(src string, i int, d Demo) error {
	sets := c.Sets
	if n := c.Node(d.Node); n != nil && n.Engine != nil {
		sets = n.Engine.Sets
	}
	if _, err := (&iptables.Loader{Sets: sets}).LoadString(d.IPTablesRestore); err != nil {
		var re *iptables.RestoreError
		if d.IPTablesRestoreFile != "" {
			// the file's own line
			p := d.IPTablesRestoreFile
			if !filepath.IsAbs(p) && c.File != "" {
				p = filepath.Join(filepath.Dir(c.File), p)
			}
			if errors.As(err, &re) {
				return &ConfigError{File: p, Line: re.Line, Key: "demo.iptables_restore_file", Err: errors.New(re.Msg)}
			}
			return &ConfigError{File: p, Key: "demo.iptables_restore_file", Err: err}
		}
		line := blockValueLine(src, "demo", i, "iptables_restore", "")
		if errors.As(err, &re) && line > 0 && re.Line > 0 {
			return &ConfigError{File: c.File, Line: line + re.Line, Key: "demo.iptables_restore", Err: fmt.Errorf("rule set line %d: %s", re.Line, re.Msg)}
		}
		return &ConfigError{File: c.File, Line: line, Key: "demo.iptables_restore", Err: err}
	}
	return nil
}

// valueLine finds the line of a key, preferring one whose line shows the
// first quoted argument (the bad value) when there is one.
func valueLine(src, key string, a ...any) int {
	k := toml.Key(strings.Split(key, "."))
	if len(a) > 0 {
		var v string
		switch x := a[0].(type) {
		case string:
			v = x
		case int, uint16, PortValue:
			v = fmt.Sprint(x)
		}
		if v != "" {
			last := k[len(k)-1]
			re := regexp.MustCompile(`(^|[\s{,])` + regexp.QuoteMeta(last) + `\s*=\s*.*` + regexp.QuoteMeta(v))
			for i, ln := range strings.Split(src, "\n") {
				if re.MatchString(ln) {
					return i + 1
				}
			}
			if len(k) > 1 {
				// a value in an array: the line holding it
				for i, ln := range strings.Split(src, "\n") {
					if strings.Contains(ln, `"`+v+`"`) {
						return i + 1
					}
				}
			}
		}
	}
	return keyLine(src, k)
}

// Names lists what the lab makes, for Down: namespaces and interfaces.
func (c *Config) Names() (namespaces, interfaces []string) {
	for _, n := range c.Namespaces {
		namespaces = append(namespaces, n.Name)
	}
	for _, it := range c.Interfaces {
		interfaces = append(interfaces, it.Name)
	}
	for _, n := range c.Nodes {
		namespaces = append(namespaces, n.HostNetns)
		for _, it := range n.Interfaces {
			interfaces = append(interfaces, n.Name+":"+it.Name)
		}
	}
	sort.Strings(namespaces)
	sort.Strings(interfaces)
	return namespaces, interfaces
}

// iface returns the interface attached to a namespace, or nil.
func (c *Config) iface(ns string) *Interface {
	for i := range c.Interfaces {
		if c.Interfaces[i].Netns == ns {
			return &c.Interfaces[i]
		}
	}
	return nil
}

// Rename returns a copy of the config whose namespace names are changed
// by the function. Interface names stay: each TUN lives inside its own
// namespace, so they never clash with another lab's. Tests use it to run
// labs with unique names.
func (c *Config) Rename(ns func(string) string) *Config {
	d := *c
	d.Namespaces = append([]Namespace(nil), c.Namespaces...)
	d.Interfaces = append([]Interface(nil), c.Interfaces...)
	d.Demo = append([]Demo(nil), c.Demo...)
	d.Links = append([]Link(nil), c.Links...)
	for i := range d.Links {
		d.Links[i].ANetns = ns(d.Links[i].ANetns)
		d.Links[i].BNetns = ns(d.Links[i].BNetns)
	}
	for i := range d.Demo {
		d.Demo[i].From = ns(d.Demo[i].From)
	}
	d.Workloads = append([]Workload(nil), c.Workloads...)
	for i := range d.Workloads {
		d.Workloads[i].From = ns(d.Workloads[i].From)
		if d.Workloads[i].Listen != "" {
			d.Workloads[i].Listen = ns(d.Workloads[i].Listen)
		}
	}
	if c.NFQueue != nil {
		q := *c.NFQueue
		q.Netns = ns(q.Netns)
		d.NFQueue = &q
	}
	d.Steps = append([]Step(nil), c.Steps...)
	for i := range d.Steps {
		if n, port, ok := strings.Cut(d.Steps[i].StopServer, ":"); ok {
			d.Steps[i].StopServer = ns(n) + ":" + port
		}
	}
	for i := range d.Namespaces {
		d.Namespaces[i].Name = ns(d.Namespaces[i].Name)
	}
	for i := range d.Interfaces {
		d.Interfaces[i].Netns = ns(d.Interfaces[i].Netns)
	}
	d.Nodes = append([]Node(nil), c.Nodes...)
	for i := range d.Nodes {
		n := &d.Nodes[i]
		n.HostNetns = ns(n.HostNetns)
		n.Interfaces = append([]Interface(nil), n.Interfaces...)
		n.SnapshotPods = append([]SnapshotPod(nil), n.SnapshotPods...)
		for j := range n.SnapshotPods {
			n.SnapshotPods[j].Netns = ns(n.SnapshotPods[j].Netns)
		}
		for j := range n.Interfaces {
			if n.Interfaces[j].Netns != "" {
				n.Interfaces[j].Netns = ns(n.Interfaces[j].Netns)
			}
		}
		if n.Engine != nil {
			e := *n.Engine
			e.Interfaces, e.Namespaces = n.Interfaces, d.Namespaces
			n.Engine = &e
		}
	}
	return &d
}

// checkIPVS reads the IPVS table and applies it to a scratch director,
// so a lab whose table ipvsadm would refuse does not come up.
func (c *Config) checkIPVS(src string) error {
	if c.Uswitch.IPVS != "" && c.Uswitch.IPVSFile != "" {
		return &ConfigError{File: c.File, Line: keyLine(src, toml.Key{"uswitch", "ipvs_file"}), Key: "uswitch.ipvs_file", Err: errors.New("give ipvs or ipvs_file, not both")}
	}
	text, key, name := c.Uswitch.IPVS, "uswitch.ipvs", "ipvs"
	if c.Uswitch.IPVSFile != "" {
		key, name = "uswitch.ipvs_file", c.Uswitch.IPVSFile
		p := c.Uswitch.IPVSFile
		if !filepath.IsAbs(p) && c.File != "" {
			p = filepath.Join(filepath.Dir(c.File), p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return &ConfigError{File: c.File, Line: keyLine(src, toml.Key{"uswitch", "ipvs_file"}), Key: key, Err: err}
		}
		text = string(b)
	}
	if text == "" {
		return nil
	}
	line := keyLine(src, toml.Key{"uswitch", strings.TrimPrefix(key, "uswitch.")})
	rl, err := lvs.ParseRules(strings.NewReader(text), name)
	if err == nil {
		err = lvs.ApplyRules(lvs.NewDirector(), rl, name)
	}
	if err != nil {
		var re *lvs.RuleError
		if errors.As(err, &re) && key == "uswitch.ipvs" && line > 0 && re.Line > 0 {
			// the text starts on the line after `ipvs = """`
			return &ConfigError{File: c.File, Line: line + re.Line, Key: key, Err: fmt.Errorf("ipvsadm line %d: %v: %s", re.Line, re.Err, re.Text)}
		}
		return &ConfigError{File: c.File, Line: line, Key: key, Err: err}
	}
	c.IPVSRules = rl
	return nil
}

// Director makes the lab's IPVS: the configured table and the
// net.ipv4.vs.* sysctls (an empty director when the lab has none, so
// `uswitch ipvsadm -A ...` can add services to the running lab).
func (c *Config) Director() (*lvs.Director, error) {
	d := lvs.NewDirector()
	if c.Sysctl.Sysctl.Conf != nil {
		d.SetSysctls(c.Sysctl.Sysctl.IPVS)
	}
	if len(c.IPVSRules) > 0 {
		if err := d.Bulk(func() error { return lvs.ApplyRules(d, c.IPVSRules, "ipvs") }); err != nil {
			return nil, err
		}
	}
	return d, nil
}
