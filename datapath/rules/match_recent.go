package rules

import "strings"

// recent match (extensions/libxt_recent.c, revision 1; kernel
// net/netfilter/xt_recent.c recent_mt_check).

// check_set bits (linux/netfilter/xt_recent.h).
const (
	RecentCheck  = 1 << 0
	RecentSet    = 1 << 1
	RecentUpdate = 1 << 2
	RecentRemove = 1 << 3
	RecentTTL    = 1 << 4
	RecentReap   = 1 << 5
)

const recentNameLen = 200 // XT_RECENT_NAME_LEN

// RecentMatch is "-m recent" (xt_recent_mtinfo_v1).
type RecentMatch struct {
	Seconds  uint32
	HitCount uint32
	CheckSet uint8
	Invert   bool
	Name_    string
	Dest     bool // --rdest (side XT_RECENT_DEST)
	Mask     uint32

	given uint16
}

// option ids, in the order of recent_opts_v1
var recentOptIDs = map[string]uint{
	"set": 0, "rcheck": 1, "update": 2, "remove": 3, "seconds": 4, "reap": 5,
	"hitcount": 6, "rttl": 7, "name": 8, "rsource": 9, "rdest": 10, "mask": 11,
}

var recentOptNames = []string{"set", "rcheck", "update", "remove", "seconds", "reap",
	"hitcount", "rttl", "name", "rsource", "rdest", "mask"}

const recentAnyOp = 0xf // set, rcheck, update, remove

func (m *RecentMatch) Name() string { return "recent" }

func (m *RecentMatch) Parse(o *OptArg) error {
	m.given |= 1 << recentOptIDs[o.Name]
	switch o.Name {
	case "set", "rcheck", "update", "remove":
		m.CheckSet |= map[string]uint8{"set": RecentSet, "rcheck": RecentCheck, "update": RecentUpdate, "remove": RecentRemove}[o.Name]
		if o.Invert {
			m.Invert = true
		}
	case "seconds":
		v, err := parseUintOpt("recent", "seconds", o.Arg, 1, 0xffffffff)
		if err != nil {
			return err
		}
		m.Seconds = uint32(v)
	case "hitcount":
		v, err := parseUintOpt("recent", "hitcount", o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		m.HitCount = uint32(v)
	case "reap":
		m.CheckSet |= RecentReap
	case "rttl":
		m.CheckSet |= RecentTTL
	case "name":
		// XTTYPE_STRING put into name[200]: silently cut to 199 bytes
		m.Name_ = truncString(o.Arg, recentNameLen)
	case "rsource":
		m.Dest = false
	case "rdest":
		m.Dest = true
	case "mask":
		a, err := parseHost(o.Arg)
		if err != nil {
			return err
		}
		m.Mask = a
	}
	return nil
}

// Final is recent_check and the excl/also checks of recent_opts_v1.
func (m *RecentMatch) Final(r *RuleContext) error {
	if m.given&recentAnyOp == 0 {
		return Errorf("recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'")
	}
	for id, name := range recentOptNames {
		if m.given&(1<<uint(id)) == 0 {
			continue
		}
		var excl uint16
		switch {
		case id < 4:
			excl = recentAnyOp
		case name == "rttl":
			excl = 1<<0 | 1<<3 // set, remove
		}
		if name == "reap" && m.given&(1<<4) == 0 {
			return alsoRequires("recent", "reap", "seconds")
		}
		for o := 0; o < len(recentOptNames); o++ {
			if o != id && excl&(1<<uint(o)) != 0 && m.given&(1<<uint(o)) != 0 {
				return cannotCombine("recent", name, recentOptNames[o])
			}
		}
	}
	return nil
}

// CheckHooks carries recent_mt_check's refusals (the kernel reports them
// when the rule is committed).
func (m *RecentMatch) CheckHooks(t TableID, hooks HookMask) error {
	ops := m.CheckSet & (RecentSet | RecentRemove | RecentCheck | RecentUpdate)
	if ops&(ops-1) != 0 || ops == 0 {
		return Errorf("recent: one operation")
	}
	if m.CheckSet&(RecentSet|RecentRemove) != 0 &&
		(m.Seconds != 0 || m.HitCount != 0 || m.CheckSet&(RecentTTL|RecentReap) != 0) {
		return Errorf("recent: modifiers with set/remove")
	}
	if m.CheckSet&RecentReap != 0 && m.Seconds == 0 {
		return Errorf("recent: reap without seconds")
	}
	if m.HitCount > 65535 { // XT_RECENT_MAX_NSTAMPS - 1
		return Errorf("recent: hitcount too large")
	}
	if m.Name_ == "" || !procNameOK(m.Name_) {
		return Errorf("recent: bad name")
	}
	return nil
}

func (m *RecentMatch) Save(w *SaveWriter) {
	if m.Invert {
		w.WriteString(" !")
	}
	if m.CheckSet&RecentSet != 0 {
		w.Opt("set", "")
	}
	if m.CheckSet&RecentCheck != 0 {
		w.Opt("rcheck", "")
	}
	if m.CheckSet&RecentUpdate != 0 {
		w.Opt("update", "")
	}
	if m.CheckSet&RecentRemove != 0 {
		w.Opt("remove", "")
	}
	if m.Seconds != 0 {
		w.Printf(" --seconds %d", int32(m.Seconds))
	}
	if m.CheckSet&RecentReap != 0 {
		w.Opt("reap", "")
	}
	if m.HitCount != 0 {
		w.Printf(" --hitcount %d", int32(m.HitCount))
	}
	if m.CheckSet&RecentTTL != 0 {
		w.Opt("rttl", "")
	}
	w.WriteString(" --name " + m.Name_)
	w.Opt("mask", FormatAddr(m.Mask))
	if m.Dest {
		w.Opt("rdest", "")
	} else {
		w.Opt("rsource", "")
	}
}

func init() {
	flag := func(name string, inv bool) Option { return Option{Name: name, Invert: inv} }
	arg := func(name string) Option { return Option{Name: name, Arg: RequiredArg} }
	RegisterMatch(&MatchSpec{Name: "recent", Options: []Option{
		flag("set", true), flag("rcheck", true), flag("update", true), flag("remove", true),
		arg("seconds"), flag("reap", false), arg("hitcount"), flag("rttl", false),
		arg("name"), flag("rsource", false), flag("rdest", false), arg("mask"),
	}, New: func() Match {
		// recent_init: name DEFAULT, source side, mask all ones
		return &RecentMatch{Name_: "DEFAULT", Mask: 0xffffffff}
	}})
}

// procNameOK reports whether name can be a /proc/net file name, which
// xt_recent and xt_hashlimit create per table (fs/proc/generic.c
// __proc_create refuses "." and ".." and a '/' names a missing
// directory).
func procNameOK(name string) bool {
	return name != "." && name != ".." && !strings.Contains(name, "/")
}
