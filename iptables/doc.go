// Package iptables is the iptables language and its evaluation: it reads
// rule sets as iptables-nft 1.8.9's iptables-restore does, refuses what
// that refuses with the same message, line and exit status, prints them
// back as its iptables-save does, and runs packets through a table's
// chains as the kernel's traversal does.
//
// It knows the five IPv4 tables and nothing else: no ip6tables,
// arptables or ebtables, no native nft syntax. Rules decide; others act.
// The datapath package's Engine runs the tables at their hooks in
// priority order, sends what Ctx.Reject asks for and queues on TQueue;
// package conntrack tracks the connections rules read through Ctx.CT;
// package nat makes the bindings NAT targets request in Ctx.NAT;
// package route answers the Env's route-type and reverse-path questions.
//
// # Pipeline
//
//	iptables-restore text
//	   │ Loader.Load: restore.go (lines), netfilter.SplitWords and parse.go
//	   │ (commands), xtopt.go and addr.go (values), ext.go (registry)
//	   ▼
//	Table, Chain, Rule with Match and Target values (ir.go)
//	   │ COMMIT: jumps, loops, Reach, extension checks ──► RestoreError
//	   ▼
//	Ruleset ──► Save, RuleString: iptables-save text (save.go)
//	   │ Compile: chain indexes (classify.go); counters numbered (memo.go)
//	   ▼
//	Table.Run(Ctx, Tracer), per packet and hook (eval.go)
//	   └─► TVerdict, target requests in Ctx, trace events, Memo
//
// Loader.Load reads iptables-restore input (iptables/xtables-restore.c):
// *table, :chain, COMMIT and iptables commands (-A -I -D -R -C -N -X -F
// -Z -P -E). A single iptables command is such a line, applied to
// Loader.Base with Loader.NoFlush. Lines are read as its fgets does,
// within its fixed buffers: at most 10239 bytes (the rest of a longer
// line is the next line), ending at a NUL; words of 1024 bytes or more
// ("Parameter too long!") and more than 251 words ("Parser cannot
// handle more arguments") are refused. Lines are split as
// add_param_to_argv (iptables/xshared.c) does (netfilter.SplitWords) and parsed as do_parse does
// with getopt_long (parse.go): abbreviations, "!" words, the options of
// extensions loaded by -m and -j, the implicit match of -p tcp. Values
// go through libxtables' parsers (xtopt.go, addr.go, after
// libxtables/xtoptions.c and xtables.c) with their exact messages; host
// names are never resolved. Ruleset.Save (iptables/xtables-save.c) and
// RuleString print a set as iptables-nft prints it back from nftables.
//
// The result is typed: a Ruleset holds up to NumTables Tables; a Table
// holds its builtin chains in hook order, then its user chains by name;
// a Chain has its Policy, Rules and Reach; a Rule has the fixed part
// (IPHeader, struct ipt_ip), Matches, and either a standard Verdict
// (with Jump for -j and -g) or a Target. Strings are parsed at load,
// never per packet.
//
// # Commit checks
//
// At each COMMIT the table is checked as the kernel checks the batch:
// jumps are bound; loops and nesting deeper than nft_chain_validate
// allows (net/netfilter/nf_tables_api.c) among the chains a base chain
// reaches are refused on the first line that makes the table invalid,
// with every later rule of the batch (loops nothing reaches commit, as
// in the kernel); each chain's
// Reach, the hooks it can be reached from (mark_source_chains in
// net/ipv4/netfilter/ip_tables.c), goes to the extensions' checks:
// HookChecker (tables and hooks, as xt_check_match and xt_check_target
// in net/netfilter/x_tables.c), EntryChecker (checkentry with the hook
// mask net/netfilter/nft_compat.c gives it) and ProtoChecker. A refusal
// is a RestoreError of one ErrorKind whose Stderr and ExitCode are those
// of iptables-restore, on the line iptables-nft blames: the rule, or the
// later jump that made it reachable from a forbidden hook. Nothing is
// applied until every table has committed: Load returns a new Ruleset or
// an error, never half of one.
//
// The batch is built as iptables-nft 1.8.9 builds it against its cache
// of the kernel's table: a command the cache refuses (a missing chain or
// rule, a bad index) fails at COMMIT with its own line, the first such
// failure winning; what the kernel refuses when the batch commits
// (CHAIN_DEL of a busy chain, CHAIN_RENAME of a chain the same batch
// made) is reported there too, one line per message. A builtin chain is
// made only when something names it (a chain line, -P, -A, -I, -R, -F;
// Chain.made), and -X deletes one that is empty with ACCEPT in the
// cache, so a policy the same batch set goes with it; -E renames when
// the batch commits, the later commands still naming the old chain.
// Loader.Test is --test: commands are parsed
// but iptables-nft never runs them nor commits the batch, so only what
// reading and parsing refuse is reported.
//
// # Evaluation
//
// Table.Run is ipt_do_table (net/ipv4/netfilter/ip_tables.c) and
// nft_do_chain (net/netfilter/nf_tables_core.c) for one packet at one
// hook. A rule's IPHeader is tested first (ip_packet_match), then its
// matches in order (Evaluator); a rule that matches counts the packet,
// then its verdict applies or its Target runs (Executor, returning a
// TVerdict). -j pushes the position on the jump stack (Scratch), -g
// does not; RETURN or a user chain's end pops; the base chain's end
// applies its policy:
//
//	INPUT ── rule ── rule ─────────── rule ── policy
//	           │ -j A (push)     ▲ pop: RETURN or end of A
//	           ▼                 │
//	         A ── rule ── rule ──┘
//	                       │ -g B (no push): B's end returns to INPUT
//
// Ctx carries the packet, its conntrack Ref, the Env and the State in,
// and the requests of targets out (NAT, Reject, QueueNum, Notrack). A
// Tracer gets the events nft_trace_packet emits (Rule, Return, Policy),
// which the datapath prints as xtables-monitor --trace lines. The
// per-packet path builds no strings and allocates nothing.
//
// # Classifier
//
// Ruleset.Compile (Loader calls it) indexes every chain of at least 16
// rules (classify.go) by what rules test before anything with side
// effects can run: destination and source prefix, protocol, input
// interface, and tcp or udp ports when no stateful match comes first. A
// rule testing a field in a way the index does not model (inverted, a
// non-prefix mask, an iface+ wildcard) is a wildcard of that field. A
// packet's candidates are the rules its value admits in the field with
// the fewest; they are evaluated in full and in order. A rule that
// matches is a candidate of every field, and a skipped rule would have
// failed before any stateful match, so the first match, side effects
// and counters are those of the linear walk. Ctx.Linear (the datapath's
// Config.Linear) keeps that walk as the reference.
//
// # Flow cache
//
// With Ctx.Memo set, a traversal records the counters it adds to
// (memo.go) and is Tainted as soon as it evaluates a match that can
// answer differently for the flow's next packet (decided from what ran,
// not from what the chain holds), fires a target other than a standard
// verdict, queues, or adds to more than MaxMemoHits counters. The
// datapath's flow cache keeps untainted recordings on the connection
// and replays them with Ruleset.Replay; Ruleset.Memoizable says a
// Loader numbered the counters.
//
// # Extensions
//
// Each extension is a typed value in a match_*.go or target_*.go file
// (related ones share a file) that pairs the parser, ->save and checks
// of iptables' extensions/libxt_NAME.c with the evaluator of the
// kernel's net/netfilter/xt_NAME.c (libipt_*.c and ipt_*.c for some
// IPv4-only ones; each file names its sources). To add one, implement
// Match (Parse, Final, Save, Eval, Name) or Target (Exec in place of
// Eval), declare its long options as Option values, register it from init with
// RegisterMatch or RegisterTarget (ext.go), report bad values with
// Errorf, and implement HookChecker, EntryChecker or ProtoChecker where
// the kernel restricts it (Errno for a refusal other than EINVAL). A
// match that keeps state or answers per packet must also be known as
// such to the classifier (classify.go) and the flow cache (memo.go).
//
// # Concurrency
//
// A Ruleset is immutable once a Loader returns it; a change builds a new
// one, and the datapath swaps it in atomically while packets in flight
// finish on the old one. Counters are atomic; a rule a restore leaves
// alone (--noflush, or a table it does not name) keeps its counter.
// State a match keeps per rule (limit's bucket, statistic's count,
// connlimit's lists) has its own lock; what the kernel keys by name per
// namespace (recent lists, hashlimit tables) lives in a State, which the
// engine keeps across swaps. A Scratch serves one Run at a time.
//
// # Tests
//
// TestCorpusStable loads every dump in ../shared/corpus/iptables-save
// (beside the module) to a printed fixed point or a located error. As
// root, with iptables-nft in a throw-away namespace (internal/kerneltest),
// TestCorpusKernelRoundTrip and TestGeneratedKernelRoundTrip require the
// kernel's iptables-save output or a refusal on its line, and
// TestRestoreErrorsAgainstKernel its stderr and exit status. TestPeerT
// and TestPeerTKernel run iptables' own extensions/*.t lines from
// ../shared/corpus/iptables-t (known failures in testdata).
// TestClassifierMatchesLinear compares the classifier with the linear
// walk on random rule sets; FuzzLoad wants whatever loads to print to a
// form that loads back the same; the NoAllocs tests keep the per-packet
// path free of allocations.
package iptables
