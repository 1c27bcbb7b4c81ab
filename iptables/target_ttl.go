package iptables

import (
	"strconv"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// TTL target (iptables 1.8.9 extensions/libipt_TTL.c; kernel
// net/netfilter/xt_HL.c, .table = "mangle": xt_check_target refuses it in
// other tables with EINVAL; ttl_tg_check's mode and zero-step checks are
// already enforced by the option ranges).

// TTL modes (linux/netfilter_ipv4/ipt_TTL.h IPT_TTL_*).
const (
	TTLSet uint8 = iota
	TTLInc
	TTLDec
)

// TTLTarget is "-j TTL".
type TTLTarget struct {
	Mode  uint8 // TTLSet, TTLInc, TTLDec
	Value uint8

	given uint32
}

var ttlEntries = []optEntry{
	{name: "ttl-set", id: 0, excl: 7},
	{name: "ttl-dec", id: 2, excl: 7},
	{name: "ttl-inc", id: 1, excl: 7},
}

func (t *TTLTarget) Name() string { return "TTL" }

func (t *TTLTarget) Parse(o *OptArg) error {
	var min uint64 = 1
	mode := TTLDec
	switch o.Name {
	case "ttl-set":
		min, mode = 0, TTLSet
	case "ttl-inc":
		mode = TTLInc
	}
	v, err := parseUintOpt("TTL", o.Name, o.Arg, min, 255)
	if err != nil {
		return err
	}
	t.Mode, t.Value = mode, uint8(v)
	t.given |= 1 << mode
	return nil
}

// Final is TTL_check, then the options' mutual exclusion.
func (t *TTLTarget) Final(r *RuleContext) error {
	if t.given == 0 {
		return Errorf("TTL: You must specify an action")
	}
	return fcheck("TTL", ttlEntries, t.given)
}

func (t *TTLTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	return tableOnly(tb, Mangle)
}

// Save is TTL_save.
func (t *TTLTarget) Save(w *SaveWriter) {
	name := [...]string{TTLSet: "ttl-set", TTLInc: "ttl-inc", TTLDec: "ttl-dec"}[t.Mode]
	w.Opt(name, strconv.Itoa(int(t.Value)))
}

// Exec is ttl_tg (net/netfilter/xt_HL.c): set, or add/subtract with the
// result clamped to 255/0 (a TTL decremented to 0 is written as 0 and the
// packet goes on: the target never drops), and only when the TTL changes
// update the header checksum incrementally (csum_replace2).
func (t *TTLTarget) Exec(c *Ctx) TVerdict {
	old := c.Pkt.IP.TTL()
	nt := int(old)
	switch t.Mode {
	case TTLSet:
		nt = int(t.Value)
	case TTLInc:
		nt = min(nt+int(t.Value), 255)
	case TTLDec:
		nt = max(nt-int(t.Value), 0)
	}
	if uint8(nt) != old {
		c.Pkt.SetTTL(uint8(nt))
	}
	return TContinue
}

func init() {
	RegisterTarget(&TargetSpec{Name: "TTL", Options: []Option{
		{Name: "ttl-set", Arg: RequiredArg},
		{Name: "ttl-dec", Arg: RequiredArg},
		{Name: "ttl-inc", Arg: RequiredArg},
	}, New: func() Target { return &TTLTarget{} }})
}
