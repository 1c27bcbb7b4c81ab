package ebtables

import (
	"encoding/binary"
	"math/bits"
	"sort"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// The compiled classifier: an index over the link-level fields rules
// test, so a chain's traversal visits only the rules that can match the
// frame, in their order, instead of every rule (the approach of
// iptables/classify.go, on L2 fields, with the fields intersected).
//
// A chain of at least minIndexed rules is cut into blocks of blockRules
// rules. In each block every rule is filed, per field, under the value
// it requires:
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
// index does not model (an inversion, a mark mask, more distinct masks,
// prefix lengths or name prefixes than a field keeps), is a wildcard of
// the field.
//
// For a frame, each field a block's rules constrain gives the set of the
// block's rules admitting the frame's value (the wildcards, plus the
// entries of its value, each a short list or a bitset; a one-hash Bloom
// filter in front of each map answers most misses); the candidates
// are the intersection of those sets, a bitset of the block, and the
// traversal evaluates just those rules, each in full (basic part,
// matches, watchers, target) and in order. A rule that matches the
// frame is in every field's set, and a skipped rule would have failed
// before any stateful match, so the first match, the counters, the log
// requests and every target's effect are those of the linear walk. A
// block's candidates are worked out when the traversal first reaches
// the block, from the frame as it is then; a chain entered or returned
// to, and an extension target that lets the traversal go on (mark, dnat,
// snat and redirect change the mark, the MACs and the packet type the
// index reads), start over from the frame as it is. Ctx.Linear keeps
// the rule-by-rule walk, the reference the tests compare the classifier
// with.

// minIndexed is the chain length from which an index pays.
const minIndexed = 16

// blockRules is the rules of one block: its candidate set is a bitset
// of blockWords words on the traversal's stack.
const (
	blockRules = 1024
	blockWords = blockRules / 64
)

// maxLists bounds the entries one field yields for a frame (one per
// mask, prefix length or port-name prefix, besides the exact name); a
// field files the rules of groups beyond that as wildcards.
const maxLists = 8

// bigEntry is the length from which an entry keeps a bitset besides its
// list: setting that many bits one by one costs more than or-ing the
// words.
const bigEntry = 2 * blockWords

// ruleSet is a set of a block's rules.
type ruleSet [blockWords]uint64

func (s *ruleSet) add(r uint16)      { s[r>>6] |= 1 << (r & 63) }
func (s *ruleSet) has(r uint16) bool { return s[r>>6]&(1<<(r&63)) != 0 }

// entry is the rules of a block filed under one value: their indexes
// in the block, ascending, and for a long list the same as a bitset.
type entry struct {
	rules []uint16
	set   *ruleSet
}

func (e *entry) finish() {
	if len(e.rules) > bigEntry {
		e.set = new(ruleSet)
		for _, r := range e.rules {
			e.set.add(r)
		}
	}
}

// orInto adds the entry's rules to f.
func (e *entry) orInto(f *ruleSet, nw int) {
	if e.set != nil {
		for w := 0; w < nw; w++ {
			f[w] |= e.set[w]
		}
		return
	}
	for _, r := range e.rules {
		f.add(r)
	}
}

// entryMap files rules by an exact value.
type entryMap[K comparable] map[K]*entry

func (m *entryMap[K]) add(k K, r uint16) {
	if *m == nil {
		*m = entryMap[K]{}
	}
	e := (*m)[k]
	if e == nil {
		e = &entry{}
		(*m)[k] = e
	}
	e.rules = append(e.rules, r)
}

func (m entryMap[K]) finish() {
	for _, e := range m {
		e.finish()
	}
}

func (m entryMap[K]) size() int {
	n := 0
	for _, e := range m {
		n += len(e.rules)
	}
	return n
}

// keyFilter is a one-hash Bloom filter over a map's keys: most frames'
// values are in no rule, and a bit test is cheaper than the map's miss.
type keyFilter [64]uint64

// keyHash spreads a key over the filter's 4,096 bits (Fibonacci
// hashing: the top 12 bits of the product).
func keyHash(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> 52 }

func strHash(s string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return keyHash(h)
}

func (f *keyFilter) add(h uint64)      { f[h>>6] |= 1 << (h & 63) }
func (f *keyFilter) has(h uint64) bool { return f[h>>6]&(1<<(h&63)) != 0 }

// wilds are a field's wildcards: active says some rule of the block
// constrains the field (otherwise it is not looked at).
type wilds struct {
	active bool
	set    ruleSet
	rules  []uint16 // while building
}

func (w *wilds) add(r uint16) { w.rules = append(w.rules, r) }

func (w *wilds) finish(n int) {
	w.active = len(w.rules) < n
	for _, r := range w.rules {
		w.set.add(r)
	}
	w.rules = nil
}

// candLists collects the entries of one field for a frame.
type candLists struct {
	e [maxLists]*entry
	n int
}

func (cl *candLists) add(e *entry) {
	if e != nil {
		cl.e[cl.n] = e
		cl.n++
	}
}

// narrow intersects acc with the field's set for the frame (its
// wildcards and the entries in cl) and returns how many candidates are
// left, counted up to fewCandidates+1 (0: none).
func narrow(acc *ruleSet, nw int, any *wilds, cl *candLists) int {
	if nw == blockWords {
		// a full block: the fixed-size forms, without bounds checks
		switch {
		case cl.n == 0:
			// the common case of a value no rule names: the wildcards
			return andFull(acc, &any.set)
		case cl.n == 1 && cl.e[0].set != nil:
			return andOrFull(acc, &any.set, cl.e[0].set)
		}
		f := any.set
		for j := 0; j < cl.n; j++ {
			cl.e[j].orInto(&f, blockWords)
		}
		return andFull(acc, &f)
	}
	a, wl := acc[:nw], any.set[:nw]
	or := uint64(0)
	switch {
	case cl.n == 0:
		for i := range a {
			a[i] &= wl[i]
			or |= a[i]
		}
	case cl.n == 1 && cl.e[0].set != nil:
		s := cl.e[0].set[:nw]
		for i := range a {
			a[i] &= wl[i] | s[i]
			or |= a[i]
		}
	default:
		f := any.set
		for j := 0; j < cl.n; j++ {
			cl.e[j].orInto(&f, nw)
		}
		for i := range a {
			a[i] &= f[i]
			or |= a[i]
		}
	}
	if or == 0 {
		return 0
	}
	return countUpTo(a, fewCandidates+1)
}

// andFull is acc &= w over a full block, returning the candidates left
// as narrow does.
func andFull(acc, w *ruleSet) int {
	or := uint64(0)
	for i := 0; i < blockWords; i += 4 {
		a := (*[4]uint64)(acc[i : i+4])
		b := (*[4]uint64)(w[i : i+4])
		a[0] &= b[0]
		a[1] &= b[1]
		a[2] &= b[2]
		a[3] &= b[3]
		or |= a[0] | a[1] | a[2] | a[3]
	}
	if or == 0 {
		return 0
	}
	return countUpTo(acc[:], fewCandidates+1)
}

// andOrFull is acc &= w | s over a full block, as andFull.
func andOrFull(acc, w, s *ruleSet) int {
	or := uint64(0)
	for i := 0; i < blockWords; i += 4 {
		a := (*[4]uint64)(acc[i : i+4])
		b := (*[4]uint64)(w[i : i+4])
		c := (*[4]uint64)(s[i : i+4])
		a[0] &= b[0] | c[0]
		a[1] &= b[1] | c[1]
		a[2] &= b[2] | c[2]
		a[3] &= b[3] | c[3]
		or |= a[0] | a[1] | a[2] | a[3]
	}
	if or == 0 {
		return 0
	}
	return countUpTo(acc[:], fewCandidates+1)
}

// countUpTo counts the rules of a, stopping at max.
func countUpTo(a []uint64, max int) int {
	n := 0
	for _, w := range a {
		if w == 0 {
			continue // most words of a narrowed set
		}
		if n += bits.OnesCount64(w); n >= max {
			return n
		}
	}
	return n
}

// fewCandidates is the candidate count at which looking further fields
// up costs more than evaluating the candidates.
const fewCandidates = 2

// exactField files rules by an exact value.
type exactField[K comparable] struct {
	m   entryMap[K]
	any wilds
}

func (f *exactField[K]) add(r uint16, k K, ok bool) {
	if ok {
		f.m.add(k, r)
	} else {
		f.any.add(r)
	}
}

func (f *exactField[K]) finish(n int) {
	f.m.finish()
	f.any.finish(n)
}

// lists adds the entry of value k (known: the frame has the field).
func (f *exactField[K]) lists(k K, known bool, cl *candLists) {
	if known && f.m != nil {
		cl.add(f.m[k])
	}
}

// macGroup is the rules testing one mask: masked address -> rules.
type macGroup struct {
	mask uint64
	m    entryMap[uint64]
	f    *keyFilter // m's keys
	t    addrTable  // m for lookups
}

// addrTable is an entryMap[uint64] as an open-addressed table (linear
// probing, at most half full; a nil entry is an empty slot): a lookup
// is a few loads, no call into the map runtime. Its index is keyHash's
// 12 bits: a block's at most blockRules keys need no more slots.
type addrTable struct {
	keys []uint64
	ents []*entry
	mask uint64
}

func (t *addrTable) build(m entryMap[uint64]) {
	n := 4
	for n < 2*len(m) {
		n *= 2
	}
	t.keys, t.ents, t.mask = make([]uint64, n), make([]*entry, n), uint64(n-1)
	for k, e := range m {
		i := keyHash(k) & t.mask
		for t.ents[i] != nil {
			i = (i + 1) & t.mask
		}
		t.keys[i], t.ents[i] = k, e
	}
}

// get is the entry of k, nil if none; h is keyHash(k).
func (t *addrTable) get(k, h uint64) *entry {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		e := t.ents[i]
		if e == nil || t.keys[i] == k {
			return e
		}
	}
}

