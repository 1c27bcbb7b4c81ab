package datapath

import (
	"cmp"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/internal/prom"
	"github.com/uswitch-lab/uswitch/ipfrag"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// DropReason is why the engine dropped a packet. A drop is recorded on
// the packet's Fate as a reason and a few small values (no string is
// built on the packet path), counted per reason by DropCounts, and
// formatted only when printed (Fate.By).
type DropReason uint8

// The reasons. The kernel file that drops for the same reason is named
// with each.
const (
	DropNone DropReason = iota
	// DropTable: a table's verdict (ipt_do_table): DROP, REJECT, a
	// policy; Fate.Table and Fate.Hook say where; a traced packet's
	// Fate.Rule is the rule (0: the chain's policy) in Fate.Arg's chain.
	DropTable
	// DropConntrack: nf_conntrack_in refused the packet; Fate.Detail is
	// the conntrack.Verdict.
	DropConntrack
	// DropNATICMP: an ICMP error whose embedded packet NAT could not
	// translate (nf_nat_icmp_reply_translation).
	DropNATICMP
	// DropNAT: a NAT binding failed (nf_nat_setup_info); Fate.Arg is the
	// error.
	DropNAT
	// DropNATTruncated: too short a transport header to rewrite
	// (nf_nat_manip_pkt: skb_make_writable failed).
	DropNATTruncated
	// DropMasqNoAddr: MASQUERADE found no address on the output device
	// (nf_nat_masquerade_ipv4); Fate.Arg is the device.
	DropMasqNoAddr
	// DropRedirectNoAddr: REDIRECT found no address on the input device
	// (nf_nat_redirect_ipv4); Fate.Arg is the device.
	DropRedirectNoAddr
	// DropNoRouteConfig: the engine has no routing configuration.
	DropNoRouteConfig
	// DropRoute: the route lookup failed (ip_route_input_noref,
	// ip_route_output_key); Fate.Detail is the errno.
	DropRoute
	// DropTTL: a forwarded packet's TTL ran out (ip_forward).
	DropTTL
	// DropIPVS: IPVS dropped the packet (ip_vs_in, ip_vs_out); Fate.Arg
	// is lvs's reason.
	DropIPVS
	// DropIPVSNoRoute: no route to the real server (ip_vs_xmit.c
	// __ip_vs_get_out_rt); Fate.Detail is its address.
	DropIPVSNoRoute
	// DropIPVSMTU: a tunnel's MTU would be below 68 (ip_vs_tunnel_xmit).
	DropIPVSMTU
	// DropIPVSTooBig: too big for the path to the real server, DF set
	// (ensure_mtu_is_adequate).
	DropIPVSTooBig
	// DropIPVSTTL: a forwarded packet's TTL ran out on its way to the
	// real server (ip_vs_xmit.c decrement_ttl).
	DropIPVSTTL
	// DropIPVSEncap: the tunnel encapsulation failed; Fate.Arg is the
	// error.
	DropIPVSEncap
	// DropDefrag: reassembly refused the fragment (ip_defrag:
	// a duplicate, an overlap that discarded its queue, memory over
	// ipfrag_high_thresh...); Fate.Detail is the ipfrag.Status.
	DropDefrag
	// DropFragNeeded: too big for the output MTU with DF set
	// (ip_forward's ip_exceeds_mtu, ip_fragment): ICMP fragmentation
	// needed went back; Fate.Detail is the MTU.
	DropFragNeeded
	// DropIPOptions: invalid IP options (ip_rcv_options:
	// ip_options_compile failed, InHdrErrors); Fate.Detail is the ICMP
	// parameter problem's pointer (the offset of the byte at fault).
	DropIPOptions
	// DropSourceRoute: a source route option arrived on a device
	// without accept_source_route (ip_rcv_options, IN_DEV_SOURCE_ROUTE).
	DropSourceRoute
	// DropSourceRouteFailed: a source route could not be followed
	// (ip_options_rcv_srr; ip_forward's sr_failed: a strict route via a
	// gateway).
	DropSourceRouteFailed
	// DropFault: a fault stage dropped the packet (fault.go); Fate.Arg
	// is the fault's name.
	DropFault

	NumDropReasons
)

var dropNames = [NumDropReasons]string{"", "table", "conntrack", "nat_icmp", "nat", "nat_truncated",
	"masquerade_no_address", "redirect_no_address", "no_route_config", "route", "ttl",
	"ipvs", "ipvs_no_route", "ipvs_mtu", "ipvs_too_big", "ipvs_ttl", "ipvs_encap", "defrag", "frag_needed",
	"ip_options", "source_route", "source_route_failed", "fault"}

// String is the reason's metric label value.
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "reason" + strconv.Itoa(int(r))
}

