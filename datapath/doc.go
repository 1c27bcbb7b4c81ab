// Package datapath is uswitch's IPv4 packet pipeline: the Engine runs a
// decoded packet through the kernel's hooks in priority order, with
// conntrack, NAT, the iptables tables, policy routing and IPVS, and
// reports its Fate and the packets the host sent in reaction
// (answers.go).
//
// The pieces, each in its own package:
//
//	netfilter  hooks, hook priorities and verdicts (the kernel's numbers)
//	packet     the packet model (IPv4 header, L4, metadata; an L2 header is optional)
//	iptables   the iptables language: restore parser, typed IR, printer,
//	           evaluation, the compiled classifier (classify.go) and the
//	           flow cache's recording side (memo.go)
//	conntrack  connection tracking; nat the NAT core; lvs IPVS
//	route      routes, addresses, ip rules; input and output lookups
//	trace      xtables-monitor --trace lines
//
// The front ends that feed the Engine live above it: nfqueue (NFQUEUE)
// and link (TUN/TAP), which the lab drives.
//
// # The hook graph
//
// Each hook is a list of stages sorted by priority (hooks.go), built
// once per configuration (Engine.Swap). The hooks are where the kernel
// calls them: ip_rcv (PREROUTING), ip_local_deliver (INPUT), ip_forward
// (FORWARD), __ip_local_out (OUTPUT) and ip_output (POSTROUTING), in
// net/ipv4/ip_input.c, ip_forward.c and ip_output.c.
//
//	received (Engine.Receive)                local (Engine.Send, the host's answers)
//	  │                                        │
//	  ▼                                        ▼
//	PREROUTING  defrag -400 †                output route (ip_route_output_key)
//	            raw -300                       │
//	            conntrack -200                 ▼
//	            flowcache -200               OUTPUT  defrag -400 †
//	            mangle -150                          raw -300
//	            nat (DNAT) -100                      conntrack -200
//	  │                                              mangle -150, reroute
//	  ▼ input route (ip_route_input_noref,           nat (DNAT) -100, reroute
//	  │ or the flow cache's on a hit)                ipvs-out -99
//	  ├──────── local ───────┐                       ipvs-in -98 *
//	  │ forward              ▼                       filter 0
//	  ▼                    reassembly †              security 150
//	TTL, MTU (DF),         INPUT  mangle -150          │
//	redirect                      filter 0             │
//	  │                           ipvs-out 98          │
//	  ▼                           ipvs-in 99 *         │
//	FORWARD  mangle -150          nat (SNAT) 100       │
//	         filter 0             security 150         │
//	         ipvs-icmp 99 *       confirm              │
//	         ipvs-out 100           │                  │
//	         security 150           ▼                  │
//	  │                           Delivered            │
//	  ▼                                                │
//	POSTROUTING  mangle -150  <────────────────────────┘
//	             nat (SNAT) 100
//	             confirm
//	  │
//	  ▼ fragmentation to the output MTU (ip_fragment) †
//	Forwarded / Sent by Fate.OutIf (Sent to lo: back in at PREROUTING)
//
//	† fragments wait (Fate Held) until their datagram is whole, and the
//	  datagram goes on in their place (defrag.go)
//	* a packet IPVS schedules goes to its real server: routed to it,
//	  rewritten or encapsulated, and re-injected at OUTPUT (ip_vs_*_xmit)
//
// The priorities are netfilter's (NF_IP_PRI_*, ip_vs_ops4's), except the
// security table's: 150, where iptables-nft puts it, not
// NF_IP_PRI_SECURITY (50). confirm is at NF_IP_PRI_CONNTRACK_CONFIRM
// (INT_MAX). A list holds a stage only when the configuration needs it:
//
//	raw, mangle, filter, security   the table has the hook's builtin chain
//	defrag, conntrack, confirm      a rule needs conntrack (nf_ct_netns_get)
//	nat                             conntrack and a nat table
//	flowcache                       conntrack and the flow cache on (Config):
//	                                the routed cache, or the bridged one
//	                                for a frame br_netfilter runs
//	ipvs-*                          the director has a service: each hook has
//	                                a second list with IPVS's stages (and no
//	                                flowcache), used while it has one
//
// # The hot path
//
// Per packet, the hot path allocates nothing: a pkt (with its traversal
// scratch) is pooled, chains are walked through the classifier, input
// routes come from a per-FIB cache, and an established flow whose
// traversal depended only on the flow replays it from the flow cache
// kept on its conntrack entry (flowcache.go); a bridged frame of one
// replays its FDB path, ebtables hits and iptables counters from a frame
// class its entry names (bridgecache.go). A drop is a DropReason
// with small values, not a string (drop.go), counted per reason by
// atomic counters (DropCounts). Interfaces travel by index where the
// reader knows it (packet.Meta.InIndex, Fate.OutIndex). A configuration (rules,
// routes, sysctls) is immutable and swapped atomically (Engine.Swap);
// packets in flight finish on the old one.
package datapath