// macField files -s or -d by mask and masked address.
type macField struct {
	groups []macGroup
	any    wilds
}

func mac48(m packet.MAC) uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

func (f *macField) add(r uint16, m *MACMatch) {
	mask := mac48(m.Mask)
	if !m.Set || m.Inv || mask == 0 {
		f.any.add(r)
		return
	}
	// the address as given, not masked: an address with bits outside
	// its mask matches nothing (maskedEq), and no frame's masked
	// address finds it
	a := mac48(m.Addr)
	for k := range f.groups {
		if f.groups[k].mask == mask {
			f.groups[k].m.add(a, r)
			return
		}
	}
	g := macGroup{mask: mask}
	g.m.add(a, r)
	f.groups = append(f.groups, g)
}

// finish keeps the maxLists largest groups and files the others' rules
// as wildcards.
func (f *macField) finish(n int) {
	if len(f.groups) > maxLists {
		sort.SliceStable(f.groups, func(a, b int) bool { return f.groups[a].m.size() > f.groups[b].m.size() })
		for _, g := range f.groups[maxLists:] {
			for _, e := range g.m {
				f.any.rules = append(f.any.rules, e.rules...)
			}
		}
		f.groups = f.groups[:maxLists]
	}
	for k := range f.groups {
		g := &f.groups[k]
		g.m.finish()
		g.f = new(keyFilter)
		for a := range g.m {
			g.f.add(keyHash(a))
		}
		g.t.build(g.m)
	}
	f.any.finish(n)
}

