// Package netfilter holds the names netfilter gives to the places and
// outcomes of packet processing: the IPv4 (and bridge) hooks, the
// priorities at which the kernel's modules register their callbacks on
// a hook, and the verdicts a callback returns. It is the lowest layer of
// uswitch: every package that speaks of hooks (iptables, conntrack, lvs,
// nfqueue, the datapath Engine) uses these types, and this package
// imports nothing of the project.
//
// The numbers are the kernel's ABI (include/uapi/linux/netfilter.h,
// netfilter_ipv4.h, netfilter_bridge.h), so a hook or verdict read from
// netlink (NFQUEUE's NFQA_PACKET_HDR, its verdict message) converts
// directly.
package netfilter

import (
	"math"
	"strconv"
)

// Hook is an IPv4 netfilter hook, numbered as enum nf_inet_hooks
// (include/uapi/linux/netfilter.h). The packet's way through them is
// drawn in datapath/doc.go.
type Hook uint8

// The hooks (NF_INET_*).
const (
	PreRouting  Hook = iota // NF_INET_PRE_ROUTING: every received packet, before the input route
	LocalIn                 // NF_INET_LOCAL_IN: a received packet for this host (ip_local_deliver)
	Forward                 // NF_INET_FORWARD: a received packet routed on (ip_forward)
	LocalOut                // NF_INET_LOCAL_OUT: a packet the host sends (__ip_local_out)
	PostRouting             // NF_INET_POST_ROUTING: every packet leaving (ip_output)
	NumHooks                // NF_INET_NUMHOOKS
)

var hookNames = [NumHooks]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// String is the hook's name as iptables calls its builtin chains (and
// as nf_log and the trace lines print it).
func (h Hook) String() string {
	if h < NumHooks {
		return hookNames[h]
	}
	return "HOOK(" + strconv.Itoa(int(h)) + ")"
}

// HookMask is a set of hooks, bit h for hook h (the xt_*_mtchk_param
// hook_mask).
type HookMask uint8

// Has reports whether h is in the set.
func (m HookMask) Has(h Hook) bool { return m&(1<<h) != 0 }

// Hooks makes a mask.
func Hooks(hs ...Hook) HookMask {
	var m HookMask
	for _, h := range hs {
		m |= 1 << h
	}
	return m
}

// Priority orders the callbacks registered on one hook: the kernel runs
// them from the lowest priority up (nf_hook_entries_grow keeps each
// hook's entries sorted).
type Priority int32

// IPv4 priorities (enum nf_ip_hook_priorities,
// include/uapi/linux/netfilter_ipv4.h).
const (
	PriFirst            Priority = math.MinInt32 // NF_IP_PRI_FIRST
	PriConntrackDefrag  Priority = -400          // NF_IP_PRI_CONNTRACK_DEFRAG: nf_defrag_ipv4
	PriRaw              Priority = -300          // NF_IP_PRI_RAW: the raw table
	PriSELinuxFirst     Priority = -225          // NF_IP_PRI_SELINUX_FIRST
	PriConntrack        Priority = -200          // NF_IP_PRI_CONNTRACK: nf_conntrack_in
	PriMangle           Priority = -150          // NF_IP_PRI_MANGLE: the mangle table
	PriNATDst           Priority = -100          // NF_IP_PRI_NAT_DST: DNAT (PREROUTING, OUTPUT)
	PriFilter           Priority = 0             // NF_IP_PRI_FILTER: the filter table
	PriSecurity         Priority = 50            // NF_IP_PRI_SECURITY: the security table of iptables-legacy
	PriNATSrc           Priority = 100           // NF_IP_PRI_NAT_SRC: SNAT (INPUT, POSTROUTING)
	PriSELinuxLast      Priority = 225           // NF_IP_PRI_SELINUX_LAST
	PriConntrackHelper  Priority = 300           // NF_IP_PRI_CONNTRACK_HELPER
	PriConntrackConfirm Priority = math.MaxInt32 // NF_IP_PRI_CONNTRACK_CONFIRM: __nf_conntrack_confirm
	PriLast             Priority = math.MaxInt32 // NF_IP_PRI_LAST
)

// PriSecurityNFT is where iptables-nft puts the security table's base
// chains: 150, not NF_IP_PRI_SECURITY (iptables/nft.c, xtables_ipv4:
// ".prio = 150, /* NF_IP_PRI_SECURITY */"), so with iptables-nft the
// security table runs after the INPUT nat hook instead of before it.
const PriSecurityNFT Priority = 150

