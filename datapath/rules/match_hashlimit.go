package rules

import "strings"

// hashlimit match (extensions/libxt_hashlimit.c, revision 3; kernel
// net/netfilter/xt_hashlimit.c hashlimit_mt_check_common).

// hashlimit mode bits (linux/netfilter/xt_hashlimit.h).
const (
	HashlimitDIP       = 1 << 0
	HashlimitDPT       = 1 << 1
	HashlimitSIP       = 1 << 2
	HashlimitSPT       = 1 << 3
	HashlimitInvert    = 1 << 4
	HashlimitBytes     = 1 << 5
	HashlimitRateMatch = 1 << 6
)

const (
	hlScale        = 1000000 // XT_HASHLIMIT_SCALE_v2
	hlBurstDefault = 5
	hlBurstMax     = 1000000
	hlByteExpire   = 15
	hlByteExpBurst = 60
	hlGCInterval   = 1000
	hlByteShift    = 4
	hlNameLen      = 255 // XT_HASHLIMIT_NAME_LEN
)

// HashlimitMatch is "-m hashlimit" (xt_hashlimit_mtinfo3 cfg + name).
type HashlimitMatch struct {
	Mode             uint32
	Avg, Burst       uint64
	Size, Max        uint32
	GCInterval       uint32
	Expire           uint32
	SrcMask, DstMask uint8
	Interval         uint32
	HName            string

	mult  uint32 // udata->mult
	given uint32 // bit per option id
}

// option ids of hashlimit_mt_opts
var hlOptIDs = map[string]uint{
	"hashlimit-upto": 0, "hashlimit-above": 1, "hashlimit": 0, "hashlimit-srcmask": 4,
	"hashlimit-dstmask": 5, "hashlimit-name": 6, "hashlimit-burst": 7,
	"hashlimit-htable-size": 8, "hashlimit-htable-max": 9, "hashlimit-htable-gcinterval": 10,
	"hashlimit-htable-expire": 11, "hashlimit-rate-match": 12, "hashlimit-rate-interval": 13,
	"hashlimit-mode": 3,
}

func (m *HashlimitMatch) Name() string { return "hashlimit" }

func hlCostToBytes(cost uint64) uint64 {
	r := uint64(0xffffffff)
	if cost != 0 {
		r = 0xffffffff / cost
	}
	return (r - 1) << hlByteShift
}

func hlBytesToCost(bytes uint64) uint64 {
	r := uint32(bytes >> hlByteShift)
	if r+1 == 0 {
		return 0
	}
	return uint64(0xffffffff / (r + 1))
}

func hlFactor(c byte) uint64 {
	switch c {
	case 'm':
		return 1024 * 1024
	case 'k':
		return 1024
	}
	return 1
}

func hlBurstError() error {
	return Errorf("bad value for option \"--hashlimit-burst\", or out of range (1-%d).", hlBurstMax)
}

// parseBytes is libxt_hashlimit.c parse_bytes: "N[k|m]b/s".
func (m *HashlimitMatch) parseBytes(rate string) (bool, error) {
	i := strings.Index(rate, "b/s")
	if i <= 0 {
		return false, nil
	}
	r := uint64(atoi(rate))
	if r == 0 {
		return false, nil
	}
	tmp := r * hlFactor(rate[i-1])
	cost := hlBytesToCost(tmp)
	if cost == 0 {
		return false, Errorf("Rate too high \"%s\"", rate)
	}
	m.mult = hlByteExpire
	m.Avg = cost
	return true, nil
}

