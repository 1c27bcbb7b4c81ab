package lvs

import "math/rand/v2"

// The IPVS scheduling modules (net/netfilter/ipvs/ip_vs_*.c), one file
// per family:
//
//	sched_rr.go     rr, wrr              cursor in the dest list
//	sched_lc.go     lc wlc sed nq fo ovf twos   stateless scans
//	sched_hash.go   dh sh mh             lookup tables rebuilt by Update
//	sched_lblc.go   lblc lblcr           per-destination-IP caches with ageing
//
// Every scheduler walks svc.Dests, which is the kernel's
// svc->destinations list (newest first: -a adds at the head), so ties
// are broken as the kernel breaks them: the first dest in list order
// wins unless a later one is strictly better. Update stands for the kernel's add_dest,
// del_dest and upd_dest callbacks (init_service is the factory).

func init() {
	RegisterScheduler("rr", func(svc *Service) Scheduler { return newRR(svc) })
	RegisterScheduler("wrr", func(svc *Service) Scheduler { return newWRR(svc) })
	RegisterScheduler("lc", func(*Service) Scheduler { return lcSched{} })
	RegisterScheduler("wlc", func(*Service) Scheduler { return wlcSched{} })
	RegisterScheduler("sed", func(*Service) Scheduler { return sedSched{} })
	RegisterScheduler("nq", func(*Service) Scheduler { return nqSched{} })
	RegisterScheduler("fo", func(*Service) Scheduler { return foSched{} })
	RegisterScheduler("ovf", func(*Service) Scheduler { return ovfSched{} })
	RegisterScheduler("twos", func(*Service) Scheduler { return twosSched{} })
	RegisterScheduler("dh", func(svc *Service) Scheduler { return newDH(svc) })
	RegisterScheduler("sh", func(svc *Service) Scheduler { return newSH(svc) })
	RegisterScheduler("mh", func(svc *Service) Scheduler { return newMH(svc) })
	RegisterScheduler("lblc", func(*Service) Scheduler { return newLBLC() })
	RegisterScheduler("lblcr", func(*Service) Scheduler { return newLBLCR() })
}

// overloaded is IP_VS_DEST_F_OVERLOAD.
func overloaded(d *Dest) bool { return d.Flags.Load()&DestOverload != 0 }

// overheadKind says how leastPick weighs a dest's connections.
type overheadKind uint8

const (
	// wlcOverhead is ip_vs_dest_conn_overhead: activeconns<<8 +
	// inactconns (wlc, lblc, lblcr)
	wlcOverhead overheadKind = iota
	// sedOverhead is ip_vs_sed_dest_overhead: activeconns + 1
	sedOverhead
)

func (k overheadKind) of(d *Dest) int64 {
	if k == sedOverhead {
		return int64(d.ActiveConns.Load()) + 1
	}
	return d.Overhead()
}

// leastPick is the loop of ip_vs_wlc_schedule and ip_vs_sed_schedule,
// which differ only in the overhead (also of __ip_vs_lblc_schedule and
// __ip_vs_lblcr_schedule, which are wlc's): the first available dest in
// list order, then any later non-overloaded dest whose overhead/weight is
// strictly lower, compared without division as loh*dw > doh*lw. A
// weight-0 dest can never win that compare.
func leastPick(dests []*Dest, k overheadKind) *Dest {
	var least *Dest
	var loh int64
	i := 0
	for ; i < len(dests); i++ {
		d := dests[i]
		if !overloaded(d) && d.Weight.Load() > 0 {
			least, loh = d, k.of(d)
			break
		}
	}
	if least == nil {
		return nil
	}
	lw := int64(least.Weight.Load())
	for i++; i < len(dests); i++ {
		d := dests[i]
		if overloaded(d) {
			continue
		}
		doh := k.of(d)
		dw := int64(d.Weight.Load())
		if loh*dw > doh*lw {
			least, loh, lw = d, doh, dw
		}
	}
	return least
}

// hash32 is the kernel's hash_32 (include/linux/hash.h, generic
// version): multiply by GOLDEN_RATIO_32 and keep the top bits.
func hash32(v uint32, nbits uint) uint32 { return (v * 0x61C88647) >> (32 - nbits) }

// gcd32 is lib/math/gcd.c for positive values.
func gcd32(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// gcdMaxWeight is ip_vs_wrr_gcd_weight and ip_vs_wrr_max_weight in one
// pass (ip_vs_mh_gcd_weight and ip_vs_mh_shift_weight's max are the same
// loops over mh's last weights): the greatest common divisor of the
// positive weights, 0 if there is none, and the largest weight, of
// dests as weight reads them.
func gcdMaxWeight(dests []*Dest, weight func(*Dest) int32) (g, maxw int32) {
	for _, d := range dests {
		w := weight(d)
		if w > 0 {
			if g > 0 {
				g = gcd32(w, g)
			} else {
				g = w
			}
		}
		maxw = max(maxw, w)
	}
	return g, maxw
}

// schedPort is ip_vs_sh_get_port / ip_vs_mh_get_port: the source port
// for TCP, UDP and SCTP, 0 for anything else.
func schedPort(f *Flow) uint16 {
	switch f.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		return f.SPort
	}
	return 0
}

// flowRand32 is prandom_u32 for twos: the flow's source, or the
// process-wide generator when the caller gave none.
func flowRand32(f *Flow) uint32 {
	if f.Rand != nil {
		return f.Rand()
	}
	return rand.Uint32()
}

// destIndex returns the position of d in dests, trying the hint first
// (the position it had the last time), or -1.
func destIndex(dests []*Dest, d *Dest, hint int) int {
	if hint >= 0 && hint < len(dests) && dests[hint] == d {
		return hint
	}
	for i, x := range dests {
		if x == d {
			return i
		}
	}
	return -1
}
