package lvs

// Plain reference versions of the kernel schedulers, written from the
// kernel sources a second time without regard for speed: linked lists
// where the kernel has them, whole permutations for Maglev, the
// byte-string hsiphash. sched_test.go runs them against the real ones.

import (
	"encoding/binary"
	"math/bits"

	"github.com/uswitch-lab/uswitch/internal/kernhash"
)

type refSched interface {
	pick(svc *Service, f *Flow) *Dest
	update(svc *Service)
}

func avail(d *Dest) bool { return d.Weight.Load() > 0 && d.Flags.Load()&DestOverload == 0 }

// firstMin returns the first available dest whose cost num/den is
// minimal (exact rational compare): the kernel's strict ">" keeps the
// first of equal candidates.
func firstMin(dests []*Dest, ok func(*Dest) bool, num func(*Dest) int64) *Dest {
	var best *Dest
	for _, d := range dests {
		if !ok(d) {
			continue
		}
		if best == nil || num(d)*int64(best.Weight.Load()) < num(best)*int64(d.Weight.Load()) {
			best = d
		}
	}
	return best
}

// --- rr: a ring with a head sentinel, as struct list_head

type refNode struct {
	d          *Dest // nil for the head
	next, prev *refNode
}

type refList struct{ head *refNode }

func newRefList(dests []*Dest) *refList {
	h := &refNode{}
	h.next, h.prev = h, h
	l := &refList{h}
	// each add goes to the head: add last to first to get dests' order
	for i := len(dests) - 1; i >= 0; i-- {
		l.add(dests[i])
	}
	return l
}

// add is list_add_rcu(&dest->n_list, &svc->destinations): at the head.
func (l *refList) add(d *Dest) {
	n := &refNode{d: d, prev: l.head, next: l.head.next}
	l.head.next.prev = n
	l.head.next = n
}

func (l *refList) find(d *Dest) *refNode {
	for n := l.head.next; n != l.head; n = n.next {
		if n.d == d {
			return n
		}
	}
	return nil
}

// sync brings the ring to svc.Dests by single deletions and head
// additions (what the kernel does for -d and -a), calling del for each
// removed node after it is unlinked. svc.Dests must then be the ring:
// the director has to keep the kernel's order, newest first.
func (l *refList) sync(dests []*Dest, del func(*refNode)) {
	in := map[*Dest]bool{}
	for _, d := range dests {
		in[d] = true
	}
	for n := l.head.next; n != l.head; {
		nx := n.next
		if !in[n.d] {
			n.prev.next = n.next
			n.next.prev = n.prev
			del(n)
		}
		n = nx
	}
	for i := len(dests) - 1; i >= 0; i-- {
		if l.find(dests[i]) == nil {
			l.add(dests[i])
		}
	}
	n := l.head.next
	for _, d := range dests {
		if n == l.head || n.d != d {
			panic("svc.Dests is not the kernel's list order (new dests at the head)")
		}
		n = n.next
	}
	if n != l.head {
		panic("svc.Dests is shorter than the kernel's list")
	}
}

type refRR struct {
	l   *refList
	cur *refNode
}

func (r *refRR) update(svc *Service) {
	if r.l == nil {
		r.l = newRefList(svc.Dests)
		r.cur = r.l.head
		return
	}
	r.l.sync(svc.Dests, func(n *refNode) {
		if r.cur == n {
			r.cur = n.next.prev // the kernel's p->next->prev
		}
	})
}

func (r *refRR) pick(*Service, *Flow) *Dest {
	n := r.cur
	for {
		n = n.next
		if n != r.l.head && avail(n.d) {
			r.cur = n
			return n.d
		}
		if n == r.cur {
			return nil
		}
	}
}

// --- wrr: ip_vs_wrr_schedule over the ring

type refWRR struct {
	l          *refList
	cl         *refNode
	cw, mw, di int32
}

func (r *refWRR) update(svc *Service) {
	if r.l == nil {
		r.l = newRefList(svc.Dests)
	} else {
		r.l.sync(svc.Dests, func(*refNode) {})
	}
	r.cl = r.l.head
	g, m := int32(0), int32(0)
	for _, d := range svc.Dests {
		w := d.Weight.Load()
		if w > 0 {
			if g == 0 {
				g = w
			} else {
				for a, b := w, g; ; {
					if b == 0 {
						g = a
						break
					}
					a, b = b, a%b
				}
			}
		}
		m = max(m, w)
	}
	if g == 0 {
		g = 1
	}
	r.di, r.mw = g, m-(g-1)
	switch {
	case r.cw > r.mw || r.cw == 0:
		r.cw = r.mw
	case r.di > 1:
		r.cw = (r.cw/r.di)*r.di + 1
	}
}

