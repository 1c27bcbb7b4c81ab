package iptables

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// set match (extensions/libxt_set.c revision 4, libxt_set.h; kernel
// net/netfilter/xt_set.c). It is an old-style extension: it checks
// repeats and "!" itself. The set must exist (iptables asks the kernel
// by name); uswitch looks it up in the ipsets given to the loader.

const (
	ipsetDimMax     = 6  // IPSET_DIM_MAX
	ipsetMaxNameLen = 32 // IPSET_MAXNAMELEN
)

// Counter comparisons (IPSET_COUNTER_*).
const (
	SetCounterNone = iota
	SetCounterEq
	SetCounterNe
	SetCounterLt
	SetCounterGt
)

// SetCounter is one --packets-* / --bytes-* condition.
type SetCounter struct {
	Op    uint8
	Value uint64
}

// SetMatch is "-m set" (xt_set_info_match_v4).
type SetMatch struct {
	SetName           string
	Set               IPSet
	Dirs              []bool // per dimension: true = src, false = dst
	Invert            bool   // IPSET_INV_MATCH
	ReturnNoMatch     bool
	SkipCounterUpd    bool
	SkipSubcounterUpd bool
	Packets, Bytes    SetCounter

	// sets resolves the members of a list:set (the loader's ipsets).
	sets SetLookup
}

func (m *SetMatch) Name() string { return "set" }

func parseSetCounter(s string) (uint64, error) {
	v, ok := strtoul(s, 0, 0)
	if !ok {
		return 0, Errorf("Cannot parse %s as a counter value", s)
	}
	return v, nil
}

// parseSetDirs is parse_dirs (libxt_set.h).
func parseSetDirs(arg string) ([]bool, error) {
	parts := strings.Split(arg, ",")
	var dirs []bool
	for len(dirs) < ipsetDimMax && len(parts) > 0 {
		p := parts[0]
		parts = parts[1:]
		switch {
		case strings.HasPrefix(p, "src"):
			dirs = append(dirs, true)
		case strings.HasPrefix(p, "dst"):
			dirs = append(dirs, false)
		default:
			return nil, Errorf("You must spefify (the comma separated list of) 'src' or 'dst'.")
		}
	}
	if len(parts) > 0 {
		return nil, Errorf("Can't be more src/dst options than %d.", ipsetDimMax)
	}
	return dirs, nil
}

func (m *SetMatch) counter(c *SetCounter, what, op string, inv bool, arg string) error {
	if c.Op != SetCounterNone {
		return Errorf("only one of the --%s-[eq|lt|gt] is allowed", what)
	}
	switch op {
	case "eq":
		c.Op = SetCounterEq
		if inv {
			c.Op = SetCounterNe
		}
	case "lt", "gt":
		if inv {
			return Errorf("--%s-%s option cannot be inverted", what, op)
		}
		c.Op = SetCounterLt
		if op == "gt" {
			c.Op = SetCounterGt
		}
	}
	v, err := parseSetCounter(arg)
	if err != nil {
		return err
	}
	c.Value = v
	return nil
}

func (m *SetMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "update-subcounters":
		if o.Invert {
			m.SkipSubcounterUpd = true
		}
	case "update-counters":
		if o.Invert {
			m.SkipCounterUpd = true
		}
	case "return-nomatch":
		if o.Invert {
			return Errorf("--return-nomatch flag cannot be inverted")
		}
		m.ReturnNoMatch = true
	case "packets-eq", "packets-lt", "packets-gt":
		return m.counter(&m.Packets, "packets", o.Name[len(o.Name)-2:], o.Invert, o.Arg)
	case "bytes-eq", "bytes-lt", "bytes-gt":
		return m.counter(&m.Bytes, "bytes", o.Name[len(o.Name)-2:], o.Invert, o.Arg)
	case "match-set", "set":
		if len(m.Dirs) > 0 {
			return Errorf("--match-set can be specified only once")
		}
		if o.Invert {
			m.Invert = true
		}
		if len(o.Arg) > ipsetMaxNameLen-1 {
			return Errorf("setname `%s' too long, max %d characters.", o.Arg, ipsetMaxNameLen-1)
		}
		var set IPSet
		ok := false
		if o.Rule != nil && o.Rule.Sets != nil {
			set, ok = o.Rule.Sets.LookupSet(o.Arg)
		}
		if !ok {
			return Errorf("Set %s doesn't exist.\n", o.Arg)
		}
		if s, isSet := set.(*Set); isSet {
			for i := 0; i+1 < len(s.Options); i++ {
				if s.Options[i] == "family" && s.Options[i+1] == "inet6" {
					return Errorf("The protocol family of set %s is IPv6, which is not applicable.\n", o.Arg)
				}
			}
		}
		dirs, err := parseSetDirs(o.Arg2)
		if err != nil {
			return err
		}
		m.SetName, m.Set, m.Dirs = o.Arg, set, dirs
		m.sets = o.Rule.Sets
	}
	return nil
}

