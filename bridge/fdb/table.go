package fdb

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/packet"
)

// Key is an FDB key: struct net_bridge_fdb_key, an address and a VLAN id
// (always 0 here: without VLAN filtering the kernel learns and looks up
// with vid 0, br_allowed_ingress).
type Key struct {
	MAC  packet.MAC
	VLAN uint16
}

// Entry flags, the BR_FDB_* bits of struct net_bridge_fdb_entry that
// matter here (br_private.h).
const (
	flagLocal       uint32 = 1 << iota // BR_FDB_LOCAL: the bridge's or a port's own address; frames go up
	flagStatic                         // BR_FDB_STATIC: never ages (local entries are static too)
	flagSticky                         // BR_FDB_STICKY: never moved by learning
	flagAddedByUser                    // BR_FDB_ADDED_BY_USER
	flagLearned                        // BR_FDB_DYNAMIC_LEARNED: counted against fdb_max_learned
)

// entry is struct net_bridge_fdb_entry. key and seq never change; the
// rest is atomic so that learning and forwarding update it without a
// lock.
type entry struct {
	key     Key
	seq     uint64       // creation order: the kernel's fdb_list has the newest first
	port    atomic.Int32 // dst: a port number, or BridgePort
	flags   atomic.Uint32
	updated atomic.Int64 // last learned or refreshed (ageing counts from here)
	used    atomic.Int64 // last forwarded to
	// dead: the entry left the table (a Path holding it is stale)
	dead atomic.Bool
}

// table is the FDB's hash table (the kernel's rhashtable under RCU):
// lookups take no lock; they probe an array of atomic pointers, which
// writers (learning a new address, adding, removing) change under mu
// and replace whole when it fills up.
//
// The array is open-addressed with linear probing. A removed entry
// leaves a tombstone (a reader probing past it must go on), which a
// later insert may reuse; the array is rebuilt, without tombstones and
// twice as large if the entries need it, when entries and tombstones
// fill half of it. A reader that loaded the array before a rebuild
// works on the old one: it finds what was there when it started, as an
// RCU reader does.
type table struct {
	mu    sync.Mutex // writers
	slots atomic.Pointer[slotArray]
	// live and used (live entries plus tombstones) count the current
	// array's slots; guarded by mu
	live, used int
	seq        atomic.Uint64
	nLearn     atomic.Int64 // fdb_n_learned
	// seed keys the hash (the kernel's rhashtable has a random seed
	// too): addresses a sender picks cannot be made to collide
	seed uint64
}

// slotArray is one generation of the table: 1<<k slots.
type slotArray struct {
	mask  uint64
	slots []atomic.Pointer[entry]
}

// tombstone marks a slot whose entry was removed.
var tombstone = new(entry)

// minSlots is the smallest array.
const minSlots = 64

func (t *table) init() {
	t.seed = rand.Uint64()
	t.slots.Store(newSlotArray(minSlots))
}

func newSlotArray(n int) *slotArray {
	return &slotArray{mask: uint64(n - 1), slots: make([]atomic.Pointer[entry], n)}
}

// hash is a seeded multiplicative hash of the key (the top bits
// spread best: they are folded down).
func (t *table) hash(k Key) uint64 {
	v := uint64(k.MAC[0])<<40 | uint64(k.MAC[1])<<32 | uint64(k.MAC[2])<<24 |
		uint64(k.MAC[3])<<16 | uint64(k.MAC[4])<<8 | uint64(k.MAC[5]) | uint64(k.VLAN)<<48
	h := (v ^ t.seed) * 0x9e3779b97f4a7c15
	h = (h ^ h>>29) * 0xbf58476d1ce4e5b9
	return h ^ h>>32
}

