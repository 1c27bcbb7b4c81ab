// Package route is Linux IPv4 policy routing: the rule walk of
// net/core/fib_rules.c and net/ipv4/fib_rules.c, the per-table longest
// prefix match of net/ipv4/fib_trie.c with the route properties of
// net/ipv4/fib_semantics.c, and the input and output route decisions of
// net/ipv4/route.c (ip_route_input_slow, ip_route_output_key_hash_rcu),
// including source address selection (inet_select_addr,
// net/ipv4/devinet.c) and the address type lookup xt_addrtype uses.
//
// A FIB is built once from links, addresses, routes, rules and the
// per-device sysctls (New) and is immutable afterwards: any number of
// goroutines may look up routes in it concurrently. A lookup allocates
// nothing.
//
//	          Input(flow)                         Output(flow)
//	martians (route.c ip_route_input_slow)   saddr checks, oif shortcuts
//	               \                              /
//	                +------- fibLookup -----------+
//	                        rule walk (fib_rules_lookup)
//	                          -> table lookup (fib_table_lookup)
//	               /                              \
//	local / broadcast / forward              fib_select_path, source
//	fib_validate_source (rp_filter)          selection, __mkroute_output
package route

import (
	"fmt"
	"net/netip"
	"syscall"
)

// Type is a route type, numbered as RTN_* in include/uapi/linux/rtnetlink.h.
type Type uint8

// The route types.
const (
	Unspec      Type = 0
	Unicast     Type = 1
	Local       Type = 2
	Broadcast   Type = 3
	Anycast     Type = 4
	Multicast   Type = 5
	Blackhole   Type = 6
	Unreachable Type = 7
	Prohibit    Type = 8
	Throw       Type = 9
	NAT         Type = 10
	XResolve    Type = 11
)

var typeNames = [...]string{"unspec", "unicast", "local", "broadcast", "anycast", "multicast",
	"blackhole", "unreachable", "prohibit", "throw", "nat", "xresolve"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type%d", uint8(t))
}

// ParseType reads a route type as iproute2 prints it.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if n == s {
			return Type(i), true
		}
	}
	return 0, false
}

// typeError is fib_props[type].error (net/ipv4/fib_semantics.c): the
// table lookup result of a route of that type.
func typeError(t Type) syscall.Errno {
	switch t {
	case Blackhole, NAT, XResolve:
		return syscall.EINVAL
	case Unreachable:
		return syscall.EHOSTUNREACH
	case Prohibit:
		return syscall.EACCES
	case Throw:
		return syscall.EAGAIN
	}
	return 0
}

// Scope is a route or address scope (RT_SCOPE_*): smaller is wider.
type Scope uint8

// The scopes.
const (
	ScopeUniverse Scope = 0
	ScopeSite     Scope = 200
	ScopeLink     Scope = 253
	ScopeHost     Scope = 254
	ScopeNowhere  Scope = 255
)

func (s Scope) String() string {
	switch s {
	case ScopeUniverse:
		return "global"
	case ScopeSite:
		return "site"
	case ScopeLink:
		return "link"
	case ScopeHost:
		return "host"
	case ScopeNowhere:
		return "nowhere"
	}
	return fmt.Sprint(uint8(s))
}

// ParseScope reads a scope as iproute2 prints it ("global", "link", a number).
func ParseScope(s string) (Scope, bool) {
	switch s {
	case "global", "universe":
		return ScopeUniverse, true
	case "site":
		return ScopeSite, true
	case "link":
		return ScopeLink, true
	case "host":
		return ScopeHost, true
	case "nowhere":
		return ScopeNowhere, true
	}
	var n uint8
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		return Scope(n), true
	}
	return 0, false
}

// Well-known table ids (include/uapi/linux/rtnetlink.h).
const (
	TableUnspec  uint32 = 0
	TableCompat  uint32 = 252
	TableDefault uint32 = 253
	TableMain    uint32 = 254
	TableLocal   uint32 = 255
)

// TableByName is the id of a table's name in /etc/iproute2/rt_tables'
// reserved set: main, local, default, unspec.
func TableByName(name string) (uint32, bool) {
	switch name {
	case "main":
		return TableMain, true
	case "local":
		return TableLocal, true
	case "default":
		return TableDefault, true
	case "unspec":
		return TableUnspec, true
	}
	return 0, false
}

// Nexthop is one path of a route.
type Nexthop struct {
	Gateway netip.Addr // invalid = directly connected
	Dev     string     // output device name ("" only for reject routes)
	Weight  int        // multipath weight, 1 if unset
	OnLink  bool       // "onlink": gateway assumed on the link
	Dead    bool       // RTNH_F_DEAD: never chosen (fib_lookup_good_nhc)
	// LinkDown is RTNH_F_LINKDOWN: the device has no carrier. Only
	// `ip route show` prints it; lookups still use the nexthop (with
	// ignore_routes_with_linkdown off, the default).
	LinkDown bool
}

// Route is one route of one table, as `ip route` shows it.
type Route struct {
	Table    uint32
	Type     Type
	Dst      netip.Prefix // masked; 0.0.0.0/0 for "default"
	TOS      uint8        // 0 = any
	Metric   uint32       // priority: lower wins among equal prefix and tos
	Scope    Scope
	Protocol string // "kernel", "boot", "static", a number...
	PrefSrc  netip.Addr
	// Nexthops holds one entry for a single-path route, several for a
	// multipath route, none for reject types (blackhole, unreachable,
	// prohibit, throw).
	Nexthops []Nexthop
}

// Action is what a rule does when it matches (FR_ACT_*).
type Action uint8

// The rule actions.
const (
	ActToTable     Action = 1 // lookup TABLE
	ActGoto        Action = 2 // goto PREF
	ActNop         Action = 3
	ActBlackhole   Action = 6
	ActUnreachable Action = 7
	ActProhibit    Action = 8
)