// Final is set_check_v0.
func (m *SetMatch) Final(r *RuleContext) error {
	if len(m.Dirs) == 0 {
		return Errorf("You must specify `--match-set' with proper arguments")
	}
	return nil
}

func saveSetCounter(w *SaveWriter, c SetCounter, name string) {
	v := strconv.FormatUint(c.Value, 10)
	switch c.Op {
	case SetCounterEq:
		w.Opt(name+"-eq", v)
	case SetCounterNe:
		w.InvOpt(true, name+"-eq", v)
	case SetCounterLt:
		w.Opt(name+"-lt", v)
	case SetCounterGt:
		w.Opt(name+"-gt", v)
	}
}

// Save is set_save_v4.
func (m *SetMatch) Save(w *SaveWriter) {
	var dirs []string
	for _, d := range m.Dirs {
		if d {
			dirs = append(dirs, "src")
		} else {
			dirs = append(dirs, "dst")
		}
	}
	w.InvOpt(m.Invert, "match-set", m.SetName+" "+strings.Join(dirs, ","))
	if m.ReturnNoMatch {
		w.Opt("return-nomatch", "")
	}
	if m.SkipCounterUpd {
		w.InvOpt(true, "update-counters", "")
	}
	if m.SkipSubcounterUpd {
		w.InvOpt(true, "update-subcounters", "")
	}
	saveSetCounter(w, m.Packets, "packets")
	saveSetCounter(w, m.Bytes, "bytes")
}

func init() {
	flag := func(name string) Option { return Option{Name: name, Invert: true, Multi: true} }
	arg := func(name string) Option { return Option{Name: name, Arg: RequiredArg, Invert: true, Multi: true} }
	RegisterMatch(&MatchSpec{Name: "set", Options: []Option{
		{Name: "match-set", Arg: RequiredArg, Invert: true, Multi: true, TwoArgs: true},
		{Name: "set", Arg: RequiredArg, Invert: true, Multi: true, TwoArgs: true},
		flag("return-nomatch"), flag("update-counters"),
		arg("packets-eq"), arg("packets-lt"), arg("packets-gt"),
		arg("bytes-eq"), arg("bytes-lt"), arg("bytes-gt"),
		flag("update-subcounters"),
	}, New: func() Match { return &SetMatch{} }})
}

// The membership structure of an ipset, built once from the `ipset save`
// entries (ip_set_core.c and the ip_set_hash_*/bitmap_*/list_set types).
//
// Supported types: hash:ip, hash:net, hash:ip,port, hash:net,port,
// hash:ip,port,ip, hash:ip,port,net, hash:net,net, hash:net,port,net,
// hash:ip,mark, bitmap:ip, bitmap:port and list:set. Entry timeouts are
// ignored (the snapshot is static). A set of another type, or an entry
// that cannot be read, leaves the set unusable: it never matches, and
// SetIndexError reports why.

// setDim is one dimension of a set type.
type setDim uint8

const (
	dimIP setDim = iota
	dimNet
	dimPort
	dimMark
)

// setKey is one element (or a packet's lookup key): up to three
// addresses with their prefix lengths, a port with its protocol, a mark.
type setKey struct {
	ip    [3]uint32
	cidr  [3]uint8
	port  uint16
	proto uint8
	mark  uint32
}

// setElem is an element with its extensions.
type setElem struct {
	nomatch        bool
	packets, bytes atomic.Uint64
}