func (f *macField) lists(a uint64, cl *candLists) {
	for k := range f.groups {
		g := &f.groups[k]
		key := a & g.mask
		if h := keyHash(key); g.f.has(h) {
			cl.add(g.t.get(key, h))
		}
	}
}

// protoField files -p: an ethertype, or Length (an 802.3 frame).
type protoField struct {
	m entryMap[uint16]
	// keys and ents are m when it is small: a scan beats hashing
	keys   []uint16
	ents   []*entry
	length entry
	any    wilds
}

func (f *protoField) add(r uint16, rule *Rule) {
	switch {
	case !rule.ProtoSet || rule.ProtoInv:
		f.any.add(r)
	case rule.Length:
		f.length.rules = append(f.length.rules, r)
	default:
		f.m.add(rule.Proto, r)
	}
}

func (f *protoField) finish(n int) {
	f.m.finish()
	if len(f.m) <= maxLists {
		for k, e := range f.m {
			f.keys = append(f.keys, k)
			f.ents = append(f.ents, e)
		}
		f.m = nil
	}
	f.length.finish()
	f.any.finish(n)
}

func (f *protoField) lists(proto uint16, cl *candLists) {
	if proto < packet.EtherTypeMin {
		if len(f.length.rules) > 0 {
			cl.add(&f.length)
		}
	} else if f.m != nil {
		cl.add(f.m[proto])
	} else {
		for k, p := range f.keys {
			if p == proto {
				cl.add(f.ents[k])
				break
			}
		}
	}
}

