// Package conntrack is uswitch's connection tracker: IPv4 flows keyed by
// original and reply tuples, as net/netfilter/nf_conntrack_core.c and the
// protocol trackers nf_conntrack_proto_{tcp,udp,icmp,gre,generic}.c do it.
//
// # Per-packet use
//
// The engine calls Table.In once per packet at the conntrack hook
// (PREROUTING or OUTPUT, priority -200) and carries the returned Ref with
// the packet (the kernel's skb->_nfct): Ref.State gives the xt_conntrack /
// xt_state bits, Ref.Info the ctinfo. A packet the raw table marked
// NOTRACK carries the Untracked Ref and In is not called. At the end of
// POSTROUTING or INPUT (confirm, priority INT_MAX) the engine calls
// Table.Confirm: only then does a new entry enter the table, so a NEW
// packet dropped on the way leaves nothing behind. NAT changes the reply
// tuple of an unconfirmed entry with Conn.SetReplyTuple and marks it with
// Conn.SetStatus(StatusSrcNAT...).
//
//	packet ──► In ──► Ref{Conn, Info} ──► mangle/nat/filter ... ──► Confirm
//	            │  found by ORIGINAL tuple: NEW / RELATED / ESTABLISHED
//	            │  found by REPLY tuple:    ESTABLISHED_REPLY
//	            │  ICMP error about a flow: RELATED(_REPLY) of that flow
//	            │  not found: new unconfirmed Conn, NEW
//	            └► invalid: Ref{Conn: nil, Info: 0} (state INVALID)
//
// # Time
//
// Nothing here reads the wall clock and no timer or goroutine exists per
// connection. Every method that needs time takes now, monotonic
// nanoseconds from the engine's clock. An entry's deadline is checked when
// a lookup meets it (nf_ct_is_expired in ____nf_conntrack_find) and by
// Table.Reap, the amortised walk the engine calls periodically
// (gc_worker in nf_conntrack_core.c).
//
// # Locks
//
// Lock order, outermost first:
//
//  1. Table.reapMu (only Reap holds it).
//  2. The bucket locks: bucket i's chain is guarded by
//     Table.locks[i%1024] (CONNTRACK_LOCKS, nf_conntrack_locks). When two
//     are needed (the buckets of both tuples, on insert and delete) the
//     lower lock index is taken first and an equal one once
//     (nf_conntrack_double_lock).
//  3. Conn.mu, the per-entry lock over the protocol state (ct->lock).
//
// Lookups (find: In, Lookup, TupleTaken, the ICMP error path) take no
// lock: they walk a chain through atomic pointers, as the kernel walks it
// under RCU; insertion, deletion, early drop, Reap and Range lock.
//
// Nobody acquires a bucket lock while holding Conn.mu: the TCP tracker
// decides under Conn.mu and kills the entry after releasing it, as
// nf_conntrack_tcp_packet does. Status, mark and deadline are atomics and
// need no lock. An entry's tuples are immutable once it is confirmed;
// before that only the packet that created it touches it.
package conntrack

// # Known gaps
//
//   - SCTP (sctp.go) follows nf_conntrack_proto_sctp.c of 6.18: chunk
//     checks, the state table, vtags per direction, the HEARTBEAT
//     secondary-path entries, CRC32c at PREROUTING, per-state timeouts.
//     Not modelled: cttimeout policies, the vtags in ctnetlink messages,
//     IPVS's own SCTP state machine. The
//     CRC32c is checked unless Packet.CsumValid says a device verified it
//     (the kernel's CHECKSUM_UNNECESSARY).
//   - DCCP has no tracker here: it is tracked by the generic one, without
//     ports (the kernel tracks it with ports and states). GRE is tracked as version 0 only (keys zero; PPTP's GREv1 keys need
//     the PPTP helper). UDP-Lite's partial checksum is not verified.
//   - Helpers: FTP and TFTP only (helper.go, ftp.go, tftp.go), with
//     their expectations (expect.go) and the sequence adjustment
//     (seqadj.go); assigned only by a CT template (nf_conntrack_helper=0),
//     loose=0 and no ports= parameter; no expectation events. No
//     cttimeout policies, no accounting, no labels. Events are NEW,
//     UPDATE (reply, assured, TCP state, mark) and DESTROY; no helper,
//     seqadj or label events, no per-entry event masks (-j CT
//     --ctevents).
//   - A clash entry (nf_ct_resolve_clash_harder: in by its reply tuple
//     only, IPS_NAT_CLASH, one second) lives its second, also past its
//     first reply: the kernel stopped deleting it there in "netfilter:
//     conntrack: do not auto-delete clash entries on reply"
//     (c46172147ebb; the comment in nf_ct_resolve_clash_harder that
//     says otherwise is stale, as its maintainers noted on
//     netfilter-devel in November 2024); the kernel's UDP tracker does
//     not make it ASSURED either, as here.
//   - nf_conntrack_max is checked against confirmed entries; the kernel
//     also counts unconfirmed ones in flight on other CPUs.
//   - The TCP tracker follows 6.x nf_conntrack_proto_tcp.c without the
//     2025 "reinitialized connection" SYN annotation (IP_CT_TCP_REINIT)
//     proposal.
//   - Zones apply to both directions (no per-direction zone flags).
