package route

import (
	"fmt"

	"github.com/uswitch-lab/uswitch/internal/kernhash"
	"net/netip"
	"slices"
	"sort"
	"syscall"
)

// FIB is an immutable routing state: links, addresses, tables and rules
// resolved to indexes. Build it with New; all methods are safe for
// concurrent use and allocate nothing.
type FIB struct {
	links    []linkInfo // by ifindex; links[i].index == 0 for holes
	byName   map[string]int
	loIndex  int
	all      DevConf
	tables   map[uint32]*table
	rules    []fibRule
	addrs    []addrInfo       // every address, in device then list order
	localSet map[uint32]int32 // ifa_local -> index into addrs (inet_lookup_ifaddr_rcu)
	mpPolicy int
	mpFields uint32              // fib_multipath_hash_fields
	mpKey    kernhash.SiphashKey // fib_multipath_hash_construct_key of the seed
	// badNeigh: with fib_multipath_use_neigh, the gateways whose
	// neighbour entry is not NUD_VALID (nil when the sysctl is off)
	badNeigh map[neighKey]bool

	// customRules is net->ipv4.fib_has_custom_rules: the rule list is
	// not the default three (fib_validate_source takes the full check).
	customRules bool
	// customLocal is fib_has_custom_local_routes: a local-type route
	// added by a user rather than by the kernel (fib_frontend.c).
	customLocal bool

	cfg Config

	// l4Keyed: a rule selects by ipproto/sport/dport, or multipath
	// hashes L4: the input cache must key on them
	l4Keyed bool
	// icache remembers input route decisions (the FIB is immutable, so
	// a decision never goes stale; a new FIB starts empty)
	icache routeCache
}

type linkInfo struct {
	Link
	index  int
	conf   DevConf // effective per-device conf (not combined with all)
	addrs  []int32 // indexes into FIB.addrs, ifa_list order
	master int
}

type addrInfo struct {
	Addr
	local uint32
	net   uint32 // ifa_address masked
	mask  uint32
}

// nh is a compiled nexthop.
type nh struct {
	gw     uint32
	hasGW  bool
	dev    int
	scope  Scope // nhc_scope: host for direct, link for a gateway
	dead   bool
	weight int
	upper  int32 // fib_rebalance upper bound
}

// alias is one route at one prefix (struct fib_alias + fib_info).
type alias struct {
	r       *Route
	typ     Type
	tos     uint8
	metric  uint32
	scope   Scope
	prefsrc uint32
	nhs     []nh
	seq     int // insertion order for a stable sort
}

// table is one routing table: for each prefix length present, the
// masked prefixes mapped to their aliases sorted as fib_find_alias keeps
// them (tos descending, then metric ascending).
type table struct {
	id      uint32
	lens    []int // prefix lengths present, longest first
	byLen   [33]map[uint32][]alias
	nDflt   int
	hasRefs bool
}

type fibRule struct {
	Rule
	iif, oif   int // 0 = any, -1 = detached (never matches)
	src, dst   uint32
	smask      uint32
	dmask      uint32
	target     int // goto: index of the target rule, -1 unresolved
	hasTable   bool
	tableIndex *table
}

