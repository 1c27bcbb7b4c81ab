// Package datapath is uswitch's IPv4 packet pipeline: the Engine runs a
// decoded packet through the kernel's hooks in priority order (engine.go
// has the hook graph), with conntrack, NAT, the iptables tables, policy
// routing and IPVS, and reports its Fate and the packets the host sent
// in reaction (answers.go).
//
// The pieces, each in its own package:
//
//	packet     the packet model (IPv4 header, L4, metadata; an L2 header is optional)
//	rules      the iptables language: restore parser, typed IR, printer,
//	           evaluation, the compiled classifier (classify.go) and the
//	           flow cache's recording side (memo.go)
//	route      routes, addresses, ip rules; input and output lookups
//	nfq        the NFQUEUE front end; the lab package has the TUN/TAP one
//	trace      xtables-monitor --trace lines
//
// Per packet, the hot path allocates nothing: a pkt (with its traversal
// scratch) is pooled, chains are walked through the classifier, input
// routes come from a per-FIB cache, and an established flow whose
// traversal depended only on the flow replays it from the flow cache
// kept on its conntrack entry (flowcache.go). A configuration (rules,
// routes, sysctls) is immutable and swapped atomically (Engine.Swap);
// packets in flight finish on the old one.
package datapath
