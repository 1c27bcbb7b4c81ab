package fault

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseNetem reads netem's words as tc qdisc add ... netem takes them
// (tc-netem(8), iproute2's tc/q_netem.c netem_parse_opt), with its
// defaults and its refusals:
//
//	[limit N] [delay TIME [JITTER [CORR]]] [distribution uniform|normal|pareto|paretonormal]
//	[loss [random] P [CORR] | loss state P13 [P31 [P32 [P23 [P14]]]] | loss gemodel P [R [1-H [1-K]]]]
//	[ecn] [corrupt P [CORR]] [duplicate P [CORR]] [reorder P [CORR]] [gap N]
//	[rate RATE [PACKETOVERHEAD [CELLSIZE [CELLOVERHEAD]]]]
//	[slot MIN [MAX] | slot distribution D DELAY JITTER] [packets N] [bytes B]
//
// TIME takes tc's units (s, ms, us, ns; a bare number is µs), P is a
// percentage ("5%" or "5"), RATE tc's (bit, kbit, mbit, gbit, bps,
// kbps, mbps...; a bare number is bit/s). `seed` is refused: a fault's
// draws come from the experiment's seed and the fault's name.
func ParseNetem(words []string) (Netem, error) {
	n := Netem{Limit: 1000}
	var dist, slotDist string
	hasDist := false
	i := 0
	next := func() (string, bool) {
		if i+1 < len(words) {
			i++
			return words[i], true
		}
		return "", false
	}
	isNum := func() bool {
		if i+1 >= len(words) {
			return false
		}
		w := words[i+1]
		return w != "" && (w[0] >= '0' && w[0] <= '9' || w[0] == '.' || w[0] == '-')
	}
	need := func(what string) (string, error) {
		w, ok := next()
		if !ok {
			return "", fmt.Errorf("netem: %s: missing value", what)
		}
		return w, nil
	}
	pct := func(what string, dst *Prob) error {
		w, err := need(what)
		if err != nil {
			return err
		}
		v, err := parsePercent(w)
		if err != nil {
			return fmt.Errorf("netem: %s: %w", what, err)
		}
		*dst = ProbOf(v)
		return nil
	}
	optPct := func(what string, dst *Prob) error {
		if !isNum() {
			return nil
		}
		return pct(what, dst)
	}
	for ; i < len(words); i++ {
		switch w := words[i]; w {
		case "limit":
			s, err := need("limit")
			if err != nil {
				return n, err
			}
			v, err := strconv.ParseUint(s, 10, 31)
			if err != nil {
				return n, fmt.Errorf("netem: limit %q: not a packet count", s)
			}
			n.Limit = int(v)
		case "delay", "latency":
			s, err := need("delay")
			if err != nil {
				return n, err
			}
			if n.Latency, err = ParseTime(s); err != nil {
				return n, fmt.Errorf("netem: delay: %w", err)
			}
			if isNum() {
				s, _ = next()
				if n.Jitter, err = ParseTime(s); err != nil {
					return n, fmt.Errorf("netem: jitter: %w", err)
				}
				if n.Jitter > math.MaxInt32 {
					return n, errors.New("netem: jitter over 2.147s (netem keeps it in 32 bits)")
				}
				if err := optPct("delay correlation", &n.DelayCorr); err != nil {
					return n, err
				}
			}
		case "distribution":
			s, err := need("distribution")
			if err != nil {
				return n, err
			}
			dist, hasDist = s, true
		case "loss", "drop":
			if i+1 < len(words) && (words[i+1] == "random" || words[i+1] == "state" || words[i+1] == "gemodel") {
				i++
			}
			switch words[i] {
			case "state":
				n.Model = Loss4State
				var p13 float64
				s, err := need("loss state p13")
				if err != nil {
					return n, err
				}
				if p13, err = parsePercent(s); err != nil {
					return n, fmt.Errorf("netem: loss p13: %w", err)
				}
				// defaults: a Bernoulli model (q_netem.c)
				n.A1, n.A2, n.A3, n.A5, n.A4 = ProbOf(p13), ProbOf(1-p13), 0, ProbOf(1), 0
				for _, x := range []struct {
					name string
					dst  *Prob
				}{{"p31", &n.A2}, {"p32", &n.A3}, {"p23", &n.A5}, {"p14", &n.A4}} {
					if !isNum() {
						break
					}
					if err := pct("loss "+x.name, x.dst); err != nil {
						return n, err
					}
				}
			case "gemodel":
				n.Model = LossGE
				s, err := need("loss gemodel p")
				if err != nil {
					return n, err
				}
				p, err := parsePercent(s)
				if err != nil {
					return n, fmt.Errorf("netem: loss gemodel p: %w", err)
				}
				// defaults r = 1−p, 1−h = 1 (h = 0), 1−k = 0
				n.A1, n.A2, n.A3, n.A4 = ProbOf(p), ProbOf(1-p), 0, 0
				if err := optPct("loss gemodel r", &n.A2); err != nil {
					return n, err
				}
				if isNum() {
					var oneMinusH Prob
					if err := pct("loss gemodel 1-h", &oneMinusH); err != nil {
						return n, err
					}
					n.A3 = math.MaxUint32 - oneMinusH // tc sends h
					if err := optPct("loss gemodel 1-k", &n.A4); err != nil {
						return n, err
					}
				}
			default:
				n.Model = LossRandom
				if err := pct("loss", &n.Loss); err != nil {
					return n, err
				}
				if err := optPct("loss correlation", &n.LossCorr); err != nil {
					return n, err
				}
			}
		case "ecn":
			n.ECN = true
		case "corrupt":
			if err := pct("corrupt", &n.Corrupt); err != nil {
				return n, err
			}
			if err := optPct("corrupt correlation", &n.CorruptCorr); err != nil {
				return n, err
			}
		case "duplicate":
			if err := pct("duplicate", &n.Duplicate); err != nil {
				return n, err
			}
			if err := optPct("duplicate correlation", &n.DupCorr); err != nil {
				return n, err
			}
		case "reorder":
			if err := pct("reorder", &n.Reorder); err != nil {
				return n, err
			}
			if err := optPct("reorder correlation", &n.ReorderCorr); err != nil {
				return n, err
			}
		case "gap":
			s, err := need("gap")
			if err != nil {
				return n, err
			}
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return n, fmt.Errorf("netem: gap %q: not a count", s)
			}
			n.Gap = uint32(v)
		case "rate":
			s, err := need("rate")
			if err != nil {
				return n, err
			}
			if n.Rate, err = ParseRate(s); err != nil {
				return n, fmt.Errorf("netem: rate: %w", err)
			}
			for _, dst := range []*int32{&n.PacketOverhead, &n.CellSize, &n.CellOverhead} {
				if !isNum() {
					break
				}
				s, _ := next()
				v, err := strconv.ParseInt(s, 10, 32)
				if err != nil {
					return n, fmt.Errorf("netem: rate: %q is not an integer", s)
				}
				*dst = int32(v)
			}
			if n.CellSize < 0 {
				return n, errors.New("netem: rate: negative cell size")
			}
		case "slot":
			n.HasSlot = true
			if i+1 < len(words) && words[i+1] == "distribution" {
				i++
				s, err := need("slot distribution")
				if err != nil {
					return n, err
				}
				slotDist = s
				for _, dst := range []*int64{&n.SlotDelay, &n.SlotJitter} {
					s, err := need("slot distribution delay and jitter")
					if err != nil {
						return n, err
					}
					if *dst, err = ParseTime(s); err != nil {
						return n, fmt.Errorf("netem: slot: %w", err)
					}
				}
				if n.SlotJitter > math.MaxInt32 {
					return n, errors.New("netem: slot jitter over 2.147s (netem keeps it in 32 bits)")
				}
			} else {
				s, err := need("slot min")
				if err != nil {
					return n, err
				}
				if n.SlotMin, err = ParseTime(s); err != nil {
					return n, fmt.Errorf("netem: slot: %w", err)
				}
				n.SlotMax = n.SlotMin
				if isNum() {
					s, _ = next()
					if n.SlotMax, err = ParseTime(s); err != nil {
						return n, fmt.Errorf("netem: slot: %w", err)
					}
				}
				if n.SlotMax < n.SlotMin {
					return n, errors.New("netem: slot min delay greater than max delay")
				}
			}
		case "packets", "bytes":
			if !n.HasSlot {
				return n, fmt.Errorf("netem: %s belongs to slot", w)
			}
			s, err := need(w)
			if err != nil {
				return n, err
			}
			var v uint64
			if w == "bytes" {
				v, err = parseSize(s)
			} else {
				v, err = strconv.ParseUint(s, 10, 31)
			}
			if err != nil || v > math.MaxInt32 {
				return n, fmt.Errorf("netem: slot %s %q", w, s)
			}
			if w == "bytes" {
				n.SlotBytes = int32(v)
			} else {
				n.SlotPackets = int32(v)
			}
		case "seed":
			return n, errors.New("netem: seed: a fault's draws come from the experiment's seed and the fault's name ([experiment] seed)")
		default:
			return n, fmt.Errorf("netem: unknown word %q", w)
		}
	}
	if hasDist {
		if n.Jitter == 0 {
			return n, errors.New("netem: distribution specified but no latency and jitter values")
		}
		t, ok := Dist(dist)
		if !ok {
			return n, fmt.Errorf("netem: unknown distribution %q (uniform, normal, pareto, paretonormal)", dist)
		}
		n.Dist = t
	}
	if slotDist != "" {
		t, ok := Dist(slotDist)
		if !ok || t == nil {
			return n, fmt.Errorf("netem: unknown slot distribution %q", slotDist)
		}
		n.SlotDist = t
	}
	if n.Reorder != 0 {
		if n.Latency == 0 {
			return n, errors.New("netem: reordering not possible without specifying some delay")
		}
		if n.Gap == 0 {
			n.Gap = 1
		}
	} else if n.Gap > 0 {
		return n, errors.New("netem: gap specified without reorder probability")
	}
	if n.ECN && n.Model == LossNone {
		return n, errors.New("netem: ecn requested without loss model")
	}
	return n, nil
}

