package lvs

import "sync"

// Locality-based schedulers (ip_vs_lblc.c, ip_vs_lblcr.c) for cache
// clusters: a table keyed by the packet's destination address remembers
// the server (lblc) or set of servers (lblcr) that took it.
//
// The kernel ages the table from a timer every CHECK_EXPIRE_INTERVAL;
// here the same handler runs from Schedule, once for every interval that
// Flow.Now has passed (an amortized reaper on the flows' clock). The
// table is the kernel's: 1024 buckets by hash_32(daddr, 10), new entries
// at the head of their bucket, the same rover and goal, so the same
// entries go.

const (
	lblcTabBits = 10 // CONFIG_IP_VS_LBLC_TAB_BITS, CONFIG_IP_VS_LBLCR_TAB_BITS
	lblcTabSize = 1 << lblcTabBits
	lblcTabMask = lblcTabSize - 1

	second = int64(1e9)
	// lblcCheckInterval is CHECK_EXPIRE_INTERVAL, lblcEntryTimeout
	// ENTRY_TIMEOUT and lblcDefaultExpiration the default of the
	// lblc_expiration / lblcr_expiration sysctls.
	lblcCheckInterval     = 60 * second
	lblcEntryTimeout      = 6 * 60 * second
	lblcDefaultExpiration = 24 * 60 * 60 * second
	// lblcFullEvery is COUNT_FOR_FULL_EXPIRATION.
	lblcFullEvery = 30
)

// lblcOverloaded is is_overloaded() of both modules: d has more active
// connections than its weight while some dest is under half load.
func lblcOverloaded(d *Dest, dests []*Dest) bool {
	if d.ActiveConns.Load() > d.Weight.Load() {
		for _, x := range dests {
			if x.ActiveConns.Load()*2 < x.Weight.Load() {
				return true
			}
		}
	}
	return false
}

// lblcClock is the part of the two tables that emulates the kernel's
// periodic timer: counter and rover as in struct ip_vs_lblc_table.
type lblcClock struct {
	started   bool
	nextCheck int64
	counter   int
	rover     int
	entries   int
	maxSize   int
	// expiration is the lblc(r)_expiration sysctl (nanoseconds).
	expiration int64
}

func newLBLCClock() lblcClock {
	return lblcClock{counter: 1, maxSize: lblcTabSize * 16, expiration: lblcDefaultExpiration}
}

// advance runs the timer handler for every interval up to now; check is
// the module's ip_vs_lblc(r)_check_expire body without the re-arming.
func (c *lblcClock) advance(now int64, check func(now int64)) {
	if !c.started {
		// mod_timer at init_service: the first packet stands for it
		c.started = true
		c.nextCheck = now + lblcCheckInterval
		return
	}
	if now < c.nextCheck {
		return
	}
	for now >= c.nextCheck {
		if c.counter%lblcFullEvery != 0 && c.entries <= c.maxSize {
			// runs that only count up to the next full check: do
			// them at once (nothing else changes in between)
			k := (now-c.nextCheck)/lblcCheckInterval + 1
			k = min(k, int64(lblcFullEvery-c.counter%lblcFullEvery))
			c.counter += int(k)
			c.nextCheck += k * lblcCheckInterval
			continue
		}
		check(c.nextCheck)
		c.nextCheck += lblcCheckInterval
	}
}

// lblcEntry maps a destination address to its server.
type lblcEntry struct {
	next    *lblcEntry
	addr    uint32
	dest    *Dest
	lastuse int64
}

// lblcSched is ip_vs_lblc.c.
type lblcSched struct {
	mu sync.Mutex
	lblcClock
	bucket [lblcTabSize]*lblcEntry
}

func newLBLC() *lblcSched { return &lblcSched{lblcClock: newLBLCClock()} }

func (*lblcSched) Name() string { return "lblc" }

// Update does nothing: the kernel module has no dest callbacks; entries
// for a removed dest fail the IP_VS_DEST_F_AVAILABLE test.
func (*lblcSched) Update(*Service) {}

func (s *lblcSched) get(addr uint32) *lblcEntry {
	for en := s.bucket[hash32(addr, lblcTabBits)]; en != nil; en = en.next {
		if en.addr == addr {
			return en
		}
	}
	return nil
}

