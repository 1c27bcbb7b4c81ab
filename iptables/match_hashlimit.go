package iptables

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/netfilter"
)

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

	// cache is the table of the last State the match ran with.
	cache atomic.Pointer[hlCache]
}

type hlCache struct {
	st *State
	t  *hlTable
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
func (m *HashlimitMatch) CheckHooks(t TableID, hooks netfilter.HookMask) error {
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
		w.WriteString(" --hashlimit-mode")
		hlMode(w, m.Mode, ",")
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

// hlMode writes print_mode's list of the hashed fields.
func hlMode(w *SaveWriter, mode uint32, sep string) {
	var parts []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{HashlimitSIP, "srcip"}, {HashlimitSPT, "srcport"}, {HashlimitDIP, "dstip"}, {HashlimitDPT, "dstport"}} {
		if mode&x.bit != 0 {
			parts = append(parts, x.name)
		}
	}
	w.WriteString(" " + strings.Join(parts, sep))
}

// list is hashlimit_mt4_print, hashlimit_mt_print for revision 3 and
// IPv4 (libxt_hashlimit.c): unlike save, the rate printed is the
// period times the rate interval when one is set.
func (m *HashlimitMatch) list(w *SaveWriter, _ *IPHeader, _ listFmt) {
	if m.Mode&HashlimitInvert != 0 {
		w.WriteString(" limit: above")
	} else {
		w.WriteString(" limit: up to")
	}
	var quantum uint32
	if m.Mode&HashlimitBytes != 0 {
		quantum = hlPrintBytes(w, m.Avg, m.Burst, "")
	} else {
		period := m.Avg
		if m.Interval != 0 {
			period *= uint64(m.Interval)
		}
		quantum = hlPrintRate(w, period)
		w.WriteString(" burst " + uitoa(m.Burst))
	}
	if m.Mode&(HashlimitSIP|HashlimitSPT|HashlimitDIP|HashlimitDPT) != 0 {
		w.WriteString(" mode")
		hlMode(w, m.Mode, "-")
	}
	if m.Size != 0 {
		w.WriteString(" htable-size " + uitoa(uint64(m.Size)))
	}
	if m.Max != 0 {
		w.WriteString(" htable-max " + uitoa(uint64(m.Max)))
	}
	if m.GCInterval != hlGCInterval {
		w.WriteString(" htable-gcinterval " + uitoa(uint64(m.GCInterval)))
	}
	if m.Expire != quantum {
		w.WriteString(" htable-expire " + uitoa(uint64(m.Expire)))
	}
	if m.SrcMask != 32 {
		w.WriteString(" srcmask " + uitoa(uint64(m.SrcMask)))
	}
	if m.DstMask != 32 {
		w.WriteString(" dstmask " + uitoa(uint64(m.DstMask)))
	}
	if m.Mode&HashlimitRateMatch != 0 {
		w.WriteString(" rate-match")
		if m.Interval != 1 {
			w.WriteString(" rate-interval " + uitoa(uint64(m.Interval)))
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

// Credit constants of net/netfilter/xt_hashlimit.c for HZ = 250
// (revision 3 uses the 64-bit CREDITS_PER_JIFFY).
const (
	// CREDITS_PER_JIFFY: the power of two below 2^64 / (HZ*60*60*24).
	hlCreditsPerJiffy = 1 << 39
	// CREDITS_PER_JIFFY_BYTES: the power of two below 2^32 / HZ.
	hlCreditsPerJiffyBytes = 1 << 24
	hlByteCap              = hlCreditsPerJiffyBytes * hz
)

// hlKey is struct dsthash_dst for IPv4.
type hlKey struct {
	src, dst         uint32
	srcPort, dstPort uint16
}

// hlEntry is struct dsthash_ent with its rateinfo.
type hlEntry struct {
	expires                 int64 // jiffies
	prev                    int64 // jiffies
	credit, creditCap, cost uint64
	// rate-match mode
	currentRate, rate, burst uint64
	interval                 uint64
	prevWindow               bool
}

// hlTable is struct xt_hashlimit_htable: created by the first rule that
// names it, whose configuration it keeps (hinfo->cfg).
type hlTable struct {
	mu      sync.Mutex // guards everything below
	cfg     *HashlimitMatch
	max     int
	entries map[hlKey]*hlEntry
	nextGC  int64 // jiffies of the next htable_gc run
}

// table finds or creates the named table (htable_find_get/htable_create).
func (m *HashlimitMatch) table(st *State, now int64) *hlTable {
	if c := m.cache.Load(); c != nil && c.st == st {
		return c.t
	}
	h := &st.hashlimit
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tables == nil {
		h.tables = make(map[string]*hlTable)
	}
	t := h.tables[m.HName]
	if t == nil {
		// htable_create: size defaults to 8192 buckets on hosts with more
		// than 1 GiB, max to 8 * size
		size := m.Size
		if size == 0 {
			size = 8192
		}
		max := int(m.Max)
		if max == 0 {
			max = 8 * int(size)
		}
		t = &hlTable{cfg: m, max: max, entries: make(map[hlKey]*hlEntry),
			nextGC: now + msecsToJiffies(m.GCInterval)}
		h.tables[m.HName] = t
	}
	m.cache.Store(&hlCache{st, t})
	return t
}

// key is hashlimit_init_dst; ok false when the ports are missing. The
// ports are the first four bytes after the IP header whatever the
// fragment offset, as the kernel reads them.
func (cfg *HashlimitMatch) key(p *Ctx) (k hlKey, ok bool) {
	pk := p.Pkt
	if cfg.Mode&HashlimitDIP != 0 {
		k.dst = pk.Dst & plenToMask(int(cfg.DstMask))
	}
	if cfg.Mode&HashlimitSIP != 0 {
		k.src = pk.Src & plenToMask(int(cfg.SrcMask))
	}
	if cfg.Mode&(HashlimitSPT|HashlimitDPT) == 0 {
		return k, true
	}
	var off int
	switch pk.Proto { // proto_ports_offset
	case 6, 17, 33, 50, 132, 136:
		off = 0
	case 51:
		off = 4
	default:
		return k, true // no ports: both zero
	}
	pl := pk.IP[pk.IP.HeaderLen():]
	if len(pl) < off+4 {
		return k, false
	}
	if cfg.Mode&HashlimitSPT != 0 {
		k.srcPort = be16(pl, off)
	}
	if cfg.Mode&HashlimitDPT != 0 {
		k.dstPort = be16(pl, off+2)
	}
	return k, true
}

// user2credits for revision 3: HZ*CREDITS_PER_JIFFY exceeds the scale,
// so the user value is multiplied by their integer ratio.
func hlUser2Credits(user uint64) uint64 {
	return user * (hz * hlCreditsPerJiffy / hlScale)
}

// init is rateinfo_init.
func (e *hlEntry) init(cfg *HashlimitMatch, now int64) {
	e.prev = now
	switch {
	case cfg.Mode&HashlimitRateMatch != 0:
		e.prevWindow, e.currentRate = false, 0
		if cfg.Mode&HashlimitBytes != 0 {
			r := uint64(0xffffffff)
			if uint32(cfg.Avg) != 0 {
				r = 0xffffffff / uint64(uint32(cfg.Avg))
			}
			e.rate = (r - 1) << hlByteShift // user2rate_bytes
			e.burst = e.rate
			if cfg.Burst != 0 {
				e.burst = cfg.Burst * e.rate
			}
		} else {
			e.rate = 0
			if cfg.Avg != 0 {
				e.rate = hlScale / cfg.Avg // user2rate
			}
			e.burst = cfg.Burst + e.rate
		}
		e.interval = uint64(cfg.Interval)
	case cfg.Mode&HashlimitBytes != 0:
		e.credit = hlByteCap
		e.cost = (uint64(uint32(cfg.Avg)) * hlByteCap) >> 32 // user2credits_byte
		e.creditCap = cfg.Burst
	default:
		e.credit = hlUser2Credits(cfg.Avg * cfg.Burst)
		e.cost = hlUser2Credits(cfg.Avg)
		e.creditCap = e.credit
	}
}

// recalc is rateinfo_recalc.
func (e *hlEntry) recalc(mode uint32, now int64) {
	delta := uint64(now - e.prev)
	if now <= e.prev {
		return
	}
	if mode&HashlimitRateMatch != 0 {
		interval := e.interval * hz
		if delta < interval {
			return
		}
		e.prev = now
		e.prevWindow = e.currentRate*interval > delta*e.rate
		e.currentRate = 0
		return
	}
	e.prev = now
	var cap uint64
	if mode&HashlimitBytes != 0 {
		old := e.credit
		e.credit += hlCreditsPerJiffyBytes * delta
		cap = hlByteCap
		if old >= e.credit { // overflow
			e.credit = cap
			return
		}
	} else {
		e.credit += delta * hlCreditsPerJiffy
		cap = e.creditCap
	}
	if e.credit > cap {
		e.credit = cap
	}
}

// byteCost is hashlimit_byte_cost.
func (e *hlEntry) byteCost(length int) uint64 {
	tmp := (uint64(length)>>hlByteShift + 1) * e.cost
	if tmp > hlByteCap {
		tmp = hlByteCap
	}
	if e.credit < tmp && e.creditCap != 0 {
		e.creditCap--
		e.credit = hlByteCap
	}
	return tmp
}

// gc is htable_gc / htable_selective_cleanup, run from the packet path
// every gc interval instead of from a timer: entries whose expiry passed
// are freed.
func (t *hlTable) gc(now int64) {
	if timeAfter(t.nextGC, now) {
		return
	}
	for k, e := range t.entries {
		if !timeAfter(e.expires, now) {
			delete(t.entries, k)
		}
	}
	iv := msecsToJiffies(t.cfg.GCInterval)
	if iv <= 0 {
		iv = 1
	}
	for !timeAfter(t.nextGC, now) {
		t.nextGC += iv
	}
}

// Eval is hashlimit_mt_common (net/netfilter/xt_hashlimit.c, revision 3).
// Tables are named and shared by every rule naming them; they live in the
// State and keep the configuration of the rule that created them (mode,
// masks, rate, burst, expiry), while "above" and the rate-match/bytes
// choice of the cost come from the rule being evaluated, as in the
// kernel. Times are jiffies of Env.Now; expired entries are collected
// every --hashlimit-htable-gcinterval. A full table (htable-max) and a
// packet whose ports cannot be read hotdrop the packet.
func (m *HashlimitMatch) Eval(c *Ctx) bool {
	now := jiffiesAt(c.Env.Now())
	t := m.table(c.state(), now)
	cfg := t.cfg
	k, ok := cfg.key(c)
	if !ok {
		c.HotDrop = true
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gc(now)
	e := t.entries[k]
	if e == nil {
		if len(t.entries) >= t.max {
			c.HotDrop = true // "max count of %u reached"
			return false
		}
		e = &hlEntry{}
		t.entries[k] = e
		e.expires = now + msecsToJiffies(cfg.Expire)
		e.init(cfg, now)
	} else {
		e.expires = now + msecsToJiffies(cfg.Expire)
		e.recalc(cfg.Mode, now)
	}
	under := m.Mode&HashlimitInvert == 0
	if m.Mode&HashlimitRateMatch != 0 {
		cost := uint64(1)
		if m.Mode&HashlimitBytes != 0 {
			cost = uint64(c.Pkt.Len())
		}
		e.currentRate += cost
		if !e.prevWindow && e.currentRate <= e.burst {
			return under
		}
		return !under
	}
	var cost uint64
	if m.Mode&HashlimitBytes != 0 {
		cost = e.byteCost(c.Pkt.Len())
	} else {
		cost = e.cost
	}
	if e.credit >= cost {
		e.credit -= cost
		return under
	}
	return !under
}
