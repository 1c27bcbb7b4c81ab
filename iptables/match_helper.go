package iptables

// helper match (extensions/libxt_helper.c; kernel
// net/netfilter/xt_helper.c).

// helperNameSize is sizeof(struct xt_helper_info.name): XTOPT_PUT
// silently cuts longer names (xtoptions.c xtopt_parse_string).
const helperNameSize = 30

// HelperMatch is "-m helper": the conntrack helper's name ("" matches
// any connection with a helper).
type HelperMatch struct {
	Helper string
	Invert bool
	given  bool
}

func (m *HelperMatch) Name() string { return "helper" }

func (m *HelperMatch) Parse(o *OptArg) error {
	m.Helper, m.given = truncString(o.Arg, helperNameSize), true
	if o.Invert {
		m.Invert = true
	}
	return nil
}

func (m *HelperMatch) Final(r *RuleContext) error {
	if !m.given {
		return mustBeSpecified("helper", "helper")
	}
	return nil
}

func (m *HelperMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.WriteString(" !")
	}
	w.WriteString(" --helper")
	SaveString(w, m.Helper)
}

func init() {
	RegisterMatch(&MatchSpec{Name: "helper", Options: []Option{
		{Name: "helper", Arg: RequiredArg, Invert: true},
	}, New: func() Match { return &HelperMatch{} }})
}

// Eval is helper_mt (net/netfilter/xt_helper.c). The kernel tests the
// helper of the connection's *master*: only expected (RELATED)
// connections a helper set up can match; "" matches any helper, a name
// matches when it starts with the helper's name (strncmp over the
// helper's length).
func (m *HelperMatch) Eval(c *Ctx) bool {
	master := ctMaster(c)
	if master == "" {
		return m.Invert
	}
	if m.Helper == "" {
		return !m.Invert
	}
	ok := len(m.Helper) >= len(master) && m.Helper[:len(master)] == master
	return ok != m.Invert
}

// ctMaster is the helper name of the packet's master connection; "" when
// the packet has no entry, the entry no master or the master no helper.
func ctMaster(c *Ctx) string {
	if c.CT.Conn == nil {
		return ""
	}
	if m := c.CT.Conn.Master(); m != nil {
		return m.HelperName()
	}
	return ""
}
