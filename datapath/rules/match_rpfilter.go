package rules

// rpfilter match (extensions/libxt_rpfilter.c; kernel
// net/ipv4/netfilter/ipt_rpfilter.c: PREROUTING only, raw and mangle).

// rpfilter flags (linux/netfilter/xt_rpfilter.h).
const (
	RPFilterLoose       = 1 << 0
	RPFilterValidMark   = 1 << 1
	RPFilterAcceptLocal = 1 << 2
	RPFilterInvert      = 1 << 3
)

// RPFilterMatch is "-m rpfilter" (xt_rpfilter_info).
type RPFilterMatch struct{ Flags uint8 }

func (m *RPFilterMatch) Name() string { return "rpfilter" }

var rpfilterOpts = []struct {
	name string
	bit  uint8
}{
	{"loose", RPFilterLoose}, {"validmark", RPFilterValidMark},
	{"accept-local", RPFilterAcceptLocal}, {"invert", RPFilterInvert},
}

func (m *RPFilterMatch) Parse(o *OptArg) error {
	for _, x := range rpfilterOpts {
		if x.name == o.Name {
			m.Flags |= x.bit
		}
	}
	return nil
}

func (m *RPFilterMatch) Final(r *RuleContext) error { return nil }

// CheckHooks: the match is registered for NF_INET_PRE_ROUTING only and
// rpfilter_check accepts the raw and mangle tables.
func (m *RPFilterMatch) CheckHooks(t TableID, hooks HookMask) error {
	if t != Raw && t != Mangle {
		return Errorf("rpfilter: only valid in 'raw' or 'mangle' table, not '%s'", t)
	}
	if hooks&^Hooks(PreRouting) != 0 {
		return Errorf("rpfilter: PREROUTING only")
	}
	return nil
}

func (m *RPFilterMatch) Save(w *SaveWriter) {
	for _, x := range rpfilterOpts {
		if m.Flags&x.bit != 0 {
			w.Opt(x.name, "")
		}
	}
}

func init() {
	var opts []Option
	for _, x := range rpfilterOpts {
		opts = append(opts, Option{Name: x.name})
	}
	RegisterMatch(&MatchSpec{Name: "rpfilter", Options: opts, New: func() Match { return &RPFilterMatch{} }})
}
