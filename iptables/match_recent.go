package iptables

import (
	"strings"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// recent match (extensions/libxt_recent.c, revision 1; kernel
// net/netfilter/xt_recent.c recent_mt_check).

// check_set bits (linux/netfilter/xt_recent.h).
const (
	RecentCheck  = 1 << 0
	RecentSet    = 1 << 1
	RecentUpdate = 1 << 2
	RecentRemove = 1 << 3
	RecentTTL    = 1 << 4
	RecentReap   = 1 << 5
)

const recentNameLen = 200 // XT_RECENT_NAME_LEN

// RecentMatch is "-m recent" (xt_recent_mtinfo_v1).
type RecentMatch struct {
	Seconds  uint32
	HitCount uint32
	CheckSet uint8
	Invert   bool
	Name_    string
	Dest     bool // --rdest (side XT_RECENT_DEST)
	Mask     uint32

	given uint16
	// cache is the table of the last State the match ran with.
	cache atomic.Pointer[recentCache]
}

type recentCache struct {
	st *State
	t  *recentTable
}

// option ids, in the order of recent_opts_v1
var recentOptIDs = map[string]uint{
	"set": 0, "rcheck": 1, "update": 2, "remove": 3, "seconds": 4, "reap": 5,
	"hitcount": 6, "rttl": 7, "name": 8, "rsource": 9, "rdest": 10, "mask": 11,
}

var recentOptNames = []string{"set", "rcheck", "update", "remove", "seconds", "reap",
	"hitcount", "rttl", "name", "rsource", "rdest", "mask"}

const recentAnyOp = 0xf // set, rcheck, update, remove

func (m *RecentMatch) Name() string { return "recent" }

func (m *RecentMatch) Parse(o *OptArg) error {
	m.given |= 1 << recentOptIDs[o.Name]
	switch o.Name {
	case "set", "rcheck", "update", "remove":
		m.CheckSet |= map[string]uint8{"set": RecentSet, "rcheck": RecentCheck, "update": RecentUpdate, "remove": RecentRemove}[o.Name]
		if o.Invert {
			m.Invert = true
		}
	case "seconds":
		v, err := parseUintOpt("recent", "seconds", o.Arg, 1, 0xffffffff)
		if err != nil {
			return err
		}
		m.Seconds = uint32(v)
	case "hitcount":
		v, err := parseUintOpt("recent", "hitcount", o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		m.HitCount = uint32(v)
	case "reap":
		m.CheckSet |= RecentReap
	case "rttl":
		m.CheckSet |= RecentTTL
	case "name":
		// XTTYPE_STRING put into name[200]: silently cut to 199 bytes
		m.Name_ = truncString(o.Arg, recentNameLen)
	case "rsource":
		m.Dest = false
	case "rdest":
		m.Dest = true
	case "mask":
		a, err := parseHost(o.Arg)
		if err != nil {
			return err
		}
		m.Mask = a
	}
	return nil
}

// Final is recent_check and the excl/also checks of recent_opts_v1.
func (m *RecentMatch) Final(r *RuleContext) error {
	if m.given&recentAnyOp == 0 {
		return Errorf("recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'")
	}
	for id, name := range recentOptNames {
		if m.given&(1<<uint(id)) == 0 {
			continue
		}
		var excl uint16
		switch {
		case id < 4:
			excl = recentAnyOp
		case name == "rttl":
			excl = 1<<0 | 1<<3 // set, remove
		}
		if name == "reap" && m.given&(1<<4) == 0 {
			return alsoRequires("recent", "reap", "seconds")
		}
		for o := 0; o < len(recentOptNames); o++ {
			if o != id && excl&(1<<uint(o)) != 0 && m.given&(1<<uint(o)) != 0 {
				return cannotCombine("recent", name, recentOptNames[o])
			}
		}
	}
	return nil
}

// CheckHooks carries recent_mt_check's refusals (the kernel reports them
// when the rule is committed).
func (m *RecentMatch) CheckHooks(t TableID, hooks netfilter.HookMask) error {
	ops := m.CheckSet & (RecentSet | RecentRemove | RecentCheck | RecentUpdate)
	if ops&(ops-1) != 0 || ops == 0 {
		return Errorf("recent: one operation")
	}
	if m.CheckSet&(RecentSet|RecentRemove) != 0 &&
		(m.Seconds != 0 || m.HitCount != 0 || m.CheckSet&(RecentTTL|RecentReap) != 0) {
		return Errorf("recent: modifiers with set/remove")
	}
	if m.CheckSet&RecentReap != 0 && m.Seconds == 0 {
		return Errorf("recent: reap without seconds")
	}
	if m.HitCount > 65535 { // XT_RECENT_MAX_NSTAMPS - 1
		return Errorf("recent: hitcount too large")
	}
	if m.Name_ == "" || !procNameOK(m.Name_) {
		return Errorf("recent: bad name")
	}
	return nil
}

func (m *RecentMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.WriteString(" !")
	}
	if m.CheckSet&RecentSet != 0 {
		w.Opt("set", "")
	}
	if m.CheckSet&RecentCheck != 0 {
		w.Opt("rcheck", "")
	}
	if m.CheckSet&RecentUpdate != 0 {
		w.Opt("update", "")
	}
	if m.CheckSet&RecentRemove != 0 {
		w.Opt("remove", "")
	}
	if m.Seconds != 0 {
		w.Printf(" --seconds %d", int32(m.Seconds))
	}
	if m.CheckSet&RecentReap != 0 {
		w.Opt("reap", "")
	}
	if m.HitCount != 0 {
		w.Printf(" --hitcount %d", int32(m.HitCount))
	}
	if m.CheckSet&RecentTTL != 0 {
		w.Opt("rttl", "")
	}
	w.WriteString(" --name " + m.Name_)
	w.Opt("mask", FormatAddr(m.Mask))
	if m.Dest {
		w.Opt("rdest", "")
	} else {
		w.Opt("rsource", "")
	}
}

func init() {
	flag := func(name string, inv bool) Option { return Option{Name: name, Invert: inv} }
	arg := func(name string) Option { return Option{Name: name, Arg: RequiredArg} }
	RegisterMatch(&MatchSpec{Name: "recent", Options: []Option{
		flag("set", true), flag("rcheck", true), flag("update", true), flag("remove", true),
		arg("seconds"), flag("reap", false), arg("hitcount"), flag("rttl", false),
		arg("name"), flag("rsource", false), flag("rdest", false), arg("mask"),
	}, New: func() Match {
		// recent_init: name DEFAULT, source side, mask all ones
		return &RecentMatch{Name_: "DEFAULT", Mask: 0xffffffff}
	}})
}

// procNameOK reports whether name can be a /proc/net file name, which
// xt_recent and xt_hashlimit create per table (fs/proc/generic.c
// __proc_create refuses "." and ".." and a '/' names a missing
// directory).
func procNameOK(name string) bool {
	return name != "." && name != ".." && !strings.Contains(name, "/")
}

// xt_recent module parameters (defaults).
const (
	recentListTot    = 100 // ip_list_tot: addresses per table
	recentPktListTot = 20  // ip_pkt_list_tot: time stamps per address
)

// recentEntry is struct recent_entry: an address, the TTL it was last
// seen with, and a ring of time stamps (jiffies).
type recentEntry struct {
	addr       uint32
	ttl        uint8
	index      int // next slot, 1-based as the kernel's e->index
	nstamps    int
	stamps     []int64
	prev, next *recentEntry // LRU list, oldest first
}

// recentTable is struct recent_table. All fields are guarded by
// State.recent.mu.
type recentTable struct {
	mask    int // nstamps_max_mask
	entries map[uint32]*recentEntry
	lru     recentEntry // sentinel: lru.next is the oldest
}

func newRecentTable(mask int) *recentTable {
	t := &recentTable{mask: mask, entries: make(map[uint32]*recentEntry)}
	t.lru.prev, t.lru.next = &t.lru, &t.lru
	return t
}

func (t *recentTable) unlink(e *recentEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (t *recentTable) pushBack(e *recentEntry) {
	e.prev, e.next = t.lru.prev, &t.lru
	t.lru.prev.next = e
	t.lru.prev = e
}

func (t *recentTable) remove(e *recentEntry) {
	t.unlink(e)
	delete(t.entries, e.addr)
}

// add is recent_entry_init: the oldest entry makes room when the table
// is full.
func (t *recentTable) add(addr uint32, ttl uint8, now int64) *recentEntry {
	if len(t.entries) >= recentListTot {
		t.remove(t.lru.next)
	}
	e := &recentEntry{addr: addr, ttl: ttl, index: 1, nstamps: 1, stamps: make([]int64, t.mask+1)}
	e.stamps[0] = now
	t.entries[addr] = e
	t.pushBack(e)
	return e
}

// update is recent_entry_update.
func (t *recentTable) update(e *recentEntry, now int64) {
	e.index &= t.mask
	e.stamps[e.index] = now
	e.index++
	if e.index > e.nstamps {
		e.nstamps = e.index
	}
	t.unlink(e)
	t.pushBack(e)
}

// nstampsMask is recent_mt_check's nstamps_max_mask.
func (m *RecentMatch) nstampsMask() int {
	n := recentPktListTot
	if int(m.HitCount) >= n {
		n = int(m.HitCount)
	}
	p := 1
	for p < n {
		p <<= 1
	}
	return p - 1
}

// table returns the match's named table in st, creating it (a match that
// needs more time stamps flushes and widens an existing one, as
// recent_mt_check does).
func (m *RecentMatch) table(st *State) *recentTable {
	if c := m.cache.Load(); c != nil && c.st == st {
		return c.t
	}
	r := &st.recent
	if r.tables == nil {
		r.tables = make(map[string]*recentTable)
	}
	t := r.tables[m.Name_]
	if mask := m.nstampsMask(); t == nil {
		t = newRecentTable(mask)
		r.tables[m.Name_] = t
	} else if mask > t.mask {
		*t = *newRecentTable(mask)
		t.lru.prev, t.lru.next = &t.lru, &t.lru
	}
	m.cache.Store(&recentCache{st, t})
	return t
}

// Eval is recent_mt (net/netfilter/xt_recent.c). The table is shared by
// every rule naming it and lives in the State, so it survives rule-set
// swaps (the kernel keeps it while any rule refers to it; a table no
// rule names any more is not freed here). Time stamps are jiffies of
// Env.Now.
func (m *RecentMatch) Eval(c *Ctx) bool {
	p := c.Pkt
	addr := p.Src
	if m.Dest {
		addr = p.Dst
	}
	addr &= m.Mask
	ttl := p.IP.TTL()
	if p.OutIf != "" && !p.HasSocket {
		ttl++ // the TTL as seen before forwarding
	}
	now := jiffiesAt(c.Env.Now())
	ret := m.Invert
	r := &c.state().recent
	r.mu.Lock()
	defer r.mu.Unlock()
	t := m.table(c.state())
	e := t.entries[addr]
	if e != nil && m.CheckSet&RecentTTL != 0 && e.ttl != ttl && ttl != 0 && e.ttl != 0 {
		e = nil // recent_entry_lookup with a TTL
	}
	if e == nil {
		if m.CheckSet&RecentSet == 0 {
			return ret
		}
		t.add(addr, ttl, now)
		return !ret
	}
	switch {
	case m.CheckSet&RecentSet != 0:
		ret = !ret
	case m.CheckSet&RecentRemove != 0:
		t.remove(e)
		return !ret
	case m.CheckSet&(RecentCheck|RecentUpdate) != 0:
		time := now - int64(m.Seconds)*hz
		hits := uint32(0)
		for i := 0; i < e.nstamps; i++ {
			if m.Seconds != 0 && timeAfter(time, e.stamps[i]) {
				continue
			}
			hits++
			if m.HitCount == 0 || hits >= m.HitCount {
				ret = !ret
				break
			}
		}
		if m.CheckSet&RecentReap != 0 { // recent_entry_reap
			old := t.lru.next
			if !(old == e && m.CheckSet&RecentUpdate != 0 && ret) &&
				timeAfter(time, old.stamps[old.index-1]) {
				t.remove(old)
				if old == e {
					return ret
				}
			}
		}
	}
	if m.CheckSet&RecentSet != 0 || m.CheckSet&RecentUpdate != 0 && ret {
		t.update(e, now)
		e.ttl = ttl
	}
	return ret
}
