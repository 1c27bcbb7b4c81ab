package iptables

import (
	"fmt"
	"sort"
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// This file defines how match and target extensions plug into the parser
// and printer. It mirrors the shape of libxtables (iptables/xshared.c,
// libxtables/xtoptions.c): an extension declares its long options; the
// command-line parser hands it each option it owns, then calls Final once
// the whole rule has been read (xtables_option_mfcall/tfcall), and Save
// prints it back the way the extension's ->save callback does.
//
// Extensions are typed values: all string handling happens here, at load
// time, never per packet.

// ArgKind says whether a long option takes an argument (getopt has_arg).
type ArgKind uint8

const (
	NoArg       ArgKind = iota // flag option, e.g. --syn
	RequiredArg                // --dport 80
)

// Option is one long option of an extension.
type Option struct {
	Name string // without the leading "--"
	Arg  ArgKind
	// Invert reports whether "! --name" is accepted (XTOPT_INVERT).
	Invert bool
	// Multi allows the option more than once (XTOPT_MULTI); otherwise a
	// second use fails with "option ... can only be used once". Old-style
	// extensions that check repetition themselves set it.
	Multi bool
	// Alias names the canonical option this one is a synonym of (the
	// same xt_option_entry id): "sport" for "source-port" and so on.
	Alias string
	// TwoArgs: the option takes a second word (--tcp-flags MASK COMP).
	TwoArgs bool
}

// OptArg is one option occurrence handed to an extension's Parse.
type OptArg struct {
	Name string // the option's long name as declared (not an abbreviation)
	Arg  string // the argument ("" for NoArg)
	Arg2 string // the second word of a TwoArgs option
	// Arg2Missing: a TwoArgs option had no second word (the next word
	// is missing, an option or "!"); the extension reports it.
	Arg2Missing bool
	Invert      bool // a "!" preceded the option
	Rule        *RuleContext
}

// RuleContext describes the rule being parsed, for extensions whose
// parsing depends on it (protocol for ports, the table for NAT targets).
type RuleContext struct {
	Table TableID
	Chain string
	// Proto is the -p protocol number (0 = any); ProtoInvert is "! -p".
	Proto       uint8
	ProtoInvert bool
	// Line is the input line number, for messages.
	Line int
	// ipsets known to the loader (for -m set / -j SET); nil = none given.
	Sets SetLookup
}

// SetLookup resolves an ipset name (from `ipset save` input).
type SetLookup interface {
	LookupSet(name string) (IPSet, bool)
}

// Ext is the behaviour shared by matches and targets.
type Ext interface {
	// Parse consumes one option occurrence. It returns a *ParamError
	// (see Errorf) for bad values.
	Parse(o *OptArg) error
	// Final validates the extension after the whole rule was read
	// (x6_fcheck). It may return a *ParamError.
	Final(r *RuleContext) error
	// Save appends the options in iptables-save form, each with a
	// leading space (" --dport 80").
	Save(w *SaveWriter)
}

// Match is a compiled match extension ("-m NAME"); Eval runs it on a
// packet.
type Match interface {
	Ext
	Evaluator
	// Name is the name printed after -m.
	Name() string
}

// Target is a compiled target extension ("-j NAME").
type Target interface {
	Ext
	Executor
	// Name is the name printed after -j.
	Name() string
}

// HookChecker is implemented by extensions the kernel restricts to some
// hooks or tables (the checkentry of the xt module, or nft_compat's
// validate). It is called at COMMIT time with the set of hooks from which
// the rule's chain is reachable.
type HookChecker interface {
	CheckHooks(t TableID, hooks netfilter.HookMask) error
}

// EntryChecker is implemented by extensions whose kernel checkentry looks
// at par->hook_mask. Under nft_compat (net/netfilter/nft_compat.c,
// nft_match_set_mtchk_param / nft_target_set_tgchk_param) that mask is
// the hook of the rule's own chain when it is a base chain and empty for
// a user chain, whatever jumps to it. The loader calls it at COMMIT.
type EntryChecker interface {
	CheckEntry(t TableID, hooks netfilter.HookMask) error
}

// Errno is an error a HookChecker or EntryChecker returns when the kernel
// refuses the rule with another errno than EINVAL: Text is its strerror
// text ("No such file or directory" for xt_CT's unknown helper), printed
// in the "RULE_APPEND failed (...)" message.
type Errno struct {
	Text string
	Msg  string // the kernel's log line, for reference
}

func (e *Errno) Error() string { return e.Msg }

// ProtoChecker is implemented by xt extensions the kernel binds to one
// protocol (xt_match.proto, checked by xt_check_match): the rule must say
// -p PROTO without "!", or the kernel refuses the rule with -EINVAL when
// the table commits.
type ProtoChecker interface {
	RequiredProto() uint8
}

// MatchSpec registers a match extension.
type MatchSpec struct {
	Name    string
	Options []Option
	New     func() Match
}

// TargetSpec registers a target extension.
type TargetSpec struct {
	Name    string
	Options []Option
	New     func() Target
}

var (
	matchSpecs  = map[string]*MatchSpec{}
	targetSpecs = map[string]*TargetSpec{}
)

// RegisterMatch adds a match extension; called from init functions.
func RegisterMatch(s *MatchSpec) {
	if _, dup := matchSpecs[s.Name]; dup {
		panic("rules: duplicate match " + s.Name)
	}
	matchSpecs[s.Name] = s
}

// RegisterTarget adds a target extension; called from init functions.
func RegisterTarget(s *TargetSpec) {
	if _, dup := targetSpecs[s.Name]; dup {
		panic("rules: duplicate target " + s.Name)
	}
	targetSpecs[s.Name] = s
}

// Matches lists the registered match names, sorted.
func Matches() []string { return sortedKeys(matchSpecs) }

// Targets lists the registered target names, sorted.
func Targets() []string { return sortedKeys(targetSpecs) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ParamError is an option-parsing problem: iptables-restore prints it as
// "iptables-restore v1.8.9 (nf_tables): MSG" followed by
// "Error occurred at line: N" (xtables_error(PARAMETER_PROBLEM, ...)).
type ParamError struct {
	Msg string
}

func (e *ParamError) Error() string { return e.Msg }

// Errorf builds a *ParamError.
func Errorf(format string, args ...any) error {
	return &ParamError{Msg: fmt.Sprintf(format, args...)}
}

// SaveWriter accumulates iptables-save text.
type SaveWriter struct {
	strings.Builder
}

// Opt writes " --name" and, when arg is not empty, " arg".
func (w *SaveWriter) Opt(name, arg string) {
	w.WriteString(" --")
	w.WriteString(name)
	if arg != "" {
		w.WriteByte(' ')
		w.WriteString(arg)
	}
}

// InvOpt writes " ! --name arg" when inv, else " --name arg".
func (w *SaveWriter) InvOpt(inv bool, name, arg string) {
	if inv {
		w.WriteString(" !")
	}
	w.Opt(name, arg)
}

// Printf appends formatted text.
func (w *SaveWriter) Printf(format string, args ...any) {
	fmt.Fprintf(w, format, args...)
}

// IPSet is an ipset known to the loader (from `ipset save` input).
type IPSet interface {
	SetName() string
	// SetType is the ipset type, e.g. "hash:ip" or "hash:net,port".
	SetType() string
}

// nftNative is implemented by matches iptables-nft 1.8.9 translates into
// native nftables expressions (iptables/nft.c add_match: tcp, udp) and
// reassembles into one match per rule when it reads the rule back
// (nft-shared.c nft_tcp_match): later native tcp matches of a rule merge
// into the first one, and what the translation cannot carry is lost.
type nftNative interface {
	Match
	nftNative() bool
	nftMerge(later Match)
	// nftNormalize drops what the native form cannot carry and reports
	// whether anything is left.
	nftNormalize() bool
}

// normalizeNFT applies iptables-nft's native-translation round trip to a
// rule's matches.
func normalizeNFT(ms []Match) []Match {
	// in place: out never gets ahead of the match being read
	out := ms[:0]
	for _, m := range ms {
		n, ok := m.(nftNative)
		if !ok || !n.nftNative() {
			out = append(out, m)
			continue
		}
		// the first native match of the same name kept so far
		var f nftNative
		for _, o := range out {
			if on, ok := o.(nftNative); ok && on.nftNative() && o.Name() == m.Name() {
				f = on
				break
			}
		}
		if f != nil {
			f.nftMerge(m)
			continue
		}
		out = append(out, m)
	}
	// drop native matches that ended up empty
	res := out[:0]
	for _, m := range out {
		if n, ok := m.(nftNative); ok && n.nftNative() && !n.nftNormalize() {
			continue
		}
		res = append(res, m)
	}
	return res
}
