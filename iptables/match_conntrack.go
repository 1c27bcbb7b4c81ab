package iptables

import (
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/conntrack"
)

// conntrack and state matches (extensions/libxt_conntrack.c; kernel
// net/netfilter/xt_conntrack.c). iptables-nft 1.8.9 uses conntrack
// revision 3 (and state as conntrack revision 3 with the state alias
// flag), so ports are ranges and addresses keep their mask unapplied.

// conntrack match_flags / invert_flags (linux/netfilter/xt_conntrack.h).
const (
	ctFlagState = 1 << iota
	ctFlagProto
	ctFlagOrigSrc
	ctFlagOrigDst
	ctFlagReplSrc
	ctFlagReplDst
	ctFlagStatus
	ctFlagExpires
	ctFlagOrigSrcPort
	ctFlagOrigDstPort
	ctFlagReplSrcPort
	ctFlagReplDstPort
	ctFlagDirection
)

// Conntrack states, in the order print_state prints them.
const (
	CTStateInvalid = 1 << iota
	CTStateNew
	CTStateRelated
	CTStateEstablished
	CTStateUntracked
	CTStateSNAT
	CTStateDNAT
)

// ctName is a state or status name and its bit.
type ctName struct {
	name string
	bit  uint32
}

var ctStateNames = []ctName{
	// the order conntrack_ps_state tries them in
	{"INVALID", CTStateInvalid}, {"NEW", CTStateNew}, {"ESTABLISHED", CTStateEstablished},
	{"RELATED", CTStateRelated}, {"UNTRACKED", CTStateUntracked}, {"SNAT", CTStateSNAT},
	{"DNAT", CTStateDNAT},
}

var ctStatePrint = []ctName{
	{"INVALID", CTStateInvalid}, {"NEW", CTStateNew}, {"RELATED", CTStateRelated},
	{"ESTABLISHED", CTStateEstablished}, {"UNTRACKED", CTStateUntracked},
	{"SNAT", CTStateSNAT}, {"DNAT", CTStateDNAT},
}

// Conntrack status bits (IPS_*), in print_status order.
const (
	CTStatusExpected  = 1 << 0
	CTStatusSeenReply = 1 << 1
	CTStatusAssured   = 1 << 2
	CTStatusConfirmed = 1 << 3
)

var ctStatusNames = []ctName{
	{"NONE", 0}, {"EXPECTED", CTStatusExpected}, {"SEEN_REPLY", CTStatusSeenReply},
	{"ASSURED", CTStatusAssured}, {"CONFIRMED", CTStatusConfirmed},
}

// lookupPrefixWord is the strncasecmp(word, NAME, len(word)) chain of
// conntrack_ps_state / conntrack_ps_status / state_parse_state.
func lookupPrefixWord(word string, names []ctName) (uint32, bool) {
	for _, n := range names {
		if hasPrefixFold(n.name, word) {
			return n.bit, true
		}
	}
	return 0, false
}

// parseCTList is conntrack_ps_states / conntrack_ps_statuses (what is
// "ctstate" or "ctstatus", emptyLast nil) and state_parse_states (what
// "state", emptyLast its message for a list ending in a comma): the
// message names the rest of the list from the failing word on.
func parseCTList(arg, what string, names []ctName, emptyLast error) (uint32, error) {
	var mask uint32
	for {
		i := strings.IndexByte(arg, ',')
		if i < 0 {
			break
		}
		b, ok := lookupPrefixWord(arg[:i], names)
		if i == 0 || !ok {
			return 0, Errorf("Bad %s \"%s\"", what, arg)
		}
		mask |= b
		arg = arg[i+1:]
	}
	if arg == "" && emptyLast != nil {
		return 0, emptyLast
	}
	b, ok := lookupPrefixWord(arg, names)
	if arg == "" || !ok {
		return 0, Errorf("Bad %s \"%s\"", what, arg)
	}
	return mask | b, nil
}

func formatCTStates(mask uint32) string {
	var parts []string
	for _, n := range ctStatePrint {
		if mask&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ",")
}