// IPVS's hooks (ip_vs_ops4, net/netfilter/ipvs/ip_vs_core.c), registered
// with the namespace's first virtual service (ip_vs_register_hooks).
const (
	// PriIPVSReply is ip_vs_out_hook at LOCAL_IN: VS/NAT replies to a
	// local client get the virtual address back, after filtering.
	PriIPVSReply = PriNATSrc - 2
	// PriIPVSRemoteRequest is ip_vs_in_hook at LOCAL_IN: schedule and
	// forward requests from remote clients, after filtering.
	PriIPVSRemoteRequest = PriNATSrc - 1
	// PriIPVSLocalReply is ip_vs_out_hook at LOCAL_OUT: VS/NAT replies
	// of a real server on this host, before ip_vs_in.
	PriIPVSLocalReply = PriNATDst + 1
	// PriIPVSLocalRequest is ip_vs_in_hook at LOCAL_OUT: schedule and
	// forward requests of local clients, after mangle.
	PriIPVSLocalRequest = PriNATDst + 2
	// PriIPVSForwardICMP is ip_vs_forward_icmp at FORWARD: ICMP errors
	// about IPVS connections.
	PriIPVSForwardICMP Priority = 99
	// PriIPVSForwardReply is ip_vs_out_hook at FORWARD: VS/NAT replies
	// being forwarded.
	PriIPVSForwardReply Priority = 100
)

// Bridge priorities (enum nf_br_hook_priorities,
// include/uapi/linux/netfilter_bridge.h): ebtables' tables and
// br_netfilter's callbacks on the NFPROTO_BRIDGE hooks (numbered as the
// IPv4 ones, NF_BR_PRE_ROUTING 0 ... NF_BR_POST_ROUTING 4, plus
// NF_BR_BROUTING 5 for the broute table).
const (
	BrPriFirst         Priority = math.MinInt32 // NF_BR_PRI_FIRST
	BrPriNATDstBridged Priority = -300          // NF_BR_PRI_NAT_DST_BRIDGED: ebtables nat PREROUTING
	BrPriFilterBridged Priority = -200          // NF_BR_PRI_FILTER_BRIDGED: ebtables filter INPUT, FORWARD
	BrPriBrNF          Priority = 0             // NF_BR_PRI_BRNF: br_netfilter (the IPv4 hooks called from the bridge)
	BrPriNATDstOther   Priority = 100           // NF_BR_PRI_NAT_DST_OTHER: ebtables nat OUTPUT
	BrPriFilterOther   Priority = 200           // NF_BR_PRI_FILTER_OTHER: ebtables filter OUTPUT
	BrPriNATSrc        Priority = 300           // NF_BR_PRI_NAT_SRC: ebtables nat POSTROUTING
	BrPriLast          Priority = math.MaxInt32 // NF_BR_PRI_LAST
)

// Verdict is what a hook callback returns to nf_hook_slow, and what a
// queue reader gives a queued packet (NFQA_VERDICT_HDR). Only the low
// byte is the verdict; the kernel packs a queue number or an errno in
// the high bits (NF_VERDICT_MASK), which this type does not model.
//
// Other verdicts in uswitch are not this one and keep their own types:
// an xtables target's return (iptables.TVerdict, which adds
// XT_CONTINUE and XT_RETURN), a standard rule target
// (iptables.Verdict), nf_conntrack_in's outcome (conntrack.Verdict) and
// an IPVS hook's (lvs.Verdict).
type Verdict uint32

// The verdicts (include/uapi/linux/netfilter.h).
const (
	Drop   Verdict = 0 // NF_DROP: free the packet
	Accept Verdict = 1 // NF_ACCEPT: go on to the next callback
	Stolen Verdict = 2 // NF_STOLEN: the callback took the packet
	Queue  Verdict = 3 // NF_QUEUE: hand the packet to a queue reader
	Repeat Verdict = 4 // NF_REPEAT: call this callback again
	Stop   Verdict = 5 // NF_STOP: accept, skipping the hook's remaining callbacks (deprecated)
)

var verdictNames = [...]string{"DROP", "ACCEPT", "STOLEN", "QUEUE", "REPEAT", "STOP"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "VERDICT(" + strconv.Itoa(int(v)) + ")"
}
