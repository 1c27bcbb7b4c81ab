package lvs

import "sync"

// estimator is the rate estimator of one Stats (ip_vs_est.c): every two
// seconds the counters' growth is folded into an average with weight
// 1/4; connections and packets are kept scaled by 2^10, bytes by 2^5.
type estimator struct {
	mu                                 sync.Mutex
	lastConns, lastInPkts, lastOutPkts uint64
	lastInBytes, lastOutBytes          uint64
	cps, inpps, outpps, inbps, outbps  int64
}

// EstimateInterval is how often Director.Estimate must run (2 s).
const EstimateInterval = 2e9

func (e *estimator) tick(s StatsSnapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	step := func(avg *int64, last *uint64, n uint64, shift uint) {
		rate := int64((n - *last) << shift)
		*last = n
		*avg += (rate - *avg) >> 2
	}
	step(&e.cps, &e.lastConns, s.Conns, 9)
	step(&e.inpps, &e.lastInPkts, s.InPkts, 9)
	step(&e.outpps, &e.lastOutPkts, s.OutPkts, 9)
	step(&e.inbps, &e.lastInBytes, s.InBytes, 4)
	step(&e.outbps, &e.lastOutBytes, s.OutBytes, 4)
}

// read is ip_vs_read_estimator.
func (e *estimator) read() RateSnapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return RateSnapshot{
		CPS:    uint64((e.cps + 0x1ff) >> 10),
		InPPS:  uint64((e.inpps + 0x1ff) >> 10),
		OutPPS: uint64((e.outpps + 0x1ff) >> 10),
		InBPS:  uint64((e.inbps + 0xf) >> 5),
		OutBPS: uint64((e.outbps + 0xf) >> 5),
	}
}

// zero is ip_vs_zero_estimator (ipvsadm -Z).
func (e *estimator) zero(s StatsSnapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lastConns, e.lastInPkts, e.lastOutPkts, e.lastInBytes, e.lastOutBytes = s.Conns, s.InPkts, s.OutPkts, s.InBytes, s.OutBytes
	e.cps, e.inpps, e.outpps, e.inbps, e.outbps = 0, 0, 0, 0, 0
}

// Rates are the estimated rates of these counters (ipvsadm --rate).
func (s *Stats) Rates() RateSnapshot { return s.est.read() }

// Estimate runs one tick of the estimator over every service and dest;
// call it every EstimateInterval (the lab does; tests call it
// directly). The rates are also copied into Service.Rate and Dest.Rate.
func (d *Director) Estimate() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, svc := range d.services.Load().list {
		svc.Stats.est.tick(svc.Stats.Snapshot())
		svc.Rate = svc.Stats.est.read()
		for _, dst := range svc.Dests {
			dst.Stats.est.tick(dst.Stats.Snapshot())
			dst.Rate = dst.Stats.est.read()
		}
	}
}

// copyFrom carries the estimator over to a service's replacement.
func (e *estimator) copyFrom(o *estimator) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e.lastConns, e.lastInPkts, e.lastOutPkts, e.lastInBytes, e.lastOutBytes = o.lastConns, o.lastInPkts, o.lastOutPkts, o.lastInBytes, o.lastOutBytes
	e.cps, e.inpps, e.outpps, e.inbps, e.outbps = o.cps, o.inpps, o.outpps, o.inbps, o.outbps
}
