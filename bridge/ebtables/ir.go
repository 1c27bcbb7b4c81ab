package ebtables

import (
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// Hook is a bridge netfilter hook, numbered as NF_BR_*
// (include/uapi/linux/netfilter_bridge.h).
type Hook uint8

// The bridge hooks.
const (
	PreRouting  Hook = iota // NF_BR_PRE_ROUTING: frames arriving on a port
	LocalIn                 // NF_BR_LOCAL_IN: frames passed up to the host
	Forward                 // NF_BR_FORWARD: frames bridged port to port
	LocalOut                // NF_BR_LOCAL_OUT: frames the host sends through the bridge
	PostRouting             // NF_BR_POST_ROUTING: every frame leaving a port
	BRouting                // NF_BR_BROUTING: the broute table's pseudo-hook (runs on PRE_ROUTING)
	NumHooks
)

var hookChain = [NumHooks]string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "BROUTING"}

// String is the name of the builtin chain at the hook.
func (h Hook) String() string {
	if h < NumHooks {
		return hookChain[h]
	}
	return "HOOK?"
}

// TableID names one of the three ebtables tables.
type TableID uint8

// The tables, in the order ebtables-save prints them.
const (
	Filter TableID = iota
	NAT
	BRoute
	NumTables
)

var tableNames = [NumTables]string{"filter", "nat", "broute"}

func (t TableID) String() string {
	if t < NumTables {
		return tableNames[t]
	}
	return "table?"
}

// ParseTable maps a table name to its ID.
func ParseTable(s string) (TableID, bool) {
	for i, n := range tableNames {
		if n == s {
			return TableID(i), true
		}
	}
	return 0, false
}

// Hooks lists a table's builtin chains in the order ebtables-save prints
// them (ebtable_filter.c, ebtable_nat.c, ebtable_broute.c).
func (t TableID) Hooks() []Hook {
	switch t {
	case Filter:
		return []Hook{LocalIn, Forward, LocalOut}
	case NAT:
		return []Hook{PreRouting, LocalOut, PostRouting}
	case BRoute:
		return []Hook{BRouting}
	}
	return nil
}

// Stage is one place a table runs: the bridge hook the datapath calls it
// from (BRouting runs on PreRouting), its builtin chain, and its
// priority among the hook's callbacks.
type Stage struct {
	Table    TableID
	Chain    Hook               // the builtin chain (BRouting for broute)
	NFHook   Hook               // the netfilter hook it is registered on
	Priority netfilter.Priority // lower runs first
}

// Stages are the tables' base chains as ebtables-nft 1.8.9 registers
// them (iptables/nft.c, xtables_bridge[]): filter at
// NF_BR_PRI_FILTER_BRIDGED (-200) on INPUT, FORWARD *and* OUTPUT (legacy
// ebtable_filter.c put OUTPUT at NF_BR_PRI_FILTER_OTHER, 200: with nft,
// filter OUTPUT runs before nat OUTPUT), nat PREROUTING -300, OUTPUT 100,
// POSTROUTING 300. broute is ebtable_broute.c's: NF_BR_PRE_ROUTING at
// NF_BR_PRI_FIRST (ebtables-nft 1.8.9 has no broute table; 1.8.10
// emulates it at the same place).
var Stages = []Stage{
	{BRoute, BRouting, PreRouting, netfilter.BrPriFirst},
	{NAT, PreRouting, PreRouting, netfilter.BrPriNATDstBridged},
	{Filter, LocalIn, LocalIn, netfilter.BrPriFilterBridged},
	{Filter, Forward, Forward, netfilter.BrPriFilterBridged},
	{Filter, LocalOut, LocalOut, netfilter.BrPriFilterBridged},
	{NAT, LocalOut, LocalOut, netfilter.BrPriNATDstOther},
	{NAT, PostRouting, PostRouting, netfilter.BrPriNATSrc},
}

