package lvs

import "sync"

// rrSched is ip_vs_rr.c. The kernel keeps svc->sched_data pointing at
// the list node last picked (or the list head): a pick scans the dests
// after it to the tail, then from the first one up to and including it.
// del_dest moves a cursor on the removed dest back to its predecessor
// (the next pick starts right after the removed dest); adding or editing
// a dest leaves the cursor alone.
type rrSched struct {
	mu sync.Mutex
	// cursor is the dest last picked; nil is the list head. idx is its
	// position in the list the last time it was seen (a search hint).
	cursor *Dest
	idx    int
	// last is the list as of the last Update (to find the predecessor
	// of a removed cursor). Guarded by mu.
	last []*Dest
}

func newRR(svc *Service) *rrSched {
	return &rrSched{last: append([]*Dest(nil), svc.Dests...)}
}

func (*rrSched) Name() string { return "rr" }

func (s *rrSched) Schedule(svc *Service, _ *Flow) *Dest {
	dests := svc.Dests
	n := len(dests)
	s.mu.Lock()
	start := -1
	if s.cursor != nil {
		start = destIndex(dests, s.cursor, s.idx)
	}
	// (start+i) mod n for i = 1..n: after the cursor to the tail, then
	// the head up to the cursor itself; from the head just 0..n-1.
	j := start
	for i := 0; i < n; i++ {
		j++
		if j == n {
			j = 0
		}
		d := dests[j]
		if !overloaded(d) && d.Weight.Load() > 0 {
			s.cursor, s.idx = d, j
			s.mu.Unlock()
			return d
		}
	}
	s.mu.Unlock()
	return nil
}

func (s *rrSched) Update(svc *Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cursor != nil {
		present := make(map[*Dest]bool, len(svc.Dests))
		for _, d := range svc.Dests {
			present[d] = true
		}
		if !present[s.cursor] {
			// ip_vs_rr_del_dest: the cursor steps back to the removed
			// dest's predecessor (the head if it was first).
			i := destIndex(s.last, s.cursor, s.idx)
			s.cursor = nil
			for i--; i >= 0; i-- {
				if present[s.last[i]] {
					s.cursor = s.last[i]
					break
				}
			}
		}
		s.idx = destIndex(svc.Dests, s.cursor, s.idx)
	}
	s.last = append(s.last[:0], svc.Dests...)
}

// wrrSched is ip_vs_wrr.c: a cursor cl in the list, the current weight
// cw, the step di (gcd of the positive weights) and mw, the maximum
// weight lowered by di-1 so that the last pass runs with cw = 1.
type wrrSched struct {
	mu sync.Mutex
	// cl is the dest last picked (nil = list head); idx its position.
	cl  *Dest
	idx int
	cw  int32
	mw  int32
	di  int32
}

func newWRR(svc *Service) *wrrSched {
	s := &wrrSched{}
	s.Update(svc) // init_svc: cl = head, cw = mw
	return s
}

func (*wrrSched) Name() string { return "wrr" }

// Update is ip_vs_wrr_dest_changed (add_dest, del_dest and upd_dest):
// the cursor goes back to the head and cw is brought into the new
// [1, mw] grid.
func (s *wrrSched) Update(svc *Service) {
	g, maxw := gcdMaxWeight(svc.Dests, func(d *Dest) int32 { return d.Weight.Load() })
	if g == 0 {
		g = 1
	}
	s.mu.Lock()
	s.cl, s.idx = nil, -1
	s.di = g
	s.mw = maxw - (g - 1)
	if s.cw > s.mw || s.cw == 0 {
		s.cw = s.mw
	} else if s.di > 1 {
		s.cw = (s.cw/s.di)*s.di + 1
	}
	s.mu.Unlock()
}

func (s *wrrSched) Schedule(svc *Service, _ *Flow) *Dest {
	dests := svc.Dests
	n := len(dests)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mw == 0 {
		return nil // no available dests; cl stays
	}
	// Positions: -1 is the list head.
	cur := -1
	if s.cl != nil {
		cur = destIndex(dests, s.cl, s.idx)
	}
	last, stop := cur, -2
	lastPass, restarted := false, false
	for {
		for cur++; cur < n; cur++ {
			d := dests[cur]
			if !overloaded(d) && d.Weight.Load() >= s.cw {
				s.cl, s.idx = d, cur
				return d
			}
			if cur == stop {
				// every dest was tried with cw = 1
				s.cl, s.idx = d, cur
				return nil
			}
		}
		cur = -1
		s.cw -= s.di
		if s.cw <= 0 {
			s.cw = s.mw
			if lastPass || last == -1 {
				s.cl, s.idx = nil, -1
				return nil
			}
			restarted = true
		}
		lastPass = s.cw <= s.di
		if lastPass && restarted && last != -1 {
			// the first traversal with w >= 1 covered only the dests
			// after last; finish with those up to last
			stop = last
		}
	}
}
