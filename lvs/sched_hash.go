package lvs

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/internal/kernhash"
)

// The hashing schedulers keep a lookup table built by Update from the
// dest list and published through an atomic pointer: Schedule reads one
// table whole, without a lock, and never allocates.

// dhTabBits is CONFIG_IP_VS_DH_TAB_BITS and shTabBits
// CONFIG_IP_VS_SH_TAB_BITS (default 8: 256 buckets).
const (
	dhTabBits = 8
	dhTabSize = 1 << dhTabBits
	shTabBits = 8
	shTabSize = 1 << shTabBits
	shTabMask = shTabSize - 1
)

// dhSched is ip_vs_dh.c: bucket hash_32(daddr, 8) of a 256-bucket table
// that repeats the dest list in order, one bucket per dest, weights
// ignored. The table is rebuilt on add_dest and del_dest only (the
// kernel has no upd_dest for dh; weights do not enter the table).
type dhSched struct {
	tab atomic.Pointer[[dhTabSize]*Dest]
}

func newDH(svc *Service) *dhSched {
	s := &dhSched{}
	s.Update(svc)
	return s
}

func (*dhSched) Name() string { return "dh" }

// Update is ip_vs_dh_reassign.
func (s *dhSched) Update(svc *Service) {
	t := new([dhTabSize]*Dest)
	if n := len(svc.Dests); n > 0 {
		for i := range t {
			t[i] = svc.Dests[i%n]
		}
	}
	s.tab.Store(t)
}

func (s *dhSched) Schedule(_ *Service, f *Flow) *Dest {
	d := s.tab.Load()[hash32(f.Dst, dhTabBits)]
	if d == nil || d.Flags.Load()&DestAvailable == 0 || d.Weight.Load() <= 0 || overloaded(d) {
		return nil
	}
	return d
}

// shSched is ip_vs_sh.c: bucket hash_32(sport + saddr, 8) (sport only
// with SvcSched2, sh-port) of a 256-bucket table in which each dest, in
// list order, fills as many consecutive buckets as its weight (a
// weight-0 dest still takes one) and the list repeats until the table
// is full. With SvcSched1 (sh-fallback) an unavailable bucket is
// followed by a deterministic probe of the table.
type shSched struct {
	tab atomic.Pointer[[shTabSize]*Dest]
}

func newSH(svc *Service) *shSched {
	s := &shSched{}
	s.Update(svc)
	return s
}

func (*shSched) Name() string { return "sh" }

// Update is ip_vs_sh_reassign (add_dest, del_dest and upd_dest).
func (s *shSched) Update(svc *Service) {
	t := new([shTabSize]*Dest)
	dests := svc.Dests
	if len(dests) > 0 {
		p, count := 0, int32(0)
		for i := range t {
			d := dests[p]
			t[i] = d
			count++
			if count >= d.Weight.Load() {
				p++
				if p == len(dests) {
					p = 0
				}
				count = 0
			}
		}
	}
	s.tab.Store(t)
}

func (s *shSched) Schedule(svc *Service, f *Flow) *Dest {
	t := s.tab.Load()
	var port uint16
	if svc.Flags&SvcSched2 != 0 {
		port = schedPort(f)
	}
	// ip_vs_sh_hashkey with offset 0
	ihash := hash32(uint32(port)+f.Src, shTabBits) & shTabMask
	d := t[ihash]
	if svc.Flags&SvcSched1 == 0 {
		if d == nil || !d.Available() {
			return nil
		}
		return d
	}
	// ip_vs_sh_get_fallback
	if d == nil {
		return nil
	}
	if d.Available() {
		return d
	}
	for off := uint32(0); off < shTabSize; off++ {
		roff := (off + ihash) % shTabSize
		// the kernel hashes again with roff as the offset, so the
		// probe is (roff + ihash) & mask
		d = t[(roff+ihash)&shTabMask]
		if d == nil {
			return nil
		}
		if d.Available() {
			return d
		}
	}
	return nil
}

// Maglev table (ip_vs_mh.c). CONFIG_IP_VS_MH_TAB_INDEX defaults to 12,
// which picks primes[12-8] = 4093 lookup slots; IP_VS_MH_TAB_BITS
// (index/2 = 6) bounds the weight turns before they are shifted down.
const (
	mhTabIndex = 12
	mhTabSize  = 4093
	mhTabBits  = mhTabIndex / 2
)

// The kernel's generate_hash_secret uses fixed keys (not random), so
// the table is the same on every host: each hsiphash_key_t is two
// unsigned longs with the same value.
const (
	mhKey1 = 2654435761
	mhKey2 = 2654446892
)

// mhHash is ip_vs_mh_hashkey for IPv4: hsiphash of the u32
// offset + port + addr (host order) under key k (both key words k).
func mhHash(addr uint32, port uint16, k uint64, offset uint32) uint32 {
	return kernhash.Hsiphash1u32(offset+uint32(port)+addr, kernhash.HsiphashKey{k, k})
}

