package rules

import (
	"strconv"
	"strings"
)

// set match (extensions/libxt_set.c revision 4, libxt_set.h; kernel
// net/netfilter/xt_set.c). It is an old-style extension: it checks
// repeats and "!" itself. The set must exist (iptables asks the kernel
// by name); uswitch looks it up in the ipsets given to the loader.

const (
	ipsetDimMax     = 6  // IPSET_DIM_MAX
	ipsetMaxNameLen = 32 // IPSET_MAXNAMELEN
)

// Counter comparisons (IPSET_COUNTER_*).
const (
	SetCounterNone = iota
	SetCounterEq
	SetCounterNe
	SetCounterLt
	SetCounterGt
)

// SetCounter is one --packets-* / --bytes-* condition.
type SetCounter struct {
	Op    uint8
	Value uint64
}

// SetMatch is "-m set" (xt_set_info_match_v4).
type SetMatch struct {
	SetName           string
	Set               IPSet
	Dirs              []bool // per dimension: true = src, false = dst
	Invert            bool   // IPSET_INV_MATCH
	ReturnNoMatch     bool
	SkipCounterUpd    bool
	SkipSubcounterUpd bool
	Packets, Bytes    SetCounter
}

func (m *SetMatch) Name() string { return "set" }

func parseSetCounter(s string) (uint64, error) {
	v, ok := strtoul(s, 0, 0)
	if !ok {
		return 0, Errorf("Cannot parse %s as a counter value", s)
	}
	return v, nil
}

// parseSetDirs is parse_dirs (libxt_set.h).
func parseSetDirs(arg string) ([]bool, error) {
	parts := strings.Split(arg, ",")
	var dirs []bool
	for len(dirs) < ipsetDimMax && len(parts) > 0 {
		p := parts[0]
		parts = parts[1:]
		switch {
		case strings.HasPrefix(p, "src"):
			dirs = append(dirs, true)
		case strings.HasPrefix(p, "dst"):
			dirs = append(dirs, false)
		default:
			return nil, Errorf("You must spefify (the comma separated list of) 'src' or 'dst'.")
		}
	}
	if len(parts) > 0 {
		return nil, Errorf("Can't be more src/dst options than %d.", ipsetDimMax)
	}
	return dirs, nil
}

func (m *SetMatch) counter(c *SetCounter, what, op string, inv bool, arg string) error {
	if c.Op != SetCounterNone {
		return Errorf("only one of the --%s-[eq|lt|gt] is allowed", what)
	}
	switch op {
	case "eq":
		c.Op = SetCounterEq
		if inv {
			c.Op = SetCounterNe
		}
	case "lt", "gt":
		if inv {
			return Errorf("--%s-%s option cannot be inverted", what, op)
		}
		c.Op = SetCounterLt
		if op == "gt" {
			c.Op = SetCounterGt
		}
	}
	v, err := parseSetCounter(arg)
	if err != nil {
		return err
	}
	c.Value = v
	return nil
}

func (m *SetMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "update-subcounters":
		if o.Invert {
			m.SkipSubcounterUpd = true
		}
	case "update-counters":
		if o.Invert {
			m.SkipCounterUpd = true
		}
	case "return-nomatch":
		if o.Invert {
			return Errorf("--return-nomatch flag cannot be inverted")
		}
		m.ReturnNoMatch = true
	case "packets-eq", "packets-lt", "packets-gt":
		return m.counter(&m.Packets, "packets", o.Name[len(o.Name)-2:], o.Invert, o.Arg)
	case "bytes-eq", "bytes-lt", "bytes-gt":
		return m.counter(&m.Bytes, "bytes", o.Name[len(o.Name)-2:], o.Invert, o.Arg)
	case "match-set", "set":
		if len(m.Dirs) > 0 {
			return Errorf("--match-set can be specified only once")
		}
		if o.Invert {
			m.Invert = true
		}
		if len(o.Arg) > ipsetMaxNameLen-1 {
			return Errorf("setname `%s' too long, max %d characters.", o.Arg, ipsetMaxNameLen-1)
		}
		var set IPSet
		ok := false
		if o.Rule != nil && o.Rule.Sets != nil {
			set, ok = o.Rule.Sets.LookupSet(o.Arg)
		}
		if !ok {
			return Errorf("Set %s doesn't exist.\n", o.Arg)
		}
		if s, isSet := set.(*Set); isSet {
			for i := 0; i+1 < len(s.Options); i++ {
				if s.Options[i] == "family" && s.Options[i+1] == "inet6" {
					return Errorf("The protocol family of set %s is IPv6, which is not applicable.\n", o.Arg)
				}
			}
		}
		dirs, err := parseSetDirs(o.Arg2)
		if err != nil {
			return err
		}
		m.SetName, m.Set, m.Dirs = o.Arg, set, dirs
	}
	return nil
}

// Final is set_check_v0.
func (m *SetMatch) Final(r *RuleContext) error {
	if len(m.Dirs) == 0 {
		return Errorf("You must specify `--match-set' with proper arguments")
	}
	return nil
}

func saveSetCounter(w *SaveWriter, c SetCounter, name string) {
	v := strconv.FormatUint(c.Value, 10)
	switch c.Op {
	case SetCounterEq:
		w.Opt(name+"-eq", v)
	case SetCounterNe:
		w.InvOpt(true, name+"-eq", v)
	case SetCounterLt:
		w.Opt(name+"-lt", v)
	case SetCounterGt:
		w.Opt(name+"-gt", v)
	}
}

// Save is set_save_v4.
func (m *SetMatch) Save(w *SaveWriter) {
	var dirs []string
	for _, d := range m.Dirs {
		if d {
			dirs = append(dirs, "src")
		} else {
			dirs = append(dirs, "dst")
		}
	}
	w.InvOpt(m.Invert, "match-set", m.SetName+" "+strings.Join(dirs, ","))
	if m.ReturnNoMatch {
		w.Opt("return-nomatch", "")
	}
	if m.SkipCounterUpd {
		w.InvOpt(true, "update-counters", "")
	}
	if m.SkipSubcounterUpd {
		w.InvOpt(true, "update-subcounters", "")
	}
	saveSetCounter(w, m.Packets, "packets")
	saveSetCounter(w, m.Bytes, "bytes")
}

func init() {
	flag := func(name string) Option { return Option{Name: name, Invert: true, Multi: true} }
	arg := func(name string) Option { return Option{Name: name, Arg: RequiredArg, Invert: true, Multi: true} }
	RegisterMatch(&MatchSpec{Name: "set", Options: []Option{
		{Name: "match-set", Arg: RequiredArg, Invert: true, Multi: true, TwoArgs: true},
		{Name: "set", Arg: RequiredArg, Invert: true, Multi: true, TwoArgs: true},
		flag("return-nomatch"), flag("update-counters"),
		arg("packets-eq"), arg("packets-lt"), arg("packets-gt"),
		arg("bytes-eq"), arg("bytes-lt"), arg("bytes-gt"),
		flag("update-subcounters"),
	}, New: func() Match { return &SetMatch{} }})
}
