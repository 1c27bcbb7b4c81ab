package nfqueue

// (_linux: Server is Linux's alone, as NFQUEUE is.)

import (
	"io"
	"strconv"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/internal/prom"
)

// WriteMetrics writes the server's counters in Prometheus' text format,
// per queue where the counter is a queue's (label queue="N"), and the
// engine's drops by reason. The engine's conntrack metrics are the
// caller's to add (control.WriteConntrack).
func (s *Server) WriteMetrics(w io.Writer) error {
	m := prom.New(w)
	st := s.Stats()
	perQueue := func(name, typ, help string, v func(q *QueueStats) (uint64, bool)) {
		m.Family(name, typ, help)
		for i := range st.Queues {
			q := &st.Queues[i]
			if n, ok := v(q); ok {
				m.Sample(name, n, "queue", strconv.Itoa(int(q.Num)))
			}
		}
	}
	always := func(f func(q *QueueStats) uint64) func(q *QueueStats) (uint64, bool) {
		return func(q *QueueStats) (uint64, bool) { return f(q), true }
	}
	kernel := func(f func(q *QueueStats) uint64) func(q *QueueStats) (uint64, bool) {
		return func(q *QueueStats) (uint64, bool) { return f(q), q.HasKernel }
	}
	perQueue("uswitch_nfqueue_packets_received_total", "counter", "Packets read from the queue and decided.",
		always(func(q *QueueStats) uint64 { return q.Packets }))
	perQueue("uswitch_nfqueue_verdicts_total", "counter", "Packets whose verdict reached the kernel (own message or batch verdict).",
		always(func(q *QueueStats) uint64 { return q.Verdicts }))
	const verdicts = "uswitch_nfqueue_packets_total"
	m.Family(verdicts, "counter", "Decided packets by verdict.")
	for _, q := range st.Queues {
		n := strconv.Itoa(int(q.Num))
		m.Sample(verdicts, q.Accepted, "queue", n, "verdict", "accept")
		m.Sample(verdicts, q.Dropped, "queue", n, "verdict", "drop")
	}
	perQueue("uswitch_nfqueue_failopen_total", "counter", "Packets the kernel queued but could not deliver to uswitch's socket (netlink overrun; gaps in the packet ids), accepted by fail-open unseen. Fail-open on a full kernel queue is counted by no one: see uswitch_nfqueue_kernel_queue_depth.",
		always(func(q *QueueStats) uint64 { return q.Overruns }))
	perQueue("uswitch_nfqueue_enobufs_total", "counter", "ENOBUFS receive errors (socket overruns the kernel reported).",
		always(func(q *QueueStats) uint64 { return q.ENOBUFS }))
	perQueue("uswitch_nfqueue_reads_total", "counter", "recvmmsg calls on the queue socket that returned messages (the mean read batch is messages/reads).",
		always(func(q *QueueStats) uint64 { return q.Reads }))
	perQueue("uswitch_nfqueue_messages_received_total", "counter", "Netlink datagrams read from the queue socket (one queued packet each).",
		always(func(q *QueueStats) uint64 { return q.Messages }))
	perQueue("uswitch_nfqueue_backlog", "gauge", "Packets read from the socket and waiting for the worker.",
		always(func(q *QueueStats) uint64 { return uint64(q.Backlog) }))
	perQueue("uswitch_nfqueue_last_batch", "gauge", "Packets in the worker's last round (one verdict sendmsg).",
		always(func(q *QueueStats) uint64 { return uint64(q.LastBatch) }))
	perQueue("uswitch_nfqueue_kernel_queue_depth", "gauge", "Packets waiting in the kernel queue for a verdict (queue_total); at the maximum length new packets pass by fail-open.",
		kernel(func(q *QueueStats) uint64 { return uint64(q.Kernel.Depth) }))
	perQueue("uswitch_nfqueue_kernel_queue_maxlen", "gauge", "The kernel queue's maximum length.",
		always(func(*QueueStats) uint64 { return uint64(s.opts.MaxQueueLen) }))
	perQueue("uswitch_nfqueue_kernel_packet_ids_total", "counter", "Packet ids the kernel gave out on the queue (id_sequence).",
		kernel(func(q *QueueStats) uint64 { return uint64(q.Kernel.IDSequence) }))
	perQueue("uswitch_nfqueue_kernel_dropped_total", "counter", "Packets the kernel dropped for a full queue or socket (queue_dropped + queue_user_dropped; 0 with fail-open).",
		kernel(func(q *QueueStats) uint64 { return uint64(q.Kernel.Dropped) + uint64(q.Kernel.UserDropped) }))
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"uswitch_nfqueue_malformed_total", "Queued packets that did not decode (dropped).", st.Malformed},
		{"uswitch_nfqueue_rewritten_total", "Packets accepted with new bytes (NAT, mangle).", st.Rewritten},
		{"uswitch_nfqueue_remarked_total", "Packets accepted with a new mark.", st.Remarked},
		{"uswitch_nfqueue_route_mismatch_total", "FORWARD packets uswitch routed out another device than the kernel.", st.RouteMismatch},
		{"uswitch_nfqueue_verdict_sendmsgs_total", "Verdict sendmsg calls.", st.Sendmsgs},
		{"uswitch_nfqueue_batch_verdicts_total", "NFQNL_MSG_VERDICT_BATCH messages sent.", st.BatchVerdicts},
		{"uswitch_nfqueue_receive_errors_total", "Receive errors on the queue sockets.", st.RecvErrors},
		{"uswitch_nfqueue_send_errors_total", "Verdict sendmsg errors.", st.SendErrors},
		{"uswitch_answers_sent_total", "Packets uswitch generated (REJECT, ICMP errors) and sent through its raw socket.", st.Answers},
		{"uswitch_answer_errors_total", "Generated packets the raw socket did not take.", st.AnswerErrors},
	} {
		m.Counter(c.name, c.help, c.v)
	}
	if s.off != nil {
		os := s.OffloadStats()
		m.Counter("uswitch_nfqueue_offloaded_flows_total", "Connections installed in the kernel's conntrack with the offload connmark (their later packets pass the kernel without the queue).", os.Offloaded)
		const q = "uswitch_nfqueue_queued_flows_total"
		m.Family(q, "counter", "Connections kept queued with offload on, by reason (a per-packet rule of the rule set, a rule that would drop or change the flow's replies or later packets, a verdict fault, the kernel refusing the entry).")
		for _, r := range reasons(os.Queued) {
			m.Sample(q, os.Queued[r], "reason", r)
		}
	}
	datapath.WriteDropMetrics(m, st.Drops)
	return m.Err()
}
