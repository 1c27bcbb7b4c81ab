package encap

import (
	"encoding/binary"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/packet"
)

// FDB is a vxlan device's forwarding database (vxlan_fdb in
// vxlan_core.c): inner destination MAC -> remote VTEPs. Static entries
// (bridge fdb append, NUD_NOARP|NUD_PERMANENT as Calico and flannel make
// them) never age; with learning on, the source MAC of a received frame
// is learned for its outer source address (vxlan_snoop) and ages after
// the device's ageing time without use.
//
// Locking: mu guards m and the entries' remotes; used is atomic, so the
// transmit path's lookup takes only the read lock and allocates nothing.
type FDB struct {
	mu       sync.RWMutex
	m        map[packet.MAC]*fdbEntry
	learning bool
	ageing   int64 // ns; 0: learned entries do not age
	// port and vni are the device's: a remote's zero port or VNI
	port uint16
	vni  uint32
}

// Remote is one destination of an FDB entry: a VTEP, its UDP port and
// VNI (the device's when the entry gave none).
type Remote struct {
	Dst  uint32
	Port uint16
	VNI  uint32
}

type fdbEntry struct {
	remotes []Remote
	static  bool
	used    atomic.Int64
}

// NewFDB makes the FDB of a device with its static entries; port and
// vni are the device's (for entries that give none), ageing the learned
// entries' lifetime in ns.
func NewFDB(static []FDBEntry, learning bool, ageing int64, port uint16, vni uint32) *FDB {
	f := &FDB{m: map[packet.MAC]*fdbEntry{}, learning: learning, ageing: ageing, port: port, vni: vni}
	for _, s := range static {
		e := f.m[s.MAC]
		if e == nil {
			e = &fdbEntry{static: true}
			f.m[s.MAC] = e
		}
		r := Remote{Dst: packet.AddrFrom(s.Dst), Port: s.Port, VNI: s.VNI}
		if r.Port == 0 {
			r.Port = port
		}
		if r.VNI == 0 {
			r.VNI = vni
		}
		e.remotes = append(e.remotes, r)
	}
	return f
}

var zeroMAC packet.MAC

// Lookup appends the remotes a frame to dst goes to onto out: dst's
// entry, else the all-zeros entry's (vxlan_xmit: every remote of it gets
// a copy); none: the kernel drops the frame (tx_dropped). It does not
// allocate when out has room.
func (f *FDB) Lookup(dst packet.MAC, now int64, out []Remote) []Remote {
	f.mu.RLock()
	e := f.m[dst]
	if e == nil {
		e = f.m[zeroMAC]
	}
	if e != nil {
		out = append(out, e.remotes...)
		if !e.static && e.used.Load() != now {
			e.used.Store(now)
		}
	}
	f.mu.RUnlock()
	return out
}

// Snoop is vxlan_snoop for a received frame from src (an Ethernet
// source) in a packet from the VTEP at from: with learning on, a new
// source is learned; a learned one that moved is updated; a static one
// that moved drops the frame (drop true: "Don't migrate static
// entries, drop packets").
func (f *FDB) Snoop(src packet.MAC, from uint32, now int64) (drop bool) {
	if !f.learning || !src.IsValidUnicast() {
		return false
	}
	f.mu.RLock()
	e := f.m[src]
	same := e != nil && len(e.remotes) > 0 && e.remotes[0].Dst == from
	static := e != nil && e.static
	f.mu.RUnlock()
	if same {
		if !static {
			e.used.Store(now)
		}
		return false
	}
	if static {
		return true
	}
	f.mu.Lock()
	e = f.m[src]
	if e == nil {
		e = &fdbEntry{}
		f.m[src] = e
	}
	if !e.static {
		e.remotes = append(e.remotes[:0], Remote{Dst: from, Port: f.port, VNI: f.vni})
		e.used.Store(now)
	}
	f.mu.Unlock()
	return false
}

// Expire removes the learned entries unused for the ageing time
// (vxlan_cleanup).
func (f *FDB) Expire(now int64) {
	if f.ageing <= 0 {
		return
	}
	f.mu.Lock()
	for m, e := range f.m {
		if !e.static && now-e.used.Load() >= f.ageing {
			delete(f.m, m)
		}
	}
	f.mu.Unlock()
}

// Entries lists the FDB as `bridge fdb show dev DEV` would, sorted by
// MAC: each remote an entry; Static says whether it was configured.
func (f *FDB) Entries() []FDBShow {
	f.mu.RLock()
	var out []FDBShow
	for m, e := range f.m {
		for _, r := range e.remotes {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], r.Dst)
			out = append(out, FDBShow{FDBEntry: FDBEntry{MAC: m, Dst: netip.AddrFrom4(a), Port: r.Port, VNI: r.VNI}, Static: e.static})
		}
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.MAC != b.MAC {
			return string(a.MAC[:]) < string(b.MAC[:])
		}
		return a.Dst.Less(b.Dst)
	})
	return out
}

// FDBShow is an entry as listed.
type FDBShow struct {
	FDBEntry
	Static bool
}
