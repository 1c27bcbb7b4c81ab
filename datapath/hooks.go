package datapath

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/nat"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// The hook graph. Each hook is a list of stages sorted by netfilter
// priority, as the kernel keeps the callbacks registered on a hook
// (nf_hook_entries_grow, net/netfilter/core.c), and a packet at a hook
// runs its stages in order until one keeps or drops it (nf_hook_slow).
// The lists are built once per configuration (Engine.Swap) with only the
// stages the configuration needs, as the kernel registers a table's
// hooks with the table, conntrack's when something asks for it
// (nf_ct_netns_get) and NAT's with the first nat chain
// (nf_nat_register_fn). IPVS registers its hooks with the namespace's
// first virtual service (ip_vs_register_hooks); services come and go
// without a swap, so each configuration has a second set of lists with
// IPVS's stages, chosen when a packet enters a hook while the director
// has a service. datapath/doc.go draws the lists.
//
// A stage is a small value dispatched by a switch (pkt.stage) rather
// than a func value: through a func value the compiler cannot see where
// the hook's state goes, so it moves to the heap (three allocations per
// forwarded packet, TestEstablishedNoAllocs); with the switch it stays
// on the stack.

// stageOp is what a stage does.
type stageOp uint8

const (
	// opTable runs an iptables table's base chain for the hook
	// (iptable_*_hook -> ipt_do_table; nft_do_chain for iptables-nft).
	opTable stageOp = iota
	// opMangleOut is the mangle table at LOCAL_OUT: it reroutes when
	// the table changed the mark, addresses or TOS (ipt_mangle_out,
	// net/ipv4/netfilter/iptable_mangle.c: ip_route_me_harder).
	opMangleOut
	// opConntrack is nf_conntrack_in (ipv4_conntrack_in at PREROUTING,
	// ipv4_conntrack_local at LOCAL_OUT; net/netfilter/nf_conntrack_proto.c).
	opConntrack
	// opFlowCache consults the flow cache (flowcache.go) once the
	// packet has its connection; uswitch's own, at PREROUTING only.
	opFlowCache
	// opNAT is the NAT core's hook with the nat table's chain
	// (nf_nat_ipv4_pre_routing, nf_nat_ipv4_local_in, nf_nat_ipv4_out;
	// net/netfilter/nf_nat_proto.c): DNAT at PREROUTING, SNAT at INPUT
	// and POSTROUTING.
	opNAT
	// opNATOut is DNAT at LOCAL_OUT: it reroutes when the destination
	// changed (nf_nat_ipv4_local_fn).
	opNATOut
	// opConfirm is ipv4_confirm: the new connection enters the table.
	opConfirm
	// opIPVSOut is ip_vs_out_hook (VS/NAT replies).
	opIPVSOut
	// opIPVSIn is ip_vs_in_hook (schedule and transmit requests).
	opIPVSIn
	// opIPVSForwardICMP is ip_vs_forward_icmp.
	opIPVSForwardICMP
	// opDefrag is ipv4_conntrack_defrag (nf_defrag_ipv4.c): fragments
	// wait for their datagram, which goes on in their place.
	opDefrag
	// opFault is a fault at hook:ipv4:HOOK@PRIORITY (fault.go).
	opFault
)

// stage is one callback on a hook.
type stage struct {
	prio netfilter.Priority
	op   stageOp
	// table is the table of opTable and opMangleOut
	table iptables.TableID
	// fault is opFault's index in the configuration's Faults
	fault int32
}

// String names the stage as the diagram in doc.go does.
func (s stage) String() string {
	var n string
	switch s.op {
	case opTable, opMangleOut:
		n = s.table.String()
	case opConntrack:
		n = "conntrack"
	case opFlowCache:
		n = "flowcache"
	case opNAT, opNATOut:
		n = "nat"
	case opConfirm:
		return "confirm"
	case opIPVSOut:
		n = "ipvs-out"
	case opIPVSIn:
		n = "ipvs-in"
	case opIPVSForwardICMP:
		n = "ipvs-icmp"
	case opDefrag:
		n = "defrag"
	case opFault:
		n = "fault"
	default:
		n = "stage(" + strconv.Itoa(int(s.op)) + ")"
	}
	return n + " " + strconv.Itoa(int(s.prio))
}

