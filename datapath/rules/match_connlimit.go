package rules

import "math/bits"

// connlimit match (extensions/libxt_connlimit.c, revision 1; kernel
// net/netfilter/xt_connlimit.c).

// ConnlimitMatch is "-m connlimit" (xt_connlimit_info).
type ConnlimitMatch struct {
	Limit  uint32
	Mask   uint32
	Invert bool // XT_CONNLIMIT_INVERT: "upto" semantics
	Daddr  bool // XT_CONNLIMIT_DADDR

	upto, above, saddr, daddr bool
}

func (m *ConnlimitMatch) Name() string { return "connlimit" }

func (m *ConnlimitMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "connlimit-upto", "connlimit-above":
		v, err := parseUintOpt("connlimit", o.Name, o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		m.Limit = uint32(v)
		if o.Name == "connlimit-upto" {
			m.upto = true
			if !o.Invert {
				m.Invert = true
			}
		} else {
			m.above = true
			if o.Invert {
				m.Invert = true
			}
		}
	case "connlimit-mask":
		l, err := parsePlen("connlimit", "connlimit-mask", o.Arg)
		if err != nil {
			return err
		}
		m.Mask = plenToMask(l)
	case "connlimit-saddr":
		m.saddr = true
		m.Daddr = false
	case "connlimit-daddr":
		m.daddr = true
		m.Daddr = true
	}
	return nil
}

// Final is connlimit_check and the excl checks of connlimit_opts.
func (m *ConnlimitMatch) Final(r *RuleContext) error {
	if !m.upto && !m.above {
		return Errorf("You must specify \"--connlimit-above\" or \"--connlimit-upto\".")
	}
	if m.upto && m.above {
		return cannotCombine("connlimit", "connlimit-upto", "connlimit-above")
	}
	if m.saddr && m.daddr {
		return cannotCombine("connlimit", "connlimit-saddr", "connlimit-daddr")
	}
	return nil
}

// countBits4 is libxt_connlimit.c count_bits4: 32 minus the position of
// the highest zero bit of the mask.
func countBits4(mask uint32) int { return 32 - bits.Len32(^mask) }

func (m *ConnlimitMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.Opt("connlimit-upto", uitoa(uint64(m.Limit)))
	} else {
		w.Opt("connlimit-above", uitoa(uint64(m.Limit)))
	}
	w.Opt("connlimit-mask", uitoa(uint64(countBits4(m.Mask))))
	if m.Daddr {
		w.Opt("connlimit-daddr", "")
	} else {
		w.Opt("connlimit-saddr", "")
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "connlimit", Options: []Option{
		{Name: "connlimit-upto", Arg: RequiredArg, Invert: true},
		{Name: "connlimit-above", Arg: RequiredArg, Invert: true},
		{Name: "connlimit-mask", Arg: RequiredArg},
		{Name: "connlimit-saddr"},
		{Name: "connlimit-daddr"},
	}, New: func() Match { return &ConnlimitMatch{Mask: 0xffffffff} }})
}
