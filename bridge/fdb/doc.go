// Package fdb is the learning bridge's state and its forwarding decision:
// the forwarding database (FDB) of one Linux bridge device, its ports and
// their flags, learning, lookup, flooding, hairpin and ageing, as
// net/bridge does them (br_input.c, br_fdb.c, br_forward.c, br_if.c,
// br_stp_if.c), and the FDB as `bridge fdb show` prints it (iproute2
// 6.1, bridge/fdb.c).
//
// # Per-frame use
//
// The kernel's receive path on a bridge port, and where each step is here:
//
//	frame on port p
//	  │ br_handle_frame: source multicast or zero ──────────────► drop (Input)
//	  │ dst 01:80:c2:00:00:0X (link local), not in group_fwd_mask:
//	  │   :01 pause ──────────────────────────────────────────────► drop
//	  │   others: learn, stay on the port's own stack ───────────► Pass
//	  ▼
//	bridge PRE_ROUTING hooks (ebtables nat, br_netfilter + IPv4 PREROUTING)
//	  │                                        (the datapath runs these)
//	  ▼ br_handle_frame_finish
//	Learn(p, src, now)     br_fdb_update, if p has learning on
//	Decide(p, dst, now)    broadcast ─► flood (bcast_flood ports) + Up
//	                       multicast ─► flood (mcast_flood ports) + Up
//	                       unicast, FDB hit, local entry ─► Up only
//	                       unicast, FDB hit ─► that port (should_deliver)
//	                       unicast, miss ─► flood (flood ports)
//
// Input does all of it without hooks in between. A datapath with bridge
// hooks calls Learn after the PRE_ROUTING list (learning after filtering,
// "to avoid spoofing") and Decide after Learn, and runs FORWARD and
// POST_ROUTING per output port of the Decision (cloning the frame when it
// leaves by more than one way: Decision.Copies).
//
// Frames the bridge device itself sends (the host's traffic out of br0,
// br_dev_xmit) take Output: broadcast and multicast to every port,
// a known destination to its port, unknown unicast to the flood ports.
//
// Multicast is flooded as the kernel does without a multicast querier on
// the link (br_multicast_querier_exists false: no MDB forwarding, a copy
// up); IGMP/MLD snooping, VLAN filtering, STP (every port is
// FORWARDING, stp_state 0), locked ports, proxy ARP, neighbour suppression
// and switchdev offload are not modelled.
//
// # Time
//
// Nothing reads the wall clock: every call that needs time takes now,
// monotonic nanoseconds from the caller's clock (jiffies in the kernel).
// Ageing is Bridge.Expire, br_fdb_cleanup's walk, which the caller runs
// when Expire says the next entry is due (no timer per entry).
//
// # Locks and memory
//
// The FDB is a hash table whose lookups take no lock (the kernel's
// rhashtable under RCU): an open-addressed array of atomic pointers that
// writers change under one mutex and replace whole when it fills up. The
// per-entry state that a frame changes (the port an address moved to,
// updated, used) is atomic, so learning an address already known and
// forwarding to it take no lock and allocate nothing, as the kernel's
// fast path under RCU writes with WRITE_ONCE. Creating or deleting an
// entry takes the mutex. The port list and the
// bridge's own address are fixed when the Bridge is built (New); port
// flags and the ageing time are atomic and may change at any time.
//
// A Decision is a value (its port set a fixed bitmap of BR_MAX_PORTS
// bits): the caller owns it; it refers to no frame memory.
package fdb