func (r *refWRR) pick(*Service, *Flow) *Dest {
	if r.mw == 0 {
		return nil
	}
	h := r.l.head
	n, last := r.cl, r.cl
	var stop *refNode
	lastPass, restarted := false, false
	for {
		for n = n.next; n != h; n = n.next {
			if !overloaded(n.d) && n.d.Weight.Load() >= r.cw {
				r.cl = n
				return n.d
			}
			if n == stop {
				r.cl = n
				return nil
			}
		}
		r.cw -= r.di
		if r.cw <= 0 {
			r.cw = r.mw
			if lastPass || last == h {
				r.cl = h
				return nil
			}
			restarted = true
		}
		lastPass = r.cw <= r.di
		if lastPass && restarted && last != h {
			stop = last
		}
	}
}

// --- the scans

type refFunc func(svc *Service, f *Flow) *Dest

func (r refFunc) pick(svc *Service, f *Flow) *Dest { return r(svc, f) }
func (refFunc) update(*Service)                    {}

var refLC refFunc = func(svc *Service, _ *Flow) *Dest {
	var best *Dest
	for _, d := range svc.Dests {
		if avail(d) && (best == nil || d.Overhead() < best.Overhead()) {
			best = d
		}
	}
	return best
}

var refWLC refFunc = func(svc *Service, _ *Flow) *Dest {
	return firstMin(svc.Dests, avail, (*Dest).Overhead)
}

func sedCost(d *Dest) int64 { return int64(d.ActiveConns.Load()) + 1 }

var refSED refFunc = func(svc *Service, _ *Flow) *Dest { return firstMin(svc.Dests, avail, sedCost) }

var refNQ refFunc = func(svc *Service, _ *Flow) *Dest {
	for _, d := range svc.Dests {
		if avail(d) && d.ActiveConns.Load() == 0 {
			return d
		}
	}
	return firstMin(svc.Dests, avail, sedCost)
}

var refFO refFunc = func(svc *Service, _ *Flow) *Dest {
	var best *Dest
	for _, d := range svc.Dests {
		if avail(d) && (best == nil || d.Weight.Load() > best.Weight.Load()) {
			best = d
		}
	}
	return best
}

var refOVF refFunc = func(svc *Service, _ *Flow) *Dest {
	var best *Dest
	for _, d := range svc.Dests {
		if avail(d) && d.ActiveConns.Load() <= d.Weight.Load() && (best == nil || d.Weight.Load() > best.Weight.Load()) {
			best = d
		}
	}
	return best
}

var refTWOS refFunc = func(svc *Service, f *Flow) *Dest {
	var ok []*Dest
	total := int64(0)
	for _, d := range svc.Dests {
		if avail(d) {
			ok = append(ok, d)
			total += int64(d.Weight.Load())
		}
	}
	if len(ok) == 0 {
		return nil
	}
	r1, r2 := int64(f.Rand())%(total+1), int64(f.Rand())%(total+1)
	// the first dest whose running weight sum reaches r
	at := func(r int64) *Dest {
		sum := int64(0)
		for _, d := range ok {
			sum += int64(d.Weight.Load())
			if sum >= r {
				return d
			}
		}
		panic("unreachable")
	}
	c1, c2 := at(r1), at(r2)
	if int64(c2.Weight.Load())*c1.Overhead() > int64(c1.Weight.Load())*c2.Overhead() {
		return c2
	}
	return c1
}

// --- dh and sh

func refHash32(v uint32, b uint) uint32 { return uint32(uint64(v)*0x61C88647%(1<<32)) >> (32 - b) }

type refDH struct{ tab [256]*Dest }

func (r *refDH) update(svc *Service) {
	for i := range r.tab {
		r.tab[i] = nil
		if len(svc.Dests) > 0 {
			r.tab[i] = svc.Dests[i%len(svc.Dests)]
		}
	}
}

func (r *refDH) pick(_ *Service, f *Flow) *Dest {
	d := r.tab[refHash32(f.Dst, 8)]
	if d == nil || d.Flags.Load()&DestAvailable == 0 || !avail(d) {
		return nil
	}
	return d
}

type refSH struct{ tab [256]*Dest }

func (r *refSH) update(svc *Service) {
	// the dest list with each dest repeated weight times (at least
	// once), tiled over the table
	var seq []*Dest
	for _, d := range svc.Dests {
		for k := int32(0); k < max(d.Weight.Load(), 1); k++ {
			seq = append(seq, d)
		}
	}
	for i := range r.tab {
		r.tab[i] = nil
		if len(seq) > 0 {
			r.tab[i] = seq[i%len(seq)]
		}
	}
}