// wildGroup is the rules testing one "name+" prefix.
type wildGroup struct {
	prefix string
	e      *entry
}

// ifField files -i, -o, --logical-in or --logical-out: exact names, and
// "name+" by prefix.
type ifField struct {
	exact entryMap[string]
	ef    keyFilter // exact's keys
	wild  []wildGroup
	any   wilds
}

func (f *ifField) add(r uint16, m *IfMatch) {
	switch {
	case !m.Set || m.Inv:
		f.any.add(r)
	case m.Wild:
		for k := range f.wild {
			if f.wild[k].prefix == m.Name {
				f.wild[k].e.rules = append(f.wild[k].e.rules, r)
				return
			}
		}
		f.wild = append(f.wild, wildGroup{m.Name, &entry{rules: []uint16{r}}})
	default:
		f.exact.add(m.Name, r)
	}
}

// finish keeps the maxLists-1 largest prefix groups (the exact name
// takes an entry too) and files the others' rules as wildcards.
func (f *ifField) finish(n int) {
	if len(f.wild) > maxLists-1 {
		sort.SliceStable(f.wild, func(a, b int) bool { return len(f.wild[a].e.rules) > len(f.wild[b].e.rules) })
		for _, g := range f.wild[maxLists-1:] {
			f.any.rules = append(f.any.rules, g.e.rules...)
		}
		f.wild = f.wild[:maxLists-1]
	}
	f.exact.finish()
	for name := range f.exact {
		f.ef.add(strHash(name))
	}
	for _, g := range f.wild {
		g.e.finish()
	}
	f.any.finish(n)
}

// lists adds the entries for the port name; "" (no port) fails every
// positive test (ebt_dev_check), so only the wildcards remain.
func (f *ifField) lists(name string, cl *candLists) {
	if name == "" {
		return
	}
	if f.exact != nil && f.ef.has(strHash(name)) {
		cl.add(f.exact[name])
	}
	for k := range f.wild {
		if strings.HasPrefix(name, f.wild[k].prefix) {
			cl.add(f.wild[k].e)
		}
	}
}

// prefixField files IPv4 addresses by prefix.
type prefixField struct {
	lens  []uint8 // prefix lengths with entries
	byLen [33]entryMap[uint32]
	filt  [33]*keyFilter // byLen's keys
	any   wilds
}

// prefixLen is the length of a contiguous mask.
func prefixLen(mask uint32) (int, bool) {
	n := bits.LeadingZeros32(^mask)
	if n < 32 && mask<<n != 0 {
		return 0, false
	}
	return n, true
}

func (f *prefixField) add(r uint16, set, inv bool, addr, mask uint32) {
	n, ok := prefixLen(mask)
	if !set || inv || !ok || n == 0 {
		f.any.add(r)
		return
	}
	// as given: an address with bits outside its mask matches nothing
	f.byLen[n].add(addr, r)
}

