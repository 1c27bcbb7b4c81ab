package iptables

import "github.com/uswitch-lab/uswitch/netfilter"

// REJECT target (iptables 1.8.9 extensions/libipt_REJECT.c reject_table,
// REJECT_parse, REJECT_save; kernel net/ipv4/netfilter/ipt_REJECT.c:
// .table "filter", hooks INPUT/FORWARD/OUTPUT, tcp-reset only with
// "-p tcp" not inverted).

// Reject types (enum ipt_reject_with, linux/netfilter_ipv4/ipt_REJECT.h).
const (
	RejectNetUnreach uint8 = iota
	RejectHostUnreach
	RejectProtoUnreach
	RejectPortUnreach
	RejectEchoReply // not offered by iptables any more
	RejectNetProhibited
	RejectHostProhibited
	RejectTCPReset
	RejectAdminProhibited
)

// rejectNames is reject_table: the save name and its alias, by type.
var rejectNames = [...]struct{ name, alias string }{
	RejectNetUnreach:      {"icmp-net-unreachable", "net-unreach"},
	RejectHostUnreach:     {"icmp-host-unreachable", "host-unreach"},
	RejectProtoUnreach:    {"icmp-proto-unreachable", "proto-unreach"},
	RejectPortUnreach:     {"icmp-port-unreachable", "port-unreach"},
	RejectNetProhibited:   {"icmp-net-prohibited", "net-prohib"},
	RejectHostProhibited:  {"icmp-host-prohibited", "host-prohib"},
	RejectTCPReset:        {"tcp-reset", "tcp-rst"},
	RejectAdminProhibited: {"icmp-admin-prohibited", "admin-prohib"},
}

// RejectTarget is "-j REJECT" (struct ipt_reject_info).
type RejectTarget struct {
	With uint8
	// the rule's protocol, for the kernel's tcp-reset check
	proto    uint8
	protoInv bool
}

func (t *RejectTarget) Name() string { return "REJECT" }

func (t *RejectTarget) Parse(o *OptArg) error {
	// the first type whose name or alias starts with the argument
	// (case-insensitively) wins, so "" and "icmp" abbreviate too
	for i, n := range rejectNames {
		if n.name == "" {
			continue
		}
		if hasPrefixFold(n.name, o.Arg) || hasPrefixFold(n.alias, o.Arg) {
			t.With = uint8(i)
			return nil
		}
	}
	return Errorf("unknown reject type \"%s\"", o.Arg)
}

func (t *RejectTarget) Final(r *RuleContext) error {
	t.proto, t.protoInv = r.Proto, r.ProtoInvert
	return nil
}

var rejectHooks = netfilter.Hooks(netfilter.LocalIn, netfilter.Forward, netfilter.LocalOut)

// CheckHooks is xt_check_target with ipt_REJECT's registration, then
// reject_tg_check.
func (t *RejectTarget) CheckHooks(tb TableID, hooks netfilter.HookMask) error {
	if err := checkTableHooks("REJECT", tb, Filter, hooks, rejectHooks); err != nil {
		return err
	}
	if t.With == RejectTCPReset && (t.proto != 6 || t.protoInv) {
		return Errorf("REJECT: TCP_RESET invalid for non-tcp")
	}
	return nil
}

func (t *RejectTarget) Save(w *SaveWriter) {
	w.Opt("reject-with", rejectNames[t.With].name)
}

// rejectRequests is reject_tg's switch (net/ipv4/netfilter/ipt_REJECT.c)
// as data, by reject type: a destination-unreachable code for
// nf_send_unreach (ICMP_NET_UNREACH 0, ICMP_HOST_UNREACH 1,
// ICMP_PROT_UNREACH 2, ICMP_PORT_UNREACH 3, ICMP_NET_ANO 9,
// ICMP_HOST_ANO 10, ICMP_PKT_FILTERED 13) or a TCP reset (nf_send_reset).
// Read-only: Exec hands out pointers into it.
var rejectRequests = [...]RejectRequest{
	RejectNetUnreach:      {Type: 3, Code: 0},
	RejectHostUnreach:     {Type: 3, Code: 1},
	RejectProtoUnreach:    {Type: 3, Code: 2},
	RejectPortUnreach:     {Type: 3, Code: 3},
	RejectNetProhibited:   {Type: 3, Code: 9},
	RejectHostProhibited:  {Type: 3, Code: 10},
	RejectTCPReset:        {TCPReset: true},
	RejectAdminProhibited: {Type: 3, Code: 13},
}

// Exec is reject_tg: ask the engine to send the error (c.Reject; the
// conditions under which nf_send_unreach and nf_send_reset stay silent —
// ICMP errors, broadcasts, non-first fragments, RSTs, bad checksums —
// are the sender's, net/ipv4/netfilter/nf_reject_ipv4.c) and drop the
// packet. IPT_ICMP_ECHOREPLY, which reject_tg_check refuses, sends
// nothing.
func (t *RejectTarget) Exec(c *Ctx) TVerdict {
	if t.With != RejectEchoReply && int(t.With) < len(rejectRequests) {
		c.Reject = &rejectRequests[t.With]
	}
	return TDrop
}

func init() {
	RegisterTarget(&TargetSpec{Name: "REJECT", Options: []Option{
		{Name: "reject-with", Arg: RequiredArg},
	}, New: func() Target { return &RejectTarget{With: RejectPortUnreach} }})
}