// setIndex is a built set.
type setIndex struct {
	kind     string // "hash", "bitmap" or "list"
	dims     []setDim
	nomatch  bool // the type supports nomatch entries (net dimensions)
	counters bool
	elems    map[setKey]*setElem
	// cidrs are the prefix-length combinations present, most specific
	// first (the order mtype_test_cidrs tries them in).
	cidrs   [][3]uint8
	members []*setIndex // list:set
	err     string
	errAt   int // the index in Members of the entry err is about, or -1
}

type setIndexOnce struct {
	once sync.Once
	idx  *setIndex
}

// SetIndexError reports why the set cannot be matched ("" when it can);
// it builds the index.
func (s *Set) SetIndexError(sets SetLookup) string { return s.built(sets).err }

func (s *Set) built(sets SetLookup) *setIndex {
	s.index.once.Do(func() { s.index.idx = buildSetIndex(s, sets, 0) })
	return s.index.idx
}

func setTypeDims(typ string) (kind string, dims []setDim, ok bool) {
	kind, rest, found := strings.Cut(typ, ":")
	if !found {
		return "", nil, false
	}
	for _, d := range strings.Split(rest, ",") {
		switch d {
		case "ip":
			dims = append(dims, dimIP)
		case "net":
			dims = append(dims, dimNet)
		case "port":
			dims = append(dims, dimPort)
		case "mark":
			dims = append(dims, dimMark)
		case "set":
		default:
			return "", nil, false
		}
	}
	switch kind {
	case "hash":
		ok = len(dims) > 0
	case "bitmap":
		ok = len(dims) == 1 && (dims[0] == dimIP || dims[0] == dimPort)
	case "list":
		ok = rest == "set"
	}
	return kind, dims, ok
}

var setProtoNames = map[string]uint8{"tcp": 6, "udp": 17, "udplite": 136, "sctp": 132, "icmp": 1, "dccp": 33}

// parseSetPort reads "[proto:]port" (proto defaults to tcp; for icmp the
// port is type/code).
func parseSetPort(s string) (uint16, uint8, bool) {
	proto := uint8(6)
	if p, port, ok := strings.Cut(s, ":"); ok {
		n, known := setProtoNames[p]
		if !known {
			v, err := strconv.ParseUint(p, 10, 8)
			if err != nil {
				return 0, 0, false
			}
			n = uint8(v)
		}
		proto, s = n, port
	}
	if proto == 1 {
		t, code, _ := strings.Cut(s, "/")
		a, err1 := strconv.ParseUint(t, 10, 8)
		b, err2 := strconv.ParseUint(code, 10, 8)
		if err1 != nil || err2 != nil {
			// ipset save prints the types it knows by name
			// (echo-request is 8/0)
			for _, n := range icmpNames {
				if n.name == s && n.typ != 0xFF {
					return uint16(n.typ)<<8 | uint16(n.codeMin), proto, true
				}
			}
			return 0, 0, false
		}
		return uint16(a<<8 | b), proto, true
	}
	v, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		if s == "" || strings.Trim(s, "0123456789") == "" {
			return 0, 0, false // out of range: ipset refuses it
		}
		if n, ok := getPortByName(s); ok {
			return n, proto, true
		}
		return 0, 0, false
	}
	return uint16(v), proto, true
}

