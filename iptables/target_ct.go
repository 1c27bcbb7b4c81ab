package iptables

import (
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// CT target (iptables 1.8.9 extensions/libxt_CT.c, revision 2, the one
// the kernel offers; kernel net/netfilter/xt_CT.c).

// CT flag bits (linux/netfilter/xt_CT.h XT_CT_*).
const (
	CTNoTrack     = 0x01
	CTZoneDirOrig = 0x04
	CTZoneDirRepl = 0x08
	CTZoneMark    = 0x10
)

// ctEvents is libxt_CT.c ct_event_tbl: names and IPCT_* bit numbers
// (linux/netfilter/nf_conntrack_common.h), in print order.
var ctEvents = []struct {
	name string
	bit  uint
}{
	{"new", 0}, {"related", 1}, {"destroy", 2}, {"reply", 3}, {"assured", 4},
	{"protoinfo", 5}, {"helper", 6}, {"mark", 7}, {"natseqinfo", 8}, {"secmark", 9},
}

// ctExpEvents is exp_event_tbl (IPEXP_NEW).
var ctExpEvents = []struct {
	name string
	bit  uint
}{{"new", 0}}

// ctHelpers are the conntrack helpers this machine's kernel registers
// (nf_conntrack_{ftp,irc,sip,sane,pptp,h323,tftp,amanda,netbios_ns,snmp}
// and nf_nat_snmp_basic), by name and layer-4 protocol, as
// nf_conntrack_helper_try_module_get looks them up (name compared with
// strcmp). Found by trying each on the oracle; H.245 really is UDP.
var ctHelpers = map[string][]uint8{
	"ftp": {6}, "irc": {6}, "sane": {6}, "pptp": {6}, "Q.931": {6},
	"sip": {6, 17}, "tftp": {17}, "amanda": {17}, "netbios-ns": {17},
	"snmp": {17}, "snmp_trap": {17}, "RAS": {17}, "H.245": {17},
}

// CTTarget is "-j CT".
type CTTarget struct {
	Flags     uint16 // CT* bits
	Zone      uint16
	Helper    string // at most 15 bytes (struct field of 16)
	Timeout   string // at most 31 bytes
	CTEvents  uint32 // bit per IPCT_* event
	ExpEvents uint32 // bit per IPEXP_* event

	// the rule's layer-4 protocol as xt_ct_find_proto sees it (0 when
	// absent or inverted), recorded by Final for the kernel checks
	proto uint8
	// helper is the conntrack helper uswitch runs for --helper (FTP,
	// TFTP), resolved by Final; nil for the helpers the kernel has and
	// uswitch does not implement (their entries get no helper)
	helper *conntrack.Helper
}

// HelperImpl is the conntrack helper a template of this rule assigns
// (nil: none, or one uswitch does not implement).
func (t *CTTarget) HelperImpl() *conntrack.Helper { return t.helper }

func (t *CTTarget) Name() string { return "CT" }

func ctParseEvents(tbl []struct {
	name string
	bit  uint
}, arg string) (uint32, error) {
	var mask uint32
	for _, e := range strings.Split(arg, ",") {
		found := false
		for _, x := range tbl {
			if x.name == e {
				mask |= 1 << x.bit
				found = true
				break
			}
		}
		if !found {
			return 0, Errorf("Unknown event type \"%s\"", e)
		}
	}
	return mask, nil
}

func (t *CTTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "notrack":
		t.Flags |= CTNoTrack
	case "helper":
		t.Helper, _ = parseStringOpt(o.Arg, 0, 16)
	case "timeout":
		t.Timeout, _ = parseStringOpt(o.Arg, 0, 32)
	case "ctevents":
		m, err := ctParseEvents(ctEvents, o.Arg)
		if err != nil {
			return err
		}
		t.CTEvents = m
	case "expevents":
		m, err := ctParseEvents(ctExpEvents, o.Arg)
		if err != nil {
			return err
		}
		t.ExpEvents = m
	case "zone", "zone-orig", "zone-reply":
		// ct_parse_zone_id: direction and mark flags accumulate over
		// the three options, the zone ID is the last one's
		switch o.Name {
		case "zone-orig":
			t.Flags |= CTZoneDirOrig
		case "zone-reply":
			t.Flags |= CTZoneDirRepl
		}
		t.Zone = 0
		if strings.EqualFold(o.Arg, "mark") {
			t.Flags |= CTZoneMark
			return nil
		}
		v, ok := strtoul(o.Arg, 0, 0xffff)
		if !ok {
			return Errorf("Cannot parse %s as a zone ID", o.Arg)
		}
		t.Zone = uint16(v)
	}
	return nil
}

func (t *CTTarget) Final(r *RuleContext) error {
	if !r.ProtoInvert {
		t.proto = r.Proto
	}
	if t.Helper != "" && t.Flags&CTNoTrack == 0 {
		t.helper = conntrack.LookupHelper(t.Helper, t.proto)
	}
	return nil
}

