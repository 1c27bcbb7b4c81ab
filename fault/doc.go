// Package fault is uswitch's fault injection: seeded, repeatable faults
// on the wires and in the hooks of the datapath, with netem's semantics
// where netem defines them.
//
// A fault (Spec, compiled by Compile into a Fault; a Set is an
// experiment's) has a name, a placement (placement.go), an optional
// iptables match (iptables.ParseMatch: the same parser and evaluator as
// the rules), a schedule and an action:
//
//	netem        netem's words and semantics (netem.go, netemparse.go,
//	             queue.go, dist.go; net/sched/sch_netem.c): duplicate ->
//	             loss (random with correlation, 4-state, Gilbert-Elliott;
//	             ecn) -> corrupt (one bit) -> limit -> reorder (the gap
//	             rule) / delay (tabledist, tfifo) with rate and slots
//	partition    groups A and B, a direction, drop or reject
//	mangle       TTL, TOS, mark, TCP sequence number (tcp_seq)
//	conntrack-full, nat-exhaust   state faults (state.go)
//	conntrack-evict, -expire, -clash, rules-swap, sysctl, fdb,
//	datapath-kill, -stall          state faults at instants or windows
//	                               (actions.go), through a Host
//	link         a wire down while active (wire:IFACE)
//
// Schedules (schedule.go): start/stop, every/for, instants, triggers
// (after_packets, conntrack:new), ramps and step lists. Bridge
// placements and ebt_match: bridge.go. The verdict path of uswitch
// nfqueue (nfqueue:verdict, nfqueue:N:verdict): package nfqueue.
//
// Decisions are repeatable by construction (prf.go): a packet's draws
// are a function of the experiment's seed, the fault's name, the
// packet's flow and its index among the flow's packets the fault saw,
// never of a shared stream, so worker count and interleaving change
// nothing. Deterministic selections (skip, every, nth, times) pick
// packets without draws.
//
//	                 ┌── Decide (per packet: match, schedule, flow state, draws) ──> Decision
//	packet ─> Fault ─┤
//	                 └── Apply (corrupt, CE, mangle in place)   Queue (time: limit, tfifo, rate, slots)
//
// Who runs them: the engine runs hook faults as stages of its hook
// lists (datapath.FaultStage, implemented by *Fault: Act); package link
// runs wire faults right after a read and before a write, and one delay
// goroutine that drains the faults' queues; package nfqueue runs
// nfqueue:[N:]verdict faults on the verdicts; link and uswitch nfqueue
// run Set.Tick on a clock for datapath-kill and -stall; `uswitch trace
// --faults` runs the same decisions offline with a capture's timestamps
// as the clock.
//
// A packet fault whose match names a protocol (and a TCP or UDP
// destination port) turns other packets away on those alone, before
// its schedule and match: a fault that matches nothing costs a packet
// a few nanoseconds (BenchmarkFaultStageNoMatch).
package fault
