package iptables

import (
	"strings"
	"sync"
)

// limit match (extensions/libxt_limit.c). iptables-nft 1.8.9 does not
// load xt_limit: it translates the match into a native nftables limit
// expression (iptables/nft.c add_nft_limit) and rebuilds the match from
// it when reading the rule back (nft-shared.c nft_parse_limit), which
// rounds the average and loses whatever the expression cannot carry.

const (
	limitScale        = 10000 // XT_LIMIT_SCALE
	limitBurstDefault = 5     // XT_LIMIT_BURST
)

// LimitMatch is "-m limit" (xt_rateinfo): Avg is the period between
// packets in 1/10000 s, as the kernel keeps it.
type LimitMatch struct {
	Avg   uint32
	Burst uint32

	// rate packets per unit seconds: the nft limit expression's
	// NFTA_LIMIT_RATE and NFTA_LIMIT_UNIT, set by Final.
	rate, unit uint64

	// mu guards the token bucket (struct nft_limit), one per rule,
	// shared by every packet and worker.
	mu      sync.Mutex
	started bool
	tokens  uint64 // nanoseconds of credit
	last    int64  // Env.Now of the last packet
}

func (m *LimitMatch) Name() string { return "limit" }

// parseLimitRate is libxt_limit.c parse_rate: "N[/second|minute|hour|day]"
// with any prefix of the unit; ok false for a malformed rate.
func parseLimitRate(rate string) (uint32, bool, error) {
	mult := uint32(1)
	if i := strings.IndexByte(rate, '/'); i >= 0 {
		unit := rate[i+1:]
		switch {
		case unit == "":
			return 0, false, nil
		case hasPrefixFold("second", unit):
			mult = 1
		case hasPrefixFold("minute", unit):
			mult = 60
		case hasPrefixFold("hour", unit):
			mult = 60 * 60
		case hasPrefixFold("day", unit):
			mult = 24 * 60 * 60
		default:
			return 0, false, nil
		}
	}
	r := uint32(int32(atoi(rate))) // atoi, stored in a uint32_t
	if r == 0 {
		return 0, false, nil
	}
	v := limitScale * mult / r
	if v == 0 {
		return 0, false, Errorf("Rate too fast \"%s\"", rate)
	}
	return v, true, nil
}

func (m *LimitMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "limit":
		v, ok, err := parseLimitRate(o.Arg)
		if err != nil {
			return err
		}
		if !ok {
			return Errorf("bad rate \"%s\"'", o.Arg)
		}
		m.Avg = v
	case "limit-burst":
		v, err := parseUintOpt("limit", "limit-burst", o.Arg, 0, 10000)
		if err != nil {
			return err
		}
		m.Burst = uint32(v)
	}
	return nil
}

var limitMults = [4]uint32{limitScale * 24 * 60 * 60, limitScale * 60 * 60, limitScale * 60, limitScale}

// Final applies the native nftables round trip: add_nft_limit picks a
// unit and stores rate = mult/avg per unit; nft_parse_limit computes avg
// back as SCALE*unit/rate. The kernel's nft_limit replaces a packet
// burst of 0 with its default of 5.
func (m *LimitMatch) Final(r *RuleContext) error {
	i := 1
	for ; i < len(limitMults); i++ {
		if m.Avg > limitMults[i] || limitMults[i]/m.Avg < limitMults[i]%m.Avg {
			break
		}
	}
	rate := uint64(limitMults[i-1] / m.Avg)
	unit := uint64(limitMults[i-1] / limitScale)
	m.Avg = uint32(limitScale * unit / rate)
	m.rate, m.unit = rate, unit
	if m.Burst == 0 {
		m.Burst = limitBurstDefault
	}
	return nil
}

var limitRateNames = [4]string{"day", "hour", "min", "sec"}

// formatLimitRate is print_rate.
func formatLimitRate(period uint32) string {
	if period == 0 {
		return "inf"
	}
	i := 1
	for ; i < len(limitMults); i++ {
		if period > limitMults[i] || limitMults[i]/period < limitMults[i]%period {
			break
		}
	}
	return uitoa(uint64(limitMults[i-1]/period)) + "/" + limitRateNames[i-1]
}

func uitoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(b[i:])
}

func (m *LimitMatch) Save(w *SaveWriter) {
	w.Opt("limit", formatLimitRate(m.Avg))
	if m.Burst != limitBurstDefault {
		w.Opt("limit-burst", uitoa(uint64(m.Burst)))
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "limit", Options: []Option{
		{Name: "limit", Arg: RequiredArg},
		{Name: "limit-burst", Arg: RequiredArg},
	}, New: func() Match {
		// limit_init: 3/hour, burst 5
		return &LimitMatch{Avg: limitScale * 60 * 60 / 3, Burst: limitBurstDefault}
	}})
}

// Eval is the nftables limit expression iptables-nft 1.8.9 turns -m limit
// into (nft_limit_pkts_eval / nft_limit_eval, net/netfilter/nft_limit.c),
// not xt_limit: a token bucket counted in nanoseconds of Env.Now. A packet
// costs unit*1e9/rate ns; the bucket holds at most cost*burst and starts
// full (nft_limit_init); credit accrues with the time since the last
// packet, matched or not. The bucket lives in the match value: one per
// rule, restarted when a rule set is loaded, as a new nft rule's is.
func (m *LimitMatch) Eval(c *Ctx) bool {
	rate, unit := m.rate, m.unit
	if rate == 0 { // not through Final: use the average as is
		rate, unit = limitScale, uint64(m.Avg)
	}
	cost := unit * 1e9 / rate
	burst := uint64(m.Burst)
	if burst == 0 {
		burst = limitBurstDefault
	}
	max := cost * burst
	now := c.Env.Now()
	m.mu.Lock()
	if !m.started {
		m.started, m.tokens, m.last = true, max, now
	}
	tokens := m.tokens
	if now > m.last {
		tokens += uint64(now - m.last)
	}
	if tokens > max {
		tokens = max
	}
	m.last = now
	ok := tokens >= cost
	if ok {
		tokens -= cost
	}
	m.tokens = tokens
	m.mu.Unlock()
	return ok
}
