package ebtables

import (
	"encoding/binary"
	"sort"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// The compiled classifier: an index over the link-level fields rules
// test, so a chain's traversal visits only the rules that can match the
// frame, in their order, instead of every rule (the approach of
// iptables/classify.go, on L2 fields).
//
// For each chain of at least minIndexed rules every rule is filed, per
// field, under the value it requires:
//
//   - from the fixed part (ebt_basic_match, which runs before every
//     match): the source and destination MAC under their mask, the
//     ethertype (or the 802.3 length class of -p Length), the input
//     and output port and the logical (bridge) ones, exact names and
//     "name+" prefixes;
//   - from the matches that come before any stateful one (limit, whose
//     bucket a skipped evaluation would leave untouched): ip's
//     --ip-src/--ip-dst prefixes, arp's --arp-ip-src/--arp-ip-dst, vlan's
//     --vlan-id, mark_m's exact --mark, pkttype's --pkttype-type.
//
// A rule that does not constrain a field, or constrains it in a way the
// index does not model (an inversion, a mark mask, more distinct masks
// or prefixes than a field keeps lists for), is a wildcard of the field.
//
// For a frame each field yields the sorted lists of the rules that admit
// the frame's value (the wildcards, plus the entries of its value); the
// field with the fewest candidates is taken and the traversal evaluates
// just those rules, each in full (basic part, matches, watchers, target)
// and in order. A rule that matches the frame is a candidate of every
// field, and a skipped rule would have failed before any stateful match,
// so the first match, the counters, the log requests and every target's
// effect are those of the linear walk. The candidates are worked out
// from the frame as it is when a chain is entered or returned to, and
// again after an extension target lets the traversal go on (mark, dnat,
// snat and redirect change the mark, the MACs and the packet type the
// index reads). Ctx.Linear keeps the rule-by-rule walk, the reference
// the tests compare the classifier with.

// minIndexed is the chain length from which an index pays.
const minIndexed = 16

// maxLists bounds the lists one field yields for a frame (the wildcards
// and one per mask, prefix length or port-name prefix); a field files
// the rules of groups beyond that as wildcards.
const maxLists = 8

// chainIndex is one chain's index. Immutable once built.
type chainIndex struct {
	nrules             int
	src, dst           macField
	proto              protoField
	in, out, lin, lout ifField
	ipSrc, ipDst       prefixField
	arpSrc, arpDst     prefixField
	vlan               exactField[uint16]
	mark               exactField[uint32]
	pktType            exactField[PktType]
}

// exactField files rules by an exact value.
type exactField[K comparable] struct {
	m   map[K][]int32
	any []int32
}

func (f *exactField[K]) add(i int32, k K, ok bool) {
	if !ok {
		f.any = append(f.any, i)
		return
	}
	if f.m == nil {
		f.m = map[K][]int32{}
	}
	f.m[k] = append(f.m[k], i)
}

// lists adds the field's lists for value k (known: the frame has the
// field).
func (f *exactField[K]) lists(k K, known bool, cl *candLists) {
	cl.add(f.any)
	if known && f.m != nil {
		cl.add(f.m[k])
	}
}

// macGroup is the rules testing one mask: masked address -> rules.
type macGroup struct {
	mask uint64
	m    map[uint64][]int32
}

// macField files -s or -d by mask and masked address.
type macField struct {
	groups []macGroup
	any    []int32
}

func mac48(m packet.MAC) uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

func (f *macField) add(i int32, m *MACMatch) {
	mask := mac48(m.Mask)
	if !m.Set || m.Inv || mask == 0 {
		f.any = append(f.any, i)
		return
	}
	// the address as given, not masked: an address with bits outside
	// its mask matches nothing (maskedEq), and no frame's masked
	// address finds it
	a := mac48(m.Addr)
	for k := range f.groups {
		if f.groups[k].mask == mask {
			f.groups[k].m[a] = append(f.groups[k].m[a], i)
			return
		}
	}
	f.groups = append(f.groups, macGroup{mask, map[uint64][]int32{a: {i}}})
}

func groupSize(m map[uint64][]int32) int {
	n := 0
	for _, l := range m {
		n += len(l)
	}
	return n
}

// finish keeps the maxLists-1 largest groups and files the others'
// rules as wildcards.
func (f *macField) finish() {
	if len(f.groups) < maxLists {
		return
	}
	sort.SliceStable(f.groups, func(a, b int) bool { return groupSize(f.groups[a].m) > groupSize(f.groups[b].m) })
	for _, g := range f.groups[maxLists-1:] {
		for _, l := range g.m {
			f.any = append(f.any, l...)
		}
	}
	f.groups = f.groups[:maxLists-1]
	sortRules(f.any)
}

func (f *macField) lists(a uint64, cl *candLists, limit int) {
	cl.add(f.any)
	for k := range f.groups {
		if cl.total >= limit {
			return
		}
		g := &f.groups[k]
		cl.add(g.m[a&g.mask])
	}
}

// protoField files -p: an ethertype, or Length (an 802.3 frame).
type protoField struct {
	m      map[uint16][]int32
	length []int32
	any    []int32
}

func (f *protoField) add(i int32, r *Rule) {
	switch {
	case !r.ProtoSet || r.ProtoInv:
		f.any = append(f.any, i)
	case r.Length:
		f.length = append(f.length, i)
	default:
		if f.m == nil {
			f.m = map[uint16][]int32{}
		}
		f.m[r.Proto] = append(f.m[r.Proto], i)
	}
}

func (f *protoField) lists(proto uint16, cl *candLists) {
	cl.add(f.any)
	if proto < packet.EtherTypeMin {
		cl.add(f.length)
	} else if f.m != nil {
		cl.add(f.m[proto])
	}
}

// wildGroup is the rules testing one "name+" prefix.
type wildGroup struct {
	prefix string
	rules  []int32
}

// ifField files -i, -o, --logical-in or --logical-out: exact names, and
// "name+" by prefix.
type ifField struct {
	exact map[string][]int32
	wild  []wildGroup
	any   []int32
}

func (f *ifField) add(i int32, m *IfMatch) {
	switch {
	case !m.Set || m.Inv:
		f.any = append(f.any, i)
	case m.Wild:
		for k := range f.wild {
			if f.wild[k].prefix == m.Name {
				f.wild[k].rules = append(f.wild[k].rules, i)
				return
			}
		}
		f.wild = append(f.wild, wildGroup{m.Name, []int32{i}})
	default:
		if f.exact == nil {
			f.exact = map[string][]int32{}
		}
		f.exact[m.Name] = append(f.exact[m.Name], i)
	}
}

// finish keeps the maxLists-2 largest prefix groups (the wildcards and
// the exact name take a list each).
func (f *ifField) finish() {
	if len(f.wild) <= maxLists-2 {
		return
	}
	sort.SliceStable(f.wild, func(a, b int) bool { return len(f.wild[a].rules) > len(f.wild[b].rules) })
	for _, g := range f.wild[maxLists-2:] {
		f.any = append(f.any, g.rules...)
	}
	f.wild = f.wild[:maxLists-2]
	sortRules(f.any)
}

// lists adds the lists for the port name; "" (no port) fails every
// positive test (ebt_dev_check), so only the wildcards remain.
func (f *ifField) lists(name string, cl *candLists, limit int) {
	cl.add(f.any)
	if name == "" {
		return
	}
	if f.exact != nil {
		cl.add(f.exact[name])
	}
	for k := range f.wild {
		if cl.total >= limit {
			return
		}
		if strings.HasPrefix(name, f.wild[k].prefix) {
			cl.add(f.wild[k].rules)
		}
	}
}

// prefixField files IPv4 addresses by prefix.
type prefixField struct {
	lens  []uint8 // prefix lengths with entries
	byLen [33]map[uint32][]int32
	any   []int32
}

// prefixLen is the length of a contiguous mask.
func prefixLen(mask uint32) (int, bool) {
	n := 0
	for n < 32 && mask&(1<<(31-n)) != 0 {
		n++
	}
	if n < 32 && mask<<n != 0 {
		return 0, false
	}
	return n, true
}

func (f *prefixField) add(i int32, set, inv bool, addr, mask uint32) {
	n, ok := prefixLen(mask)
	if !set || inv || !ok || n == 0 {
		f.any = append(f.any, i)
		return
	}
	if f.byLen[n] == nil {
		f.byLen[n] = map[uint32][]int32{}
	}
	// as given: an address with bits outside its mask matches nothing
	f.byLen[n][addr] = append(f.byLen[n][addr], i)
}

// finish lists the lengths in use, longest first, keeping the
// maxLists-1 most used and filing the others' rules as wildcards.
func (f *prefixField) finish() {
	for n := 32; n > 0; n-- {
		if f.byLen[n] != nil {
			f.lens = append(f.lens, uint8(n))
		}
	}
	if len(f.lens) < maxLists {
		return
	}
	sort.SliceStable(f.lens, func(a, b int) bool { return groupSize64(f.byLen[f.lens[a]]) > groupSize64(f.byLen[f.lens[b]]) })
	for _, n := range f.lens[maxLists-1:] {
		for _, l := range f.byLen[n] {
			f.any = append(f.any, l...)
		}
		f.byLen[n] = nil
	}
	f.lens = f.lens[:maxLists-1]
	sortRules(f.any)
}

func groupSize64(m map[uint32][]int32) int {
	n := 0
	for _, l := range m {
		n += len(l)
	}
	return n
}

func (f *prefixField) lists(a uint32, known bool, cl *candLists, limit int) {
	cl.add(f.any)
	if !known {
		return
	}
	for _, n := range f.lens {
		if cl.total >= limit {
			return
		}
		cl.add(f.byLen[n][a&(^uint32(0)<<(32-n))])
	}
}

func sortRules(l []int32) { sort.Slice(l, func(a, b int) bool { return l[a] < l[b] }) }

// indexedMatches are the fields a rule's matches require, from the
// matches before the first stateful one (limit).
type indexedMatches struct {
	ip   *IPMatch
	arp  *ARPMatch
	vlan *VLANMatch
	mark *MarkMatch
	pkt  *PktTypeMatch
}

func matchesOf(r *Rule) indexedMatches {
	var x indexedMatches
	for _, m := range r.Matches {
		switch m := m.(type) {
		case *LimitMatch:
			return x
		case *IPMatch:
			x.ip = m
		case *ARPMatch:
			x.arp = m
		case *VLANMatch:
			x.vlan = m
		case *MarkMatch:
			x.mark = m
		case *PktTypeMatch:
			x.pkt = m
		}
	}
	return x
}

func buildIndex(c *Chain) *chainIndex {
	if len(c.Rules) < minIndexed {
		return nil
	}
	x := &chainIndex{nrules: len(c.Rules)}
	for k, r := range c.Rules {
		i := int32(k)
		x.src.add(i, &r.Src)
		x.dst.add(i, &r.Dst)
		x.proto.add(i, r)
		x.in.add(i, &r.In)
		x.out.add(i, &r.Out)
		x.lin.add(i, &r.LogicalIn)
		x.lout.add(i, &r.LogicalOut)
		m := matchesOf(r)
		if ip := m.ip; ip != nil {
			x.ipSrc.add(i, ip.srcSet, ip.srcInv, ip.src, ip.smsk)
			x.ipDst.add(i, ip.dstSet, ip.dstInv, ip.dst, ip.dmsk)
		} else {
			x.ipSrc.add(i, false, false, 0, 0)
			x.ipDst.add(i, false, false, 0, 0)
		}
		if a := m.arp; a != nil {
			x.arpSrc.add(i, a.sipSet, a.sipInv, a.sip, a.smsk)
			x.arpDst.add(i, a.dipSet, a.dipInv, a.dip, a.dmsk)
		} else {
			x.arpSrc.add(i, false, false, 0, 0)
			x.arpDst.add(i, false, false, 0, 0)
		}
		v := m.vlan
		x.vlan.add(i, vlanID(v), v != nil && v.idSet && !v.idInv)
		mk := m.mark
		x.mark.add(i, markValue(mk), mk != nil && !mk.inv && !mk.anyBit && mk.mask == 0xffffffff)
		pt := m.pkt
		x.pktType.add(i, pktTypeOf(pt), pt != nil && !pt.inv)
	}
	x.src.finish()
	x.dst.finish()
	x.in.finish()
	x.out.finish()
	x.lin.finish()
	x.lout.finish()
	x.ipSrc.finish()
	x.ipDst.finish()
	x.arpSrc.finish()
	x.arpDst.finish()
	return x
}

func vlanID(v *VLANMatch) uint16 {
	if v == nil {
		return 0
	}
	return v.id
}

func markValue(m *MarkMatch) uint32 {
	if m == nil {
		return 0
	}
	return m.value
}

func pktTypeOf(m *PktTypeMatch) PktType {
	if m == nil {
		return 0
	}
	return m.t
}

// frameIPv4 is what the ip match reads as the addresses (ebt_ip_mt: the
// header at the bridge hooks' network offset, 20 bytes at least).
func frameIPv4(c *Ctx) (src, dst uint32, ok bool) {
	h := c.netHeader()
	if len(h) < 20 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:]), true
}