func (r *refSH) pick(svc *Service, f *Flow) *Dest {
	port := uint32(0)
	if svc.Flags&SvcSched2 != 0 && (f.Proto == ProtoTCP || f.Proto == ProtoUDP || f.Proto == ProtoSCTP) {
		port = uint32(f.SPort)
	}
	key := func(off uint32) uint32 { return (off + refHash32(port+f.Src, 8)) % 256 }
	h := key(0)
	d := r.tab[h]
	if d == nil {
		return nil
	}
	if avail(d) {
		return d
	}
	if svc.Flags&SvcSched1 == 0 {
		return nil
	}
	for off := uint32(0); off < 256; off++ {
		d = r.tab[key((off+h)%256)]
		if d == nil {
			return nil
		}
		if avail(d) {
			return d
		}
	}
	return nil
}

// --- mh

// refMHHash is ip_vs_mh_hashkey's hsiphash(&v, sizeof(v), key), with the
// general byte-string hsiphash (checked against the kernel's vectors in
// internal/kernhash) where the scheduler uses the one-word form.
func refMHHash(x uint32, key uint64) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], x)
	return kernhash.Hsiphash(b[:], kernhash.HsiphashKey{key, key})
}

type refMH struct {
	tab   []*Dest
	lastW map[*Dest]int32
}

func (r *refMH) update(svc *Service) {
	const M = 4093
	nw := map[*Dest]int32{}
	for _, d := range svc.Dests {
		w, ok := r.lastW[d]
		if !ok || d.Weight.Load() != 0 {
			w = d.Weight.Load()
			if !ok && r.lastW == nil && w == 0 {
				w = d.LastWeight.Load()
			}
		}
		nw[d] = w
	}
	r.lastW = nw
	if len(svc.Dests) > M {
		return
	}
	r.tab = make([]*Dest, M)
	g, mw := int32(0), int32(0)
	for _, d := range svc.Dests {
		if w := nw[d]; w > 0 {
			g = int32(gcdRef(int(g), int(w)))
			mw = max(mw, w)
		}
	}
	if g == 0 {
		return
	}
	shift := max(bits.Len32(uint32(mw/g))-6, 0)
	perms := make([][]int, len(svc.Dests))
	next := make([]int, len(svc.Dests))
	turns := make([]int32, len(svc.Dests))
	for i, d := range svc.Dests {
		off := refMHHash(uint32(d.Port)+d.Addr, 2654435761) % M
		skip := refMHHash(uint32(d.Port)+d.Addr, 2654446892)%(M-1) + 1
		perms[i] = make([]int, M)
		for j := range perms[i] {
			perms[i][j] = int((uint64(off) + uint64(j)*uint64(skip)) % M)
		}
		turns[i] = (nw[d] / g) >> shift
		if turns[i] == 0 && nw[d] != 0 {
			turns[i] = 1
		}
	}
	filled, k := 0, int32(0)
	for filled < M {
		for i := 0; i < len(svc.Dests) && filled < M; {
			if turns[i] < 1 {
				i++
				continue
			}
			for r.tab[perms[i][next[i]]] != nil {
				next[i]++
			}
			r.tab[perms[i][next[i]]] = svc.Dests[i]
			filled++
			if k++; k >= turns[i] {
				k = 0
				i++
			}
		}
	}
}

