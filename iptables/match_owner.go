package iptables

import (
	"os/user"
	"strconv"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// owner match, revision 1 (extensions/libxt_owner.c; kernel
// net/netfilter/xt_owner.c: .hooks LOCAL_OUT and POST_ROUTING, and
// owner_check refusing reversed uid/gid ranges).

// Owner match bits (XT_OWNER_* in linux/netfilter/xt_owner.h).
const (
	OwnerUID         = 1 << 0
	OwnerGID         = 1 << 1
	OwnerSocket      = 1 << 2
	OwnerSupplGroups = 1 << 3
)

// OwnerMatch is "-m owner".
type OwnerMatch struct {
	UIDMin, UIDMax uint32
	GIDMin, GIDMax uint32
	Match          uint8 // Owner* bits given
	Invert         uint8 // Owner* bits inverted
}

func (m *OwnerMatch) Name() string { return "owner" }

// ownerParseRange is owner_parse_range: "n", "n-m" or "n:m", each at most
// 2^32-2 ((uid_t)-1 is reserved).
func ownerParseRange(s, opt string) (lo, hi uint32, err error) {
	const max = 1<<32 - 2
	v, rest, ok := strtoulPrefix(s, 0, max)
	if !ok {
		return 0, 0, badValue("owner", opt, s)
	}
	lo, hi = uint32(v), uint32(v)
	if rest != "" && (rest[0] == '-' || rest[0] == ':') {
		v, rest, ok = strtoulPrefix(rest[1:], 0, max)
		if !ok {
			return 0, 0, badValue("owner", opt, s)
		}
		hi = uint32(v)
	}
	if rest != "" {
		return 0, 0, badValue("owner", opt, s)
	}
	return lo, hi, nil
}

// ownerLookup resolves a user or group name through the system's
// databases, as getpwnam/getgrnam do; names win over numbers.
func ownerLookup(name string, group bool) (uint32, bool) {
	var id string
	if group {
		g, err := user.LookupGroup(name)
		if err != nil {
			return 0, false
		}
		id = g.Gid
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, false
		}
		id = u.Uid
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// ownerID is the user (or group) of owner_parse_uid / owner_parse_gid: a
// name, else a number or range.
func ownerID(arg, opt string, group bool) (lo, hi uint32, err error) {
	if id, ok := ownerLookup(arg, group); ok {
		return id, id, nil
	}
	return ownerParseRange(arg, opt)
}

func (m *OwnerMatch) Parse(o *OptArg) error {
	switch o.Name {
	case "uid-owner":
		lo, hi, err := ownerID(o.Arg, "--uid-owner", false)
		if err != nil {
			return err
		}
		if o.Invert {
			m.Invert |= OwnerUID
		}
		m.Match |= OwnerUID
		m.UIDMin, m.UIDMax = lo, hi
	case "gid-owner":
		lo, hi, err := ownerID(o.Arg, "--gid-owner", true)
		if err != nil {
			return err
		}
		if o.Invert {
			m.Invert |= OwnerGID
		}
		m.Match |= OwnerGID
		m.GIDMin, m.GIDMax = lo, hi
	case "socket-exists":
		if o.Invert {
			m.Invert |= OwnerSocket
		}
		m.Match |= OwnerSocket
	case "suppl-groups":
		if m.Match&OwnerGID == 0 {
			return badValue("owner", "--suppl-groups", "you need to use --gid-owner first")
		}
		m.Match |= OwnerSupplGroups
	}
	return nil
}

func (m *OwnerMatch) Final(r *RuleContext) error {
	if m.Match == 0 {
		return Errorf("owner: At least one of --uid-owner, --gid-owner or --socket-exists is required")
	}
	return nil
}

// CheckHooks: xt_owner's .hooks.
func (m *OwnerMatch) CheckHooks(t TableID, hooks netfilter.HookMask) error {
	return hooksOutside(hooks, netfilter.Hooks(netfilter.LocalOut, netfilter.PostRouting))
}

// CheckEntry is owner_check: reversed ranges are refused.
func (m *OwnerMatch) CheckEntry(t TableID, hooks netfilter.HookMask) error {
	if m.Match&OwnerUID != 0 && m.UIDMax < m.UIDMin || m.Match&OwnerGID != 0 && m.GIDMax < m.GIDMin {
		return Errorf("owner: reversed range")
	}
	return nil
}

func ownerRange(lo, hi uint32) string {
	if lo != hi {
		return strconv.FormatUint(uint64(lo), 10) + "-" + strconv.FormatUint(uint64(hi), 10)
	}
	return strconv.FormatUint(uint64(lo), 10)
}

// Save is owner_mt_save: socket, uid, gid, supplementary groups.
func (m *OwnerMatch) Save(w *SaveWriter) {
	if m.Match&OwnerSocket != 0 {
		w.InvOpt(m.Invert&OwnerSocket != 0, "socket-exists", "")
	}
	if m.Match&OwnerUID != 0 {
		w.InvOpt(m.Invert&OwnerUID != 0, "uid-owner", ownerRange(m.UIDMin, m.UIDMax))
	}
	if m.Match&OwnerGID != 0 {
		w.InvOpt(m.Invert&OwnerGID != 0, "gid-owner", ownerRange(m.GIDMin, m.GIDMax))
	}
	if m.Match&OwnerSupplGroups != 0 {
		w.InvOpt(m.Invert&OwnerSupplGroups != 0, "suppl-groups", "")
	}
}

func init() {
	RegisterMatch(&MatchSpec{Name: "owner", Options: []Option{
		{Name: "uid-owner", Arg: RequiredArg, Invert: true},
		{Name: "gid-owner", Arg: RequiredArg, Invert: true},
		{Name: "socket-exists", Invert: true},
		{Name: "suppl-groups"},
	}, New: func() Match { return &OwnerMatch{} }})
}

// Eval is owner_mt (net/netfilter/xt_owner.c). Without a socket
// (forwarded packets, the host's own answers) the rule matches only when
// every option given is negated. With one, "! --socket-exists" fails,
// then fsuid and fsgid are tested against the ranges.
//
// Meta carries no supplementary groups, so --suppl-groups only tests the
// primary group (the kernel also walks the socket file's group list).
func (m *OwnerMatch) Eval(c *Ctx) bool {
	p := c.Pkt
	if !p.HasSocket {
		return m.Match^m.Invert == 0
	}
	if m.Match&m.Invert&OwnerSocket != 0 {
		return false
	}
	if m.Match&OwnerUID != 0 && (p.UID >= m.UIDMin && p.UID <= m.UIDMax) == (m.Invert&OwnerUID != 0) {
		return false
	}
	if m.Match&OwnerGID != 0 && (p.GID >= m.GIDMin && p.GID <= m.GIDMax) == (m.Invert&OwnerGID != 0) {
		return false
	}
	return true
}
