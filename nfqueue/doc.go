// Package nfq is uswitch's NFQUEUE mode: the kernel keeps forwarding the
// packets of a namespace, and uswitch makes every netfilter decision
// for them. A kernel rule puts each packet in a queue; this package
// reads the queue, runs the packet through the emulated pipeline
// (datapath.Engine) and gives the kernel its verdict: ACCEPT with the
// mark uswitch's rules set and, where uswitch rewrote the packet (NAT,
// TCPMSS, TOS...), the new bytes; DROP where uswitch's rules drop it.
//
// # Which kernel rule, and why there
//
// uswitch emulates the whole IPv4 hook graph itself (raw, conntrack,
// mangle, nat, filter, security, confirm), so the kernel must not run
// another copy of it on the same packets, or NAT would be applied twice
// and conntrack would track the connection in two places. The sound
// setup is therefore: in the namespace, the kernel's only netfilter rule
// is the queue rule, uswitch's rule set is given to uswitch (a snapshot
// or --rules), and no kernel rule loads conntrack or nat (iptables'
// filter table alone does not register conntrack in a namespace:
// nf_ct_netns_get is called only by the extensions that need it). The
// queue rule goes in one of two places:
//
//   - filter/FORWARD (`iptables -A FORWARD -j NFQUEUE --queue-num N
//     [--queue-bypass]`, or --queue-balance A:B): the simplest. The
//     kernel has routed the packet already and will not route it again
//     after the verdict (nf_reinject reroutes only LOCAL_OUT packets,
//     net/netfilter/nf_queue.c nf_reroute), so uswitch decides
//     verdicts and marks, and rewrites that keep the kernel's route
//     (SNAT of a forwarded packet, TOS, TTL, MSS) are sound; a DNAT to
//     a destination behind another device is not (counted as a route
//     mismatch), and replies to a MASQUERADEd connection are addressed
//     to the router itself, so they go to INPUT, not FORWARD: use the
//     next place for NAT.
//   - raw/PREROUTING and raw/OUTPUT (`iptables -t raw -A PREROUTING -j
//     NFQUEUE ...`, priority -300, before any kernel conntrack): uswitch
//     runs the packet's whole way, NAT included, and the kernel routes
//     the packet uswitch hands back (ip_rcv_finish looks the route up
//     after the PREROUTING hook, with the new daddr and mark; OUTPUT
//     packets are rerouted by nf_reroute when daddr, saddr, tos or mark
//     changed). The kernel still does its own TTL decrement, so uswitch
//     gives back the TTL the packet arrived with. A packet SNATed to one
//     of the router's own addresses needs net.ipv4.conf.IF.accept_local=1
//     on its ingress device, or the kernel's input route calls its
//     source martian.
//
// With Options.Offload (offload_linux.go, ARCHITECTURE.md "NFQUEUE
// offload") the kernel's conntrack does run: the queue rule goes in
// mangle PREROUTING and OUTPUT, after it, behind a connmark ACCEPT rule
// Start inserts, and each accepted TCP or UDP connection is installed
// in the kernel (NAT binding, connmark) once uswitch has decided it, so
// the kernel forwards and NATs its later packets without the queue.
//
// The engine's routing table is the namespace's (captured at start),
// so both agree on routes as long as the namespace's routes do not
// change underneath.
//
// # What the verdict cannot carry
//
// Packets uswitch itself sends in reaction — REJECT's RST or ICMP
// error, ICMP time exceeded — go out through an IPPROTO_RAW socket in
// the namespace (the kernel routes them and runs its OUTPUT hook on
// them). For a packet delivered to the namespace itself the kernel
// answers on its own, so uswitch's answers are not sent then. A rule
// set that itself contains the NFQUEUE rule (rules captured from the
// namespace as they are) ends the emulated packet at that rule: uswitch
// is that queue's reader, so the packet is accepted with what the rules
// before it did; give uswitch its own rule set (--rules) instead.
//
// # Queues, batching, back pressure
//
//	kernel queue A ─ netlink socket ─ reader A ─ chan ─ worker A ─┐
//	kernel queue B ─ netlink socket ─ reader B ─ chan ─ worker B ─┼─ one Engine
//	   ...                                                        ┘
//
// One netlink socket, reader and worker per queue number; the kernel's
// --queue-balance hashes a flow to one queue (nfqueue_hash over the
// addresses), so a flow stays in order. A worker takes every packet
// waiting in its channel (up to a batch), decides them, and sends all
// their verdicts in one sendmsg: individual verdict messages for the
// packets that need one (DROP, a new mark, new bytes), then one
// NFQNL_MSG_VERDICT_BATCH accepting every other packet up to the last
// id (verdicts are applied in message order, and every earlier id has
// its verdict already). The queues are bound with NFQA_CFG_F_FAIL_OPEN:
// when uswitch falls behind and a kernel queue reaches its maximum
// length, the kernel accepts packets instead of dropping them, so a
// slow or stopped reader never stalls traffic; ENOBUFS on the socket is
// switched off (NETLINK_NO_ENOBUFS) for the same reason, and the
// socket's receive buffer is sized for a full queue (a packet whose
// netlink message the buffer cannot take is accepted by fail-open at
// once, after the kernel numbered it: the reader counts the gaps in the
// ids as overruns). Packets that
// pass by fail-open are not seen by uswitch's conntrack: a TCP flow
// whose segments went by can afterwards look out of window to it.
//
// The reader is a thin one on mdlayher/netlink: one NETLINK_NETFILTER
// socket per queue, bound with NFQNL_MSG_CONFIG, read with recvmmsg(2)
// up to 64 datagrams (packets) a syscall into per-slot buffers mapped
// once per reader, the attributes read in place; verdicts go back
// batched, built by hand into a reused buffer, one write(2) per worker
// round. With offload, a third goroutine per queue, the installer,
// writes each round's ctnetlink messages (offload_linux.go) after the
// round's verdicts, while the worker decides the next round.
//
// # Counters
//
// Server.Stats and Server.WriteMetrics (Prometheus text; `uswitch
// nfqueue` serves it on its control socket and --metrics) give per
// queue: packets read, verdicts sent, accepted and dropped, overruns
// (packets accepted by fail-open because the socket's buffer was full),
// the reader's backlog and the last batch, and the kernel's own view
// from /proc/net/netfilter/nfnetlink_queue of the namespace: the queue
// depth, the ids given out, its drops. Fail-open on a full kernel queue
// happens before a packet is numbered and no one counts it; a depth at
// the queue's maximum length is its sign.
//
// Memory ownership: the reader copies each payload out of its receive
// buffer into a buffer from the queue's free list; the worker's engine
// rewrites it in place, the verdict message carries it, and the worker
// puts it back on the free list once the verdict is sent. Nothing
// retains it after that.
package nfqueue
