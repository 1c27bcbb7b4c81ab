package iptables

import (
	"math/bits"
	"sort"

	"github.com/uswitch-lab/uswitch/packet"
)

// The compiled classifier: an index over the fields rules test, so a
// chain's traversal visits only the rules that can match the packet, in
// their order, instead of every rule.
//
// For each chain of at least minIndexed rules, every rule is filed under
// the fields it constrains before anything with side effects runs: the
// fixed header part (destination and source prefixes, protocol, input
// interface; ip_packet_match runs before every extension), and the
// ports of a tcp or udp match when no stateful match (statistic, limit,
// hashlimit, recent, connlimit, quota) precedes it. A rule that does not
// constrain a field (or constrains it in a way the index does not
// model: an inverted test, a non-prefix mask, an interface wildcard) is
// filed as a wildcard of that field.
//
// For a packet, each field yields the sorted lists of the rules that
// admit the packet's value (the exact entry plus the wildcards); the
// field with the fewest candidates is taken, its lists merged, and the
// traversal evaluates just those rules, each in full, in order. Any rule
// that matches the packet is a candidate of every field, so the first
// match, the rules' side effects and the counters are those of the
// linear walk; rules that are skipped would have failed before any
// stateful match. The linear walk stays (Ctx.Linear) as the reference
// the tests compare against.

// minIndexed is the chain length from which an index pays.
const minIndexed = 16

// maxCand bounds the candidates materialised for one chain visit (on a
// per-traversal stack buffer); a visit with more walks the chain
// linearly (that many candidates means the index does not help).
const maxCand = 512

// chainIndex is one chain's index. Immutable once built.
type chainIndex struct {
	dst, src prefixField
	proto    protoField
	in       exactField[string]
	dport    portField
	sport    portField
}

// prefixField files rules by address prefix.
type prefixField struct {
	lens  []uint8 // prefix lengths with entries, longest first
	byLen [33]map[uint32][]int32
	any   []int32
}

// exactField files rules by an exact value.
type exactField[K comparable] struct {
	m   map[K][]int32
	any []int32
}

// protoField files rules by protocol number: a table, as the key is a
// byte.
type protoField struct {
	by  *[256][]int32 // nil when every rule is a wildcard
	any []int32
}

func (f *protoField) add(i int32, proto uint8, wildcard bool) {
	if wildcard {
		f.any = append(f.any, i)
		return
	}
	if f.by == nil {
		f.by = new([256][]int32)
	}
	f.by[proto] = append(f.by[proto], i)
}

// portField files rules by single port, and port ranges by elementary
// interval.
type portField struct {
	// exact files the single ports; the key is a uint16 widened, for
	// the runtime's fast map access of 4-byte keys
	exact exactField[uint32]
	// has marks the ports exact has, so a port no rule names is
	// answered without a map lookup; nil when exact is empty
	has *[65536 / 64]uint64
	// minExact is the length of exact's shortest list: a port in has
	// brings at least that many candidates
	minExact int
	// bounds are the sorted interval starts; ranges[i] are the range
	// rules covering [bounds[i], bounds[i+1]).
	bounds []uint16
	ranges [][]int32
}

func prefixLen(mask uint32) (int, bool) {
	n := bits.LeadingZeros32(^mask)
	if mask != ^uint32(0)<<(32-n) && !(n == 0 && mask == 0) {
		return 0, false
	}
	return n, true
}

func (f *prefixField) add(i int32, addr, mask uint32, inv bool) {
	n, ok := prefixLen(mask)
	if inv || !ok || n == 0 {
		f.any = append(f.any, i)
		return
	}
	if f.byLen[n] == nil {
		f.byLen[n] = map[uint32][]int32{}
	}
	f.byLen[n][addr&mask] = append(f.byLen[n][addr&mask], i)
}

func (f *prefixField) finish() {
	for n := 32; n > 0; n-- {
		if f.byLen[n] != nil {
			f.lens = append(f.lens, uint8(n))
		}
	}
}

func (f *exactField[K]) add(i int32, k K, wildcard bool) {
	if wildcard {
		f.any = append(f.any, i)
		return
	}
	if f.m == nil {
		f.m = map[K][]int32{}
	}
	f.m[k] = append(f.m[k], i)
}

// portRule is a rule's port constraint: [lo, hi], or none.
func (f *portField) add(i int32, r PortRange, ok bool) {
	switch {
	case !ok || r.Any():
		f.exact.any = append(f.exact.any, i)
	case r.Lo == r.Hi:
		f.exact.add(i, uint32(r.Lo), false)
		if f.has == nil {
			f.has = new([65536 / 64]uint64)
		}
		f.has[r.Lo>>6] |= 1 << (r.Lo & 63)
	default:
		// ranges are filed by elementary interval in finish; keep
		// them in bounds/ranges' build list meanwhile
		f.bounds = append(f.bounds, r.Lo, r.Hi)
		f.ranges = append(f.ranges, []int32{i})
	}
}