// By names the drop's origin as the engine prints it:
// "filter:FORWARD", "filter:INPUT:rule:3" (traced),
// "filter:FORWARD:policy" (traced), "route: no route to host",
// "conntrack: invalid"... ("" for a packet not dropped).
func (f *Fate) By() string {
	switch f.Reason {
	case DropNone:
		return ""
	case DropTable:
		s := f.Table.String() + ":"
		switch {
		case f.Arg == "":
			return s + f.Hook.String()
		case f.Rule == 0:
			return s + f.Arg + ":policy"
		}
		return s + f.Arg + ":rule:" + strconv.Itoa(int(f.Rule))
	case DropConntrack:
		return "conntrack: " + conntrack.Verdict(f.Detail).String()
	case DropNATICMP:
		return "nat: ICMP error translation"
	case DropNAT:
		return "nat: " + f.Arg
	case DropNATTruncated:
		return "nat: truncated transport header"
	case DropMasqNoAddr:
		return "nat: MASQUERADE found no address on " + f.Arg
	case DropRedirectNoAddr:
		return "nat: REDIRECT found no address on " + f.Arg
	case DropNoRouteConfig:
		return "route: no routing configuration"
	case DropRoute:
		return "route: " + syscall.Errno(f.Detail).Error()
	case DropTTL:
		return "ip_forward: TTL exceeded"
	case DropIPVS, DropIPVSEncap:
		return f.Arg
	case DropIPVSNoRoute:
		return "ipvs: no route to real server " + packet.AddrOf(f.Detail).String()
	case DropIPVSMTU:
		return "ipvs: tunnel MTU below 68"
	case DropIPVSTooBig:
		return "ipvs: packet too big"
	case DropIPVSTTL:
		return "ipvs: TTL exceeded"
	case DropDefrag:
		return "defrag: " + ipfrag.Status(f.Detail).String()
	case DropFragNeeded:
		return "ip_fragment: DF set and over MTU " + strconv.Itoa(int(f.Detail))
	case DropIPOptions:
		return "ip_options: bad option at offset " + strconv.Itoa(int(f.Detail))
	case DropSourceRoute:
		return "ip_options: source route not accepted"
	case DropSourceRouteFailed:
		return "ip_options: source route failed"
	case DropFault:
		return "fault: " + f.Arg
	}
	return f.Reason.String()
}

// DropKey is what drops are counted by: the reason, and for a table's
// verdict the table and hook. The set of keys is bounded (so is a metric
// labelled by them).
type DropKey struct {
	Reason DropReason
	Table  iptables.TableID // DropTable only
	Hook   netfilter.Hook   // DropTable only
}

// Key is the counting key of a drop.
func (f *Fate) Key() DropKey {
	k := DropKey{Reason: f.Reason}
	if f.Reason == DropTable {
		k.Table, k.Hook = f.Table, f.Hook
	}
	return k
}

// String is "table:HOOK" for a table's drop, else the reason.
func (k DropKey) String() string {
	if k.Reason == DropTable {
		return k.Table.String() + ":" + k.Hook.String()
	}
	return k.Reason.String()
}

// DropCounts counts drops by key: a fixed array of atomic counters, so
// counting takes no lock and no allocation and any number of goroutines
// may Add at once.
type DropCounts struct {
	reasons [NumDropReasons]atomic.Uint64
	tables  [iptables.NumTables][netfilter.NumHooks]atomic.Uint64
}

// Add counts the drop of f (nothing for a packet not dropped).
func (c *DropCounts) Add(f *Fate) {
	switch {
	case f.Reason == DropTable && f.Table < iptables.NumTables && f.Hook < netfilter.NumHooks:
		c.tables[f.Table][f.Hook].Add(1)
	case f.Reason != DropNone && f.Reason < NumDropReasons:
		c.reasons[f.Reason].Add(1)
	}
}

// Snapshot returns the counts that are not zero.
func (c *DropCounts) Snapshot() map[DropKey]uint64 {
	m := map[DropKey]uint64{}
	for r := range c.reasons {
		if n := c.reasons[r].Load(); n > 0 {
			m[DropKey{Reason: DropReason(r)}] = n
		}
	}
	for t := range c.tables {
		for h := range c.tables[t] {
			if n := c.tables[t][h].Load(); n > 0 {
				m[DropKey{Reason: DropTable, Table: iptables.TableID(t), Hook: netfilter.Hook(h)}] = n
			}
		}
	}
	return m
}

// WriteDropMetrics writes drop counts as uswitch_drops_total, labelled by
// reason (and table and hook for a table's drop): a bounded label set.
func WriteDropMetrics(m *prom.Writer, counts map[DropKey]uint64) {
	const name = "uswitch_drops_total"
	m.Family(name, "counter", "Packets the engine dropped, by reason (a table's verdict by table and hook; conntrack, nat, route, ttl, ipvs...).")
	keys := make([]DropKey, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b DropKey) int {
		return cmp.Or(cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Table, b.Table), cmp.Compare(a.Hook, b.Hook))
	})
	for _, k := range keys {
		if k.Reason == DropTable {
			m.Sample(name, counts[k], "reason", k.Reason.String(), "table", k.Table.String(), "hook", k.Hook.String())
		} else {
			m.Sample(name, counts[k], "reason", k.Reason.String())
		}
	}
}
