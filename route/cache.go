package route

import (
	"sync/atomic"
)

// routeCache remembers input route decisions by everything Input looks
// at (the kernel keeps a dst on the socket or the nexthop's cached
// route; uswitch's FIB never changes once built, so a result is valid
// for the FIB's life). It is direct-mapped: a slot holds an immutable
// entry, read with one atomic load and no lock, and a new decision for
// a slot replaces what was there.
type routeCache struct {
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

const cacheSlots = 1 << 13

type cacheEntry struct {
	k cacheKey
	r Result
}

type cacheKey struct {
	dst, src     uint32
	mark         uint32
	iif          int32
	sport, dport uint16
	tos, proto   uint8
}

// inputKey is the cache key of an input flow; ok is false for flows not
// worth caching (no valid IPv4 addresses).
func inputKey(in *Flow) (cacheKey, bool) {
	if !in.Dst.Is4() || !in.Src.Is4() {
		return cacheKey{}, false
	}
	d, s := in.Dst.As4(), in.Src.As4()
	return cacheKey{
		dst:  uint32(d[0])<<24 | uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3]),
		src:  uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3]),
		mark: in.Mark, iif: int32(in.IIF), sport: in.SPort, dport: in.DPort, tos: in.TOS, proto: in.Proto,
	}, true
}

func (k *cacheKey) slot() int {
	h := k.dst*0x9e3779b1 ^ k.src*0x85ebca6b ^ (uint32(k.sport)<<16|uint32(k.dport))*0xc2b2ae35 ^
		(k.mark^uint32(k.iif)<<20^uint32(k.tos)<<8^uint32(k.proto))*0x27d4eb2f
	h ^= h >> 15
	h *= 0x2c1b3c6d
	h ^= h >> 13
	return int(h & (cacheSlots - 1))
}

func (c *routeCache) get(k cacheKey) (Result, bool) {
	if e := c.slots[k.slot()].Load(); e != nil && e.k == k {
		return e.r, true
	}
	return Result{}, false
}

func (c *routeCache) put(k cacheKey, r Result) {
	c.slots[k.slot()].Store(&cacheEntry{k: k, r: r})
}