// frameARPIPv4 is what the arp match reads as the sender and target
// addresses when it tests them (ebt_arp_mt): an IPv4 ARP header whole
// up to the target address.
func frameARPIPv4(c *Ctx) (src, dst uint32, ok bool) {
	h := c.netHeader()
	if len(h) < 8 || h[5] != 4 || binary.BigEndian.Uint16(h[2:]) != packet.EtherTypeIPv4 {
		return 0, 0, false
	}
	hln := int(h[4])
	so, do := 8+hln, 8+2*hln+4
	if do+4 > len(h) {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(h[so:]), binary.BigEndian.Uint32(h[do:]), true
}

// candLists collects the candidate lists of one field.
type candLists struct {
	l [maxLists][]int32
	n int
	// total candidates (an upper bound: a field's lists never share a
	// rule, so it is exact)
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

// cursor walks the candidates of one chain visit: the chosen field's
// sorted lists, merged on the way. on is false for a linear walk.
type cursor struct {
	on bool
	cl candLists
}

// set works out the candidates of a visit of a chain with index x (nil:
// walk it linearly) for the frame as it is now.
func (k *cursor) set(x *chainIndex, c *Ctx) {
	k.on = false
	if x == nil || c.Linear {
		return
	}
	k.on = x.candidates(c, &k.cl)
}

// next is the first candidate at or after rule i, or n (the chain's
// length) when none is left.
func (k *cursor) next(i, n int) int {
	best := n
	for j := 0; j < k.cl.n; j++ {
		l := skip(k.cl.l[j], int32(i))
		k.cl.l[j] = l
		if len(l) > 0 && int(l[0]) < best {
			best = int(l[0])
		}
	}
	return best
}

// skip drops the entries of the sorted list l below i.
func skip(l []int32, i int32) []int32 {
	if len(l) == 0 || l[0] >= i {
		return l
	}
	if len(l) > 8 && l[8] < i {
		lo, hi := 9, len(l)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if l[m] < i {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return l[lo:]
	}
	for len(l) > 0 && l[0] < i {
		l = l[1:]
	}
	return l
}

// candidates fills out with the lists of the field with the fewest
// candidates for the frame; false when they are too many for the index
// to pay (the chain is walked linearly).
//
// A field's wildcards are candidates whatever the frame, so a field
// whose wildcards alone are as many as the best field's candidates so
// far is not looked up, and a field's lookups stop as soon as it has
// that many. On a tie the earlier field is kept: the candidates of any
// field give the same traversal.
func (x *chainIndex) candidates(c *Ctx, out *candLists) bool {
	f := c.Frame
	var tmp candLists
	best, cur := out, &tmp
	best.n, best.total = 0, 0
	// pick keeps the better of cur and best in best and empties cur
	pick := func() {
		if cur.total < best.total {
			*best = *cur
		}
		cur.n, cur.total = 0, 0
	}
	x.src.lists(mac48(f.Src), best, x.nrules)
	if len(x.dst.any) < best.total {
		x.dst.lists(mac48(f.Dst), cur, best.total)
		pick()
	}
	if len(x.ipDst.any) < best.total || len(x.ipSrc.any) < best.total {
		s, d, ok := frameIPv4(c)
		if len(x.ipDst.any) < best.total {
			x.ipDst.lists(d, ok, cur, best.total)
			pick()
		}
		if len(x.ipSrc.any) < best.total {
			x.ipSrc.lists(s, ok, cur, best.total)
			pick()
		}
	}
	if len(x.in.any) < best.total {
		x.in.lists(c.In, cur, best.total)
		pick()
	}
	if len(x.out.any) < best.total {
		x.out.lists(c.Out, cur, best.total)
		pick()
	}
	if len(x.proto.any) < best.total {
		x.proto.lists(f.Proto, cur)
		pick()
	}
	if len(x.arpDst.any) < best.total || len(x.arpSrc.any) < best.total {
		s, d, ok := frameARPIPv4(c)
		if len(x.arpDst.any) < best.total {
			x.arpDst.lists(d, ok, cur, best.total)
			pick()
		}
		if len(x.arpSrc.any) < best.total {
			x.arpSrc.lists(s, ok, cur, best.total)
			pick()
		}
	}
	if len(x.vlan.any) < best.total {
		x.vlan.lists(f.VLANID(), f.VLAN, cur)
		pick()
	}
	if len(x.mark.any) < best.total {
		x.mark.lists(c.Mark, true, cur)
		pick()
	}
	if len(x.pktType.any) < best.total {
		x.pktType.lists(c.PktType, true, cur)
		pick()
	}
	if len(x.lin.any) < best.total {
		x.lin.lists(c.LogicalIn, cur, best.total)
		pick()
	}
	if len(x.lout.any) < best.total {
		x.lout.lists(c.LogicalOut, cur, best.total)
		pick()
	}
	// candidates for most of the chain: merging costs more than it
	// saves
	return best.total*4 < x.nrules*3
}