// finish turns the collected ranges (bounds pairs, one rule each) into
// elementary intervals with the rules covering each.
func (f *portField) finish() {
	for _, l := range f.exact.m {
		if f.minExact == 0 || len(l) < f.minExact {
			f.minExact = len(l)
		}
	}
	if len(f.ranges) == 0 {
		f.bounds, f.ranges = nil, nil
		return
	}
	type rr struct {
		lo, hi uint16
		i      int32
	}
	var rs []rr
	for k, r := range f.ranges {
		rs = append(rs, rr{f.bounds[2*k], f.bounds[2*k+1], r[0]})
	}
	// interval starts: every lo and every hi+1
	starts := map[uint32]bool{0: true}
	for _, r := range rs {
		starts[uint32(r.lo)] = true
		starts[uint32(r.hi)+1] = true
	}
	var b []uint32
	for s := range starts {
		if s <= 0xffff {
			b = append(b, s)
		}
	}
	sort.Slice(b, func(x, y int) bool { return b[x] < b[y] })
	f.bounds = make([]uint16, len(b))
	f.ranges = make([][]int32, len(b))
	for k, s := range b {
		f.bounds[k] = uint16(s)
	}
	for _, r := range rs {
		k := sort.Search(len(b), func(x int) bool { return b[x] >= uint32(r.lo) })
		for ; k < len(b) && b[k] <= uint32(r.hi); k++ {
			f.ranges[k] = append(f.ranges[k], r.i)
		}
	}
	// rules were appended in rule order, so each list is sorted
}

func (f *portField) rangeList(p uint16) []int32 {
	if len(f.bounds) == 0 {
		return nil
	}
	k := sort.Search(len(f.bounds), func(x int) bool { return f.bounds[x] > p }) - 1
	if k < 0 {
		return nil
	}
	return f.ranges[k]
}

// statefulMatch names the matches with side effects: nothing after one
// of them may be used to skip a rule.
func statefulMatch(m Match) bool {
	switch m.Name() {
	case "statistic", "limit", "hashlimit", "recent", "connlimit", "quota", "nfacct", "connbytes":
		return true
	}
	return false
}

// portsOf returns the ports a rule's tcp or udp match requires, when the
// match comes before any stateful one and is not inverted.
func portsOf(r *Rule) (proto uint8, src, dst PortRange, ok bool) {
	for _, m := range r.Matches {
		switch x := m.(type) {
		case *TCPMatch:
			if x.InvSrc || x.InvDst {
				return 0, src, dst, false
			}
			return packet.ProtoTCP, x.Src, x.Dst, true
		case *UDPMatch:
			if x.InvSrc || x.InvDst {
				return 0, src, dst, false
			}
			return packet.ProtoUDP, x.Src, x.Dst, true
		}
		if statefulMatch(m) {
			return 0, src, dst, false
		}
	}
	return 0, src, dst, false
}

func buildIndex(c *Chain) *chainIndex {
	if len(c.Rules) < minIndexed {
		return nil
	}
	x := &chainIndex{}
	for k, r := range c.Rules {
		i := int32(k)
		ip := &r.IP
		x.dst.add(i, ip.Dst, ip.DstMask, ip.Inv&InvDst != 0)
		x.src.add(i, ip.Src, ip.SrcMask, ip.Inv&InvSrc != 0)
		x.proto.add(i, ip.Proto, ip.Proto == 0 || ip.Inv&InvProto != 0)
		x.in.add(i, ip.In.Name, ip.In.Name == "" || ip.In.Wildcard || ip.Inv&InvIn != 0)
		proto, sp, dp, ok := portsOf(r)
		// the ports index only rules whose -p says the same protocol
		// (a tcp match needs -p tcp anyway)
		ok = ok && ip.Proto == proto && ip.Inv&InvProto == 0
		x.dport.add(i, dp, ok)
		x.sport.add(i, sp, ok)
	}
	x.dst.finish()
	x.src.finish()
	x.dport.finish()
	x.sport.finish()
	return x
}

// candLists collects the candidate lists of one field.
type candLists struct {
	l [35][]int32
	n int
	// total candidates (an upper bound: lists may repeat a rule only
	// across fields, never within one field's lists)
	total int
}

func (cl *candLists) add(l []int32) {
	if len(l) == 0 {
		return
	}
	cl.l[cl.n] = l
	cl.n++
	cl.total += len(l)
}