// parseRate is libxt_hashlimit.c parse_rate (revision 2 scale).
func (m *HashlimitMatch) parseRate(rate string) (bool, error) {
	m.mult = 1
	if i := strings.IndexByte(rate, '/'); i >= 0 {
		unit := rate[i+1:]
		switch {
		case unit == "":
			return false, nil
		case hasPrefixFold("second", unit):
			m.mult = 1
		case hasPrefixFold("minute", unit):
			m.mult = 60
		case hasPrefixFold("hour", unit):
			m.mult = 60 * 60
		case hasPrefixFold("day", unit):
			m.mult = 24 * 60 * 60
		default:
			return false, nil
		}
	}
	r := uint64(atoi(rate))
	if r == 0 {
		return false, nil
	}
	tmp := hlScale * uint64(m.mult) / r
	if tmp == 0 {
		return false, Errorf("Rate too fast \"%s\"", rate)
	}
	m.Avg = tmp
	return true, nil
}

func (m *HashlimitMatch) Parse(o *OptArg) error {
	m.given |= 1 << hlOptIDs[o.Name]
	switch o.Name {
	case "hashlimit-upto", "hashlimit", "hashlimit-above":
		above := o.Name == "hashlimit-above"
		if above != o.Invert {
			m.Mode |= HashlimitInvert
		}
		ok, err := m.parseBytes(o.Arg)
		if err != nil {
			return err
		}
		if ok {
			m.Mode |= HashlimitBytes
			return nil
		}
		if ok, err = m.parseRate(o.Arg); err != nil {
			return err
		}
		if !ok {
			opt := "--hashlimit-upto"
			if above {
				opt = "--hashlimit-above"
			}
			return Errorf("hashlimit: Bad value for \"%s\" option: \"%s\"", opt, o.Arg)
		}
	case "hashlimit-burst":
		v, end, ok := strtoulPrefix(o.Arg, 1, ^uint64(0))
		if !ok || (end == "" && v > hlBurstMax) {
			return hlBurstError()
		}
		f := uint64(1)
		if end != "" {
			f = hlFactor(end[0])
		}
		m.Burst = v * f
	case "hashlimit-srcmask", "hashlimit-dstmask":
		l, err := parsePlen("hashlimit", o.Name, o.Arg)
		if err != nil {
			return err
		}
		if o.Name == "hashlimit-srcmask" {
			m.SrcMask = uint8(l)
		} else {
			m.DstMask = uint8(l)
		}
	case "hashlimit-htable-size", "hashlimit-htable-max", "hashlimit-htable-gcinterval", "hashlimit-htable-expire":
		v, err := parseUintOpt("hashlimit", o.Name, o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		switch o.Name {
		case "hashlimit-htable-size":
			m.Size = uint32(v)
		case "hashlimit-htable-max":
			m.Max = uint32(v)
		case "hashlimit-htable-gcinterval":
			m.GCInterval = uint32(v)
		default:
			m.Expire = uint32(v)
		}
	case "hashlimit-mode":
		for _, tok := range strings.FieldsFunc(o.Arg, func(r rune) bool { return r == ',' || r == '|' }) {
			switch tok {
			case "dstip":
				m.Mode |= HashlimitDIP
			case "srcip":
				m.Mode |= HashlimitSIP
			case "srcport":
				m.Mode |= HashlimitSPT
			case "dstport":
				m.Mode |= HashlimitDPT
			default:
				return Errorf("hashlimit: Bad value for \"--hashlimit-mode\" option: \"%s\"", o.Arg)
			}
		}
	case "hashlimit-name":
		n, err := parseStringOpt(o.Arg, 1, hlNameLen)
		if err != nil {
			return err
		}
		m.HName = n
	case "hashlimit-rate-match":
		m.Mode |= HashlimitRateMatch
	case "hashlimit-rate-interval":
		r := int32(atoi(o.Arg))
		if r <= 0 {
			return Errorf("hashlimit: Bad value for \"--hashlimit-rate-interval\" option: \"%s\"", o.Arg)
		}
		m.Interval = uint32(r)
	}
	return nil
}

const (
	hlGivenUpto   = 1 << 0
	hlGivenAbove  = 1 << 1
	hlGivenName   = 1 << 6
	hlGivenBurst  = 1 << 7
	hlGivenExpire = 1 << 11
	hlGivenRate   = 1 << 12
)

// Final is hashlimit_mt_check followed by xtables_options_fcheck.
func (m *HashlimitMatch) Final(r *RuleContext) error {
	if m.given&(hlGivenUpto|hlGivenAbove) == 0 {
		return Errorf("You have to specify --hashlimit")
	}
	if m.given&hlGivenExpire == 0 {
		m.Expire = m.mult * 1000
	}
	if m.Mode&HashlimitBytes != 0 {
		var burst uint32
		if m.given&hlGivenBurst != 0 {
			ctb := hlCostToBytes(m.Avg)
			if m.Burst < ctb {
				return Errorf("burst cannot be smaller than %db", ctb)
			}
			burst = uint32(m.Burst)
			burst /= uint32(ctb)
			if m.Burst%ctb != 0 {
				burst++
			}
			if m.given&hlGivenExpire == 0 {
				m.Expire = hlByteExpBurst * 1000
			}
		}
		m.Burst = uint64(burst)
	} else if m.Burst > hlBurstMax {
		return hlBurstError()
	}
	if m.given&hlGivenRate != 0 {
		if m.Mode&HashlimitBytes == 0 {
			m.Avg /= uint64(m.mult)
		}
		if m.Interval == 0 {
			if m.Mode&HashlimitBytes != 0 {
				m.Interval = 1
			} else {
				m.Interval = m.mult
			}
		}
	}
	if m.given&hlGivenName == 0 {
		return mustBeSpecified("hashlimit", "hashlimit-name")
	}
	if m.given&hlGivenUpto != 0 && m.given&hlGivenAbove != 0 {
		return cannotCombine("hashlimit", "hashlimit-upto", "hashlimit-above")
	}
	return nil
}

// CheckHooks carries hashlimit_mt_check_common's refusals.
func (m *HashlimitMatch) CheckHooks(t TableID, hooks HookMask) error {
	if !procNameOK(m.HName) {
		return Errorf("hashlimit: bad name")
	}
	if m.GCInterval == 0 || m.Expire == 0 {
		return Errorf("hashlimit: zero gc interval or expire")
	}
	if m.SrcMask > 32 || m.DstMask > 32 {
		return Errorf("hashlimit: bad mask")
	}
	if m.Mode&HashlimitRateMatch != 0 {
		if m.Avg == 0 || m.Avg > 0xffffffff || m.Interval == 0 {
			return Errorf("hashlimit: invalid rate")
		}
	} else if m.Mode&HashlimitBytes == 0 && m.Burst == 0 {
		return Errorf("hashlimit: overflow")
	}
	return nil
}

var hlRates = [4]struct {
	name string
	mult uint64
}{{"day", hlScale * 24 * 60 * 60}, {"hour", hlScale * 60 * 60}, {"min", hlScale * 60}, {"sec", hlScale}}

// hlPrintRate is print_rate (revision 3); it returns the default expire
// in ms for the unit printed.
func hlPrintRate(w *SaveWriter, period uint64) uint32 {
	if period == 0 {
		w.WriteString(" inf")
		return 0
	}
	i := 1
	for ; i < len(hlRates); i++ {
		if period > hlRates[i].mult || hlRates[i].mult/period < hlRates[i].mult%period {
			break
		}
	}
	w.WriteString(" " + uitoa(hlRates[i-1].mult/period) + "/" + hlRates[i-1].name)
	return uint32(hlRates[i-1].mult / hlScale * 1000)
}

var hlUnits = [3]struct {
	name   string
	thresh uint64
}{{"m", 1024 * 1024}, {"k", 1024}, {"", 1}}

// hlPrintBytes is print_bytes.
func hlPrintBytes(w *SaveWriter, avg, burst uint64, prefix string) uint32 {
	r := hlCostToBytes(avg)
	i := 0
	for ; i < len(hlUnits)-1; i++ {
		if r >= hlUnits[i].thresh && hlBytesToCost(r&^(hlUnits[i].thresh-1)) == avg {
			break
		}
	}
	w.WriteString(" " + uitoa(r/hlUnits[i].thresh) + hlUnits[i].name + "b/s")
	if burst == 0 {
		return hlByteExpire * 1000
	}
	r *= burst
	w.WriteString(" " + prefix)
	for i = 0; i < len(hlUnits)-1; i++ {
		if r >= hlUnits[i].thresh {
			break
		}
	}
	w.WriteString("burst " + uitoa(r/hlUnits[i].thresh) + hlUnits[i].name + "b")
	return hlByteExpBurst * 1000
}

// Save is hashlimit_mt_save (revision 3, IPv4).
func (m *HashlimitMatch) Save(w *SaveWriter) {
	if m.Mode&HashlimitInvert != 0 {
		w.WriteString(" --hashlimit-above")
	} else {
		w.WriteString(" --hashlimit-upto")
	}
	var quantum uint32
	if m.Mode&HashlimitBytes != 0 {
		quantum = hlPrintBytes(w, m.Avg, m.Burst, "--hashlimit-")
	} else {
		quantum = hlPrintRate(w, m.Avg)
		w.Opt("hashlimit-burst", uitoa(m.Burst))
	}
	if m.Mode&(HashlimitSIP|HashlimitSPT|HashlimitDIP|HashlimitDPT) != 0 {
		var parts []string
		for _, x := range []struct {
			bit  uint32
			name string
		}{{HashlimitSIP, "srcip"}, {HashlimitSPT, "srcport"}, {HashlimitDIP, "dstip"}, {HashlimitDPT, "dstport"}} {
			if m.Mode&x.bit != 0 {
				parts = append(parts, x.name)
			}
		}
		w.Opt("hashlimit-mode", strings.Join(parts, ","))
	}
	w.WriteString(" --hashlimit-name " + m.HName)
	if m.Size != 0 {
		w.Opt("hashlimit-htable-size", uitoa(uint64(m.Size)))
	}
	if m.Max != 0 {
		w.Opt("hashlimit-htable-max", uitoa(uint64(m.Max)))
	}
	if m.GCInterval != hlGCInterval {
		w.Opt("hashlimit-htable-gcinterval", uitoa(uint64(m.GCInterval)))
	}
	if m.Expire != quantum {
		w.Opt("hashlimit-htable-expire", uitoa(uint64(m.Expire)))
	}
	if m.SrcMask != 32 {
		w.Opt("hashlimit-srcmask", uitoa(uint64(m.SrcMask)))
	}
	if m.DstMask != 32 {
		w.Opt("hashlimit-dstmask", uitoa(uint64(m.DstMask)))
	}
	if m.Mode&HashlimitRateMatch != 0 {
		w.Opt("hashlimit-rate-match", "")
		if m.Interval != 1 {
			w.Opt("hashlimit-rate-interval", uitoa(uint64(m.Interval)))
		}
	}
}

func init() {
	arg := func(name string) Option { return Option{Name: name, Arg: RequiredArg} }
	RegisterMatch(&MatchSpec{Name: "hashlimit", Options: []Option{
		{Name: "hashlimit-upto", Arg: RequiredArg, Invert: true},
		{Name: "hashlimit-above", Arg: RequiredArg, Invert: true},
		{Name: "hashlimit", Arg: RequiredArg, Invert: true, Alias: "hashlimit-upto"},
		arg("hashlimit-srcmask"), arg("hashlimit-dstmask"), arg("hashlimit-burst"),
		arg("hashlimit-htable-size"), arg("hashlimit-htable-max"),
		arg("hashlimit-htable-gcinterval"), arg("hashlimit-htable-expire"),
		arg("hashlimit-mode"), arg("hashlimit-name"),
		{Name: "hashlimit-rate-match"}, arg("hashlimit-rate-interval"),
	}, New: func() Match {
		// hashlimit_mt4_init
		return &HashlimitMatch{Burst: hlBurstDefault, GCInterval: hlGCInterval, SrcMask: 32, DstMask: 32, mult: 1}
	}})
}