// find returns k's entry, nil if there is none. It takes no lock and
// allocates nothing.
func (t *table) find(k Key) *entry {
	a := t.slots.Load()
	for i := t.hash(k) & a.mask; ; i = (i + 1) & a.mask {
		e := a.slots[i].Load()
		if e == nil {
			return nil
		}
		if e.key == k && e != tombstone {
			return e
		}
	}
}

// insert adds e unless its key is there; it returns the entry in the
// table. The caller sets e's fields before.
func (t *table) insert(e *entry) (*entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.slots.Load()
	free := -1
	for i := t.hash(e.key) & a.mask; ; i = (i + 1) & a.mask {
		o := a.slots[i].Load()
		if o == nil {
			if free < 0 {
				free = int(i)
			}
			break
		}
		if o == tombstone {
			if free < 0 {
				free = int(i)
			}
			continue
		}
		if o.key == e.key {
			return o, false
		}
	}
	e.seq = t.seq.Add(1)
	if a.slots[free].Load() == nil {
		t.used++
	}
	a.slots[free].Store(e)
	t.live++
	if 2*t.used > len(a.slots) {
		t.rebuild(a)
	}
	return e, true
}

// rebuild replaces a (full of entries and tombstones) with an array
// without tombstones, large enough for the entries to fill at most a
// quarter of it. Called with mu held.
func (t *table) rebuild(a *slotArray) {
	n := minSlots
	for 4*t.live > n {
		n *= 2
	}
	b := newSlotArray(n)
	for i := range a.slots {
		e := a.slots[i].Load()
		if e == nil || e == tombstone {
			continue
		}
		j := t.hash(e.key) & b.mask
		for b.slots[j].Load() != nil {
			j = (j + 1) & b.mask
		}
		b.slots[j].Store(e)
	}
	t.used = t.live
	t.slots.Store(b)
}

func (t *table) remove(e *entry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.slots.Load()
	for i := t.hash(e.key) & a.mask; ; i = (i + 1) & a.mask {
		o := a.slots[i].Load()
		if o == nil {
			return false
		}
		if o != e {
			continue
		}
		a.slots[i].Store(tombstone)
		t.live--
		e.dead.Store(true)
		if e.flags.Load()&flagLearned != 0 {
			t.nLearn.Add(-1)
		}
		return true
	}
}

// all returns the entries (any order).
func (t *table) all() []*entry {
	a := t.slots.Load()
	var l []*entry
	for i := range a.slots {
		if e := a.slots[i].Load(); e != nil && e != tombstone {
			l = append(l, e)
		}
	}
	return l
}

func (t *table) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.slots.Load()
	for i := range a.slots {
		if e := a.slots[i].Load(); e != nil && e != tombstone {
			e.dead.Store(true)
		}
	}
	t.live, t.used = 0, 0
	t.slots.Store(newSlotArray(minSlots))
	t.nLearn.Store(0)
}

// addLocal is fdb_add_local (br_fdb.c): an address of the bridge or a
// port becomes a local, static entry. An existing local entry is kept
// (several ports may share an address: the first one's entry is used);
// a learned or static entry for the address is replaced (the kernel warns
// "adding interface %s with same address as a received packet").
func (b *Bridge) addLocal(port int, mac packet.MAC, now int64) {
	if !mac.IsValidUnicast() {
		return
	}
	k := Key{MAC: mac}
	if e := b.t.find(k); e != nil {
		if e.flags.Load()&flagLocal != 0 {
			return
		}
		b.t.remove(e)
	}
	e := &entry{key: k}
	e.port.Store(int32(port))
	e.flags.Store(flagLocal | flagStatic)
	e.updated.Store(now)
	e.used.Store(now)
	b.t.insert(e)
}