// unlink removes en from its bucket (ip_vs_lblc_del; the caller counts).
func (s *lblcSched) unlink(en *lblcEntry) {
	p := &s.bucket[hash32(en.addr, lblcTabBits)]
	for *p != en {
		p = &(*p).next
	}
	*p = en.next
}

func (s *lblcSched) Schedule(svc *Service, f *Flow) *Dest {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(f.Now, s.checkExpire)
	if en := s.get(f.Dst); en != nil {
		en.lastuse = f.Now
		d := en.dest
		// The cached server is kept while it is in the service, has a
		// weight and is not lblc-overloaded; the kernel does not look
		// at its IP_VS_DEST_F_OVERLOAD flag here.
		if d.Flags.Load()&DestAvailable != 0 && d.Weight.Load() > 0 && !lblcOverloaded(d, svc.Dests) {
			return d
		}
	}
	d := leastPick(svc.Dests, wlcOverhead)
	if d == nil {
		return nil
	}
	// ip_vs_lblc_new
	if en := s.get(f.Dst); en != nil {
		if en.dest == d {
			return d
		}
		// the kernel unhashes the old entry without decrementing
		// tbl->entries; the count drifts up as there
		s.unlink(en)
	}
	h := hash32(f.Dst, lblcTabBits)
	s.bucket[h] = &lblcEntry{next: s.bucket[h], addr: f.Dst, dest: d, lastuse: f.Now}
	s.entries++
	return d
}

// lblcSweep is the loop of the full and partial checks: from the bucket
// after the rover on, it unlinks the stale entries; a partial sweep
// stops after the bucket that brings goal to 0. entries and rover are
// updated as by the kernel.
func lblcSweep[E any](c *lblcClock, bucket *[lblcTabSize]*E, next func(*E) **E, stale func(*E) bool, partial bool, goal int) {
	j := c.rover
	for i := 0; i < lblcTabSize; i++ {
		j = (j + 1) & lblcTabMask
		for p := &bucket[j]; *p != nil; {
			en := *p
			if !stale(en) {
				p = next(en)
				continue
			}
			*p = *next(en)
			c.entries--
			goal--
		}
		if partial && goal <= 0 {
			break
		}
	}
	c.rover = j
}

// checkExpire is ip_vs_lblc_check_expire at time now.
func (s *lblcSched) checkExpire(now int64) {
	next := func(e *lblcEntry) **lblcEntry { return &e.next }
	if s.counter%lblcFullEvery == 0 {
		// ip_vs_lblc_full_check
		lblcSweep(&s.lblcClock, &s.bucket, next, func(e *lblcEntry) bool {
			return now >= e.lastuse+s.expiration
		}, false, 0)
		s.counter = 1
		return
	}
	if s.entries <= s.maxSize {
		s.counter++
		return
	}
	goal := (s.entries - s.maxSize) * 4 / 3
	if goal > s.maxSize/2 {
		goal = s.maxSize / 2
	}
	lblcSweep(&s.lblcClock, &s.bucket, next, func(e *lblcEntry) bool {
		return now >= e.lastuse+lblcEntryTimeout
	}, true, goal)
}

// lblcrEntry maps a destination address to a server set. set is kept
// with the kernel's list head last: set[len-1] is the newest member,
// and the kernel walks from there down to set[0].
type lblcrEntry struct {
	next    *lblcrEntry
	addr    uint32
	set     []*Dest
	lastmod int64
	lastuse int64
}

// lblcrSched is ip_vs_lblcr.c.
type lblcrSched struct {
	mu sync.Mutex
	lblcClock
	bucket [lblcTabSize]*lblcrEntry
}

func newLBLCR() *lblcrSched { return &lblcrSched{lblcClock: newLBLCClock()} }

func (*lblcrSched) Name() string { return "lblcr" }

// Update does nothing, as for lblc.
func (*lblcrSched) Update(*Service) {}

func (s *lblcrSched) get(addr uint32) *lblcrEntry {
	for en := s.bucket[hash32(addr, lblcTabBits)]; en != nil; en = en.next {
		if en.addr == addr {
			return en
		}
	}
	return nil
}