func buildSetIndex(s *Set, sets SetLookup, depth int) *setIndex {
	idx := &setIndex{elems: map[setKey]*setElem{}, errAt: -1}
	kind, dims, ok := setTypeDims(s.Type)
	if !ok {
		idx.err = "set type " + s.Type + " is not supported"
		return idx
	}
	idx.kind, idx.dims = kind, dims
	for _, o := range s.Options {
		if o == "counters" {
			idx.counters = true
		}
	}
	if kind == "list" {
		for mi, name := range s.Members {
			name, _, _ = strings.Cut(name, " ")
			var ms IPSet
			found := false
			if sets != nil {
				ms, found = sets.LookupSet(name)
			}
			mset, isSet := ms.(*Set)
			if !found || !isSet || depth > 8 {
				idx.err, idx.errAt = "list:set member "+name+" unknown", mi
				return idx
			}
			idx.members = append(idx.members, mset.built(sets))
		}
		return idx
	}
	cidrSeen := map[[3]uint8]bool{}
	for ei, entry := range s.Members {
		f := strings.Fields(entry)
		if len(f) == 0 {
			continue
		}
		parts := strings.Split(f[0], ",")
		if len(parts) != len(dims) {
			idx.err, idx.errAt = "entry "+entry+" does not fit "+s.Type, ei
			return idx
		}
		var k setKey
		ipn := 0
		lo, hi := uint32(0), uint32(0) // an ip range of a hash:ip/bitmap:ip entry
		ranged := false
		for i, d := range dims {
			v := parts[i]
			switch d {
			case dimIP, dimNet:
				cidr := 32
				if a, l, hasLen := strings.Cut(v, "/"); hasLen {
					n, err := strconv.Atoi(l)
					if err != nil || n < 0 || n > 32 {
						idx.err, idx.errAt = "bad entry "+entry, ei
						return idx
					}
					v, cidr = a, n
				}
				if a, b, isRange := strings.Cut(v, "-"); isRange && d == dimIP && len(dims) == 1 {
					x, ok1 := ParseAddr(a)
					y, ok2 := ParseAddr(b)
					if !ok1 || !ok2 || x > y || y-x > 1<<16 {
						idx.err, idx.errAt = "bad entry "+entry, ei
						return idx
					}
					lo, hi, ranged = x, y, true
					continue
				}
				a, ok := ParseAddr(v)
				if !ok {
					idx.err, idx.errAt = "bad entry "+entry, ei
					return idx
				}
				if d == dimIP && cidr != 32 && len(dims) == 1 {
					// hash:ip a.b.c.d/n adds every address of the prefix
					m := plenToMask(cidr)
					lo, hi, ranged = a&m, a&m|^m, true
					continue
				}
				if d == dimIP {
					cidr = 32
				}
				k.ip[ipn], k.cidr[ipn] = a&plenToMask(cidr), uint8(cidr)
				ipn++
			case dimPort:
				if kind == "bitmap" {
					_, v, _ = strings.Cut("tcp:"+v, ":")
					if strings.Contains(v, ":") {
						_, v, _ = strings.Cut(v, ":")
					}
				}
				port, proto, ok := parseSetPort(v)
				if !ok {
					idx.err, idx.errAt = "bad entry "+entry, ei
					return idx
				}
				k.port = port
				if kind == "hash" {
					k.proto = proto
				}
			case dimMark:
				v, err := strconv.ParseUint(v, 0, 32)
				if err != nil {
					idx.err, idx.errAt = "bad entry "+entry, ei
					return idx
				}
				k.mark = uint32(v)
			}
		}
		var nomatch bool
		var packets, bytes uint64
		for i := 1; i < len(f); i++ {
			switch f[i] {
			case "nomatch":
				nomatch = true
			case "packets", "bytes":
				if i+1 < len(f) {
					v, _ := strconv.ParseUint(f[i+1], 10, 64)
					if f[i] == "packets" {
						packets = v
					} else {
						bytes = v
					}
					i++
				}
			}
		}
		add := func(k setKey) {
			e := &setElem{nomatch: nomatch}
			e.packets.Store(packets)
			e.bytes.Store(bytes)
			idx.elems[k] = e
			cidrSeen[k.cidr] = true
		}
		if ranged {
			for a := uint64(lo); a <= uint64(hi); a++ {
				k.ip[0], k.cidr[0] = uint32(a), 32
				add(k)
			}
		} else {
			add(k)
		}
	}
	for _, d := range dims {
		if d == dimNet {
			idx.nomatch = true
		}
	}
	for c := range cidrSeen {
		idx.cidrs = append(idx.cidrs, c)
	}
	sort.Slice(idx.cidrs, func(i, j int) bool {
		a, b := idx.cidrs[i], idx.cidrs[j]
		for x := range a {
			if a[x] != b[x] {
				return a[x] > b[x]
			}
		}
		return false
	})
	return idx
}