// Learn is br_fdb_update as br_handle_frame_finish calls it, after the
// bridge PRE_ROUTING hooks: when port in has learning on and the ageing
// time is not 0 ("some users want to always flood"), the source address
// src is learned on in at now. A multicast or zero source is never
// learned (br_handle_frame drops such frames first). An address that is
// a local entry is never moved (the kernel warns "received packet on %s
// with own address as source address"; counted in OwnSourceWarnings). A
// known address refreshes its updated time and moves to in, static
// entries too, unless the entry is sticky. A new address gets a dynamic
// entry unless fdb_max_learned is reached. Learning an address already
// known does not allocate.
func (b *Bridge) Learn(in int, src packet.MAC, now int64) {
	if in < 0 || in >= len(b.ports) || PortFlags(b.ports[in].flags.Load())&Learning == 0 {
		return
	}
	b.update(in, src, now)
}

// update is br_fdb_update itself.
func (b *Bridge) update(in int, src packet.MAC, now int64) {
	if b.ageing.Load() == 0 || !src.IsValidUnicast() {
		return
	}
	k := Key{MAC: src}
	if e := b.t.find(k); e != nil {
		f := e.flags.Load()
		if f&flagLocal != 0 {
			b.ownSrcWarnings.Add(1)
			return
		}
		if timeAdvanced(e.updated.Load(), now) {
			e.updated.Store(now)
		}
		if e.port.Load() != int32(in) && f&flagSticky == 0 {
			e.port.Store(int32(in))
			b.moved.Add(1)
		}
		return
	}
	if max := b.maxLearned; max != 0 && b.t.nLearn.Load() >= int64(max) {
		return
	}
	e := &entry{key: k}
	e.port.Store(int32(in))
	e.flags.Store(flagLearned)
	e.updated.Store(now)
	e.used.Store(now)
	if _, ok := b.t.insert(e); ok {
		b.t.nLearn.Add(1)
		b.learned.Add(1)
	}
	// else another learner was first: as in the kernel, keep its entry.
}

// State is an entry's neighbour state, as `bridge fdb` names it.
type State uint8

// The states (fdb_to_nud in br_fdb.c).
const (
	// Reachable: a dynamic entry (printed as nothing).
	Reachable State = iota
	// Stale: a dynamic entry past its ageing time, not yet removed.
	Stale
	// Static: NUD_NOARP, a static entry ("static").
	Static
	// Permanent: NUD_PERMANENT, a local entry ("permanent").
	Permanent
)

// String is iproute2's state_n2a.
func (s State) String() string {
	switch s {
	case Permanent:
		return "permanent"
	case Static:
		return "static"
	case Stale:
		return "stale"
	}
	return ""
}

// Entry is a copy of one FDB entry.
type Entry struct {
	Key Key
	// Port is the port number, or BridgePort for the bridge's own entry.
	Port          int
	Local, Static bool
	Sticky        bool
	AddedByUser   bool
	// Updated and Used are times on the caller's clock.
	Updated, Used int64
	seq           uint64
}

// State is the entry's state at now (fdb_to_nud).
func (e *Entry) State(b *Bridge, now int64) State {
	switch {
	case e.Local:
		return Permanent
	case e.Static:
		return Static
	case e.Updated+b.ageing.Load() <= now:
		return Stale
	}
	return Reachable
}

func (e *entry) copy() Entry {
	f := e.flags.Load()
	return Entry{
		Key: e.key, Port: int(e.port.Load()),
		Local: f&flagLocal != 0, Static: f&flagStatic != 0, Sticky: f&flagSticky != 0,
		AddedByUser: f&flagAddedByUser != 0,
		Updated:     e.updated.Load(), Used: e.used.Load(), seq: e.seq,
	}
}

// Lookup returns the entry for mac (VLAN 0), as br_fdb_find_rcu.
func (b *Bridge) Lookup(mac packet.MAC) (Entry, bool) {
	e := b.t.find(Key{MAC: mac})
	if e == nil {
		return Entry{}, false
	}
	return e.copy(), true
}

// Entries returns copies of all entries, newest first (the kernel's
// fdb_list order).
func (b *Bridge) Entries() []Entry {
	all := b.t.all()
	l := make([]Entry, len(all))
	for i, e := range all {
		l[i] = e.copy()
	}
	sortNewestFirst(l)
	return l
}