func formatCTStatus(mask uint32) string {
	var parts []string
	for _, n := range ctStatusNames[1:] {
		if mask&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	if mask == 0 {
		return "NONE"
	}
	return strings.Join(parts, ",")
}

// ConntrackMatch is "-m conntrack" (xt_conntrack_mtinfo3), and "-m state"
// when StateAlias is set (libxt_conntrack.c state_ct23_parse).
type ConntrackMatch struct {
	MatchFlags, InvFlags uint16
	StateMask            uint32
	StatusMask           uint32
	L4Proto              uint8
	// addresses and masks: orig src, orig dst, reply src, reply dst
	Addr, Mask [4]uint32
	// ports: orig src, orig dst, reply src, reply dst; [lo, hi]
	Port           [4][2]uint16
	ExpMin, ExpMax uint32
	StateAlias     bool
	given          bool
}

func (m *ConntrackMatch) Name() string {
	if m.StateAlias {
		return "state"
	}
	return "conntrack"
}

var ctAddrOpts = map[string]int{"ctorigsrc": 0, "ctorigdst": 1, "ctreplsrc": 2, "ctrepldst": 3}
var ctPortOpts = map[string]int{"ctorigsrcport": 0, "ctorigdstport": 1, "ctreplsrcport": 2, "ctrepldstport": 3}

func (m *ConntrackMatch) set(flag uint16, inv bool) {
	m.MatchFlags |= flag
	if inv {
		m.InvFlags |= flag
	}
}

func (m *ConntrackMatch) Parse(o *OptArg) error {
	m.given = true
	if m.StateAlias {
		// no SNAT/DNAT for -m state
		mask, err := parseCTList(o.Arg, "state", ctStateNames[:5],
			Errorf("\"--state\" requires a list of states with no spaces, e.g. ESTABLISHED,RELATED"))
		if err != nil {
			return err
		}
		m.MatchFlags = ctFlagState
		m.StateMask = mask
		if o.Invert {
			m.InvFlags |= ctFlagState
		}
		return nil
	}
	if i, ok := ctAddrOpts[o.Name]; ok {
		a, mk, err := parseHostMask("conntrack", o.Name, o.Arg)
		if err != nil {
			return err
		}
		m.Addr[i], m.Mask[i] = a, mk
		m.set(ctFlagOrigSrc<<uint(i), o.Invert)
		return nil
	}
	if i, ok := ctPortOpts[o.Name]; ok {
		r, err := parsePortRangeOpt("conntrack", o.Name, o.Arg)
		if err != nil {
			return err
		}
		m.Port[i] = r
		m.set(ctFlagOrigSrcPort<<uint(i), o.Invert)
		return nil
	}
	switch o.Name {
	case "ctstate":
		mask, err := parseCTList(o.Arg, "ctstate", ctStateNames, nil)
		if err != nil {
			return err
		}
		m.StateMask |= mask
		m.set(ctFlagState, o.Invert)
	case "ctproto":
		p, err := parseProtocol(o.Arg)
		if err != nil {
			return err
		}
		m.L4Proto = p
		// the test reads XT_INV_PROTO (0x40), which is the ctstatus
		// invert bit, before this option's own invert is recorded
		if p == 0 && m.InvFlags&ctFlagStatus != 0 {
			return Errorf("conntrack: rule would never match protocol")
		}
		m.set(ctFlagProto, o.Invert)
	case "ctstatus":
		mask, err := parseCTList(o.Arg, "ctstatus", ctStatusNames, nil)
		if err != nil {
			return err
		}
		m.StatusMask |= mask
		m.set(ctFlagStatus, o.Invert)
	case "ctexpire":
		v, err := parseMint("conntrack", "ctexpire", o.Arg, 0xffffffff, 2)
		if err != nil {
			return err
		}
		m.ExpMin, m.ExpMax = uint32(v[0]), uint32(v[0])
		if len(v) >= 2 {
			m.ExpMax = uint32(v[1])
		}
		m.set(ctFlagExpires, o.Invert)
	case "ctdir":
		switch {
		case strings.EqualFold(o.Arg, "ORIGINAL"):
			m.MatchFlags |= ctFlagDirection
			m.InvFlags &^= ctFlagDirection
		case strings.EqualFold(o.Arg, "REPLY"):
			m.MatchFlags |= ctFlagDirection
			m.InvFlags |= ctFlagDirection
		default:
			return Errorf("conntrack: Bad value for \"--ctdir\" option: \"%s\"", o.Arg)
		}
	}
	return nil
}

func (m *ConntrackMatch) Final(r *RuleContext) error {
	if m.StateAlias {
		if !m.given {
			return mustBeSpecified("state", "state")
		}
		return nil
	}
	if !m.given {
		return Errorf("conntrack: At least one option is required")
	}
	return nil
}

var ctAddrNames = [4]string{"ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"}
var ctPortNames = [4]string{"ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport"}

// Save is conntrack_dump with the "--" prefix (conntrack3_mt_save).
func (m *ConntrackMatch) Save(w *SaveWriter) {
	f, inv := m.MatchFlags, m.InvFlags
	if f&ctFlagState != 0 {
		name := "ctstate"
		if m.StateAlias {
			name = "state"
		}
		w.InvOpt(inv&ctFlagState != 0, name, formatCTStates(m.StateMask))
	}
	if f&ctFlagProto != 0 {
		w.InvOpt(inv&ctFlagProto != 0, "ctproto", strconv.Itoa(int(m.L4Proto)))
	}
	for i := 0; i < 4; i++ {
		bit := uint16(ctFlagOrigSrc << uint(i))
		if f&bit != 0 {
			s := FormatAddr(m.Addr[i])
			if m.Mask[i] != 0xffffffff {
				s += "/" + FormatMask(m.Mask[i])
			}
			w.InvOpt(inv&bit != 0, ctAddrNames[i], s)
		}
	}
	for i := 0; i < 4; i++ {
		bit := uint16(ctFlagOrigSrcPort << uint(i))
		if f&bit != 0 {
			lo, hi := m.Port[i][0], m.Port[i][1]
			s := strconv.Itoa(int(lo))
			if hi != 0 && lo != hi {
				s += ":" + strconv.Itoa(int(hi))
			}
			w.InvOpt(inv&bit != 0, ctPortNames[i], s)
		}
	}
	if f&ctFlagStatus != 0 {
		w.InvOpt(inv&ctFlagStatus != 0, "ctstatus", formatCTStatus(m.StatusMask))
	}
	if f&ctFlagExpires != 0 {
		s := strconv.FormatUint(uint64(m.ExpMin), 10)
		if m.ExpMax != m.ExpMin {
			s += ":" + strconv.FormatUint(uint64(m.ExpMax), 10)
		}
		w.InvOpt(inv&ctFlagExpires != 0, "ctexpire", s)
	}
	if f&ctFlagDirection != 0 {
		if inv&ctFlagDirection != 0 {
			w.Opt("ctdir", "REPLY")
		} else {
			w.Opt("ctdir", "ORIGINAL")
		}
	}
}

func init() {
	opt := func(name string) Option { return Option{Name: name, Arg: RequiredArg, Invert: true} }
	RegisterMatch(&MatchSpec{Name: "conntrack", Options: []Option{
		opt("ctstate"), opt("ctproto"), opt("ctorigsrc"), opt("ctorigdst"),
		opt("ctreplsrc"), opt("ctrepldst"), opt("ctstatus"), opt("ctexpire"),
		opt("ctorigsrcport"), opt("ctorigdstport"), opt("ctreplsrcport"), opt("ctrepldstport"),
		{Name: "ctdir", Arg: RequiredArg},
	}, New: func() Match { return &ConntrackMatch{} }})
	RegisterMatch(&MatchSpec{Name: "state", Options: []Option{opt("state")},
		New: func() Match { return &ConntrackMatch{StateAlias: true} }})
}

// ctStateKernel maps the CTState* bits of this file (print order) to the
// kernel's XT_CONNTRACK_STATE_* bits (conntrack.StateBits).
var ctStateKernel = [...]struct {
	user   uint32
	kernel conntrack.StateBits
}{
	{CTStateInvalid, conntrack.StateInvalid}, {CTStateNew, conntrack.StateNew},
	{CTStateRelated, conntrack.StateRelated}, {CTStateEstablished, conntrack.StateEstablished},
	{CTStateUntracked, conntrack.StateUntracked}, {CTStateSNAT, conntrack.StateSNAT},
	{CTStateDNAT, conntrack.StateDNAT},
}

// kernelStates is kernelStateMask of every set of the seven state bits,
// so a packet's test is one load.
var kernelStates = func() (t [1 << len(ctStateKernel)]conntrack.StateBits) {
	for u := range t {
		t[u] = kernelStateMaskOf(uint32(u))
	}
	return t
}()

func kernelStateMask(user uint32) conntrack.StateBits {
	if user < uint32(len(kernelStates)) {
		return kernelStates[user]
	}
	return kernelStateMaskOf(user)
}

func kernelStateMaskOf(user uint32) conntrack.StateBits {
	var k conntrack.StateBits
	for _, b := range ctStateKernel {
		if user&b.user != 0 {
			k |= b.kernel
		}
	}
	return k
}

// Eval is conntrack_mt (net/netfilter/xt_conntrack.c) as revision 3 runs
// it; -m state is the same match (iptables-nft 1.8.9 sends it as
// conntrack revision 3). The order of the tests is the kernel's. The
// quirk: a packet without a connection (INVALID or UNTRACKED) matches
// when --ctstate was given and passed, whatever the other options say,
// and never matches otherwise.
func (m *ConntrackMatch) Eval(c *Ctx) bool {
	f, inv := m.MatchFlags, m.InvFlags
	ct := c.CT.Conn
	if f&ctFlagState != 0 {
		if (c.CT.State()&kernelStateMask(m.StateMask) != 0) == (inv&ctFlagState != 0) {
			return false
		}
	}
	if ct == nil {
		return f&ctFlagState != 0
	}
	if f&ctFlagDirection != 0 && (c.CT.Info.Dir() == conntrack.Original) == (inv&ctFlagDirection != 0) {
		return false
	}
	orig, repl := ct.Tuple(conntrack.Original), ct.Tuple(conntrack.Reply)
	addrs := [4]uint32{orig.Src, orig.Dst, repl.Src, repl.Dst}
	for i, a := range addrs {
		bit := uint16(ctFlagOrigSrc << uint(i))
		if f&bit != 0 && ((a^m.Addr[i])&m.Mask[i] == 0) == (inv&bit != 0) {
			return false
		}
	}
	if f&ctFlagProto != 0 && (orig.Proto == m.L4Proto) == (inv&ctFlagProto != 0) {
		return false
	}
	ports := [4]uint16{orig.SrcPort, orig.DstPort, repl.SrcPort, repl.DstPort}
	for i, pt := range ports {
		bit := uint16(ctFlagOrigSrcPort << uint(i))
		if f&bit != 0 && (pt >= m.Port[i][0] && pt <= m.Port[i][1]) == (inv&bit != 0) {
			return false
		}
	}
	if f&ctFlagStatus != 0 && (uint32(ct.Status())&m.StatusMask != 0) == (inv&ctFlagStatus != 0) {
		return false
	}
	if f&ctFlagExpires != 0 {
		// nf_ct_expires(ct) / HZ: whole seconds left. An unconfirmed
		// entry holds its timeout relative (__nf_ct_refresh_acct adds
		// nfct_time_stamp only once confirmed), so ct->timeout - jiffies
		// is negative and nf_ct_expires says 0 (on a host up longer than
		// the timeout plus INITIAL_JIFFIES' 5 minutes; checked on 6.18:
		// a forwarded SYN does not match --ctexpire 100:500000)
		var exp uint64
		if ct.Confirmed() {
			exp = uint64(ct.Expires(c.Env.Now()) / 1e9)
		}
		if (exp >= uint64(m.ExpMin) && exp <= uint64(m.ExpMax)) == (inv&ctFlagExpires != 0) {
			return false
		}
	}
	return true
}

// FirstPacketsOnly reports whether the match can be true only for a
// packet whose conntrack state is NEW: its --ctstate/--state is not
// inverted and lists NEW at most (SNAT and DNAT, the virtual states,
// hold for a connection's later packets too).
// StateOnly returns the --ctstate/--state mask when the match tests
// the state alone, not inverted (ok false otherwise): it is true exactly
// for the packets whose state bits meet the mask.
func (m *ConntrackMatch) StateOnly() (mask uint32, ok bool) {
	if m.MatchFlags != ctFlagState || m.InvFlags != 0 {
		return 0, false
	}
	return m.StateMask, true
}

func (m *ConntrackMatch) FirstPacketsOnly() bool {
	return m.MatchFlags&ctFlagState != 0 && m.InvFlags&ctFlagState == 0 && m.StateMask&^CTStateNew == 0
}
