package iptables

import (
	"strconv"
	"strings"
	"sync/atomic"
)

// LOG target (iptables 1.8.9 extensions/libxt_LOG.c; kernel
// net/netfilter/xt_LOG.c). iptables-nft 1.8.9 sends it through nft_compat
// (nft.c add_action translates only NFLOG natively), so the kernel module's
// checkentry applies: level < 8 and a NUL-terminated prefix, both ensured
// here; it has no table or hook restriction.

// LOG flag bits (linux/netfilter/xt_LOG.h XT_LOG_*).
const (
	LogTCPSeq    = 0x01
	LogTCPOpt    = 0x02
	LogIPOpt     = 0x04
	LogUID       = 0x08
	LogMACDecode = 0x20
)

// logDefaultLevel is LOG_WARNING, LOG_init's default.
const logDefaultLevel = 4

// logPrefixSize is sizeof(struct xt_log_info.prefix).
const logPrefixSize = 30

// LogTarget is "-j LOG".
type LogTarget struct {
	Level  uint8  // syslog level 0-7
	Prefix string // at most 29 bytes
	Flags  uint8  // Log* bits

	// logged counts the packets the rule handed to the logger; the one
	// field written after load, by every worker (atomic).
	logged atomic.Uint64
}

func (t *LogTarget) Name() string { return "LOG" }

// syslogLevels is xtopt_parse_sysloglevel's table (names compared with
// strcmp, so case matters).
var syslogLevels = map[string]uint8{
	"alert": 1, "crit": 2, "debug": 7, "emerg": 0, "error": 3,
	"info": 6, "notice": 5, "panic": 0, "warning": 4,
}

func (t *LogTarget) Parse(o *OptArg) error {
	switch o.Name {
	case "log-level":
		// XTTYPE_SYSLOGLEVEL: a number 0-7 or a syslog name
		if v, ok := strtoul(o.Arg, 0, 7); ok {
			t.Level = uint8(v)
			return nil
		}
		v, ok := syslogLevels[o.Arg]
		if !ok {
			return Errorf("log level \"%s\" unknown\n", o.Arg)
		}
		t.Level = v
	case "log-prefix":
		p, err := parseStringOpt(o.Arg, 1, logPrefixSize)
		if err != nil {
			return err
		}
		// LOG_parse checks the whole argument, not the cut prefix
		if strings.IndexByte(o.Arg, '\n') >= 0 {
			return Errorf("Newlines not allowed in --log-prefix")
		}
		t.Prefix = p
	case "log-tcp-sequence":
		t.Flags |= LogTCPSeq
	case "log-tcp-options":
		t.Flags |= LogTCPOpt
	case "log-ip-options":
		t.Flags |= LogIPOpt
	case "log-uid":
		t.Flags |= LogUID
	case "log-macdecode":
		t.Flags |= LogMACDecode
	}
	return nil
}

func (t *LogTarget) Final(r *RuleContext) error { return nil }

// Save is LOG_save.
func (t *LogTarget) Save(w *SaveWriter) {
	if t.Prefix != "" {
		w.WriteString(" --log-prefix")
		SaveString(w, t.Prefix)
	}
	if t.Level != logDefaultLevel {
		w.Opt("log-level", strconv.Itoa(int(t.Level)))
	}
	for _, f := range []struct {
		bit  uint8
		name string
	}{
		{LogTCPSeq, "log-tcp-sequence"}, {LogTCPOpt, "log-tcp-options"},
		{LogIPOpt, "log-ip-options"}, {LogUID, "log-uid"}, {LogMACDecode, "log-macdecode"},
	} {
		if t.Flags&f.bit != 0 {
			w.Opt(f.name, "")
		}
	}
}

// Exec is log_tg (net/netfilter/xt_LOG.c): hand the packet to nf_log with
// the rule's level, prefix and flags, then XT_CONTINUE. The packets are
// counted (Logged) and handed to the Ctx's Logger when there is one (a
// running lab's kernel log); evaluation goes on.
func (t *LogTarget) Exec(c *Ctx) TVerdict {
	t.logged.Add(1)
	if c.Logger != nil {
		c.Logger.Log(c, t)
	}
	return TContinue
}

// Logged is the number of packets the rule has logged.
func (t *LogTarget) Logged() uint64 { return t.logged.Load() }

func init() {
	RegisterTarget(&TargetSpec{Name: "LOG", Options: []Option{
		{Name: "log-level", Arg: RequiredArg},
		{Name: "log-prefix", Arg: RequiredArg},
		{Name: "log-tcp-sequence"},
		{Name: "log-tcp-options"},
		{Name: "log-ip-options"},
		{Name: "log-uid"},
		{Name: "log-macdecode"},
	}, New: func() Target { return &LogTarget{Level: logDefaultLevel} }})
}
