package iptables

import (
	"math"
	"strconv"
	"strings"
	"sync/atomic"
)

// statistic match (extensions/libxt_statistic.c; kernel
// net/netfilter/xt_statistic.c).

// Statistic modes (XT_STATISTIC_MODE_*).
const (
	StatisticRandom = 0
	StatisticNth    = 1
)

// StatisticMatch is "-m statistic" (xt_statistic_info). Probability is
// the kernel's fixed-point value (p * 2^31); Every is stored minus one
// as the kernel keeps it.
type StatisticMatch struct {
	Mode        uint8
	Invert      bool
	Probability uint32
	Every       uint32
	Packet      uint32

	given uint8 // bit per option: mode, probability, every, packet

	// count is the nth counter (xt_statistic_priv.count), one per rule
	// shared by every packet and worker. It holds the kernel's value
	// plus one so that the zero value means "not started": the kernel
	// starts it at every - packet when the rule is checked.
	count atomic.Uint32
}

const (
	statGivenMode = 1 << iota
	statGivenProb
	statGivenEvery
	statGivenPacket
)

func (m *StatisticMatch) Name() string { return "statistic" }

// cStrtod parses the whole of s as C strtod does (leading white space,
// hex floats without an exponent, inf/nan).
func cStrtod(s string) (float64, bool) {
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	if t == "" || strings.ContainsRune(t, '_') {
		return 0, false
	}
	body := strings.TrimLeft(t, "+-")
	if len(body) > 1 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X') && !strings.ContainsAny(body, "pP") {
		t += "p0"
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return v, true
		}
		return 0, false
	}
	return v, true
}

func (m *StatisticMatch) Parse(o *OptArg) error {
	// statistic_parse records "!" before the generic checks run
	if o.Invert {
		m.Invert = true
	}
	switch o.Name {
	case "mode":
		switch o.Arg {
		case "random":
			m.Mode = StatisticRandom
		case "nth":
			m.Mode = StatisticNth
		default:
			return Errorf("Bad mode \"%s\"", o.Arg)
		}
		m.given |= statGivenMode
	case "probability":
		v, ok := cStrtod(o.Arg)
		if !ok || v < 0 || v > 1 {
			return Errorf("statistic: bad value for option \"--probability\", or out of range (0-1).\n")
		}
		if math.IsNaN(v) {
			m.Probability = 0 // lround(NaN) on x86-64, truncated
		} else {
			m.Probability = uint32(math.Round(0x80000000 * v))
		}
		m.given |= statGivenProb
	case "every":
		v, err := parseUintOpt("statistic", "every", o.Arg, 1, 0xffffffff)
		if err != nil {
			return err
		}
		m.Every = uint32(v) - 1
		m.given |= statGivenEvery
	case "packet":
		v, err := parseUintOpt("statistic", "packet", o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		m.Packet = uint32(v)
		m.given |= statGivenPacket
	}
	return nil
}

// Final is statistic_check followed by xtables_options_fcheck.
func (m *StatisticMatch) Final(r *RuleContext) error {
	// probability and every share the kernel union (u.random / u.nth)
	every := m.Every
	if m.given&statGivenEvery == 0 && m.given&statGivenProb != 0 {
		every = m.Probability
	}
	if m.Mode == StatisticRandom && m.given&statGivenProb == 0 {
		return Errorf("--probability must be specified when using random mode")
	}
	if m.Mode == StatisticNth && m.given&(statGivenEvery|statGivenPacket) == 0 {
		return Errorf("--every and --packet must be specified when using nth mode")
	}
	if m.Packet > every {
		return Errorf("the --packet p must be 0 <= p <= n-1")
	}
	if m.given&statGivenMode == 0 {
		return mustBeSpecified("statistic", "mode")
	}
	if m.given&statGivenProb != 0 {
		if m.given&statGivenEvery != 0 {
			return cannotCombine("statistic", "probability", "every")
		}
		if m.given&statGivenPacket != 0 {
			return cannotCombine("statistic", "probability", "packet")
		}
	}
	if m.given&statGivenEvery != 0 && m.given&statGivenPacket == 0 {
		return alsoRequires("statistic", "every", "packet")
	}
	if m.given&statGivenPacket != 0 && m.given&statGivenEvery == 0 {
		return alsoRequires("statistic", "packet", "every")
	}
	return nil
}

func (m *StatisticMatch) Save(w *SaveWriter) {
	inv := ""
	if m.Invert {
		inv = " !"
	}
	switch m.Mode {
	case StatisticRandom:
		w.Printf(" --mode random%s --probability %.11f", inv, float64(m.Probability)/0x80000000)
	case StatisticNth:
		w.Printf(" --mode nth%s --every %d --packet %d", inv, m.Every+1, m.Packet)
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "statistic", Options: []Option{
		{Name: "mode", Arg: RequiredArg},
		{Name: "probability", Arg: RequiredArg, Invert: true},
		{Name: "every", Arg: RequiredArg, Invert: true},
		{Name: "packet", Arg: RequiredArg},
	}, New: func() Match { return &StatisticMatch{} }})
}

// Eval is statistic_mt (net/netfilter/xt_statistic.c). random: matches
// when (Rand32 & 0x7FFFFFFF) < P. nth: the shared counter advances by
// one per packet, wrapping from every-1 to 0, and the packet matches when
// it becomes 0: packets p, p+n, p+2n, ... (0-based) match.
func (m *StatisticMatch) Eval(c *Ctx) bool {
	hit := false
	switch m.Mode {
	case StatisticRandom:
		hit = c.Env.Rand32()&0x7FFFFFFF < m.Probability
	case StatisticNth:
		for {
			old := m.count.Load()
			cur := old - 1
			if old == 0 {
				cur = m.Every - m.Packet // nth.count as statistic_mt_check sets it
			}
			next := cur + 1
			if cur == m.Every {
				next = 0
			}
			if m.count.CompareAndSwap(old, next+1) {
				hit = next == 0
				break
			}
		}
	}
	return hit != m.Invert
}
