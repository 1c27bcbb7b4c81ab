package iptables

import (
	"errors"
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// A single rule's matches, outside a table: what a fault's `match`
// string is (package fault). The text is the part of an iptables
// command between the chain and the target ("-p udp --dport 53 -m
// conntrack --ctstate NEW"), parsed by the same parser and checked
// against the hook as a rule of the mangle table's chain of that hook
// would be (mangle has a chain on every hook), so -o at PREROUTING is
// refused with iptables' own message.

// ParseMatch parses a match string for hook. sets resolves -m set
// names (nil: none). The rule has no target; evaluate it with
// Rule.Match.
func ParseMatch(text string, hook netfilter.Hook, sets SetLookup) (*Rule, error) {
	if strings.ContainsAny(text, "\n\r\x00") {
		return nil, errors.New("a match is one line")
	}
	chain := hook.String()
	ld := Loader{Sets: sets}
	rs, err := ld.LoadString("*mangle\n-A " + chain + " " + text + "\nCOMMIT\n")
	if err != nil {
		var re *RestoreError
		if errors.As(err, &re) {
			return nil, errors.New(strings.TrimSpace(firstLine(re.Stderr())))
		}
		return nil, err
	}
	ch := rs.Tables[Mangle].Builtin(hook)
	if ch == nil || len(ch.Rules) != 1 {
		return nil, errors.New("the match did not make one rule")
	}
	r := ch.Rules[0]
	if r.Target != nil || r.Verdict != VerdictNone {
		return nil, errors.New("a match has no target (-j, -g)")
	}
	return r, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Match reports whether the packet of c matches the rule's fixed part
// and its matches, as a table's traversal tests a rule
// (ip_packet_match, then each match), without counting or running the
// target. A match that asks for a hot drop (a truncated header) sets
// c.HotDrop and does not match.
func (r *Rule) Match(c *Ctx) bool {
	if !r.IP.matchIP(c) {
		return false
	}
	for _, m := range r.Matches {
		if !m.Eval(c) {
			return false
		}
	}
	return !c.HotDrop
}

// MatchString prints the rule's matches as iptables-save does (the rule
// without "-A CHAIN" and without a target).
func MatchString(r *Rule) string {
	return strings.TrimSpace(RuleString(r))
}