// lists collects the field's lists for address a, giving up (with
// total >= limit) as soon as the field cannot beat limit candidates.
// The wildcards go first: they are there for every packet and cost no
// lookup.
func (f *prefixField) lists(a uint32, cl *candLists, limit int) {
	cl.add(f.any)
	for _, n := range f.lens {
		if cl.total >= limit {
			return
		}
		cl.add(f.byLen[n][a&(^uint32(0)<<(32-n))])
	}
}

func (f *portField) lists(p uint16, cl *candLists, limit int) {
	cl.add(f.exact.any)
	if cl.total < limit && f.has != nil && f.has[p>>6]&(1<<(p&63)) != 0 {
		if cl.total+f.minExact >= limit {
			cl.total = limit // cannot win whatever the list
			return
		}
		cl.add(f.exact.m[uint32(p)])
	}
	if cl.total < limit {
		cl.add(f.rangeList(p))
	}
}

// candidates fills buf with the sorted candidate rule indexes of the
// chain for the packet; ok is false when the chain should be walked
// linearly (too many candidates for buf).
//
// A field's wildcards are candidates whatever the packet, so a field
// whose wildcards alone are as many as the best field's candidates so
// far cannot win and is not looked up; a field's lookups stop as soon
// as it has that many. On a tie the earlier field is kept, as the
// candidates of any field give the same traversal.
//
// cls is scratch space for the lists (in the traversal's Scratch: on the
// stack, its 1.7 KB would be cleared for every visit).
func (x *chainIndex) candidates(c *Ctx, buf []int32, cls *[2]candLists) (out []int32, ok bool) {
	p := c.Pkt
	best, cur := &cls[0], &cls[1]
	best.n, best.total, cur.n, cur.total = 0, 0, 0, 0
	x.dst.lists(p.Dst, best, len(buf)+1)
	// pick keeps the better of cur and best in best and empties cur
	pick := func() {
		if cur.total < best.total {
			best, cur = cur, best
		}
		cur.n, cur.total = 0, 0
	}
	if len(x.src.any) < best.total {
		x.src.lists(p.Src, cur, best.total)
		pick()
	}
	if len(x.proto.any) < best.total {
		cur.add(x.proto.any)
		if x.proto.by != nil {
			cur.add(x.proto.by[p.Proto])
		}
		pick()
	}
	if len(x.in.any) < best.total && (p.InIf != "" || len(x.in.m) > 0) {
		cur.add(x.in.any)
		if len(x.in.m) > 0 {
			cur.add(x.in.m[p.InIf])
		}
		pick()
	}
	// ports are known only with a whole transport header
	if p.HasL4 && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP) {
		if len(x.dport.exact.any) < best.total {
			x.dport.lists(p.DstPort, cur, best.total)
			pick()
		}
		if len(x.sport.exact.any) < best.total {
			x.sport.lists(p.SrcPort, cur, best.total)
			pick()
		}
	}
	if best.total > len(buf) {
		return nil, false
	}
	return mergeLists(best.l[:best.n], buf[:0]), true
}

// mergeLists merges sorted lists of distinct rule indexes into out.
func mergeLists(ls [][]int32, out []int32) []int32 {
	switch len(ls) {
	case 0:
		return out
	case 1:
		return append(out, ls[0]...)
	case 2:
		// the common case (an exact entry and the wildcards): a plain
		// two-way merge
		a, b := ls[0], ls[1]
		for len(a) > 0 && len(b) > 0 {
			switch {
			case a[0] < b[0]:
				out, a = append(out, a[0]), a[1:]
			case b[0] < a[0]:
				out, b = append(out, b[0]), b[1:]
			default:
				out, a, b = append(out, a[0]), a[1:], b[1:]
			}
		}
		// one of them is empty; the other's tail is short (one
		// entry, usually): copied without memmove's call
		if len(b) > len(a) {
			a = b
		}
		if len(a) > 8 {
			return append(out, a...)
		}
		for _, x := range a {
			out = append(out, x)
		}
		return out
	}
	var pos [35]int
	for {
		min, mi := int32(-1), -1
		for k, l := range ls {
			if pos[k] < len(l) && (mi < 0 || l[pos[k]] < min) {
				min, mi = l[pos[k]], k
			}
		}
		if mi < 0 {
			return out
		}
		pos[mi]++
		if n := len(out); n == 0 || out[n-1] != min {
			out = append(out, min)
		}
	}
}

// Compile builds the classifier index of every chain (Loader does it
// after each load; a Ruleset built by hand can call it).
func (rs *Ruleset) Compile() {
	for _, t := range rs.Tables {
		if t == nil {
			continue
		}
		for _, c := range t.Chains {
			c.index = buildIndex(c)
			for _, r := range c.Rules {
				r.prepareLean()
			}
		}
	}
}
