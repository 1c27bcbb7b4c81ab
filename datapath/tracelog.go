package datapath

import (
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/trace"
)

// The kernel log form of a trace (Tracer.Format FormatLog): the lines
// nf_log_ipv4 writes for -j LOG rules and, for a packet with nf_trace,
// iptables-legacy's TRACE lines (net/ipv4/netfilter/ip_tables.c
// trace_packet through nf_log_trace, with trace_loginfo's flags
// NF_LOG_DEFAULT_MASK). Only a tracer formats: the untraced path runs
// LOG as before (a counter).
//
// Legacy TRACE numbers the entries of the chain from 1: a rule is
// "rule:N"; the base chain's policy is the entry after its rules
// ("policy:len+1"); falling off a user chain meets its tail entry
// ("return:len+1"). get_chainname_rulenum also calls a rule "policy" (in
// a base chain) or "return" (in a user chain) when it is unconditional,
// i.e. no matches, no address, interface, protocol or fragment test,
// with a standard ACCEPT, DROP, QUEUE or RETURN verdict: the kernel
// cannot tell it from a tail entry.
//
// A rule is traced before its target runs (the packet as the target
// found it) and only when the packet was traced before it: the -j TRACE
// rule itself has no line, as in the kernel.

// Target implements iptables.TargetTracer.
func (t *Tracer) Target(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule) {
	if t.Format != FormatLog || !t.on() {
		return
	}
	t.logTrace(tab, c, "rule", ruleNum(c, r))
}

// logRule is Rule in the log form: the TRACE line of a rule without a
// target (one with a target had it in Target), then a LOG rule's line.
func (t *Tracer) logRule(tab *iptables.Table, c *iptables.Chain, r *iptables.Rule, v iptables.TVerdict, jump *iptables.Chain) {
	if r.Target == nil {
		if t.on() {
			kind, num := legacyKind(c, r)
			t.logTrace(tab, c, kind, num)
		}
		return
	}
	if l, ok := r.Target.(*iptables.LogTarget); ok {
		li := t.logInfo(l.Prefix, l.Flags)
		t.Lines = append(t.Lines, trace.LogLine(&li, t.k.p.IP))
	}
}

// legacyKind is how legacy TRACE names a matched rule without a target
// (get_chainname_rulenum): "rule", or "return"/"policy" for an
// unconditional one, and its number.
func legacyKind(c *iptables.Chain, r *iptables.Rule) (string, int) {
	kind := "rule"
	if unconditional(r) {
		kind = "return"
		if c.Builtin {
			kind = "policy"
		}
	}
	return kind, ruleNum(c, r)
}

// unconditional is ip_tables.c unconditional() for a rule with a
// standard verdict below zero (not a jump).
func unconditional(r *iptables.Rule) bool {
	if len(r.Matches) != 0 || r.IP != (iptables.IPHeader{}) {
		return false
	}
	switch r.Verdict {
	case iptables.VerdictAccept, iptables.VerdictDrop, iptables.VerdictQueue, iptables.VerdictReturn:
		return true
	}
	return false
}

func (t *Tracer) logTrace(tab *iptables.Table, c *iptables.Chain, kind string, num int) {
	li := t.logInfo(trace.LegacyTracePrefix(tab.ID.String(), c.Name, kind, num), trace.LogDefaultMask)
	t.Lines = append(t.Lines, trace.LogLine(&li, t.k.p.IP))
}

// logInfo is what nf_log knows of the packet at this hook.
func (t *Tracer) logInfo(prefix string, flags uint8) trace.LogInfo {
	return logInfoOf(t.k.p, t.in, t.out, prefix, flags)
}

// sub is the tracer of an answer the traced packet causes.
func (t *Tracer) sub() *Tracer {
	return &Tracer{All: t.All, Format: t.Format, Record: t.Record, PathAll: t.PathAll}
}
