package iptables

import (
	"sync"
	"sync/atomic"
)

// stateFields collects the per-match shared state kinds (see State).
// Matches add their fields here.
type stateFields struct {
	// recent holds -m recent's tables by name (xt_recent's recent_net).
	recent struct {
		mu     sync.Mutex // guards tables and everything in them (recent_lock)
		tables map[string]*recentTable
	}
	// hashlimit holds -m hashlimit's tables by name (hashlimit_net).
	hashlimit struct {
		mu     sync.Mutex // guards tables (the map only; each table has its lock)
		tables map[string]*hlTable
	}
	// nfqHashInit is NFQUEUE's jhash_initval (0: not drawn yet).
	nfqHashInit atomic.Uint32
}