func gcdRef(a, b int) int {
	if a == 0 {
		return b
	}
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (r *refMH) pick(svc *Service, f *Flow) *Dest {
	const M = 4093
	port := uint32(0)
	if svc.Flags&SvcSched2 != 0 && (f.Proto == ProtoTCP || f.Proto == ProtoUDP || f.Proto == ProtoSCTP) {
		port = uint32(f.SPort)
	}
	if r.tab == nil {
		return nil
	}
	h := refMHHash(port+f.Src, 2654435761) % M
	d := r.tab[h]
	if d == nil {
		return nil
	}
	if avail(d) {
		return d
	}
	if svc.Flags&SvcSched1 == 0 {
		return nil
	}
	for off := uint32(0); off < M; off++ {
		d = r.tab[refMHHash((off+h)%M+port+f.Src, 2654435761)%M]
		if d == nil {
			return nil
		}
		if avail(d) {
			return d
		}
	}
	return nil
}

// --- lblc and lblcr: buckets as slices, head first

type refLEntry struct {
	addr             uint32
	dest             *Dest
	set              []*Dest // lblcr: head first
	lastuse, lastmod int64
}

type refLBLC struct {
	r                bool // lblcr
	buckets          [1024][]*refLEntry
	entries, maxSize int
	counter, rover   int
	exp, next        int64
	started          bool
}

func (r *refLBLC) update(*Service) {}

func (r *refLBLC) get(a uint32) *refLEntry {
	for _, e := range r.buckets[refHash32(a, 10)] {
		if e.addr == a {
			return e
		}
	}
	return nil
}

func (r *refLBLC) remove(e *refLEntry) {
	b := &r.buckets[refHash32(e.addr, 10)]
	for i, x := range *b {
		if x == e {
			*b = append((*b)[:i:i], (*b)[i+1:]...)
			return
		}
	}
}

func (r *refLBLC) push(e *refLEntry) {
	b := &r.buckets[refHash32(e.addr, 10)]
	*b = append([]*refLEntry{e}, *b...)
	r.entries++
}

func (r *refLBLC) tick(now int64) {
	sweep := func(stale func(*refLEntry) bool, goal int, partial bool) {
		j := r.rover
		for i := 0; i < 1024; i++ {
			j = (j + 1) % 1024
			var keep []*refLEntry
			for _, e := range r.buckets[j] {
				if stale(e) {
					r.entries--
					goal--
				} else {
					keep = append(keep, e)
				}
			}
			r.buckets[j] = keep
			if partial && goal <= 0 {
				break
			}
		}
		r.rover = j
	}
	if r.counter%30 == 0 {
		sweep(func(e *refLEntry) bool { return e.lastuse+r.exp <= now }, 0, false)
		r.counter = 1
		return
	}
	if r.entries <= r.maxSize {
		r.counter++
		return
	}
	goal := min((r.entries-r.maxSize)*4/3, r.maxSize/2)
	sweep(func(e *refLEntry) bool { return e.lastuse+6*60*second <= now }, goal, true)
}

func refLOverloaded(d *Dest, dests []*Dest) bool {
	if d.ActiveConns.Load() <= d.Weight.Load() {
		return false
	}
	for _, x := range dests {
		if 2*x.ActiveConns.Load() < x.Weight.Load() {
			return true
		}
	}
	return false
}

func (r *refLBLC) pick(svc *Service, f *Flow) *Dest {
	if !r.started {
		r.started, r.next = true, f.Now+60*second
	}
	for f.Now >= r.next {
		r.tick(r.next)
		r.next += 60 * second
	}
	inSvc := func(d *Dest) bool { return d.Flags.Load()&DestAvailable != 0 }
	e := r.get(f.Dst)
	if !r.r {
		if e != nil {
			e.lastuse = f.Now
			if inSvc(e.dest) && e.dest.Weight.Load() > 0 && !refLOverloaded(e.dest, svc.Dests) {
				return e.dest
			}
		}
		d := refWLC(svc, f)
		if d == nil {
			return nil
		}
		if e != nil {
			if e.dest == d {
				return d
			}
			r.remove(e) // the kernel does not count it out of entries
		}
		r.push(&refLEntry{addr: f.Dst, dest: d, lastuse: f.Now})
		return d
	}
	if e == nil {
		d := refWLC(svc, f)
		if d != nil {
			r.push(&refLEntry{addr: f.Dst, set: []*Dest{d}, lastuse: f.Now, lastmod: f.Now})
		}
		return d
	}
	e.lastuse = f.Now
	// weighted least-connection member that is in the service
	var d *Dest
	for _, x := range e.set {
		if avail(x) && inSvc(x) && (d == nil || x.Overhead()*int64(d.Weight.Load()) < d.Overhead()*int64(x.Weight.Load())) {
			d = x
		}
	}
	if len(e.set) > 1 && f.Now > e.lastmod+r.exp {
		// weighted most-loaded member with a weight
		var m *Dest
		for _, x := range e.set {
			if x.Weight.Load() > 0 && (m == nil || x.Overhead()*int64(m.Weight.Load()) > m.Overhead()*int64(x.Weight.Load())) {
				m = x
			}
		}
		if m != nil {
			for i, x := range e.set {
				if x == m {
					e.set = append(e.set[:i:i], e.set[i+1:]...)
					break
				}
			}
			e.lastmod = f.Now
		}
	}
	if d != nil && !refLOverloaded(d, svc.Dests) {
		return d
	}
	d = refWLC(svc, f)
	if d == nil {
		return nil
	}
	for _, x := range e.set {
		if x == d {
			return d
		}
	}
	e.set = append([]*Dest{d}, e.set...)
	e.lastmod = f.Now
	return d
}