// tablePrio is where iptables-nft registers each table's base chains
// (iptables/nft.c xtables_ipv4): the kernel's NF_IP_PRI_* except the
// security table, at 150 instead of NF_IP_PRI_SECURITY (50). The nat
// table has no stage of its own: the NAT core runs it (opNAT).
var tablePrio = [iptables.NumTables]netfilter.Priority{
	iptables.Raw:      netfilter.PriRaw,
	iptables.Mangle:   netfilter.PriMangle,
	iptables.Filter:   netfilter.PriFilter,
	iptables.Security: netfilter.PriSecurityNFT,
}

// hookLists are the stage lists of a configuration: [0] without IPVS,
// [1] with it.
type hookLists [2][netfilter.NumHooks][]stage

// buildHooks makes c's stage lists from its tables and what they need.
func (c *compiled) buildHooks() {
	for v := range c.hooks {
		ipvs := v == 1
		for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
			var l []stage
			add := func(prio netfilter.Priority, op stageOp, t iptables.TableID) {
				l = append(l, stage{prio: prio, op: op, table: t})
			}
			for _, t := range []iptables.TableID{iptables.Raw, iptables.Mangle, iptables.Filter, iptables.Security} {
				if c.base[h][t] == nil {
					continue
				}
				op := opTable
				if t == iptables.Mangle && h == netfilter.LocalOut {
					op = opMangleOut
				}
				add(tablePrio[t], op, t)
			}
			if c.ctOn {
				switch h {
				case netfilter.PreRouting, netfilter.LocalOut:
					// nf_defrag_ipv4 comes with conntrack
					// (nf_ct_netns_get -> nf_defrag_ipv4_enable)
					add(netfilter.PriConntrackDefrag, opDefrag, 0)
					add(netfilter.PriConntrack, opConntrack, 0)
				case netfilter.LocalIn, netfilter.PostRouting:
					add(netfilter.PriConntrackConfirm, opConfirm, 0)
				}
				if h == netfilter.PreRouting && (c.memoOn || c.bmemoOn) && !ipvs {
					// after conntrack (the list is sorted stably)
					add(netfilter.PriConntrack, opFlowCache, 0)
				}
			}
			if c.ctOn && c.natOn {
				switch h {
				case netfilter.PreRouting:
					add(netfilter.PriNATDst, opNAT, 0)
				case netfilter.LocalOut:
					add(netfilter.PriNATDst, opNATOut, 0)
				case netfilter.LocalIn, netfilter.PostRouting:
					add(netfilter.PriNATSrc, opNAT, 0)
				}
			}
			if ipvs {
				switch h {
				case netfilter.LocalIn:
					add(netfilter.PriIPVSReply, opIPVSOut, 0)
					add(netfilter.PriIPVSRemoteRequest, opIPVSIn, 0)
				case netfilter.Forward:
					add(netfilter.PriIPVSForwardICMP, opIPVSForwardICMP, 0)
					add(netfilter.PriIPVSForwardReply, opIPVSOut, 0)
				case netfilter.LocalOut:
					add(netfilter.PriIPVSLocalReply, opIPVSOut, 0)
					add(netfilter.PriIPVSLocalRequest, opIPVSIn, 0)
				}
			}
			l = c.addFaultStages(h, l)
			slices.SortStableFunc(l, func(a, b stage) int { return cmp.Compare(a.prio, b.prio) })
			c.hooks[v][h] = l
			if v == 0 {
				c.tablesOnly[h] = true
				for i := range l {
					if l[i].op != opTable {
						c.tablesOnly[h] = false
					}
				}
			}
		}
	}
}

// hookState is what a hook's stages share (nf_hook_state): the hook and
// the devices. A stage that reroutes the packet may change out for the
// stages after it.
type hookState struct {
	hook    netfilter.Hook
	in, out string
}

