package fault

import "math"

// The netem part of a fault: the parameters and the per-packet
// algorithms of the kernel's netem qdisc (net/sched/sch_netem.c, Linux
// 6.18), with the kernel's fixed-point scales: probabilities are u32
// fractions of 2^32-1 as iproute2's get_percent sends them
// (tc/q_netem.c), times are nanoseconds. The one difference is where the
// uniform numbers come from: netem draws from one prandom stream per
// qdisc (prandom_u32_state), uswitch from a counter-based function of
// the fault's key, the flow and the packet's index in it (prf.go), so a
// decision does not depend on what other flows did.

// Prob is a probability as netem holds it: p·(2^32−1), rounded
// (iproute2's set_percent / get_percent).
type Prob uint32

// ProbOf converts a fraction in [0, 1].
func ProbOf(f float64) Prob {
	if f <= 0 {
		return 0
	}
	if f >= 1 {
		return math.MaxUint32
	}
	return Prob(math.RoundToEven(f * math.MaxUint32))
}

// Float is the probability as a fraction.
func (p Prob) Float() float64 { return float64(p) / math.MaxUint32 }

// LossModel is netem's loss_model (CLG_*).
type LossModel uint8

const (
	LossNone   LossModel = iota
	LossRandom           // CLG_RANDOM: loss random P [CORR]
	Loss4State           // CLG_4_STATES: loss state p13 [p31 [p32 [p23 [p14]]]]
	LossGE               // CLG_GILB_ELL: loss gemodel p [r [1-h [1-k]]]
)

// Netem holds a netem line's parameters.
type Netem struct {
	// Limit is the queue limit in packets (tc's default 1000).
	Limit int
	// Latency and Jitter (ns), DelayCorr, Dist (nil: uniform in
	// [Latency−Jitter, Latency+Jitter), as the kernel draws without a
	// table).
	Latency, Jitter int64
	DelayCorr       Prob
	Dist            *Table
	// Loss: the model and its parameters. Random: Loss, LossCorr.
	// 4-state: A1..A5 = p13, p31, p32, p14, p23 (the kernel's clgstate
	// a1..a5). Gilbert-Elliott: A1 = p, A2 = r, A3 = h, A4 = 1−k.
	Model          LossModel
	Loss, LossCorr Prob
	A1, A2, A3, A4 Prob
	A5             Prob
	ECN            bool
	// Duplicate, Corrupt, Reorder with their correlations; Gap is the
	// reorder gap (0: no reordering).
	Duplicate, DupCorr     Prob
	Corrupt, CorruptCorr   Prob
	Reorder, ReorderCorr   Prob
	Gap                    uint32
	Rate                   uint64 // bytes per second (0: none)
	PacketOverhead         int32
	CellSize, CellOverhead int32
	// Slot: SlotMin..SlotMax (uniform), or SlotDist with SlotDelay and
	// SlotJitter; SlotPackets and SlotBytes per slot (0: no limit).
	SlotMin, SlotMax      int64
	SlotDist              *Table
	SlotDelay, SlotJitter int64
	SlotPackets           int32
	SlotBytes             int32
	HasSlot               bool
}

// delays reports whether the netem part holds packets (a delay, rate or
// slot), which only a wire placement can do.
func (n *Netem) delays() bool {
	return n.Latency != 0 || n.Jitter != 0 || n.Rate != 0 || n.HasSlot || n.Gap != 0
}

// crnd is a correlated random stream's state (struct crndstate).
type crnd struct {
	last uint32
	rho  uint32
}

// next is get_crandom: with correlation rho the answer is the weighted
// mean (value·(2^32−rho−1) + last·(rho+1)) >> 32 of a fresh draw and the
// last answer.
func (s *crnd) next(value uint32) uint32 {
	if s.rho == 0 {
		return value
	}
	rho := uint64(s.rho) + 1
	answer := uint32((uint64(value)*((1<<32)-rho) + uint64(s.last)*rho) >> 32)
	s.last = answer
	return answer
}

// Loss-model states (the kernel's enum: TX_IN_GAP_PERIOD = 1 ...; GOOD_STATE = 1, BAD_STATE).
const (
	txInGap     = 1
	txInBurst   = 2
	lostInGap   = 3
	lostInBurst = 4

	goodState = 1
	badState  = 2
)

// loss4State is loss_4state: one uniform draw against the transition
// probabilities out of the current state.
func loss4State(n *Netem, state *uint8, rnd uint32) bool {
	a1, a2, a3, a4, a5 := uint32(n.A1), uint32(n.A2), uint32(n.A3), uint32(n.A4), uint32(n.A5)
	switch *state {
	case txInGap:
		if rnd < a4 {
			*state = lostInGap
			return true
		} else if uint64(rnd) < uint64(a1)+uint64(a4) {
			*state = lostInBurst
			return true
		}
		*state = txInGap
	case txInBurst:
		if rnd < a5 {
			*state = lostInBurst
			return true
		}
		*state = txInBurst
	case lostInBurst:
		if rnd < a3 {
			*state = txInBurst
		} else if uint64(rnd) < uint64(a2)+uint64(a3) {
			*state = txInGap
		} else {
			*state = lostInBurst
			return true
		}
	case lostInGap:
		*state = txInGap
	}
	return false
}

// lossGE is loss_gilb_ell: two draws per packet, both in the case arm
// of the state the packet found: GOOD goes to BAD when r1 < p and the
// packet is lost when r2 < 1−k; BAD goes to GOOD when r1 < r and the
// packet is lost when r2 > h.
func lossGE(n *Netem, state *uint8, r1, r2 uint32) bool {
	switch *state {
	case goodState:
		if r1 < uint32(n.A1) {
			*state = badState
		}
		return r2 < uint32(n.A4)
	case badState:
		if r1 < uint32(n.A2) {
			*state = goodState
		}
		return r2 > uint32(n.A3)
	}
	return false
}

// tabledist is netem's tabledist: mu + a draw of the distribution with
// deviation sigma: uniform in [mu−sigma, mu+sigma) without a table, else
// mu + sigma·table[rnd % size]/NETEM_DIST_SCALE with the kernel's
// rounding.
func tabledist(mu int64, sigma int32, rnd uint32, dist *Table) int64 {
	if sigma == 0 {
		return mu
	}
	if dist == nil {
		return (int64(rnd%(2*uint32(sigma))) + mu) - int64(sigma)
	}
	t := int64(dist.v[rnd%uint32(len(dist.v))])
	x := int64(sigma%distScale) * t
	if x >= 0 {
		x += distScale / 2
	} else {
		x -= distScale / 2
	}
	return x/distScale + int64(sigma/distScale)*t + mu
}

// packetTime is packet_time_ns: the serialization time of a packet of
// len bytes with the overhead and cells.
func packetTime(n *Netem, length int) int64 {
	l := int64(length) + int64(n.PacketOverhead)
	if n.CellSize > 0 {
		cells := l / int64(n.CellSize)
		if l > cells*int64(n.CellSize) {
			cells++
		}
		l = cells * int64(n.CellSize+n.CellOverhead)
	}
	if l < 0 {
		l = 0
	}
	return int64(uint64(l) * 1e9 / n.Rate)
}