func sortNewestFirst(l []Entry) {
	slices.SortFunc(l, func(a, b Entry) int { return cmp.Compare(b.seq, a.seq) })
}

// Add is `bridge fdb add MAC dev PORT master [permanent|static|dynamic]
// [sticky]` (fdb_add_entry in br_fdb.c, with NLM_F_CREATE|NLM_F_EXCL):
// ErrExist if the address has an entry. port BridgePort is allowed only
// for Permanent ("FDB entry towards bridge must be permanent"); sticky
// is refused with Permanent (-EINVAL in the kernel). A Permanent entry
// is local: frames to it go up.
func (b *Bridge) Add(port int, mac packet.MAC, st State, sticky bool, now int64) error {
	return b.add(port, mac, st, sticky, false, now)
}

// Replace is `bridge fdb replace` (NLM_F_CREATE|NLM_F_REPLACE): as Add,
// but an existing entry is changed in place.
func (b *Bridge) Replace(port int, mac packet.MAC, st State, sticky bool, now int64) error {
	return b.add(port, mac, st, sticky, true, now)
}

func (b *Bridge) add(port int, mac packet.MAC, st State, sticky, replace bool, now int64) error {
	if port < BridgePort || port >= len(b.ports) || (port == BridgePort && st != Permanent) ||
		(sticky && st == Permanent) || st == Stale || mac.IsZero() {
		return ErrInvalid
	}
	f := flagAddedByUser
	switch st {
	case Permanent:
		f |= flagLocal | flagStatic
	case Static:
		f |= flagStatic
	}
	if sticky {
		f |= flagSticky
	}
	k := Key{MAC: mac}
	if e := b.t.find(k); e != nil {
		if !replace {
			return ErrExist
		}
		if e.flags.Load()&flagLearned != 0 {
			b.t.nLearn.Add(-1)
		}
		e.port.Store(int32(port))
		e.flags.Store(f)
		e.updated.Store(now)
		e.used.Store(now)
		return nil
	}
	e := &entry{key: k}
	e.port.Store(int32(port))
	e.flags.Store(f)
	e.updated.Store(now)
	e.used.Store(now)
	if _, ok := b.t.insert(e); !ok {
		return ErrExist
	}
	return nil
}

// Delete is `bridge fdb del MAC dev ... master`: removes the entry.
func (b *Bridge) Delete(mac packet.MAC) error {
	e := b.t.find(Key{MAC: mac})
	if e == nil || !b.t.remove(e) {
		return ErrNotFound
	}
	return nil
}

// Flush removes every dynamic entry (`bridge fdb flush dev br0 dynamic`;
// br_fdb_flush with the static flag excluded).
func (b *Bridge) Flush() {
	for _, e := range b.t.all() {
		if e.flags.Load()&flagStatic == 0 {
			b.t.remove(e)
		}
	}
}

// minCleanupDelay is br_fdb_cleanup's floor between two runs: 10 ms.
const minCleanupDelay = int64(10e6)

// Expire is br_fdb_cleanup (br_fdb.c): it removes every entry that is
// not static (local entries are static) whose updated + ageing time is
// not after now, and returns how many it removed and when to run next:
// the earliest remaining expiry, at least 10 ms from now, at most one
// ageing time from now. With ageing time 0 every dynamic entry goes.
func (b *Bridge) Expire(now int64) (removed int, next int64) {
	hold := b.ageing.Load()
	delay := hold
	for _, e := range b.t.all() {
		if e.flags.Load()&flagStatic != 0 {
			continue
		}
		due := e.updated.Load() + hold
		if due > now {
			delay = min(delay, due-now)
			continue
		}
		if b.t.remove(e) {
			removed++
		}
	}
	return removed, now + max(delay, minCleanupDelay)
}