func mask(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

func u32(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ConfigError is a Config that cannot be built: Kind is "link",
// "address" or "route" and Index the entry in that Config slice.
type ConfigError struct {
	Kind  string
	Index int
	Err   error
}

func (e *ConfigError) Error() string { return fmt.Sprintf("%s %d: %v", e.Kind, e.Index, e.Err) }

func (e *ConfigError) Unwrap() error { return e.Err }

// New builds a FIB. It fails on a route or address naming an unknown
// device or a prefix that is not IPv4.
func New(cfg Config) (*FIB, error) {
	f := &FIB{byName: map[string]int{}, tables: map[uint32]*table{}, localSet: map[uint32]int32{},
		all: cfg.All, mpPolicy: cfg.MultipathHashPolicy, cfg: cfg}
	f.mpFields = cfg.MultipathHashFields
	if f.mpFields == 0 {
		f.mpFields = mpFieldsDefault
	}
	s := uint64(cfg.MultipathHashSeed)
	f.mpKey = kernhash.SiphashKey{s<<32 | s, s<<32 | s}
	if cfg.MultipathUseNeigh {
		f.badNeigh = map[neighKey]bool{}
	}
	maxIdx := 0
	for i, l := range cfg.Links {
		if l.Index <= 0 {
			return nil, &ConfigError{"link", i, fmt.Errorf("link %q: bad ifindex %d", l.Name, l.Index)}
		}
		maxIdx = max(maxIdx, l.Index)
	}
	f.links = make([]linkInfo, maxIdx+1)
	for i, l := range cfg.Links {
		if f.links[l.Index].index != 0 {
			return nil, &ConfigError{"link", i, fmt.Errorf("link %q: ifindex %d used twice", l.Name, l.Index)}
		}
		conf, ok := cfg.Dev[l.Name]
		if !ok {
			conf = DefaultDevConf()
		}
		f.links[l.Index] = linkInfo{Link: l, index: l.Index, conf: conf}
		f.byName[l.Name] = l.Index
		if l.Loopback && f.loIndex == 0 {
			f.loIndex = l.Index
		}
	}
	for i := range f.links {
		if m := f.links[i].Master; m != "" {
			f.links[i].master = f.byName[m]
		}
	}
	for i, a := range cfg.Addrs {
		if !a.Local.Is4() {
			continue
		}
		idx := a.Ifindex
		if idx == 0 {
			idx = f.byName[a.Dev]
		}
		if idx <= 0 || idx >= len(f.links) || f.links[idx].index == 0 {
			return nil, &ConfigError{"address", i, fmt.Errorf("address %v: unknown device %q (ifindex %d)", a.Local, a.Dev, a.Ifindex)}
		}
		a.Ifindex, a.Dev = idx, f.links[idx].Name
		p := a.Prefix
		if !p.IsValid() {
			p = netip.PrefixFrom(a.Local, 32)
		}
		ai := addrInfo{Addr: a, local: u32(a.Local), mask: mask(p.Bits())}
		ai.net = u32(p.Addr()) & ai.mask
		n := int32(len(f.addrs))
		f.addrs = append(f.addrs, ai)
		f.links[idx].addrs = append(f.links[idx].addrs, n)
		if _, dup := f.localSet[ai.local]; !dup {
			f.localSet[ai.local] = n
		}
	}
	if f.badNeigh != nil {
		for _, n := range cfg.Neighbours {
			if d := f.byName[n.Dev]; d != 0 && n.Addr.Is4() && !n.Valid {
				f.badNeigh[neighKey{d, u32(n.Addr)}] = true
			}
		}
	}
	for i := range cfg.Routes {
		if err := f.addRoute(&cfg.Routes[i], i); err != nil {
			return nil, &ConfigError{"route", i, err}
		}
	}
	for _, t := range f.tables {
		for l := 32; l >= 0; l-- {
			if t.byLen[l] == nil {
				continue
			}
			t.lens = append(t.lens, l)
			for k, as := range t.byLen[l] {
				sort.SliceStable(as, func(i, j int) bool {
					if as[i].tos != as[j].tos {
						return as[i].tos > as[j].tos
					}
					if as[i].metric != as[j].metric {
						return as[i].metric < as[j].metric
					}
					return as[i].seq < as[j].seq
				})
				t.byLen[l][k] = as
			}
		}
	}
	rules := cfg.Rules
	if rules == nil {
		rules = DefaultRules()
	}
	f.customRules = !slices.EqualFunc(rules, DefaultRules(), func(a, b Rule) bool { return a == b })
	sorted := slices.Clone(rules)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Priority < sorted[j].Priority })
	for _, r := range sorted {
		fr := fibRule{Rule: r, target: -1}
		fr.iif = f.ruleDev(r.IIF)
		fr.oif = f.ruleDev(r.OIF)
		if r.Src.IsValid() {
			fr.smask = mask(r.Src.Bits())
			fr.src = u32(r.Src.Addr()) & fr.smask
		}
		if r.Dst.IsValid() {
			fr.dmask = mask(r.Dst.Bits())
			fr.dst = u32(r.Dst.Addr()) & fr.dmask
		}
		if r.Action == ActToTable {
			fr.tableIndex = f.tables[r.Table]
		}
		f.rules = append(f.rules, fr)
	}
	// Goto targets: the first rule with the target priority
	// (net/core/fib_rules.c fib_nl_newrule sets ctarget).
	for i := range f.rules {
		if f.rules[i].Action != ActGoto {
			continue
		}
		for j := range f.rules {
			if f.rules[j].Priority == f.rules[i].Goto {
				f.rules[i].target = j
				break
			}
		}
	}
	f.l4Keyed = f.mpPolicy == 1 || f.mpPolicy == 3
	for _, r := range f.rules {
		if r.IPProto != 0 || r.SPort.IsSet() || r.DPort.IsSet() {
			f.l4Keyed = true
		}
	}
	return f, nil
}

func (f *FIB) ruleDev(name string) int {
	if name == "" {
		return 0
	}
	if i, ok := f.byName[name]; ok {
		return i
	}
	return -1 // iif_detached / oif_detached: rule->iifindex = -1
}