func parsePercent(s string) (float64, error) {
	t := strings.TrimSuffix(s, "%")
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
		return 0, fmt.Errorf("%q is not a percentage", s)
	}
	return v / 100, nil
}

// ParseTime reads a tc time: a number with s, sec, ms, msec, us, usec
// or ns (a bare number is µs, as tc's get_time reads it); nanoseconds.
func ParseTime(s string) (int64, error) {
	j := 0
	for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
		j++
	}
	v, err := strconv.ParseFloat(s[:j], 64)
	if err != nil || j == 0 {
		return 0, fmt.Errorf("%q is not a time", s)
	}
	var mul float64
	switch s[j:] {
	case "s", "sec", "secs":
		mul = 1e9
	case "ms", "msec", "msecs":
		mul = 1e6
	case "", "us", "usec", "usecs":
		mul = 1e3
	case "ns", "nsec", "nsecs":
		mul = 1
	default:
		return 0, fmt.Errorf("%q: unknown time unit %q", s, s[j:])
	}
	r := math.RoundToEven(v * mul)
	if r > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too long", s)
	}
	return int64(r), nil
}

// ParseRate reads a tc rate (bit, kbit, mbit, gbit, tbit, kibit,
// mibit, gibit; bps, kbps, mbps, gbps for bytes; a bare number is
// bit/s) and returns bytes per second.
func ParseRate(s string) (uint64, error) {
	j := 0
	for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
		j++
	}
	v, err := strconv.ParseFloat(s[:j], 64)
	if err != nil || j == 0 {
		return 0, fmt.Errorf("%q is not a rate", s)
	}
	units := map[string]float64{"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
		"kibit": 1024, "mibit": 1 << 20, "gibit": 1 << 30, "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9,
		"kibps": 8 * 1024, "mibps": 8 << 20}
	mul, ok := units[strings.ToLower(s[j:])]
	if !ok {
		return 0, fmt.Errorf("%q: unknown rate unit %q", s, s[j:])
	}
	b := v * mul / 8
	if b < 1 || b > 1e15 {
		return 0, fmt.Errorf("%q: out of range", s)
	}
	return uint64(b), nil
}

func parseSize(s string) (uint64, error) {
	j := 0
	for j < len(s) && (s[j] >= '0' && s[j] <= '9') {
		j++
	}
	v, err := strconv.ParseUint(s[:j], 10, 40)
	if err != nil {
		return 0, err
	}
	switch strings.ToLower(s[j:]) {
	case "", "b":
		return v, nil
	case "k", "kb":
		return v << 10, nil
	case "m", "mb":
		return v << 20, nil
	}
	return 0, fmt.Errorf("%q: unknown size unit", s)
}
