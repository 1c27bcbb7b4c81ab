package datapath

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// The hook layout for pictures (package picture): the stage lists of
// hooks.go as plain values, so a drawing of the netfilter flow follows
// the engine and shows a stage the day it is added.

// LayoutStage is one stage of a hook's list.
type LayoutStage struct {
	// Key names the stage as path events do (PathEvent.Stage): the
	// name and priority ("raw -300", "confirm", "fault NAME -250",
	// "ebtables nat -300", "br_netfilter 0").
	Key string
	// Name is the stage's short name ("raw", "conntrack", "nat",
	// "ipvs-in", "fault", "confirm"; "ebtables nat", "br_netfilter").
	Name     string
	Priority netfilter.Priority
	// Table is the iptables (or ebtables) table whose chain the stage
	// runs ("nat" for the NAT stages), "" for none.
	Table string
	// Active: the configuration has the stage in its list (the kernel
	// would have registered it); an inactive one is a stage another
	// configuration would have (a table without rules, conntrack
	// nothing asked for).
	Active bool
	// IPVS: the stage is in the list only while IPVS has a service.
	IPVS bool
}

// Layout is every hook's stages in priority order: the IPv4 hooks
// (netfilter.Hook order) and the bridge hooks (ebtables.Hook order,
// without BROUTING), each with the stages the most complete
// configuration has (every table, conntrack, NAT, the flow cache, IPVS,
// this configuration's faults), marked Active where this configuration
// has them.
type Layout struct {
	IPv4   [netfilter.NumHooks][]LayoutStage
	Bridge [ebtables.BRouting][]LayoutStage
	// Bridges names the configuration's bridges; none: the bridge
	// level carries no traffic.
	Bridges []string
}

// key is the stage's name in layouts and path events.
func (c *compiled) stageKey(s *stage) string {
	if s.op == opFault && int(s.fault) < len(c.Faults) {
		return "fault " + c.Faults[s.fault].FaultName() + " " + strconv.Itoa(int(s.prio))
	}
	return s.String()
}

func (s stage) name() string {
	switch s.op {
	case opConfirm:
		return "confirm"
	}
	n := s.String()
	for i := len(n) - 1; i >= 0; i-- {
		if n[i] == ' ' {
			return n[:i]
		}
	}
	return n
}

func (s stage) tableName() string {
	switch s.op {
	case opTable, opMangleOut:
		return s.table.String()
	case opNAT, opNATOut:
		return "nat"
	}
	return ""
}

// Layout is the hook layout of the engine's configuration.
func (e *Engine) Layout() Layout {
	c := e.cfg.Load()
	// the most complete configuration: every table's builtin chains,
	// conntrack, NAT and the flow cache, built by the same buildHooks
	full := &compiled{Config: Config{Faults: c.Faults}, ctOn: true, natOn: true, memoOn: true}
	var any iptables.Chain
	for t := iptables.TableID(0); t < iptables.NumTables; t++ {
		m := iptables.TableHooks(t)
		for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
			if m.Has(h) {
				full.base[h][t] = &any
			}
		}
	}
	full.buildHooks()
	ipvsOn := e.LVS != nil && !e.LVS.Empty()
	var l Layout
	for h := netfilter.Hook(0); h < netfilter.NumHooks; h++ {
		var out []LayoutStage
		seen := map[string]bool{}
		for v := range 2 {
			for i := range full.hooks[v][h] {
				s := &full.hooks[v][h][i]
				k := full.stageKey(s)
				if seen[k] {
					continue
				}
				seen[k] = true
				ls := LayoutStage{Key: k, Name: s.name(), Priority: s.prio, Table: s.tableName(), IPVS: v == 1}
				if s.op == opFault {
					ls.Name = "fault " + c.Faults[s.fault].FaultName()
				}
				for j := range c.hooks[v][h] {
					if c.stageKey(&c.hooks[v][h][j]) == k {
						ls.Active = v == 0 || ipvsOn
					}
				}
				out = append(out, ls)
			}
		}
		slices.SortStableFunc(out, func(a, b LayoutStage) int { return cmp.Compare(a.Priority, b.Priority) })
		l.IPv4[h] = out
	}
	brnf := false
	for _, b := range c.Bridges {
		l.Bridges = append(l.Bridges, b.FDB.Name)
		brnf = brnf || b.CallIPTables
	}
	for h := ebtables.Hook(0); h < ebtables.BRouting; h++ {
		var out []LayoutStage
		for _, s := range ebtables.Stages {
			if s.NFHook != h || s.Table == ebtables.BRoute {
				continue
			}
			ls := LayoutStage{Key: ebtKey(s.Table, s.Priority), Name: "ebtables " + s.Table.String(), Priority: s.Priority, Table: s.Table.String()}
			ls.Active = c.ebt != nil && c.ebt.Has(s.Table, s.Chain)
			out = append(out, ls)
		}
		if p, ok := brnfPrio[h]; ok {
			out = append(out, LayoutStage{Key: brnfKey(p), Name: "br_netfilter", Priority: p, Active: brnf})
		}
		slices.SortStableFunc(out, func(a, b LayoutStage) int { return cmp.Compare(a.Priority, b.Priority) })
		l.Bridge[h] = out
	}
	return l
}

// brnfPrio are the bridge hooks where br_netfilter calls the IPv4
// hooks (br_netfilter_hooks.c br_nf_ops): br_nf_pre_routing and
// br_nf_forward at NF_BR_PRI_BRNF, br_nf_post_routing at
// NF_BR_PRI_LAST (bridge.go runs them there; br_nf_local_in only
// confirms a broadcast's connection, drawn with the bridge's INPUT).
var brnfPrio = map[ebtables.Hook]netfilter.Priority{
	ebtables.PreRouting:  netfilter.BrPriBrNF,
	ebtables.Forward:     netfilter.BrPriBrNF,
	ebtables.PostRouting: netfilter.BrPriLast,
}

func ebtKey(t ebtables.TableID, p netfilter.Priority) string {
	return "ebtables " + t.String() + " " + strconv.Itoa(int(p))
}

func brnfKey(p netfilter.Priority) string { return "br_netfilter " + strconv.Itoa(int(p)) }

// ebtStagePrio is the priority ebtables-nft registers table t's chain
// for hook h at.
func ebtStagePrio(t ebtables.TableID, h ebtables.Hook) netfilter.Priority {
	for _, s := range ebtables.Stages {
		if s.Table == t && s.Chain == h {
			return s.Priority
		}
	}
	return 0
}

// the keys of br_netfilter's stages, made once (a frame's way passes
// them as arguments whether or not anything records)
var (
	brnfKey0    = brnfKey(netfilter.BrPriBrNF)
	brnfKeyLast = brnfKey(netfilter.BrPriLast)
)
