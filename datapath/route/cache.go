package route

import (
	"sync"
)

// routeCache remembers input route decisions by everything Input looks
// at (the kernel keeps a dst on the socket or the nexthop's cached
// route; uswitch's FIB never changes once built, so a result is valid
// for the FIB's life). It is sharded and bounded: a full shard is
// emptied.
type routeCache struct {
	shards [16]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[cacheKey]Result
}

const cacheShardMax = 4096

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

func (k *cacheKey) shard() int {
	h := (k.dst*0x9e3779b1 ^ k.src*0x85ebca6b ^ uint32(k.sport)<<16 ^ uint32(k.dport)) * 0xc2b2ae35
	return int(h >> 28)
}

func (c *routeCache) get(k cacheKey) (Result, bool) {
	s := &c.shards[k.shard()]
	s.mu.RLock()
	r, ok := s.m[k]
	s.mu.RUnlock()
	return r, ok
}

func (c *routeCache) put(k cacheKey, r Result) {
	s := &c.shards[k.shard()]
	s.mu.Lock()
	if s.m == nil || len(s.m) >= cacheShardMax {
		s.m = make(map[cacheKey]Result, 64)
	}
	s.m[k] = r
	s.mu.Unlock()
}