func (a Action) String() string {
	switch a {
	case ActToTable:
		return "lookup"
	case ActGoto:
		return "goto"
	case ActNop:
		return "nop"
	case ActBlackhole:
		return "blackhole"
	case ActUnreachable:
		return "unreachable"
	case ActProhibit:
		return "prohibit"
	}
	return fmt.Sprintf("action%d", uint8(a))
}

// PortRange is an inclusive port range; the zero value means unset.
type PortRange struct{ Start, End uint16 }

// IsSet reports whether the range selects anything (fib_rule_port_range_set).
func (r PortRange) IsSet() bool { return r.Start != 0 || r.End != 0 }

// Rule is one policy routing rule, as `ip rule` shows it.
type Rule struct {
	Priority uint32
	Not      bool
	Src      netip.Prefix // invalid = from all
	Dst      netip.Prefix // invalid = to all
	IIF      string       // "" = any
	OIF      string       // "" = any
	Mark     uint32
	Mask     uint32 // with Mark: (mark ^ Mark) & Mask == 0
	TOS      uint8  // 0 = any; matched on the legacy TOS bits
	DSCP     uint8  // dscp selector (6-bit DSCP), HasDSCP set
	HasDSCP  bool
	IPProto  uint8
	SPort    PortRange
	DPort    PortRange
	UIDStart uint32
	UIDEnd   uint32 // UIDStart=0, UIDEnd=0xffffffff when unset
	L3mdev   bool
	Action   Action
	Table    uint32 // ActToTable
	Goto     uint32 // ActGoto target priority
	// SuppressPrefixLen is suppress_prefixlength, -1 when unset.
	SuppressPrefixLen int
	// SuppressIfgroup is suppress_ifgroup, -1 when unset.
	SuppressIfgroup int
}

// DefaultRules are the three rules a fresh namespace has
// (net/ipv4/fib_rules.c fib_default_rules_init).
func DefaultRules() []Rule {
	mk := func(pref, table uint32) Rule {
		return Rule{Priority: pref, Mask: 0, UIDEnd: ^uint32(0), Action: ActToTable, Table: table,
			SuppressPrefixLen: -1, SuppressIfgroup: -1}
	}
	return []Rule{mk(0, TableLocal), mk(32766, TableMain), mk(32767, TableDefault)}
}

// Addr is one IPv4 address of an interface (`ip addr`).
type Addr struct {
	Ifindex   int
	Dev       string
	Local     netip.Addr   // ifa_local
	Prefix    netip.Prefix // ifa_address/prefixlen (the peer on point-to-point)
	Broadcast netip.Addr
	Scope     Scope
	Secondary bool
	Label     string
}

// Link is a network interface (`ip link`).
type Link struct {
	Name      string
	Index     int
	Up        bool
	Loopback  bool
	Multicast bool
	MTU       int
	Master    string
	Group     uint32
}

// DevConf is the part of net.ipv4.conf.{all,DEV} routing reads.
type DevConf struct {
	Forwarding    bool
	RPFilter      int // 0 off, 1 strict, 2 loose
	RouteLocalnet bool
	AcceptLocal   bool
	SrcValidMark  bool
	SendRedirects bool
	// AcceptSourceRoute is accept_source_route: packets with a loose or
	// strict source route option are accepted only when "all" and the
	// input device both have it (IN_DEV_SOURCE_ROUTE).
	AcceptSourceRoute bool
}

// DefaultDevConf is what a new namespace has (net/ipv4/devinet.c
// ipv4_devconf). A new device's accept_source_route is 1
// (ipv4_devconf_dflt) while "all" has 0, so source routes are refused
// either way; DefaultDevConf leaves it off.
func DefaultDevConf() DevConf { return DevConf{SendRedirects: true} }

// Config is everything a FIB is built from.
type Config struct {
	Links  []Link
	Addrs  []Addr
	Routes []Route
	// Rules in priority order as `ip rule` lists them; nil means
	// DefaultRules.
	Rules []Rule
	// All is net.ipv4.conf.all; Dev holds net.ipv4.conf.DEV by device
	// name (missing = DefaultDevConf).
	All DevConf
	Dev map[string]DevConf
	// MultipathHashPolicy is net.ipv4.fib_multipath_hash_policy: 0 L3,
	// 1 L4, 2 L3 or inner L3, 3 the fields of MultipathHashFields.
	MultipathHashPolicy int
	// MultipathHashSeed is net.ipv4.fib_multipath_hash_seed. With 0 (the
	// default) the kernel hashes with a seed drawn at boot, which no
	// snapshot shows: uswitch then hashes with seed 0 and its nexthop
	// choices are its own; set a seed to have the kernel's.
	MultipathHashSeed uint32
	// MultipathHashFields is net.ipv4.fib_multipath_hash_fields (policy
	// 3); 0 means the default 0x0007 (source, destination, protocol).
	MultipathHashFields uint32
	// MultipathUseNeigh is net.ipv4.fib_multipath_use_neigh: skip a
	// gateway whose neighbour entry (in Neighbours) is not valid.
	MultipathUseNeigh bool
	// Neighbours are the neighbour entries fib_multipath_use_neigh
	// consults (`ip neigh`); a gateway without one counts as reachable.
	Neighbours []Neighbour
}

// Neighbour is one neighbour entry as fib_good_nh sees it.
type Neighbour struct {
	Dev  string
	Addr netip.Addr
	// Valid is nud_state & NUD_VALID: PERMANENT, NOARP, REACHABLE,
	// PROBE, STALE or DELAY (not INCOMPLETE, FAILED or NONE).
	Valid bool
}
