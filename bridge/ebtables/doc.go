// Package ebtables is the ebtables language and its evaluation: it reads
// rule sets as ebtables-nft 1.8.9's ebtables-restore does (all or
// nothing, with its messages and exit statuses), prints them back as its
// ebtables-save does, parses single "-A CHAIN <rule>" commands with the
// same rule parser, and runs Ethernet frames through a table's chains as
// the kernel's ebt_do_table does (net/bridge/netfilter/ebtables.c).
//
// # Pipeline
//
//	ebtables-restore text
//	   │ Loader.Load (restore.go): lines and words as xtables-restore
//	   │ cuts them (netfilter.NextRestoreLine, SplitWords); *table,
//	   │ :CHAIN POLICY, COMMIT; each command line parsed as the ebtables
//	   │ command parses its arguments (ParseCommandLine, cmdline.go, with
//	   │ ruleParser in parse.go and every extension's options always
//	   │ known: ext.go registry)
//	   ▼
//	Ruleset, Table, Chain, Rule with Match, Watcher, Target (ir.go)
//	   │ Save / RuleString (save.go): ebtables-save text
//	   ▼
//	Compile ─► Program (eval.go): immutable, swapped by the caller
//	   │
//	   ▼
//	Program.Run(table, hook, *Ctx) ─► netfilter.Verdict, and in Ctx the
//	   targets' effects: rewritten MACs, Mark, PktType, an ARP reply to
//	   send, log/nflog requests, broute's Route decision
//
// # Tables, hooks, priorities
//
// filter has INPUT, FORWARD, OUTPUT; nat PREROUTING, OUTPUT,
// POSTROUTING; broute BROUTING (ebtable_broute.c: PRE_ROUTING at
// NF_BR_PRI_FIRST, DROP meaning "route it"). Stages lists where each
// base chain runs with the priorities ebtables-nft registers (filter
// OUTPUT at -200, before nat OUTPUT at 100, unlike legacy ebtables).
// ebtables-nft 1.8.9 has no broute table: Loader.Broute enables it.
//
// # Evaluation
//
// A rule is tested by its fixed part (ebt_basic_match: -p, -i, -o,
// --logical-in/out, -s, -d with masks), then its matches (ip, ip6, arp,
// vlan, mark_m, pkttype, limit, among, stp, 802_3); a matching rule is
// counted, its watchers (log, nflog) record a request for the caller,
// and its target decides: ACCEPT, DROP, CONTINUE, RETURN, a user chain,
// or an extension target (mark, dnat, snat, redirect, arpreply) that
// acts on the frame and returns its --X-target verdict. Where
// ebtables-nft's nft translation and legacy ebt_do_table differ, this
// follows ebtables-nft, which is what runs on a current host: RETURN in
// a base chain ends it with its policy; among with MAC=IP entries looks
// only at IPv4 frames (the set key is "ether addr . ip addr");
// --ip6-proto needs a valid IPv6 header chain ending in a transport
// header; the byte counter leaves out the VLAN tag. The kernel tests
// bridge frames through the real ebtables in a namespace and compare
// every rule counter (TestEvalKernel, TestEvalKernelNAT,
// TestEvalKernelRandom) and the frames that leave (TestEvalKernelFrames).
// Frame contents never cause a panic: short headers do not match. Run
// allocates nothing; Ctx is the caller's, reusable.
//
// # Classifier
//
// Compile indexes every chain of 16 rules or more (classify.go): per
// block of 1,024 rules, each field the fixed part or a match before any
// --limit tests (source and destination MAC under their masks, -p,
// -i/-o and the logical ports with name+ prefixes, --ip-src/--ip-dst,
// --arp-ip-src/--arp-ip-dst, --vlan-id, an exact --mark, --pkttype-type)
// files the rules by the value they require, the others as wildcards.
// A frame's candidates are the intersection of the rule sets its values
// select in every field, a bitset; they are evaluated in full and in
// order, so first match, counters, watchers and targets are the walk's.
// The candidates are worked out again from the frame as it is when a
// chain is entered or returned to and after an extension target that
// continues (mark, dnat, snat, redirect change what the index reads).
// Ctx.Linear (the datapath's Config.Linear) keeps the rule-by-rule walk,
// which TestClassifierMatchesLinear and FuzzClassifier compare it with;
// TestEbtablesForwardClassifier and BenchmarkEbtablesForward1000 measure
// a 1,000-rule FORWARD chain both ways.
//
// # Quirks of ebtables-nft 1.8.9 kept on purpose
//
// Inversions print after the option ("--ip-src ! 10.0.0.1"; the v1.8.11
// .t files expect "! --ip-src"); of three or more matches and watchers
// in one rule only the first and the last are kept; "-p 0x0600" prints
// as "Length"; a bare -F inside a restore changes nothing; user chains
// are listed sorted by name; --logical-in/--logical-out load only where
// the kernel has CONFIG_NFT_BRIDGE_META (Loader.NoBridgeMeta says it
// does not, as on the test machine).
package ebtables
