package iptables

import (
	"fmt"
	"strings"

	"github.com/uswitch-lab/uswitch/netfilter"
)

// TableID names one of the five IPv4 xtables tables.
type TableID uint8

// The tables, in the order iptables-nft 1.8.9's iptables-save prints them
// (its enum nft_table_type: mangle, security, raw, filter, nat).
const (
	Mangle TableID = iota
	Security
	Raw
	Filter
	Nat
	NumTables
)

var tableNames = [NumTables]string{"mangle", "security", "raw", "filter", "nat"}

func (t TableID) String() string {
	if t < NumTables {
		return tableNames[t]
	}
	return fmt.Sprintf("table(%d)", uint8(t))
}

// ParseTable maps a table name to its ID.
func ParseTable(name string) (TableID, bool) {
	for i, n := range tableNames {
		if n == name {
			return TableID(i), true
		}
	}
	return 0, false
}

// tableHooks lists the builtin chains of each table in hook order
// (iptables/nft.c xtables_ipv4).
var tableHooks = [NumTables]netfilter.HookMask{
	Mangle:   netfilter.Hooks(netfilter.PreRouting, netfilter.LocalIn, netfilter.Forward, netfilter.LocalOut, netfilter.PostRouting),
	Security: netfilter.Hooks(netfilter.LocalIn, netfilter.Forward, netfilter.LocalOut),
	Raw:      netfilter.Hooks(netfilter.PreRouting, netfilter.LocalOut),
	Filter:   netfilter.Hooks(netfilter.LocalIn, netfilter.Forward, netfilter.LocalOut),
	Nat:      netfilter.Hooks(netfilter.PreRouting, netfilter.LocalIn, netfilter.LocalOut, netfilter.PostRouting),
}

// TableHooks returns the hooks a table has builtin chains for.
func TableHooks(t TableID) netfilter.HookMask { return tableHooks[t] }

// Verdict is a standard (built-in) target's verdict as the rule set
// spells it (the IR of -j ACCEPT, -j CHAIN, -g CHAIN...), not a hook's
// netfilter.Verdict: jumps and RETURN are part of it.
type Verdict uint8

const (
	VerdictNone   Verdict = iota // no target: fall through to the next rule
	VerdictAccept                // ACCEPT
	VerdictDrop                  // DROP
	VerdictReturn                // RETURN
	VerdictQueue                 // QUEUE (queue 0)
	VerdictJump                  // -j CHAIN
	VerdictGoto                  // -g CHAIN
)

var verdictNames = [...]string{"", "ACCEPT", "DROP", "RETURN", "QUEUE", "JUMP", "GOTO"}

func (v Verdict) String() string { return verdictNames[v] }

// Counters are packet and byte counters.
type Counters struct {
	Packets, Bytes uint64
}

// hitCounter counts, while a rule set runs, the packets and bytes
// (skb->len: the IP packet) that matched a rule or met a base chain's
// policy (netfilter.HitCounter: one atomic add a hit). It is allocated
// when the rule or chain is made, so counting allocates nothing. A rule
// or builtin chain a --noflush restore (or a restore that does not name
// its table) carries over shares its counter with the old set, as the
// kernel keeps the counters of rules a restore leaves alone; a flushed
// table's rules start again from zero (or from the input's [pkts:bytes]
// with -c).
type hitCounter = netfilter.HitCounter

// loadHits is base plus what h counted (base alone for nil).
func loadHits(h *hitCounter, base Counters) Counters {
	p, b := h.Load()
	base.Packets += p
	base.Bytes += b
	return base
}

// Ruleset is a whole IPv4 xtables configuration: up to five tables.
// A Ruleset is immutable once returned by a Loader; a change builds a new
// one.
type Ruleset struct {
	Tables [NumTables]*Table // nil when the table does not exist

	// counters are the rules' and builtin chains' counters by id - 1
	// (the flow cache's replay); memoReady says they are numbered
	counters  []*hitCounter
	memoReady bool
}

// Table is one xtables table.
type Table struct {
	ID TableID
	// Chains holds the builtin chains in hook order, then the user
	// chains sorted by name (the order iptables-save prints them).
	Chains []*Chain
	byName map[string]*Chain
}

// Chain looks a chain up by name.
func (t *Table) Chain(name string) *Chain { return t.byName[name] }

// Builtin returns the builtin chain of hook h, or nil.
func (t *Table) Builtin(h netfilter.Hook) *Chain {
	if !tableHooks[t.ID].Has(h) {
		return nil
	}
	return t.byName[h.String()]
}