func (f *FIB) addRoute(r *Route, seq int) error {
	if !r.Dst.Addr().Is4() {
		return nil // IPv6 routes are ignored
	}
	dst := r.Dst.Masked()
	t := f.tables[r.Table]
	if t == nil {
		t = &table{id: r.Table}
		f.tables[r.Table] = t
	}
	a := alias{r: r, typ: r.Type, tos: r.TOS & 0x1c, metric: r.Metric, scope: r.Scope, prefsrc: u32(r.PrefSrc), seq: seq}
	if a.typ == Unspec {
		a.typ = Unicast
	}
	if r.Table == TableLocal && a.typ == Local && r.Protocol != "kernel" {
		f.customLocal = true
	}
	total := 0
	for _, n := range r.Nexthops {
		c := nh{dev: -1, dead: n.Dead, weight: max(n.Weight, 1)}
		if n.Dev != "" {
			i, ok := f.byName[n.Dev]
			if !ok {
				return fmt.Errorf("route %v table %d: unknown device %q", r.Dst, r.Table, n.Dev)
			}
			c.dev = i
		}
		c.scope = ScopeHost
		if n.Gateway.Is4() {
			c.gw, c.hasGW = u32(n.Gateway), true
			// fib_check_nh_v4_gw: the nexthop scope is that of the route
			// to the gateway, link for connected ones, host when the
			// gateway is one of our addresses.
			c.scope = ScopeLink
			if _, local := f.localSet[c.gw]; local && !n.OnLink {
				c.scope = ScopeHost
			}
		}
		if !c.dead {
			total += c.weight
		}
		a.nhs = append(a.nhs, c)
	}
	// fib_rebalance (net/ipv4/fib_semantics.c): upper bounds in 31 bits
	// over the live nexthops' weights; a dead one gets -1.
	total = max(total, 1)
	w := 0
	for i := range a.nhs {
		if a.nhs[i].dead {
			a.nhs[i].upper = -1
			continue
		}
		w += a.nhs[i].weight
		a.nhs[i].upper = int32((uint64(w)<<31+uint64(total)/2)/uint64(total)) - 1
	}
	if t.byLen[dst.Bits()] == nil {
		t.byLen[dst.Bits()] = map[uint32][]alias{}
	}
	k := u32(dst.Addr())
	t.byLen[dst.Bits()][k] = append(t.byLen[dst.Bits()][k], a)
	if dst.Bits() == 0 {
		t.nDflt++
	}
	return nil
}

// Ifindex returns the index of the named link, 0 if there is none.
func (f *FIB) Ifindex(name string) int { return f.byName[name] }

// LinkName returns the name of the link with that index.
func (f *FIB) LinkName(index int) string {
	if index > 0 && index < len(f.links) {
		return f.links[index].Name
	}
	return ""
}

// Loopback returns the loopback ifindex (LOOPBACK_IFINDEX, normally 1).
func (f *FIB) Loopback() int {
	if f.loIndex == 0 {
		return 1
	}
	return f.loIndex
}

// Config returns the configuration the FIB was built from.
func (f *FIB) Config() Config { return f.cfg }

func (f *FIB) link(i int) *linkInfo {
	if i > 0 && i < len(f.links) && f.links[i].index != 0 {
		return &f.links[i]
	}
	return nil
}

// tableResult is struct fib_result.
type tableResult struct {
	a      *alias
	nhsel  int
	prefix uint32
	plen   int
	table  *table
}

// lookup is fib_table_lookup (net/ipv4/fib_trie.c): the longest prefix
// holding an alias that passes, aliases in tos-then-metric order. A
// reject type returns its error at once (throw: EAGAIN); a route whose
// nexthops all fail (dead, or not on the flow's oif) is skipped and the
// search backtracks to shorter prefixes. No match is EAGAIN.
func (t *table) lookup(fl *flow, res *tableResult, ignoreOIF bool) Errno {
	for _, l := range t.lens {
		as, ok := t.byLen[l][fl.dst&mask(l)]
		if !ok {
			continue
		}
		for i := range as {
			a := &as[i]
			// fib_dscp_masked_match: only the legacy TOS bits.
			if a.tos != 0 && a.tos != fl.tos&0x1c {
				continue
			}
			if a.scope < fl.scope {
				continue
			}
			if err := typeError(a.typ); err != 0 {
				res.a, res.plen, res.prefix, res.table = a, l, fl.dst&mask(l), t
				return err
			}
			for n := range a.nhs {
				c := &a.nhs[n]
				if c.dead {
					continue
				}
				if !ignoreOIF && fl.oif != 0 && fl.oif != c.dev {
					continue
				}
				res.a, res.nhsel, res.plen, res.prefix, res.table = a, n, l, fl.dst&mask(l), t
				return 0
			}
			if len(a.nhs) == 0 {
				// A route without nexthop (local/broadcast on no device):
				// nothing to check.
				res.a, res.nhsel, res.plen, res.prefix, res.table = a, 0, l, fl.dst&mask(l), t
				return 0
			}
		}
	}
	return syscall.EAGAIN
}

// MTU is the MTU of the device (0 for an unknown device; 1500 when the
// snapshot did not give one).
func (f *FIB) MTU(index int) int {
	l := f.link(index)
	if l == nil {
		return 0
	}
	if l.MTU == 0 {
		return 1500
	}
	return l.MTU
}