// mhSched is ip_vs_mh.c: Maglev consistent hashing. Each dest gets a
// permutation of the table slots from hashes of its address and port
// (offset, skip); the table is filled round-robin over the dests, each
// taking weight/gcd >> rshift slots per turn, by its next free preferred
// slot. Clients hash (saddr, plus sport with SvcSched2 mh-port) to a
// slot; SvcSched1 (mh-fallback) probes further when that dest is
// unavailable.
//
// The permutation uses the dests' last_weight, the latest non-zero
// weight (__ip_vs_update_dest): a dest set to weight 0 keeps its slots
// and is only skipped, which keeps the other clients in place. The
// scheduler tracks that value itself in lastW, because Update sees every
// add/edit in order.
type mhSched struct {
	tab atomic.Pointer[[mhTabSize]*Dest]

	mu    sync.Mutex // serialises Update
	lastW map[*Dest]int32
}

func newMH(svc *Service) *mhSched {
	s := &mhSched{lastW: make(map[*Dest]int32)}
	// A dest bound before this scheduler: its weight if non-zero, else
	// the weight it had before it was quiesced.
	for _, d := range svc.Dests {
		w := d.Weight.Load()
		if w == 0 {
			w = d.LastWeight.Load()
		}
		s.lastW[d] = w
	}
	s.tab.Store(new([mhTabSize]*Dest))
	s.rebuild(svc.Dests)
	return s
}

func (*mhSched) Name() string { return "mh" }

// Update is ip_vs_mh_dest_changed.
func (s *mhSched) Update(svc *Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[*Dest]int32, len(svc.Dests))
	for _, d := range svc.Dests {
		w := d.Weight.Load()
		old, known := s.lastW[d]
		if known && w == 0 {
			w = old // keep the last non-zero weight
		}
		seen[d] = w
	}
	s.lastW = seen
	s.rebuild(svc.Dests)
}

// rebuild is ip_vs_mh_reassign: gcd and shift of the last weights,
// ip_vs_mh_permutate and ip_vs_mh_populate.
func (s *mhSched) rebuild(dests []*Dest) {
	if len(dests) > mhTabSize {
		// -EINVAL in the kernel, whose add_dest ignores it: the old
		// table stays
		return
	}
	g, maxw := gcdMaxWeight(dests, func(d *Dest) int32 { return s.lastW[d] })
	t := new([mhTabSize]*Dest)
	if g < 1 {
		s.tab.Store(t) // ip_vs_mh_reset: every slot empty
		return
	}
	shift := bits.Len32(uint32(maxw/g)) - mhTabBits
	if shift < 0 {
		shift = 0
	}
	type setup struct {
		perm, skip uint32
		turns      int32
	}
	ds := make([]setup, len(dests))
	for i, d := range dests {
		off := mhHash(d.Addr, d.Port, mhKey1, 0) % mhTabSize
		ds[i].skip = mhHash(d.Addr, d.Port, mhKey2, 0)%(mhTabSize-1) + 1
		ds[i].perm = off
		lw := s.lastW[d]
		ds[i].turns = (lw / g) >> shift
		if ds[i].turns == 0 && lw != 0 {
			ds[i].turns = 1
		}
	}
	var used [(mhTabSize + 63) / 64]uint64
	n, dt := 0, int32(0)
	for n < mhTabSize {
		for i := 0; i < len(dests); {
			if ds[i].turns < 1 {
				i++ // a dest added with weight 0 takes no slot
				continue
			}
			c := ds[i].perm
			for used[c/64]&(1<<(c%64)) != 0 {
				ds[i].perm += ds[i].skip
				if ds[i].perm >= mhTabSize {
					ds[i].perm -= mhTabSize
				}
				c = ds[i].perm
			}
			used[c/64] |= 1 << (c % 64)
			t[c] = dests[i]
			n++
			if n == mhTabSize {
				break
			}
			dt++
			if dt >= ds[i].turns {
				dt = 0
				i++
			}
		}
	}
	s.tab.Store(t)
}

func (s *mhSched) Schedule(svc *Service, f *Flow) *Dest {
	t := s.tab.Load()
	var port uint16
	if svc.Flags&SvcSched2 != 0 {
		port = schedPort(f)
	}
	ihash := mhHash(f.Src, port, mhKey1, 0) % mhTabSize
	d := t[ihash]
	if svc.Flags&SvcSched1 == 0 {
		if d == nil || !d.Available() {
			return nil
		}
		return d
	}
	// ip_vs_mh_get_fallback
	if d == nil {
		return nil
	}
	if d.Available() {
		return d
	}
	for off := uint32(0); off < mhTabSize; off++ {
		roff := (off + ihash) % mhTabSize
		d = t[mhHash(f.Src, port, mhKey1, roff)%mhTabSize]
		if d == nil {
			return nil
		}
		if d.Available() {
			return d
		}
	}
	return nil
}