// CheckHooks is the kernel's refusal of the rule when it is added:
// xt_check_target's table test (.table = "raw"), then xt_ct_tg_check,
// which does nothing more for --notrack and otherwise looks up the helper
// (ENOENT without a layer-4 protocol or when not registered for it) and
// the timeout policy (EINVAL without a protocol, else ENOENT: a restore
// cannot create nfct timeout policies).
func (t *CTTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	if err := tableOnly(tb, Raw); err != nil {
		return err
	}
	if t.Flags&CTNoTrack != 0 {
		return nil
	}
	if t.Helper != "" {
		ok := false
		for _, p := range ctHelpers[t.Helper] {
			if t.proto != 0 && p == t.proto {
				ok = true
			}
		}
		if !ok {
			return &Errno{Text: "No such file or directory", Msg: "No such helper \"" + t.Helper + "\""}
		}
	}
	if t.Timeout != "" {
		if t.proto == 0 {
			return Errorf("You must specify a L4 protocol and not use inversions on it")
		}
		return &Errno{Text: "No such file or directory", Msg: "No such timeout policy \"" + t.Timeout + "\""}
	}
	return nil
}

func ctSaveEvents(w *SaveWriter, opt string, tbl []struct {
	name string
	bit  uint
}, mask uint32) {
	var names []string
	for _, e := range tbl {
		if mask&(1<<e.bit) != 0 {
			names = append(names, e.name)
		}
	}
	w.WriteString(" --" + opt + " " + strings.Join(names, ","))
}

// Save is ct_save_v1.
func (t *CTTarget) Save(w *SaveWriter) {
	if t.Flags&CTNoTrack != 0 {
		w.Opt("notrack", "")
	}
	if t.Helper != "" {
		w.Opt("helper", t.Helper)
	}
	if t.Timeout != "" {
		w.Opt("timeout", t.Timeout)
	}
	if t.CTEvents != 0 {
		ctSaveEvents(w, "ctevents", ctEvents, t.CTEvents)
	}
	if t.ExpEvents != 0 {
		ctSaveEvents(w, "expevents", ctExpEvents, t.ExpEvents)
	}
	if t.Flags&CTZoneMark != 0 || t.Zone != 0 {
		w.WriteString(" --zone")
		switch t.Flags & (CTZoneDirOrig | CTZoneDirRepl) {
		case CTZoneDirOrig:
			w.WriteString("-orig")
		case CTZoneDirRepl:
			w.WriteString("-reply")
		}
		if t.Flags&CTZoneMark != 0 {
			w.WriteString(" mark")
		} else {
			w.WriteString(" " + strconv.Itoa(int(t.Zone)))
		}
	}
}

// ctAttached reports whether the packet already has a conntrack reference
// (skb->_nfct != 0): an entry, the untracked marker, or a template a
// previous CT/NOTRACK rule attached during this traversal.
func ctAttached(c *Ctx) bool {
	return c.CT.Conn != nil || c.CT.IsUntracked() || c.Notrack || c.CTTemplate != nil
}

// Exec is xt_ct_target (net/netfilter/xt_CT.c): a packet that already has
// a conntrack reference ("previously seen (loopback)") is left alone;
// otherwise --notrack marks it untracked (nf_ct_set(skb, NULL,
// IP_CT_UNTRACKED)) and any other CT rule attaches its template, whose
// zone, helper, timeout and events the conntrack lookup then uses. Both
// continue.
//
// The untracked marker is visible at once to later rules (c.CT =
// conntrack.Untracked, as skb->_nfct is) and c.Notrack tells the engine.
// A template sets c.CTTemplate and the zone: HasZone, CTZone = --zone, or
// for "--zone mark" the low 16 bits of the mark now — nf_ct_zone_tmpl
// reads skb->mark when conntrack runs, so an engine that lets later raw
// rules change the mark should recompute it from CTTemplate.Flags.
func (t *CTTarget) Exec(c *Ctx) TVerdict {
	if ctAttached(c) {
		return TContinue
	}
	if t.Flags&CTNoTrack != 0 {
		c.Notrack = true
		c.CT = conntrack.Untracked
		return TContinue
	}
	c.CTTemplate = t
	c.HasZone = true
	c.CTZone = t.Zone
	if t.Flags&CTZoneMark != 0 {
		c.CTZone = uint16(c.Pkt.Mark)
	}
	return TContinue
}

func init() {
	RegisterTarget(&TargetSpec{Name: "CT", Options: []Option{
		{Name: "notrack"},
		{Name: "helper", Arg: RequiredArg},
		{Name: "timeout", Arg: RequiredArg},
		{Name: "ctevents", Arg: RequiredArg},
		{Name: "expevents", Arg: RequiredArg},
		{Name: "zone-orig", Arg: RequiredArg},
		{Name: "zone-reply", Arg: RequiredArg},
		{Name: "zone", Arg: RequiredArg},
	}, New: func() Target { return &CTTarget{} }})
}