// setPort is ip_set_get_ip4_port: the port (ICMP type<<8|code) and the
// protocol; false for a fragment of a port protocol or a short header.
func setPort(c *Ctx, src bool) (uint16, uint8, bool) {
	p := c.Pkt
	switch p.Proto {
	case 6, 17, 132, 136, 1:
	default:
		return 0, p.Proto, true // no ports: fragments match too
	}
	if p.IP.FragOffset() != 0 {
		return 0, 0, false
	}
	l4 := p.L4
	if p.Proto == 1 {
		if len(l4) < 8 {
			return 0, 0, false
		}
		return uint16(l4[0])<<8 | uint16(l4[1]), 1, true
	}
	need := 4
	switch p.Proto {
	case 6:
		need = 20
	case 17, 136:
		need = 8
	case 132:
		need = 12
	}
	if len(l4) < need {
		return 0, 0, false
	}
	if src {
		return be16(l4, 0), p.Proto, true
	}
	return be16(l4, 2), p.Proto, true
}

// test is the type's kadt test for an index: 1 match, 0 no match, -1 a
// nomatch element (-ENOTEMPTY).
func (idx *setIndex) test(c *Ctx, m *SetMatch) int {
	if idx.err != "" || len(m.Dirs) < len(idx.dims) && idx.kind != "list" {
		return 0
	}
	if idx.kind == "list" {
		for _, ms := range idx.members {
			if ms.testNoMatch(c, m) {
				return 1
			}
		}
		return 0
	}
	var k setKey
	ipn := 0
	var addrs [3]uint32
	for i, d := range idx.dims {
		src := m.Dirs[i]
		switch d {
		case dimIP, dimNet:
			if src {
				addrs[ipn] = c.Pkt.Src
			} else {
				addrs[ipn] = c.Pkt.Dst
			}
			ipn++
		case dimPort:
			port, proto, ok := setPort(c, src)
			if !ok {
				return 0
			}
			if idx.kind == "bitmap" {
				if proto != 6 && proto != 17 { // ip_set_get_ip_port
					return 0
				}
				proto = 0
			}
			k.port, k.proto = port, proto
		case dimMark:
			k.mark = c.Pkt.Mark
		}
	}
	for _, cidr := range idx.cidrs {
		for i := 0; i < ipn; i++ {
			k.ip[i], k.cidr[i] = addrs[i]&plenToMask(int(cidr[i])), cidr[i]
		}
		e := idx.elems[k]
		if e == nil {
			continue
		}
		if idx.counters {
			if m.Packets.Op != SetCounterNone || m.Bytes.Op != SetCounterNone {
				if !setCounterMatch(e.packets.Load(), m.Packets) || !setCounterMatch(e.bytes.Load(), m.Bytes) {
					continue
				}
			}
			if !m.SkipCounterUpd {
				e.packets.Add(1)
				e.bytes.Add(uint64(c.Pkt.Len()))
			}
		}
		if e.nomatch {
			return -1
		}
		return 1
	}
	return 0
}

// testNoMatch is the end of ip_set_test: with --return-nomatch a type
// that has nomatch elements swaps "in" and "nomatch"; what is left
// negative counts as no match.
func (idx *setIndex) testNoMatch(c *Ctx, m *SetMatch) bool {
	r := idx.test(c, m)
	if m.ReturnNoMatch && idx.nomatch {
		r = -r
	}
	return r > 0
}

// setCounterMatch is ip_set_match_counter.
func setCounterMatch(v uint64, c SetCounter) bool {
	switch c.Op {
	case SetCounterEq:
		return v == c.Value
	case SetCounterNe:
		return v != c.Value
	case SetCounterLt:
		return v < c.Value
	case SetCounterGt:
		return v > c.Value
	}
	return true
}

// Eval is set_match_v4 (net/netfilter/xt_set.c) with ip_set_test
// (net/netfilter/ipset/ip_set_core.c): the packet's addresses and ports,
// taken from the source or destination as --match-set's directions say,
// are looked up in the set (nets most specific first). A nomatch element
// answers "not in the set", or "in the set" with --return-nomatch. Fewer
// directions than the set has dimensions never match. Element counters
// (sets created with "counters") are tested by --packets-*/--bytes-* and
// updated unless "! --update-counters". The index is built from the
// ipset entries once, on the first packet, and shared by every rule
// using the set.
func (m *SetMatch) Eval(c *Ctx) bool {
	s, ok := m.Set.(*Set)
	if !ok {
		return m.Invert
	}
	return s.built(m.sets).testNoMatch(c, m) != m.Invert
}