// Verdict is an ebtables standard target (include/uapi/linux/
// netfilter_bridge/ebtables.h: EBT_ACCEPT -1, EBT_DROP -2, EBT_CONTINUE
// -3, EBT_RETURN -4); Jump means a user chain.
type Verdict int8

// The standard verdicts.
const (
	VJump     Verdict = 0
	VAccept   Verdict = -1
	VDrop     Verdict = -2
	VContinue Verdict = -3
	VReturn   Verdict = -4
)

var verdictNames = map[Verdict]string{VAccept: "ACCEPT", VDrop: "DROP", VContinue: "CONTINUE", VReturn: "RETURN"}

func (v Verdict) String() string {
	if s, ok := verdictNames[v]; ok {
		return s
	}
	return "JUMP"
}

func parseVerdict(s string) (Verdict, bool) {
	for v, n := range verdictNames {
		if n == s {
			return v, true
		}
	}
	return 0, false
}

// Ruleset is what a restore loaded: up to three tables. Once returned
// by Load it is immutable (only the rule counters move), so it can be
// compiled and swapped in whole.
type Ruleset struct {
	Tables [NumTables]*Table
}

// Table holds its builtin chains in hook order, then user chains in the
// order they were made.
type Table struct {
	ID     TableID
	Chains []*Chain
}

// Chain looks a chain up by name.
func (t *Table) Chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Chain is a builtin or user chain.
type Chain struct {
	Name    string
	Builtin bool
	Hook    Hook    // builtin chains only
	Policy  Verdict // ACCEPT or DROP; RETURN also for user chains
	Rules   []*Rule
	// Made says a builtin chain exists in the kernel: nf_tables makes
	// a base chain when a restore names it, a rule goes to it or its
	// policy is set, and -X removes an empty ACCEPT one (the command
	// line tells the two apart: -D N, -X CHAIN).
	Made bool
	// gone: a base chain -X deleted; until made again, -F, -Z and -X
	// of it fail ("No chain"), where one never made passes
	gone bool
	// cachePolicy is the policy of ebtables-restore's cached copy of a
	// made builtin chain while a restore builds its batch (-X deletes
	// the chain only when it is ACCEPT, -Z sets it again): the kernel's
	// when the restore began, ACCEPT for a chain the restore made. A -P
	// or chain line goes into the batch, not into this copy.
	cachePolicy Verdict
}

// MACMatch is -s or -d: the frame's address masked equals Addr.
type MACMatch struct {
	Set, Inv   bool
	Addr, Mask packet.MAC
}

// IfMatch is -i, -o, --logical-in or --logical-out: a name, with a
// trailing '+' matching every name that starts with the rest.
type IfMatch struct {
	Set, Inv bool
	Name     string // without the '+'
	Wild     bool
}

// Rule is one ebtables rule: the fixed part of struct ebt_entry, its
// matches and watchers, and its target.
type Rule struct {
	// Proto is -p: Length (802.3 frames, EBT_802_3) or an ethertype.
	ProtoSet, ProtoInv, Length bool
	Proto                      uint16
	Src, Dst                   MACMatch
	In, Out                    IfMatch
	LogicalIn, LogicalOut      IfMatch
	Matches                    []Match
	Watchers                   []Watcher
	// Verdict is the standard target; VJump with Jump naming a user
	// chain; Target, when set, is an extension target and Verdict is
	// unused.
	Verdict Verdict
	Jump    string
	Target  Target

	// Hits are the rule's counters: set from -c at load, counted by
	// the evaluator (one atomic add a frame).
	Hits netfilter.HitCounter

	// saveOrder is the matches and watchers in the order their first
	// option came, which is how ebtables-nft prints them back.
	saveOrder []interface{ save(*strings.Builder) }
}

// Counts returns the rule's packet and byte counters.
func (r *Rule) Counts() (pkts, bytes uint64) { return r.Hits.Load() }

// Packets returns the rule's packet counter.
func (r *Rule) Packets() uint64 {
	p, _ := r.Hits.Load()
	return p
}