// finish lists the lengths in use, keeping the maxLists most used and
// filing the others' rules as wildcards.
func (f *prefixField) finish(n int) {
	for l := 32; l > 0; l-- {
		if f.byLen[l] != nil {
			f.lens = append(f.lens, uint8(l))
		}
	}
	if len(f.lens) > maxLists {
		sort.SliceStable(f.lens, func(a, b int) bool { return f.byLen[f.lens[a]].size() > f.byLen[f.lens[b]].size() })
		for _, l := range f.lens[maxLists:] {
			for _, e := range f.byLen[l] {
				f.any.rules = append(f.any.rules, e.rules...)
			}
			f.byLen[l] = nil
		}
		f.lens = f.lens[:maxLists]
	}
	for _, l := range f.lens {
		f.byLen[l].finish()
		f.filt[l] = new(keyFilter)
		for a := range f.byLen[l] {
			f.filt[l].add(keyHash(uint64(a)))
		}
	}
	f.any.finish(n)
}

func (f *prefixField) lists(a uint32, known bool, cl *candLists) {
	if !known {
		return
	}
	for _, l := range f.lens {
		if key := a & (^uint32(0) << (32 - l)); f.filt[l].has(keyHash(uint64(key))) {
			cl.add(f.byLen[l][key])
		}
	}
}

// indexedMatches are the matches whose fields a rule requires, from
// the matches before the first stateful one (limit).
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

// chainIndex is one chain's index: its blocks in order. Immutable once
// built.
type chainIndex struct {
	size   int // rules a block (blockRules; tests make it smaller)
	shift  int // log2(size): sizes are powers of two
	blocks []*blockIndex
}

// indexBlockRules is the block size buildIndex uses: blockRules, less in
// tests, so small chains have several blocks; a power of two (the
// traversal shifts instead of dividing).
var indexBlockRules = blockRules

// blockIndex indexes the n rules of a chain from base.
type blockIndex struct {
	base, n, nw        int
	src, dst           macField
	proto              protoField
	in, out, lin, lout ifField
	ipSrc, ipDst       prefixField
	arpSrc, arpDst     prefixField
	vlan               exactField[uint16]
	mark               exactField[uint32]
	pktType            exactField[PktType]
	// all is the set of the block's n rules (the words past nw zero);
	// sd is all narrowed by the source and destination MACs' wildcards
	// (what a frame whose addresses no rule names keeps), sdN its size
	all, sd ruleSet
	sdN     int
}

func buildIndex(c *Chain) *chainIndex {
	if len(c.Rules) < minIndexed {
		return nil
	}
	if indexBlockRules&(indexBlockRules-1) != 0 {
		panic("ebtables: classifier block size not a power of two")
	}
	x := &chainIndex{size: indexBlockRules, shift: bits.TrailingZeros(uint(indexBlockRules))}
	for base := 0; base < len(c.Rules); base += x.size {
		x.blocks = append(x.blocks, buildBlock(c.Rules[base:min(base+x.size, len(c.Rules))], base))
	}
	return x
}

func buildBlock(rules []*Rule, base int) *blockIndex {
	x := &blockIndex{base: base, n: len(rules), nw: (len(rules) + 63) / 64}
	for k := range rules {
		x.all.add(uint16(k))
	}
	for k, r := range rules {
		i := uint16(k)
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
			x.ipSrc.any.add(i)
			x.ipDst.any.add(i)
		}
		if a := m.arp; a != nil {
			x.arpSrc.add(i, a.sipSet, a.sipInv, a.sip, a.smsk)
			x.arpDst.add(i, a.dipSet, a.dipInv, a.dip, a.dmsk)
		} else {
			x.arpSrc.any.add(i)
			x.arpDst.any.add(i)
		}
		if v := m.vlan; v != nil && v.idSet && !v.idInv {
			x.vlan.add(i, v.id, true)
		} else {
			x.vlan.any.add(i)
		}
		if mk := m.mark; mk != nil && !mk.inv && !mk.anyBit && mk.mask == 0xffffffff {
			x.mark.add(i, mk.value, true)
		} else {
			x.mark.any.add(i)
		}
		if pt := m.pkt; pt != nil && !pt.inv {
			x.pktType.add(i, pt.t, true)
		} else {
			x.pktType.any.add(i)
		}
	}
	n := x.n
	x.src.finish(n)
	x.dst.finish(n)
	x.proto.finish(n)
	x.in.finish(n)
	x.out.finish(n)
	x.lin.finish(n)
	x.lout.finish(n)
	x.ipSrc.finish(n)
	x.ipDst.finish(n)
	x.arpSrc.finish(n)
	x.arpDst.finish(n)
	x.vlan.finish(n)
	x.mark.finish(n)
	x.pktType.finish(n)
	x.sd = x.all
	for w := range x.sd {
		if x.src.any.active {
			x.sd[w] &= x.src.any.set[w]
		}
		if x.dst.any.active {
			x.sd[w] &= x.dst.any.set[w]
		}
		x.sdN += bits.OnesCount64(x.sd[w])
	}
	return x
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