// Chain is a builtin or user-defined chain.
type Chain struct {
	Name    string
	Builtin bool
	Hook    netfilter.Hook // valid when Builtin
	Policy  Verdict        // VerdictAccept or VerdictDrop for builtin chains
	// Counters are the policy counters of a builtin chain.
	Counters Counters
	Rules    []*Rule
	// hits counts the packets that met the policy (builtin chains).
	hits *hitCounter
	// Reach is the set of hooks from which the chain can be reached
	// (computed at commit, as x_tables' mark_source_chains does).
	Reach netfilter.HookMask
	// refs counts rules jumping here (for -X).
	refs int
	// made: a builtin chain the kernel has. iptables-nft 1.8.9 makes a
	// builtin chain only when something names it (a chain line, -P,
	// -A, -I, -R, -F), and -X deletes one that is empty with policy
	// ACCEPT; iptables-save shows every builtin chain either way.
	made bool
	// cachePolicy is the policy of iptables-nft's cached copy of a made
	// builtin chain while a batch is built (nft_may_delete_chain reads
	// it, -Z sets it again): the kernel's when the batch began, ACCEPT
	// for a chain the batch made. A -P or chain line goes into the
	// batch, not into this copy.
	cachePolicy Verdict
	// index is the compiled classifier (nil: walk linearly); built by
	// Ruleset.Compile once the chain is final.
	index *chainIndex
	// hitID numbers hits for the flow cache (0: none)
	hitID uint32
	// vstate is validate's mark (on the path, visited)
	vstate uint8
}

// Iface is an interface selector (-i/-o) with its wildcard precomputed.
type Iface struct {
	Name     string // as given, including a trailing '+'
	Prefix   string // Name without the '+'
	Wildcard bool   // trailing '+': prefix match
}

// Match reports whether the interface name matches.
func (f *Iface) Match(name string) bool {
	if f.Wildcard {
		return strings.HasPrefix(name, f.Prefix)
	}
	return name == f.Name
}

// Inversion bits of IPHeader (IPT_INV_* in linux/netfilter_ipv4/ip_tables.h).
const (
	InvIn    = 0x01
	InvOut   = 0x02
	InvTOS   = 0x04
	InvSrc   = 0x08
	InvDst   = 0x10
	InvFrag  = 0x20
	InvProto = 0x40
)

// IPHeader is the rule's fixed part: struct ipt_ip.
type IPHeader struct {
	Src, SrcMask uint32 // host byte order
	Dst, DstMask uint32
	In, Out      Iface // empty Name = any
	Proto        uint8 // 0 = any
	Frag         bool  // -f: non-first fragments only
	Inv          uint8 // Inv* bits
}

// Rule is one compiled rule.
type Rule struct {
	Counters Counters
	IP       IPHeader
	// Matches in the order given; Save prints comment matches last, as
	// iptables-nft stores them as rule userdata.
	Matches []Match
	// Verdict is the standard verdict; VerdictJump/VerdictGoto use Jump.
	Verdict Verdict
	Jump    *Chain
	// Target is the extension target (Verdict is VerdictNone then).
	Target Target
	// Line is the input line the rule came from.
	Line int

	hits     *hitCounter
	jumpName string // chain named by -j/-g, bound to Jump at commit
	fresh    bool   // added by the input being loaded (a message of its batch)
	op       byte   // the command that added the rule (A, I, R)
	// hitID numbers hits for the flow cache (0: none); firstImpure is
	// the first match whose result can differ between the packets of a
	// flow (len(Matches): none; -1: the fixed part, -f); firstImpureL2
	// the same for a bridged flow's recording (Memo.L2)
	hitID         uint32
	firstImpure   int16
	firstImpureL2 int16
	// The lean walk's view of the rule (Ruleset.Compile; lean.go):
	// prepared says evals and plainIP are set; evals are the Matches
	// without those that match every packet (comment); plainIP is
	// that the fixed part tests no interface and no fragment bit, so
	// its address and protocol tests are all of it. leanAll says the
	// rule is plainIP and every one of its evals has a typed test in
	// lean, in the same order (lean.go: leanTestOf). anyIP is that the
	// rule is plainIP and its fixed part matches every packet (no
	// address, no protocol: nothing to test).
	prepared bool
	plainIP  bool
	anyIP    bool
	leanAll  bool
	evals    []Match
	lean     []leanTest
}

// LiveCounters are the rule's counters now: those it was loaded with
// (-c) plus the packets and bytes that matched it since.
func (r *Rule) LiveCounters() Counters { return loadHits(r.hits, r.Counters) }

// LiveCounters are a builtin chain's policy counters now: those it was
// loaded with plus the packets that met the policy since.
func (c *Chain) LiveCounters() Counters { return loadHits(c.hits, c.Counters) }