// run runs the stages of st.hook in order. It reports whether the packet
// goes on past the hook; false: a stage dropped, queued or stole it, or
// sent it on itself (IPVS).
func (k *pkt) run(st *hookState) bool {
	ipvs := k.ipvsOn()
	if k.replay && k.cfg.tablesOnly[st.hook] && !ipvs && !k.recording() {
		// the flow cache replayed every table of the hook (table)
		return true
	}
	list := k.cfg.hooks[0][st.hook]
	if ipvs {
		list = k.cfg.hooks[1][st.hook]
	}
	if k.recording() {
		k.pathHook(st)
		for i := range list {
			if !k.tracedStage(list[i:i+1], st) {
				return false
			}
		}
		return true
	}
	return k.stages(list, st)
}

// stages runs the stages of list in order (the loop and the dispatch in
// one function: no call per stage); false: the packet is gone.
func (k *pkt) stages(list []stage, st *hookState) bool {
	for i := range list {
		s := &list[i]
		var ok bool
		switch s.op {
		case opTable:
			ok = k.table(s.table, st)
		case opMangleOut:
			ok = k.mangleOut(st)
		case opConntrack:
			ok = k.conntrackIn(st.hook)
		case opFlowCache:
			if k.bf != nil {
				k.bmemoStart()
			} else if k.cfg.memoOn {
				k.memoStart(k.iif)
			}
			ok = true
		case opNAT:
			m := nat.Src
			if st.hook == netfilter.PreRouting {
				m = nat.Dst
			}
			ok = k.natHook(st.hook, m, st.in, st.out)
		case opNATOut:
			ok = k.natOut(st)
		case opConfirm:
			ok = k.confirm()
		case opIPVSOut:
			ok = k.ipvsOut(st, s.prio)
		case opIPVSIn:
			ok = k.ipvsIn(st.hook, s.prio)
		case opIPVSForwardICMP:
			ok = k.ipvsForwardICMP(s.prio)
		case opDefrag:
			ok = k.defragHook(st.hook)
		case opFault:
			ok = k.fault(s, st)
		default:
			panic("datapath: unknown stage " + s.String())
		}
		if !ok {
			return false
		}
	}
	return true
}

// table runs a table's base chain for the hook and applies what its
// targets asked of conntrack (raw's NOTRACK and CT --zone).
func (k *pkt) table(tid iptables.TableID, st *hookState) bool {
	if k.replay {
		return true // the flow cache replayed it
	}
	v, c := k.runTable(tid, st.hook, st.in, st.out)
	if c != nil && c.Notrack && k.ct.Conn == nil {
		k.ct = conntrack.Untracked
	}
	if c != nil && c.HasZone {
		k.zone = c.CTZone
	}
	if c != nil && c.CTTemplate != nil {
		k.helper = c.CTTemplate.HelperImpl()
	}
	return k.verdictOK(v, c, tid, st.hook)
}

// mangleOut is ipt_mangle_out: the mangle table at LOCAL_OUT, then
// ip_route_me_harder when it changed what routing looks at. The OUTPUT
// hook keeps the device it started with (nf_hook_state.out, set once in
// __ip_local_out); the new route's device shows from POSTROUTING on.
func (k *pkt) mangleOut(st *hookState) bool {
	p := k.p
	mark, src, dst, tos := p.Mark, p.Src, p.Dst, p.IP.TOS()
	if !k.table(iptables.Mangle, st) {
		return false
	}
	if p.Mark != mark || p.Src != src || p.Dst != dst || p.IP.TOS() != tos {
		return k.reroute()
	}
	return true
}

// natOut is nf_nat_ipv4_local_fn: DNAT at LOCAL_OUT, then a new route
// when the destination changed.
func (k *pkt) natOut(st *hookState) bool {
	dst := k.p.Dst
	if !k.natHook(netfilter.LocalOut, nat.Dst, st.in, st.out) {
		return false
	}
	if k.p.Dst != dst {
		return k.reroute()
	}
	return true
}