// candidates sets acc to the block's rules that can match the frame
// and reports whether there is one. The fields go from the fixed part
// to the matches; it stops as soon as fewCandidates or fewer are left
// (each is evaluated in full anyway).
func (x *blockIndex) candidates(c *Ctx, acc *ruleSet) bool {
	nw := x.nw
	f := c.Frame
	var cl, cl2 candLists
	// each step looks the frame's value up in one field and narrows acc;
	// the MACs first, both at once when no rule names either (their
	// wildcards' intersection is precomputed)
	if x.src.any.active {
		x.src.lists(mac48(f.Src), &cl)
	}
	if x.dst.any.active {
		x.dst.lists(mac48(f.Dst), &cl2)
	}
	if cl.n == 0 && cl2.n == 0 {
		*acc = x.sd
		if x.sdN <= fewCandidates {
			return x.sdN > 0
		}
	} else if n, ok := x.macsInto(acc, &cl, &cl2); ok {
		if n <= fewCandidates {
			return n > 0
		}
		cl.n = 0
	} else {
		*acc = x.all
		if x.src.any.active {
			if n := narrow(acc, nw, &x.src.any, &cl); n <= fewCandidates {
				return n > 0
			}
		}
		if x.dst.any.active {
			if n := narrow(acc, nw, &x.dst.any, &cl2); n <= fewCandidates {
				return n > 0
			}
		}
		cl.n = 0
	}
	if x.proto.any.active {
		x.proto.lists(f.Proto, &cl)
		if n := narrow(acc, nw, &x.proto.any, &cl); n <= fewCandidates {
			return n > 0
		}
		cl.n = 0
	}
	if x.in.any.active {
		x.in.lists(c.In, &cl)
		if n := narrow(acc, nw, &x.in.any, &cl); n <= fewCandidates {
			return n > 0
		}
		cl.n = 0
	}
	if x.out.any.active {
		x.out.lists(c.Out, &cl)
		if n := narrow(acc, nw, &x.out.any, &cl); n <= fewCandidates {
			return n > 0
		}
		cl.n = 0
	}
	if x.lin.any.active {
		x.lin.lists(c.LogicalIn, &cl)
		if n := narrow(acc, nw, &x.lin.any, &cl); n <= fewCandidates {
			return n > 0
		}
		cl.n = 0
	}
	if x.lout.any.active {
		x.lout.lists(c.LogicalOut, &cl)
		if n := narrow(acc, nw, &x.lout.any, &cl); n <= fewCandidates {
			return n > 0
		}
		cl.n = 0
	}
	if x.ipDst.any.active || x.ipSrc.any.active {
		s, d, ok := frameIPv4(c)
		for _, p := range [...]struct {
			f *prefixField
			a uint32
		}{{&x.ipDst, d}, {&x.ipSrc, s}} {
			if p.f.any.active {
				p.f.lists(p.a, ok, &cl)
				if n := narrow(acc, nw, &p.f.any, &cl); n <= fewCandidates {
					return n > 0
				}
				cl.n = 0
			}
		}
	}
	if x.arpDst.any.active || x.arpSrc.any.active {
		s, d, ok := frameARPIPv4(c)
		for _, p := range [...]struct {
			f *prefixField
			a uint32
		}{{&x.arpDst, d}, {&x.arpSrc, s}} {
			if p.f.any.active {
				p.f.lists(p.a, ok, &cl)
				if n := narrow(acc, nw, &p.f.any, &cl); n <= fewCandidates {
					return n > 0
				}
				cl.n = 0
			}
		}
	}
	if x.vlan.any.active {
		x.vlan.lists(f.VLANID(), f.VLAN, &cl)
		if n := narrow(acc, nw, &x.vlan.any, &cl); n <= fewCandidates {
			return n > 0
		}
		cl.n = 0
	}
	if x.mark.any.active {
		x.mark.lists(c.Mark, true, &cl)
		if n := narrow(acc, nw, &x.mark.any, &cl); n <= fewCandidates {
			return n > 0
		}
		cl.n = 0
	}
	if x.pktType.any.active {
		x.pktType.lists(c.PktType, true, &cl)
		return narrow(acc, nw, &x.pktType.any, &cl) > 0
	}
	return true
}

