package iptables

import (
	"strconv"
	"strings"
	"sync/atomic"
)

// NFLOG target (iptables 1.8.9 extensions/libxt_NFLOG.c). iptables-nft
// 1.8.9 does not send it through nft_compat: nft.c add_log turns it into a
// native nftables "log" expression (group, prefix from the 128-byte udata
// copy, snaplen only with --nflog-size, queue threshold when not 0) and
// nft-shared.c nft_parse_log rebuilds an NFLOG target from it. So the
// prefix may be up to 127 bytes, and --nflog-range, which has no nft
// attribute, is lost. The kernel's nft_log has no table or hook limits.

// nflogPrefixLen is NF_LOG_PREFIXLEN: the udata buffer and nft's limit.
const nflogPrefixLen = 128

// NFLogTarget is "-j NFLOG".
type NFLogTarget struct {
	Group     uint16
	Prefix    string
	Threshold uint16
	// Size is the copy length; CopyLen says --nflog-size set it
	// (XT_NFLOG_F_COPY_LEN). Without CopyLen, Size is always 0 after
	// Final: --nflog-range does not survive the nft translation.
	Size    uint32
	CopyLen bool

	given uint32
	// logged counts the packets sent to the group; the one field written
	// after load, by every worker (atomic).
	logged atomic.Uint64
}

const (
	nflogGroup = iota
	nflogPrefix
	nflogRange
	nflogSize
	nflogThreshold
)

var nflogEntries = []optEntry{
	{name: "nflog-group", id: nflogGroup},
	{name: "nflog-prefix", id: nflogPrefix},
	{name: "nflog-range", id: nflogRange, excl: 1 << nflogSize},
	{name: "nflog-size", id: nflogSize, excl: 1 << nflogRange},
	{name: "nflog-threshold", id: nflogThreshold},
}

func (t *NFLogTarget) Name() string { return "NFLOG" }

func (t *NFLogTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "nflog-group":
		v, err := parseUintOpt("NFLOG", o.Name, o.Arg, 0, 0xffff)
		if err != nil {
			return err
		}
		t.Group = uint16(v)
		t.given |= 1 << nflogGroup
	case "nflog-prefix":
		// XTTYPE_STRING, min 1; NFLOG_parse keeps up to 127 bytes
		p, err := parseStringOpt(o.Arg, 1, nflogPrefixLen)
		if err != nil {
			return err
		}
		if strings.IndexByte(o.Arg, '\n') >= 0 {
			return Errorf("Newlines not allowed in --log-prefix")
		}
		t.Prefix = p
		t.given |= 1 << nflogPrefix
	case "nflog-range", "nflog-size":
		v, err := parseUintOpt("NFLOG", o.Name, o.Arg, 0, 0xffffffff)
		if err != nil {
			return err
		}
		t.Size = uint32(v)
		if o.Name == "nflog-range" {
			t.given |= 1 << nflogRange
		} else {
			t.given |= 1 << nflogSize
		}
	case "nflog-threshold":
		v, err := parseUintOpt("NFLOG", o.Name, o.Arg, 0, 0xffff)
		if err != nil {
			return err
		}
		t.Threshold = uint16(v)
		t.given |= 1 << nflogThreshold
	}
	return nil
}

// Final is NFLOG_check and the option table's exclusions, followed by
// what the nft round trip keeps.
func (t *NFLogTarget) Final(r *RuleContext) error {
	if t.given&(1<<nflogSize) != 0 {
		t.CopyLen = true
	}
	if err := fcheck("NFLOG", nflogEntries, t.given); err != nil {
		return err
	}
	if !t.CopyLen {
		t.Size = 0 // add_log sends no snaplen without COPY_LEN
	}
	return nil
}

// Save is NFLOG_save (nflog_print).
func (t *NFLogTarget) Save(w *SaveWriter) {
	if t.Prefix != "" {
		w.WriteString(" --nflog-prefix")
		SaveString(w, t.Prefix)
	}
	if t.Group != 0 {
		w.Opt("nflog-group", strconv.Itoa(int(t.Group)))
	}
	if t.CopyLen {
		w.Opt("nflog-size", strconv.FormatUint(uint64(t.Size), 10))
	} else if t.Size != 0 {
		w.Opt("nflog-range", strconv.FormatUint(uint64(t.Size), 10))
	}
	if t.Threshold != 0 {
		w.Opt("nflog-threshold", strconv.Itoa(int(t.Threshold)))
	}
}

// Exec is nflog_tg (net/netfilter/xt_NFLOG.c; iptables-nft's native
// "log group" expression, nft_log_eval, does the same): pass the packet
// to the nfnetlink_log group with the copy length, threshold and
// prefix, then XT_CONTINUE. The packets are counted (Logged) and handed
// to the Ctx's Logger when there is one (a running lab's NFLOG groups);
// evaluation goes on.
func (t *NFLogTarget) Exec(c *Ctx) TVerdict {
	t.logged.Add(1)
	if c.Logger != nil {
		c.Logger.NFLog(c, t)
	}
	return TContinue
}

// Logged is the number of packets the rule has sent to its group.
func (t *NFLogTarget) Logged() uint64 { return t.logged.Load() }

func init() {
	RegisterTarget(&TargetSpec{Name: "NFLOG", Options: []Option{
		{Name: "nflog-group", Arg: RequiredArg},
		{Name: "nflog-prefix", Arg: RequiredArg},
		{Name: "nflog-range", Arg: RequiredArg},
		{Name: "nflog-size", Arg: RequiredArg},
		{Name: "nflog-threshold", Arg: RequiredArg},
	}, New: func() Target { return &NFLogTarget{} }})
}