// setMin is ip_vs_dest_set_min: the weighted least-connection member
// that is in the service and not overloaded.
func (en *lblcrEntry) setMin() *Dest {
	var least *Dest
	var loh, lw int64
	i := len(en.set) - 1
	for ; i >= 0; i-- {
		d := en.set[i]
		if overloaded(d) {
			continue
		}
		if d.Weight.Load() > 0 && d.Flags.Load()&DestAvailable != 0 {
			least, loh, lw = d, d.Overhead(), int64(d.Weight.Load())
			break
		}
	}
	if least == nil {
		return nil
	}
	for i--; i >= 0; i-- {
		d := en.set[i]
		if overloaded(d) {
			continue
		}
		doh, dw := d.Overhead(), int64(d.Weight.Load())
		if loh*dw > doh*lw && d.Flags.Load()&DestAvailable != 0 {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}

// setMax is ip_vs_dest_set_max: the weighted most-loaded member with a
// weight (overload and availability not considered).
func (en *lblcrEntry) setMax() *Dest {
	var most *Dest
	var moh, mw int64
	i := len(en.set) - 1
	for ; i >= 0; i-- {
		if d := en.set[i]; d.Weight.Load() > 0 {
			most, moh, mw = d, d.Overhead(), int64(d.Weight.Load())
			break
		}
	}
	if most == nil {
		return nil
	}
	for i--; i >= 0; i-- {
		d := en.set[i]
		doh, dw := d.Overhead(), int64(d.Weight.Load())
		if moh*dw < doh*mw && dw > 0 {
			most, moh, mw = d, doh, dw
		}
	}
	return most
}

// insert is ip_vs_dest_set_insert with check: a new member goes at the
// list head and marks the set modified.
func (en *lblcrEntry) insert(d *Dest, now int64) {
	for _, x := range en.set {
		if x == d {
			return
		}
	}
	en.set = append(en.set, d)
	en.lastmod = now
}

// erase is ip_vs_dest_set_erase.
func (en *lblcrEntry) erase(d *Dest, now int64) {
	for i, x := range en.set {
		if x == d {
			en.set = append(en.set[:i], en.set[i+1:]...)
			en.lastmod = now
			return
		}
	}
}

func (s *lblcrSched) Schedule(svc *Service, f *Flow) *Dest {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(f.Now, s.checkExpire)
	if en := s.get(f.Dst); en != nil {
		en.lastuse = f.Now
		d := en.setMin()
		// more than one member and unchanged for the expiration time:
		// drop the most loaded one
		if len(en.set) > 1 && f.Now > en.lastmod+s.expiration {
			if m := en.setMax(); m != nil {
				en.erase(m, f.Now)
			}
		}
		if d != nil && !lblcOverloaded(d, svc.Dests) {
			return d
		}
		d = leastPick(svc.Dests, wlcOverhead)
		if d == nil {
			return nil
		}
		en.insert(d, f.Now)
		return d
	}
	d := leastPick(svc.Dests, wlcOverhead)
	if d == nil {
		return nil
	}
	// ip_vs_lblcr_new
	h := hash32(f.Dst, lblcTabBits)
	s.bucket[h] = &lblcrEntry{next: s.bucket[h], addr: f.Dst, set: []*Dest{d}, lastmod: f.Now, lastuse: f.Now}
	s.entries++
	return d
}

// checkExpire is ip_vs_lblcr_check_expire at time now.
func (s *lblcrSched) checkExpire(now int64) {
	next := func(e *lblcrEntry) **lblcrEntry { return &e.next }
	if s.counter%lblcFullEvery == 0 {
		lblcSweep(&s.lblcClock, &s.bucket, next, func(e *lblcrEntry) bool {
			return now >= e.lastuse+s.expiration
		}, false, 0)
		s.counter = 1
		return
	}
	if s.entries <= s.maxSize {
		s.counter++
		return
	}
	goal := (s.entries - s.maxSize) * 4 / 3
	if goal > s.maxSize/2 {
		goal = s.maxSize / 2
	}
	lblcSweep(&s.lblcClock, &s.bucket, next, func(e *lblcrEntry) bool {
		return now >= e.lastuse+lblcEntryTimeout
	}, true, goal)
}
