package lvs

// The stateless schedulers: one scan of svc.Dests per connection, no
// data of their own, so Update has nothing to do.

// lcSched is ip_vs_lc.c: the least overhead (activeconns*256 +
// inactconns); the first of equal dests wins.
type lcSched struct{}

func (lcSched) Name() string    { return "lc" }
func (lcSched) Update(*Service) {}

func (lcSched) Schedule(svc *Service, _ *Flow) *Dest {
	var least *Dest
	var loh int64
	for _, d := range svc.Dests {
		if overloaded(d) || d.Weight.Load() == 0 {
			continue
		}
		if doh := d.Overhead(); least == nil || doh < loh {
			least, loh = d, doh
		}
	}
	return least
}

// wlcSched is ip_vs_wlc.c, ipvsadm's default: the least overhead/weight.
type wlcSched struct{}

func (wlcSched) Name() string    { return "wlc" }
func (wlcSched) Update(*Service) {}

func (wlcSched) Schedule(svc *Service, _ *Flow) *Dest { return leastPick(svc.Dests, wlcOverhead) }

// sedSched is ip_vs_sed.c: the least (activeconns+1)/weight, compared
// as in wlc (loh*dw > doh*lw replaces the current choice).
type sedSched struct{}

func (sedSched) Name() string    { return "sed" }
func (sedSched) Update(*Service) {}

func (sedSched) Schedule(svc *Service, _ *Flow) *Dest { return leastPick(svc.Dests, sedOverhead) }

// nqSched is ip_vs_nq.c: the first available dest with no active
// connection at once, else sed's choice.
type nqSched struct{}

func (nqSched) Name() string    { return "nq" }
func (nqSched) Update(*Service) {}

func (nqSched) Schedule(svc *Service, _ *Flow) *Dest {
	var least *Dest
	var loh, lw int64
	for _, d := range svc.Dests {
		w := d.Weight.Load()
		if overloaded(d) || w == 0 {
			continue
		}
		active := d.ActiveConns.Load()
		if active == 0 {
			return d
		}
		doh := int64(active) + 1
		if least == nil || loh*int64(w) > doh*lw {
			least, loh, lw = d, doh, int64(w)
		}
	}
	return least
}

// foSched is ip_vs_fo.c: the non-overloaded dest with the highest
// weight; the first of equal weights wins.
type foSched struct{}

func (foSched) Name() string    { return "fo" }
func (foSched) Update(*Service) {}

func (foSched) Schedule(svc *Service, _ *Flow) *Dest {
	var h *Dest
	var hw int32
	for _, d := range svc.Dests {
		if w := d.Weight.Load(); !overloaded(d) && w > hw {
			h, hw = d, w
		}
	}
	return h
}

// ovfSched is ip_vs_ovf.c: the highest-weight dest whose activeconns do
// not exceed its weight (the kernel skips activeconns > weight, so a
// dest with activeconns == weight still takes one more).
type ovfSched struct{}

func (ovfSched) Name() string    { return "ovf" }
func (ovfSched) Update(*Service) {}

func (ovfSched) Schedule(svc *Service, _ *Flow) *Dest {
	var h *Dest
	var hw int32
	for _, d := range svc.Dests {
		w := d.Weight.Load()
		if overloaded(d) || d.ActiveConns.Load() > w || w == 0 {
			continue
		}
		if h == nil || w > hw {
			h, hw = d, w
		}
	}
	return h
}

// twosSched is ip_vs_twos.c: two dests drawn at random in proportion to
// their weights (r1, r2 uniform in [0, total weight], in that order from
// Flow.Rand), then the second replaces the first if its overhead/weight
// is strictly lower.
type twosSched struct{}

func (twosSched) Name() string    { return "twos" }
func (twosSched) Update(*Service) {}

func (twosSched) Schedule(svc *Service, f *Flow) *Dest {
	dests := svc.Dests
	var total int64
	var any bool
	for _, d := range dests {
		if w := d.Weight.Load(); !overloaded(d) && w > 0 {
			total += int64(w)
			any = true
		}
	}
	if !any {
		return nil
	}
	total++
	r1 := int64(uint64(flowRand32(f)) % uint64(total))
	r2 := int64(uint64(flowRand32(f)) % uint64(total))
	var c1, c2 *Dest
	var w1, w2, oh1, oh2 int64
	for _, d := range dests {
		if overloaded(d) {
			continue
		}
		w := int64(d.Weight.Load())
		if w <= 0 {
			continue
		}
		r1 -= w
		r2 -= w
		if r1 <= 0 && c1 == nil {
			c1, w1, oh1 = d, w, d.Overhead()
		}
		if r2 <= 0 && c2 == nil {
			c2, w2, oh2 = d, w, d.Overhead()
		}
		if c1 != nil && c2 != nil {
			break
		}
	}
	if c1 == nil {
		// weights changed under us; the kernel returns the last
		// available dest of its first pass
		for i := len(dests) - 1; i >= 0; i-- {
			if d := dests[i]; d.Available() {
				return d
			}
		}
		return nil
	}
	if c2 != nil && w2*oh1 > w1*oh2 {
		return c2
	}
	return c1
}
