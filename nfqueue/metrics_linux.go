package nfqueue

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteMetrics writes the server's counters in Prometheus' text format,
// per queue where the counter is a queue's (label queue="N"). The
// engine's own metrics (conntrack) are the caller's to add.
func (s *Server) WriteMetrics(w io.Writer) {
	st := s.Stats()
	metric := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	perQueue := func(name, typ, help string, v func(q *QueueStats) (uint64, bool)) {
		metric(name, typ, help)
		for i := range st.Queues {
			q := &st.Queues[i]
			if n, ok := v(q); ok {
				fmt.Fprintf(w, "%s{queue=\"%d\"} %d\n", name, q.Num, n)
			}
		}
	}
	always := func(f func(q *QueueStats) uint64) func(q *QueueStats) (uint64, bool) {
		return func(q *QueueStats) (uint64, bool) { return f(q), true }
	}
	perQueue("uswitch_nfqueue_packets_received_total", "counter", "Packets read from the queue and decided.",
		always(func(q *QueueStats) uint64 { return q.Packets }))
	perQueue("uswitch_nfqueue_verdicts_total", "counter", "Packets whose verdict reached the kernel (own message or batch verdict).",
		always(func(q *QueueStats) uint64 { return q.Verdicts }))
	metric("uswitch_nfqueue_packets_total", "counter", "Decided packets by verdict.")
	for _, q := range st.Queues {
		fmt.Fprintf(w, "uswitch_nfqueue_packets_total{queue=\"%d\",verdict=\"accept\"} %d\n", q.Num, q.Accepted)
		fmt.Fprintf(w, "uswitch_nfqueue_packets_total{queue=\"%d\",verdict=\"drop\"} %d\n", q.Num, q.Dropped)
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
		func(q *QueueStats) (uint64, bool) { return uint64(q.Kernel.Depth), q.HasKernel })
	metric("uswitch_nfqueue_kernel_queue_maxlen", "gauge", "The kernel queue's maximum length.")
	for _, q := range st.Queues {
		fmt.Fprintf(w, "uswitch_nfqueue_kernel_queue_maxlen{queue=\"%d\"} %d\n", q.Num, s.opts.MaxQueueLen)
	}
	perQueue("uswitch_nfqueue_kernel_packet_ids_total", "counter", "Packet ids the kernel gave out on the queue (id_sequence).",
		func(q *QueueStats) (uint64, bool) { return uint64(q.Kernel.IDSequence), q.HasKernel })
	perQueue("uswitch_nfqueue_kernel_dropped_total", "counter", "Packets the kernel dropped for a full queue or socket (queue_dropped + queue_user_dropped; 0 with fail-open).",
		func(q *QueueStats) (uint64, bool) {
			return uint64(q.Kernel.Dropped) + uint64(q.Kernel.UserDropped), q.HasKernel
		})
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
		metric(c.name, "counter", c.help)
		fmt.Fprintf(w, "%s %d\n", c.name, c.v)
	}
	metric("uswitch_drops_total", "counter", "Packets the engine dropped, by reason (table:chain:rule N, policy, route, conntrack...).")
	keys := make([]string, 0, len(st.DropsBy))
	for k := range st.DropsBy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	for _, k := range keys {
		fmt.Fprintf(w, "uswitch_drops_total{reason=\"%s\"} %d\n", esc.Replace(k), st.DropsBy[k])
	}
}
