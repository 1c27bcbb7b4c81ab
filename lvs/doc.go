// Package lvs is uswitch's IP Virtual Server: virtual services, real
// servers and their schedulers, the IPVS connection table, the hook
// functions the datapath calls, and the ipvsadm language.
//
// It follows net/netfilter/ipvs of the Linux kernel (ip_vs_core.c,
// ip_vs_conn.c, ip_vs_ctl.c, ip_vs_xmit.c, ip_vs_sched.c):
//
//	Director           netns_ipvs: services (copy-on-write index published
//	                   atomically), sysctls (net.ipv4.vs.*), --set timeouts
//	├─ Service         ip_vs_service: <proto, VIP, port> or fwmark; scheduler,
//	│  └─ Dest         persistence (timeout, netmask), one-packet; real servers
//	│                  with weight, thresholds, forwarding method, tunnel type
//	├─ ConnTable       ip_vs_conn_tab: connections by client side, by real
//	│                  server side, persistence templates; expiry moved by
//	│                  every packet, reaped on the caller's clock
//	└─ Scheduler       rr wrr lc wlc sed nq lblc lblcr dh sh mh fo ovf twos
//
// The datapath (datapath/ipvs.go) calls In at LOCAL_IN 99 and LOCAL_OUT
// -98 (ip_vs_in: schedule or find the connection), Out at LOCAL_IN 98,
// FORWARD 100 and LOCAL_OUT -99 (ip_vs_out: VS/NAT replies get the VIP
// back), ForwardICMP at FORWARD 99, and transmits what In returns: DNAT
// for masquerading, nothing for direct routing (the next hop becomes the
// real server), Encap for tunnelling (IPIP, GUE, GRE), then the packet
// re-enters at LOCAL_OUT. Decap is the real server's side of a tunnel,
// which the lab plays for namespaces (this kernel has no ipip module).
//
// Order: a service's real servers are kept in the kernel's
// svc->destinations order, newest first (-a, also out of the dest trash,
// adds at the head; -e keeps the place), which is what the schedulers
// walk (rr's first pick is the dest added last) and what ipvsadm -L
// --nosort shows. The sorted listings and -S sort that list as ipvsadm
// does (glibc's merge sort with the signed address compare).
//
// Protocol state: TCP follows ip_vs_proto_tcp.c's tcp_states tables
// (INPUT, OUTPUT, INPUT-ONLY for DR/TUN), with the active/inactive counts
// of the dest moved as the kernel moves them (SYN_SENT, SYN_RECV, SYNACK
// and ESTABLISHED are active: tcp_state_active), a SYN on a TIME_WAIT or
// CLOSE connection no template controls scheduled afresh
// (conn_reuse_mode); UDP has one state and the
// UDP timeout. SCTP follows ip_vs_proto_sctp.c (sctp.go): scheduled by
// an INIT first chunk (any but ABORT with vs.sloppy_sctp), the first
// chunk's event (a COOKIE ECHO/ACK followed by an ABORT is the ABORT)
// through sctp_states' three directions, the kernel's state names
// (INIT1, C-SENT, ..., REJECTED, CLOSED) and fixed per-state timeouts,
// an INIT on a CLOSED connection scheduled afresh (conn_reuse_mode), the
// CRC32c recomputed when VS/NAT changes a port, and the packets the
// kernel drops (no chunk header without a connection; shorter than the
// common header on a VS/NAT connection). A persistence template becomes
// ASSURED when a connection it controls reaches ESTABLISHED (TCP and
// SCTP, ip_vs_control_assure_ct). With vs.nat_icmp_send, a VS/NAT real
// server's packet that belongs to no connection is dropped and answered
// with ICMP port unreachable (not a TCP RST or an SCTP ABORT).
//
// Known differences from the kernel:
//   - IPVS never verifies SCTP's CRC32c (sctp_csum_check runs only for
//     application helpers, of which SCTP has none): a wrong one passes,
//     and comes out right when the port is rewritten.
//   - No application helpers (FTP), no persistence engines (sip is
//     accepted and ignored), no sync daemon, no cache bypass
//     (sysctl_cache_bypass), no defragmentation (fragments other than the
//     first are not IPVS's).
//   - The MTU checks of __ip_vs_get_out_rt (ICMP fragmentation needed) and
//     the ICMP errors about tunnelled packets (IPIP inside the quote) are
//     not done.
//   - Direct routing needs an L2 link to change only the MAC; over a TUN
//     the packet is sent unchanged to the real server's device.
//   - The connection table's hash order (what ipvsadm -Lnc lists first)
//     and the service table's (ipvsadm -L --nosort) are not the kernel's.
package lvs