// maxMACList bounds the rules macsInto takes from each address's
// entries.
const maxMACList = 16

// macsInto sets acc to the block's rules the frame's source and
// destination MACs admit when the entries they found (cl for the
// source, cl2 for the destination) are short lists: the precomputed
// intersection of both wildcards, plus each listed rule the other
// address admits (a wildcard there, or listed there too). It returns
// the candidates' count; ok false leaves acc alone for the general way.
func (x *blockIndex) macsInto(acc *ruleSet, cl, cl2 *candLists) (n int, ok bool) {
	ns, nd := 0, 0
	for j := 0; j < cl.n; j++ {
		ns += len(cl.e[j].rules)
	}
	for j := 0; j < cl2.n; j++ {
		nd += len(cl2.e[j].rules)
	}
	if ns > maxMACList || nd > maxMACList {
		return 0, false
	}
	*acc = x.sd
	n = x.sdN
	for j := 0; j < cl.n; j++ {
		for _, r := range cl.e[j].rules {
			if (x.dst.any.set.has(r) || cl2.lists(r)) && !acc.has(r) {
				acc.add(r)
				n++
			}
		}
	}
	for j := 0; j < cl2.n; j++ {
		for _, r := range cl2.e[j].rules {
			if x.src.any.set.has(r) && !acc.has(r) {
				acc.add(r)
				n++
			}
		}
	}
	return n, true
}

// lists says whether rule r is in one of the entries' lists.
func (cl *candLists) lists(r uint16) bool {
	for j := 0; j < cl.n; j++ {
		for _, q := range cl.e[j].rules {
			if q == r {
				return true
			}
		}
	}
	return false
}

// cursor walks the candidates of one chain visit block by block; x is
// nil for a linear walk.
type cursor struct {
	x   *chainIndex
	c   *Ctx
	blk int // the block whose candidates acc holds; -1: none yet
	acc ruleSet
	any bool // acc has a candidate
}

// set starts the candidates of a visit of a chain with index x (nil:
// walk it linearly) over, from the frame as it is now.
func (k *cursor) set(x *chainIndex, c *Ctx) {
	k.x = nil
	if x == nil || c.Linear {
		return
	}
	k.x, k.c, k.blk = x, c, -1
}

// next is the first candidate at or after rule i, or n (the chain's
// length) when none is left.
func (k *cursor) next(i, n int) int {
	for i < n {
		b := i >> k.x.shift
		bx := k.x.blocks[b]
		if b != k.blk {
			k.any = bx.candidates(k.c, &k.acc)
			k.blk = b
		}
		if !k.any {
			i = bx.base + bx.n
			continue
		}
		rel := i - bx.base
		w := rel >> 6
		m := k.acc[w] & (^uint64(0) << (rel & 63))
		for {
			if m != 0 {
				return bx.base + w<<6 + bits.TrailingZeros64(m)
			}
			w++
			// empty words four at a time
			for w+4 <= bx.nw && k.acc[w]|k.acc[w+1]|k.acc[w+2]|k.acc[w+3] == 0 {
				w += 4
			}
			if w >= bx.nw {
				break
			}
			m = k.acc[w]
		}
		i = bx.base + bx.n
	}
	return n
}
