package nfqueue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/uswitch-lab/uswitch/internal/netnsrun"
	"github.com/uswitch-lab/uswitch/netfilter"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
)

const (
	// maxBatch is how many packets one worker round decides and
	// answers in one sendmsg.
	maxBatch = 64
	// chanDepth is each worker's backlog; beyond it the reader waits,
	// the kernel queue fills and fail-open takes over.
	chanDepth = 1024
	// DefaultMaxQueueLen is the kernel queue length (NFQA_CFG_QUEUE_MAXLEN).
	DefaultMaxQueueLen = 4096
)

// nfqueue netlink constants (include/uapi/linux/netfilter/nfnetlink_queue.h).
const (
	nfnlSubsysQueue      = 3
	nfqnlMsgPacket       = 0
	nfqnlMsgVerdict      = 1
	nfqnlMsgConfig       = 2
	nfqnlMsgVerdictBatch = 3

	nfqaPacketHdr     = 1
	nfqaVerdictHdr    = 2
	nfqaMark          = 3
	nfqaIfindexIndev  = 5
	nfqaIfindexOutdev = 6
	nfqaPayload       = 10
	nfqaUID           = 16
	nfqaGID           = 17

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxLen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	nfqnlCfgCmdBind  = 1
	nfqnlCopyPacket  = 2
	nfqaCfgFFailOpen = 1
)

// Options configure a Server.
type Options struct {
	// Queues are the queue numbers to bind (--queue-num, or every
	// number of --queue-balance A:B).
	Queues []uint16
	// NetNS is the named namespace (/run/netns/NAME) whose queues to
	// bind; "" is uswitch's own.
	NetNS string
	// MaxQueueLen is the kernel queue length; 0 = DefaultMaxQueueLen.
	MaxQueueLen uint32
	// NoBatch sends one verdict per sendmsg and no batch verdicts (for
	// comparison).
	NoBatch bool
	// Inline has each queue's reader decide the batch it read itself
	// (run to completion: no hand-off to a worker goroutine, no payload
	// copy). By default a worker decides what the reader hands it, a
	// pipeline over two goroutines, which forwards more on a loaded
	// machine (BenchmarkNFQueueUDP64Rate vs ...RateInline).
	Inline bool
	// Logf reports errors that do not stop the server.
	Logf func(format string, args ...any)
	// Faults are the experiment's faults: the server runs those on
	// the verdict path (nfqueue:verdict, verdictfault.go); nil: none.
	Faults *fault.Set
	// Offload installs each accepted TCP or UDP connection's decision
	// in the kernel after its first packet (offload_linux.go): the
	// kernel's conntrack entry with uswitch's NAT binding and the
	// OffloadMark connmark, which a rule Start inserts before the queue
	// rule accepts. The queue rule must then be in mangle PREROUTING /
	// OUTPUT (after the kernel's conntrack), not raw.
	Offload bool
	// OffloadMark is the connmark bit of offloaded connections; 0 =
	// DefaultOffloadMark.
	OffloadMark uint32
	// NoOffloadRules: Start installs no kernel rule for the offload
	// (the caller has the connmark rule in place).
	NoOffloadRules bool

	// hold, in tests, stops the workers until it is closed (Inline is
	// ignored).
	hold chan struct{}
	// rcvbuf, in tests, replaces the socket's receive buffer size.
	rcvbuf int
}

// Stats are the server's counters.
type Stats struct {
	Packets       uint64 // packets read from the queues
	Accepted      uint64
	Dropped       uint64
	Malformed     uint64 // did not decode (dropped)
	Rewritten     uint64 // accepted with new bytes
	Remarked      uint64 // accepted with a new mark
	RouteMismatch uint64 // FORWARD: uswitch routed out another device
	Sendmsgs      uint64 // verdict sendmsg calls
	BatchVerdicts uint64 // NFQNL_MSG_VERDICT_BATCH messages
	RecvErrors    uint64
	SendErrors    uint64
	Answers       uint64 // packets uswitch generated and sent (RST, ICMP errors)
	AnswerErrors  uint64
	// Verdicts counts the packets whose verdict reached the kernel
	// (each covered by its own message or by a batch verdict).
	Verdicts uint64
	// Overruns counts the packets the kernel queued for uswitch but
	// could not put in the socket's receive buffer (gaps in the packet
	// ids): the kernel accepted them by fail-open, unseen. This is the
	// fail-open count uswitch can know: fail-open on a full kernel
	// queue (QueueStats.Kernel.Depth at the maximum length) happens
	// before the kernel numbers the packet and is counted nowhere.
	Overruns uint64
	// ENOBUFS counts receive errors ENOBUFS (socket overruns the kernel
	// reported; none while NETLINK_NO_ENOBUFS is on, as it is).
	ENOBUFS uint64
	// Reads counts the recvmmsg calls that returned messages and
	// Messages the netlink datagrams they returned (one packet each):
	// Messages/Reads is the mean read batch (at most recvBatch).
	Reads, Messages uint64
	// Drops counts the engine's drops by reason (datapath.DropKey).
	Drops map[datapath.DropKey]uint64
	// PerQueue counts the packets of each queue, in Options.Queues order.
	PerQueue []uint64
	// Queues are the per-queue counters, in Options.Queues order.
	Queues []QueueStats
}

// QueueStats are the counters of one queue.
type QueueStats struct {
	Num      uint16
	Packets  uint64 // packets read (and decided)
	Accepted uint64
	Dropped  uint64
	Verdicts uint64 // packets whose verdict was sent
	Overruns uint64 // packets accepted by fail-open unseen (id gaps)
	ENOBUFS  uint64
	Reads    uint64 // recvmmsg calls that returned messages
	Messages uint64 // netlink datagrams read
	// Backlog is the packets read and waiting for the worker now;
	// LastBatch the size of the worker's last round.
	Backlog   int
	LastBatch int
	// Kernel is the kernel's view of the queue, when it could be read.
	Kernel    KernelQueue
	HasKernel bool
}

// KernelQueue is a queue's line of /proc/net/netfilter/nfnetlink_queue
// (net/netfilter/nfnetlink_queue.c seq_show).
type KernelQueue struct {
	PortID uint32
	// Depth is the packets waiting in the kernel for a verdict
	// (queue_total); at MaxQueueLen, new packets pass by fail-open.
	Depth uint32
	// Dropped and UserDropped are the kernel's drops for a full queue
	// and a full socket (queue_dropped, queue_user_dropped); both stay
	// 0 with fail-open, which accepts those packets instead.
	Dropped, UserDropped uint32
	// IDSequence is the last packet id the kernel gave out.
	IDSequence uint32
}

func (s Stats) String() string {
	return fmt.Sprintf("%d packets (per queue %v): %d accepted (%d rewritten, %d re-marked), %d dropped (%d malformed); "+
		"%d messages in %d reads (%.1f a read); %d verdicts in %d sendmsgs, %d batch verdicts; %d overruns (fail-open); %d route mismatches; %d receive errors (%d ENOBUFS), %d send errors; %d answers sent (%d failed); drops by %v",
		s.Packets, s.PerQueue, s.Accepted, s.Rewritten, s.Remarked, s.Dropped, s.Malformed,
		s.Messages, s.Reads, s.ReadBatch(), s.Verdicts, s.Sendmsgs, s.BatchVerdicts, s.Overruns, s.RouteMismatch, s.RecvErrors, s.ENOBUFS, s.SendErrors, s.Answers, s.AnswerErrors, s.Drops)
}

// ReadBatch is the mean number of messages a read returned (0 before
// the first).
func (s Stats) ReadBatch() float64 {
	if s.Reads == 0 {
		return 0
	}
	return float64(s.Messages) / float64(s.Reads)
}

// Server reads NFQUEUE queues and answers them through an Engine.
type Server struct {
	eng   *datapath.Engine
	name  func(int) string
	opts  Options
	start time.Time

	queues []*queue
	// raw is an IPPROTO_RAW socket in the namespace for the packets
	// uswitch itself answers with (REJECT's RST or ICMP error, ICMP
	// time exceeded): a DROP verdict cannot carry them. -1 if none.
	raw    int
	cancel context.CancelFunc
	done   <-chan struct{} // closed by cancel
	wg     sync.WaitGroup
	once   sync.Once

	drops datapath.DropCounts

	answers, answerErrs atomic.Uint64

	pmu  sync.Mutex // guards pbuf and reads of procq
	pbuf []byte

	pkts, acc, drop, malf, rew, remark, mism, sends, batches, rerr, serr atomic.Uint64

	// procq is /proc/net/netfilter/nfnetlink_queue opened in the
	// namespace (nil if it could not be): the kernel's queue depths.
	procq *os.File

	// stallUntil: the readers read nothing before this time (s.now;
	// Stall, a datapath-stall fault); killed: Kill ran
	stallUntil atomic.Int64
	killed     atomic.Bool

	// vf: the verdict-path faults' queues (nil: none); set at Start
	vf *verdictFaults

	// off is the offload's state (nil: Options.Offload is off)
	off *offloadState
}

// Stall makes the readers stop reading for d ns (a datapath-stall
// fault): from their next round on, the kernel keeps queueing, up to
// queue_maxlen, then drops what comes (or accepts it with fail-open,
// as bindQueue asks: __nfqnl_enqueue_packet).
func (s *Server) Stall(d int64) error {
	s.stallUntil.Store(s.now() + d)
	return nil
}

// stalled waits while a stall lasts (checking every few milliseconds,
// so Stall(0) ends it); false: the server stopped meanwhile.
func (s *Server) stalled(ctx context.Context) bool {
	for {
		d := s.stallUntil.Load() - s.now()
		if d <= 0 {
			return !s.killed.Load()
		}
		select {
		case <-time.After(min(time.Duration(d), 20*time.Millisecond)):
		case <-ctx.Done():
			return false
		}
	}
}

// Kill stops the server as if the process died (a datapath-kill
// fault): the queues' sockets close without verdicts for what they
// hold, so the kernel drops every packet still queued (nfqnl_flush
// with NF_DROP) and later ones meet no listener (dropped, or accepted
// with --queue-bypass). From the call on no verdict leaves (not for
// the packets read and not yet answered either: a killed process sends
// none), and it returns at once (Close runs beside the packet that
// asked). A killed server does not come back: with d not 0 it says so
// (an error), killed all the same.
func (s *Server) Kill(d int64) error {
	if s.killed.CompareAndSwap(false, true) {
		go s.Close()
	}
	if d != 0 {
		return errors.New("nfqueue: killed for good: uswitch nfqueue does not come back (give no duration or window, or stall it)")
	}
	return nil
}

// Killed reports whether Kill ran.
func (s *Server) Killed() bool { return s.killed.Load() }

type queue struct {
	// counters: written by the queue's reader (overruns, enobufs,
	// lastID) or worker (the others), read by Stats
	pkts, acc, drop, verdicts, overruns, enobufs atomic.Uint64
	// reads counts the recvmmsg calls that returned datagrams, msgs
	// the datagrams (reader): msgs/reads is the mean read batch
	reads, msgs atomic.Uint64
	lastBatch   atomic.Int64
	// lastID is the last packet id the reader saw (reader only).
	lastID uint32
	num    uint16
	// idx is the queue's place in Server.queues: its decider's engine
	// worker (datapath.Engine.NewWorker)
	idx  int
	conn *netlink.Conn
	ch   chan Queued
	// free holds payload buffers the worker is done with.
	free chan []byte
	// vf are the queue's verdict faults; holds: one of them holds
	// verdicts (no batch verdicts then); set at Start
	vf    []*fault.Fault
	holds bool
	// fwrite writes the verdicts the faults held (runVerdictFaults'
	// goroutine); set at Start with the faults
	fwrite func([]byte) error
	// ctfd is the queue's ctnetlink socket for the offload (-1: none),
	// used by its installer
	ctfd int
	// inst hands rounds of installs to the installer, which gives
	// them back on ifree (offload only)
	inst, ifree chan *installJob
}

// Start binds the queues and starts their readers and workers. name
// maps an ifindex of the namespace to its name (the engine's FIB).
// Stop with Close.
func Start(eng *datapath.Engine, name func(int) string, o Options) (*Server, error) {
	if len(o.Queues) == 0 {
		return nil, errors.New("nfqueue: no queue to bind")
	}
	if o.MaxQueueLen == 0 {
		o.MaxQueueLen = DefaultMaxQueueLen
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	nsfd := 0
	if o.NetNS != "" {
		h, err := netns.GetFromName(o.NetNS)
		if err != nil {
			return nil, fmt.Errorf("nfqueue: namespace %s: %w", o.NetNS, err)
		}
		defer h.Close()
		nsfd = int(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{eng: eng, name: name, opts: o, start: time.Now(), cancel: cancel, done: ctx.Done(), raw: -1, pbuf: make([]byte, 0, 64<<10)}
	fd, err := rawSocket(o.NetNS)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("nfqueue: raw socket for answers: %w", err)
	}
	s.raw = fd
	if o.Offload {
		if err := s.startOffload(); err != nil {
			s.Close()
			return nil, err
		}
	}
	// the kernel's queue table of the namespace: a proc file's network
	// namespace is the opener's, so open it from a thread in there
	// (/proc/thread-self: /proc/self/net is the main thread's)
	if err := inNetNS(o.NetNS, func() error {
		f, err := os.Open("/proc/thread-self/net/netfilter/nfnetlink_queue")
		s.procq = f
		return err
	}); err != nil {
		o.Logf("nfqueue: no kernel queue statistics: %v", err)
	}
	for _, n := range o.Queues {
		// mdlayher/netlink opens the socket on a locked thread inside
		// the namespace (Config.NetNS) and sets the thread back; the
		// socket stays in that namespace.
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsfd})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("nfqueue: queue %d: netlink socket: %w", n, err)
		}
		depth := chanDepth
		if o.hold != nil {
			depth = 1 // tests of fail-open: the kernel queue fills first
		}
		q := &queue{num: n, idx: len(s.queues), conn: c, ch: make(chan Queued, depth), free: make(chan []byte, chanDepth+maxBatch), ctfd: -1}
		s.queues = append(s.queues, q)
		if o.Offload {
			if q.ctfd, err = ctSocket(o.NetNS); err != nil {
				s.Close()
				return nil, fmt.Errorf("nfqueue: queue %d: ctnetlink socket: %w", n, err)
			}
			q.inst, q.ifree = make(chan *installJob, installJobs), make(chan *installJob, installJobs)
			for range installJobs {
				q.ifree <- &installJob{}
			}
			s.wg.Add(1)
			go s.installer(ctx, q)
		}
		if err := setupSocket(c, o.rcvbuf); err != nil {
			s.Close()
			return nil, fmt.Errorf("nfqueue: queue %d: %w", n, err)
		}
		if err := bindQueue(c, n, o.MaxQueueLen); err != nil {
			s.Close()
			return nil, fmt.Errorf("nfqueue: bind queue %d: %w", n, err)
		}
		s.verdictFaultsOf(q, o.Faults)
		if !o.Inline || o.hold != nil {
			s.wg.Add(2)
			go s.reader(ctx, q, false)
			go s.worker(ctx, q)
		} else {
			s.wg.Add(1)
			go s.reader(ctx, q, true)
		}
	}
	if s.vf != nil && len(s.vf.queues) > 0 {
		s.wg.Add(1)
		go s.runVerdictFaults(ctx.Done())
	}
	s.wg.Add(1)
	go s.reaper(ctx)
	return s, nil
}

func (s *Server) now() int64 { return int64(time.Since(s.start)) + 1 }

// bindQueue binds the socket to queue n (NFQNL_MSG_CONFIG,
// net/netfilter/nfnetlink_queue.c nfqnl_recv_config): whole packets,
// fail-open, the queue length.
func bindQueue(c *netlink.Conn, n uint16, maxLen uint32) error {
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	steps := []struct {
		what  string
		attrs []netlink.Attribute
	}{
		{"bind", []netlink.Attribute{{Type: nfqaCfgCmd, Data: []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_INET}}}},
		{"copy mode", []netlink.Attribute{{Type: nfqaCfgParams, Data: append(be32(0xffff), nfqnlCopyPacket)}}},
		{"flags", []netlink.Attribute{{Type: nfqaCfgFlags, Data: be32(nfqaCfgFFailOpen)}, {Type: nfqaCfgMask, Data: be32(nfqaCfgFFailOpen)},
			{Type: nfqaCfgQueueMaxLen, Data: be32(maxLen)}}},
	}
	for _, st := range steps {
		attrs, err := netlink.MarshalAttributes(st.attrs)
		if err != nil {
			return err
		}
		data := binary.BigEndian.AppendUint16([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0}, n)
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgConfig),
			Flags: netlink.Request | netlink.Acknowledge}, Data: append(data, attrs...)}
		if _, err := c.Execute(m); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	return nil
}

// reader receives the queue's packet messages with recvmmsg(2), up to
// recvBatch datagrams a syscall into the queue's preallocated batch
// (rb, reused), copies each payload into a buffer of the queue's free
// list and hands it to the worker. It blocks when the worker is
// behind; the kernel queue then fills and fail-open accepts the
// overflow.
// With inline the reader decides what it read itself, in rounds of up
// to maxBatch packets whose payloads stay in the receive slots.
func (s *Server) reader(ctx context.Context, q *queue, inline bool) {
	defer s.wg.Done()
	var r *rounds
	if inline {
		r = s.newRounds(q)
	}
	rc, err := q.conn.SyscallConn()
	if err != nil {
		s.opts.Logf("nfqueue: queue %d: %v", q.num, err)
		return
	}
	rb, err := newRecvBatch(recvBatch, recvSlot)
	if err != nil {
		s.opts.Logf("nfqueue: queue %d: receive buffers: %v", q.num, err)
		return
	}
	defer rb.close()
	// MSG_DONTWAIT: recvmmsg takes what the socket holds (at least one
	// datagram) and returns at once; on an empty socket EAGAIN hands
	// the wait to the runtime's poller. One closure for every read:
	// one made per call would escape, with n and rerr.
	var n int
	var rerr error
	recv := func(fd uintptr) bool {
		n, rerr = rb.recv(fd, unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	}
	for {
		if !s.stalled(ctx) {
			return
		}
		err := rc.Read(recv)
		if err != nil || ctx.Err() != nil {
			return // closed
		}
		// what was read waits out a stall that began meanwhile: the
		// kernel holds those packets until their verdicts
		if !s.stalled(ctx) {
			return
		}
		if rerr != nil {
			s.rerr.Add(1)
			if rerr == unix.ENOBUFS {
				q.enobufs.Add(1)
				continue
			}
			s.opts.Logf("nfqueue: queue %d: receive: %v", q.num, rerr)
			if rerr == unix.EBADF {
				return
			}
			continue
		}
		q.reads.Add(1)
		q.msgs.Add(uint64(n))
		for i := range n {
			b, trunc := rb.msg(i)
			if trunc {
				// cannot happen with recvSlot bytes a slot; what is
				// left of the message is read (and fails to parse)
				s.rerr.Add(1)
				s.opts.Logf("nfqueue: queue %d: message of more than %d bytes truncated", q.num, recvSlot)
			}
			if inline {
				q.collect(b, r, s)
				continue
			}
			if !q.deliver(ctx, b) {
				return
			}
		}
		if inline && len(r.items) > 0 {
			s.round(q, r)
			r.reset()
		}
	}
}

// collect parses the packet messages of one datagram into r's items
// (payloads in place), deciding a full round at once.
func (q *queue) collect(b []byte, r *rounds, s *Server) {
	for attrs, rest, ok := nextPacket(b); ok; attrs, rest, ok = nextPacket(rest) {
		if it, ok := parsePacket(attrs, q, false); attrs != nil && ok {
			q.seen(it.ID)
			r.items = append(r.items, it)
			if len(r.items) == maxBatch {
				s.round(q, r)
				r.reset()
			}
		}
	}
}

// nextPacket walks the netlink messages of a datagram (back to back):
// the attributes of the first one if it is a packet message (nil for
// another message), the messages after it, and false at the end.
func nextPacket(b []byte) (attrs, rest []byte, ok bool) {
	if len(b) < unix.SizeofNlMsghdr {
		return nil, nil, false
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < unix.SizeofNlMsghdr || l > len(b) {
		return nil, nil, false
	}
	rest = b[min(nlmsgAlign(l), len(b)):]
	if typ := binary.NativeEndian.Uint16(b[4:]); typ == nfnlSubsysQueue<<8|nfqnlMsgPacket && l >= unix.SizeofNlMsghdr+4 {
		return b[unix.SizeofNlMsghdr+4 : l], rest, true
	}
	return nil, rest, true
}

// seen notes the reader's packet id: ids count up from 1 per queue
// instance (__nfqnl_enqueue_packet); one the kernel numbered but could
// not deliver was accepted by fail-open.
func (q *queue) seen(id uint32) {
	if id > q.lastID {
		q.overruns.Add(uint64(id - q.lastID - 1))
		q.lastID = id
	}
}

// deliver parses one received datagram (netlink messages back to back)
// and hands each packet to the worker; false when ctx ended while the
// worker was behind.
func (q *queue) deliver(ctx context.Context, b []byte) bool {
	for attrs, rest, ok := nextPacket(b); ok; attrs, rest, ok = nextPacket(rest) {
		if it, ok := parsePacket(attrs, q, true); attrs != nil && ok {
			q.seen(it.ID)
			select {
			case q.ch <- it:
			case <-ctx.Done():
				return false
			}
		}
	}
	return true
}

const (
	// recvBatch is how many datagrams (each one NFQNL_MSG_PACKET,
	// nfqnl_enqueue_packet unicasts one skb per packet) one recvmmsg
	// reads at most.
	recvBatch = 64
	// recvSlot is the room for one datagram: a payload of up to the
	// copy range bindQueue asks for (0xffff) and the attributes before
	// it (nfqnl_build_packet_message: headers, marks, devices,
	// timestamp, hardware address, cap_len, skb_info; under 512
	// bytes). A batch is recvBatch*recvSlot bytes (4.25 MiB) of
	// anonymous memory (newRecvBatch): only the pages the kernel
	// writes become resident, the first of each slot for small packets.
	recvSlot = 0xffff + 4<<10 + 1
)

// mmsghdr is struct mmsghdr (include/linux/socket.h): a msghdr and the
// length recvmmsg received into it (Go pads it to the kernel's size).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// recvBatchState is a reader's recvmmsg state, allocated once: a slot
// of buf and its iovec for each message header. Owned by the reader;
// the slots are overwritten by the next recv, so what is kept of a
// message is copied out first (parsePacket).
type recvBatchState struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	// buf is mmap'd, not from the Go heap: a make of this size is
	// zeroed, and so made resident, whole; fresh anonymous pages are
	// faulted in only where the kernel writes. Unmapped by close.
	buf  []byte
	slot int
}

// newRecvBatch maps n slots of slot bytes.
func newRecvBatch(n, slot int) (*recvBatchState, error) {
	buf, err := unix.Mmap(-1, 0, n*slot, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	rb := &recvBatchState{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), buf: buf, slot: slot}
	for i := range rb.hdrs {
		rb.iovs[i].Base = &rb.buf[i*slot]
		rb.iovs[i].SetLen(slot)
		rb.hdrs[i].hdr.Iov = &rb.iovs[i]
		rb.hdrs[i].hdr.SetIovlen(1)
	}
	return rb, nil
}

// close unmaps the slots; rb is not used again.
func (rb *recvBatchState) close() {
	unix.Munmap(rb.buf)
	rb.buf = nil
}

// recv is one recvmmsg(2) (net/socket.c do_recvmmsg) into every slot:
// the count of datagrams received, or the error when there was none.
// An error after the first datagram is kept by the kernel for the next
// call (sk_err).
func (rb *recvBatchState) recv(fd uintptr, flags int) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&rb.hdrs[0])), uintptr(len(rb.hdrs)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// msg is the i-th datagram of the last recv and whether the kernel
// truncated it (MSG_TRUNC: it was longer than a slot).
func (rb *recvBatchState) msg(i int) ([]byte, bool) {
	h := &rb.hdrs[i]
	return rb.buf[i*rb.slot : i*rb.slot+min(int(h.n), rb.slot)], h.hdr.Flags&unix.MSG_TRUNC != 0
}

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

// parsePacket reads the attributes of an NFQNL_MSG_PACKET
// (nfqnl_build_packet_message); the payload is copied into a buffer of
// the queue's free list (the receive buffer is reused).
func parsePacket(b []byte, q *queue, copyPayload bool) (Queued, bool) {
	var it Queued
	var payload []byte
	haveID := false
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) & 0x3fff
		if l < 4 || l > len(b) {
			break
		}
		v := b[4:l]
		switch typ {
		case nfqaPacketHdr:
			if len(v) >= 7 {
				it.ID, it.Hook, haveID = binary.BigEndian.Uint32(v), netfilter.Hook(v[6]), true
			}
		case nfqaMark:
			if len(v) >= 4 {
				it.Mark = binary.BigEndian.Uint32(v)
			}
		case nfqaIfindexIndev:
			if len(v) >= 4 {
				it.InDev = binary.BigEndian.Uint32(v)
			}
		case nfqaIfindexOutdev:
			if len(v) >= 4 {
				it.OutDev = binary.BigEndian.Uint32(v)
			}
		case nfqaUID:
			if len(v) >= 4 {
				it.UID, it.HasUID = binary.BigEndian.Uint32(v), true
			}
		case nfqaGID:
			if len(v) >= 4 {
				it.GID = binary.BigEndian.Uint32(v)
			}
		case nfqaPayload:
			payload = v
		}
		b = b[min(nlmsgAlign(l), len(b)):]
	}
	if !haveID || payload == nil {
		return it, false
	}
	if !copyPayload {
		it.Payload = payload
		return it, true
	}
	var dst []byte
	select {
	case dst = <-q.free:
	default:
	}
	if cap(dst) < len(payload) {
		dst = make([]byte, max(len(payload), pktBuf))
	}
	it.Payload = append(dst[:0], payload...)
	return it, true
}

// pktBuf is the size of a pooled payload buffer (an MTU-sized packet).
const pktBuf = 2048

// recycle gives a payload buffer back to the queue's free list.
// writer returns a function writing a buffer of netlink messages to
// the queue's socket in one write(2) (netlink_sendmsg: one skb, its
// messages handled in order by nfnetlink_rcv), through the runtime's
// raw connection (the descriptor stays valid while it runs). It is
// made once per deciding goroutine: it allocates nothing a call.
func (q *queue) writer() func([]byte) error {
	rc, err := q.conn.SyscallConn()
	if err != nil {
		return func([]byte) error { return err }
	}
	var buf []byte
	var werr error
	w := func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), buf)
		return werr != unix.EAGAIN
	}
	return func(b []byte) error {
		buf = b
		err := rc.Write(w)
		buf = nil
		if err != nil {
			return err
		}
		return werr
	}
}

func (q *queue) recycle(b []byte) {
	if cap(b) != pktBuf {
		return
	}
	select {
	case q.free <- b:
	default:
	}
}

func (s *Server) worker(ctx context.Context, q *queue) {
	defer s.wg.Done()
	if s.opts.hold != nil {
		select {
		case <-s.opts.hold:
		case <-ctx.Done():
			return
		}
	}
	r := s.newRounds(q)
	for {
		select {
		case it := <-q.ch:
			r.items = append(r.items, it)
		case <-ctx.Done():
			return
		}
	fill:
		for len(r.items) < maxBatch {
			select {
			case it := <-q.ch:
				r.items = append(r.items, it)
			default:
				break fill
			}
		}
		s.round(q, r)
		for i := range r.items {
			q.recycle(r.items[i].Payload)
		}
		r.reset()
	}
}

// rounds is the state of a goroutine that decides packets in rounds.
type rounds struct {
	d     *Decider
	vc    verdictCtx
	items []Queued
	// out is the round's verdict messages, back to back (reused)
	out []byte
	// write writes a buffer to the queue's socket (made once: a
	// closure per write would be allocated)
	write func([]byte) error
	// the offload's: the round's first packets to install
	cands []flowReq
}

// newRounds makes the round state of q's deciding goroutine, with its
// own engine worker.
func (s *Server) newRounds(q *queue) *rounds {
	r := &rounds{d: &Decider{Eng: s.eng, W: s.eng.NewWorker(q.idx), Name: s.name, Now: s.now, Offload: s.off != nil},
		items: make([]Queued, 0, maxBatch), out: make([]byte, 0, 64<<10)}
	r.write = q.writer()
	if s.off != nil {
		r.cands = make([]flowReq, 0, maxBatch)
	}
	return r
}

// reset empties r.items.
func (r *rounds) reset() {
	clear(r.items)
	r.items = r.items[:0]
}

// round decides r's items and sends their verdicts, one sendmsg for the
// round (one a packet with NoBatch); the caller then empties r.items.
func (s *Server) round(q *queue, r *rounds) {
	items := r.items
	q.pkts.Add(uint64(len(items)))
	q.lastBatch.Store(int64(len(items)))
	r.out = r.out[:0]
	var last uint32
	plain := false
	for i := range items {
		it := &items[i]
		dec := r.d.Decide(it)
		if q.vf != nil && dec.Verdict == netfilter.Accept && s.verdictFault(q, &r.vc, it, &dec) {
			// a fault holds the verdict: it leaves later
			s.count(q, &dec)
			continue
		}
		s.count(q, &dec)
		s.sendAnswers(&dec.Fate)
		if dec.Offload && dec.Verdict == netfilter.Accept {
			r.cands = append(r.cands, dec.Flow)
		}
		if !s.opts.NoBatch && !q.holds && dec.Batchable() {
			last, plain = it.ID, true
			continue
		}
		r.out = appendVerdict(r.out, q.num, it.ID, dec.Verdict, false, dec.SetMark, dec.Mark, dec.Payload)
		if s.opts.NoBatch {
			s.send(q, r.write, r.out, 1)
			r.out = r.out[:0]
		}
	}
	if plain {
		// every id up to last is decided: the special ones by the
		// messages before this one, the rest are plain accepts
		r.out = appendVerdict(r.out, q.num, last, netfilter.Accept, true, false, 0, nil)
		s.batches.Add(1)
	}
	if len(r.out) > 0 {
		// one sendmsg for the round: it carries every verdict
		s.send(q, r.write, r.out, len(items))
	}
	if s.off != nil {
		// after the verdicts: the kernel has confirmed the packets'
		// entries (nf_reinject runs their way to the confirm hook in
		// the sendmsg)
		s.offloadRound(q, r)
	}
}

// send writes b with write (netlink messages back to back: one write,
// one skb, whose messages nfnetlink_rcv handles in order); they give
// the verdicts of n packets.
func (s *Server) send(q *queue, write func([]byte) error, b []byte, n int) {
	if s.killed.Load() {
		return // a killed process answers nothing
	}
	s.sends.Add(1)
	if err := write(b); err != nil {
		s.serr.Add(1)
		s.opts.Logf("nfqueue: queue %d: verdict: %v", q.num, err)
		return
	}
	q.verdicts.Add(uint64(n))
}

func (s *Server) count(q *queue, d *Decision) {
	s.pkts.Add(1)
	if d.Verdict == netfilter.Accept {
		s.acc.Add(1)
		q.acc.Add(1)
	} else {
		s.drop.Add(1)
		q.drop.Add(1)
		s.drops.Add(&d.Fate)
	}
	if d.Malformed {
		s.malf.Add(1)
	}
	if d.Payload != nil {
		s.rew.Add(1)
	}
	if d.SetMark && d.Verdict == netfilter.Accept {
		s.remark.Add(1)
	}
	if d.RouteMismatch {
		s.mism.Add(1)
	}
}

// appendVerdict appends an NFQNL_MSG_VERDICT (or _BATCH) message to b:
// nlmsghdr, nfgenmsg, NFQA_VERDICT_HDR, and NFQA_MARK and NFQA_PAYLOAD
// when set (net/netfilter/nfnetlink_queue.c nfqnl_recv_verdict). The
// sequence number and port id stay 0: the kernel answers nothing
// without NLM_F_ACK.
func appendVerdict(b []byte, queue uint16, id uint32, verdict netfilter.Verdict, batch, setMark bool, mark uint32, payload []byte) []byte {
	start := len(b)
	typ := uint16(nfnlSubsysQueue<<8 | nfqnlMsgVerdict)
	if batch {
		typ = nfnlSubsysQueue<<8 | nfqnlMsgVerdictBatch
	}
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set below
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint64(b, 0) // seq, portid
	b = append(b, unix.AF_INET, unix.NFNETLINK_V0)
	b = binary.BigEndian.AppendUint16(b, queue)
	b = appendAttrHdr(b, nfqaVerdictHdr, 8)
	b = binary.BigEndian.AppendUint32(b, uint32(verdict))
	b = binary.BigEndian.AppendUint32(b, id)
	if setMark {
		b = appendAttrHdr(b, nfqaMark, 4)
		b = binary.BigEndian.AppendUint32(b, mark)
	}
	if payload != nil {
		b = appendAttrHdr(b, nfqaPayload, len(payload))
		b = append(b, payload...)
		for (len(b)-start)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// appendAttrHdr appends a netlink attribute header for n bytes of value.
func appendAttrHdr(b []byte, typ uint16, n int) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+n))
	return binary.NativeEndian.AppendUint16(b, typ)
}

func (s *Server) reaper(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.eng.CT.Reap(s.now(), 16384)
		}
	}
}

// Packets is the number of packets read from the queues (Stats'
// Packets, without Stats' reading of the kernel's queue table).
func (s *Server) Packets() uint64 { return s.pkts.Load() }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{Packets: s.pkts.Load(), Accepted: s.acc.Load(), Dropped: s.drop.Load(), Malformed: s.malf.Load(),
		Rewritten: s.rew.Load(), Remarked: s.remark.Load(), RouteMismatch: s.mism.Load(), Sendmsgs: s.sends.Load(),
		BatchVerdicts: s.batches.Load(), RecvErrors: s.rerr.Load(), SendErrors: s.serr.Load(),
		Answers: s.answers.Load(), AnswerErrors: s.answerErrs.Load()}
	st.Drops = s.drops.Snapshot()
	kq := s.kernelQueues()
	for _, q := range s.queues {
		qs := QueueStats{Num: q.num, Packets: q.pkts.Load(), Accepted: q.acc.Load(), Dropped: q.drop.Load(),
			Verdicts: q.verdicts.Load(), Overruns: q.overruns.Load(), ENOBUFS: q.enobufs.Load(),
			Reads: q.reads.Load(), Messages: q.msgs.Load(),
			Backlog: len(q.ch), LastBatch: int(q.lastBatch.Load())}
		qs.Kernel, qs.HasKernel = kq[q.num]
		st.PerQueue = append(st.PerQueue, qs.Packets)
		st.Queues = append(st.Queues, qs)
		st.Verdicts += qs.Verdicts
		st.Overruns += qs.Overruns
		st.ENOBUFS += qs.ENOBUFS
		st.Reads += qs.Reads
		st.Messages += qs.Messages
	}
	return st
}

// kernelQueues reads the kernel's queue table of the namespace, by
// queue number (nil when it cannot be read).
func (s *Server) kernelQueues() map[uint16]KernelQueue {
	if s.procq == nil {
		return nil
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	// a seq_file read from offset 0 runs seq_show again: fresh numbers
	buf := s.pbuf[:cap(s.pbuf)]
	n, err := s.procq.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return nil
	}
	return parseProcQueues(buf[:n])
}

// parseProcQueues parses /proc/net/netfilter/nfnetlink_queue: per line
// queue_num peer_portid queue_total copy_mode copy_range queue_dropped
// queue_user_dropped id_sequence 1.
func parseProcQueues(b []byte) map[uint16]KernelQueue {
	m := map[uint16]KernelQueue{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		var v [8]uint64
		ok := true
		for i := range v {
			var err error
			if v[i], err = strconv.ParseUint(f[i], 10, 32); err != nil {
				ok = false
			}
		}
		if !ok || v[0] > 65535 {
			continue
		}
		m[uint16(v[0])] = KernelQueue{PortID: uint32(v[1]), Depth: uint32(v[2]), Dropped: uint32(v[5]),
			UserDropped: uint32(v[6]), IDSequence: uint32(v[7])}
	}
	return m
}

// Close unbinds the queues and stops. Packets still in a kernel queue
// get no verdict from uswitch: the kernel drops them when the socket
// goes (instance_destroy flushes with NF_DROP); afterwards the queue
// rule drops new packets unless it has --queue-bypass. Close is
// idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		for _, q := range s.queues {
			q.conn.Close() // unbinds: the kernel destroys the queue instance
		}
		s.wg.Wait()
		for _, q := range s.queues {
			if q.ctfd >= 0 {
				unix.Close(q.ctfd)
			}
		}
		s.stopOffload()
		if s.raw >= 0 {
			unix.Close(s.raw)
		}
		if s.procq != nil {
			s.pmu.Lock()
			s.procq.Close()
			s.procq = nil
			s.pmu.Unlock()
		}
	})
	return nil
}

// rcvbuf is the netlink socket's receive buffer: room for a full kernel
// queue of full-size packets. A packet whose message the kernel cannot
// put in the buffer is accepted by fail-open at once (NETLINK_NO_ENOBUFS:
// silently; __nfqnl_enqueue_packet), after it got its id: the reader
// counts the missing ids as overruns.
const rcvbuf = 32 << 20

// setupSocket sizes the receive buffer (SO_RCVBUFFORCE, as root, past
// net.core.rmem_max; size 0 = rcvbuf) and turns off ENOBUFS reports,
// so an overrun never stops the reader.
func setupSocket(c *netlink.Conn, size int) error {
	if size == 0 {
		size = rcvbuf
	}
	if err := c.SetOption(netlink.NoENOBUFS, true); err != nil {
		return fmt.Errorf("NETLINK_NO_ENOBUFS: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("receive buffer: %w", err)
	}
	return nil
}

// sendAnswers sends the packets the engine generated in reaction to a
// packet it did not deliver locally. For a packet delivered to the
// namespace itself the kernel answers (echo reply, RST, port
// unreachable) on its own, so uswitch's copies are not sent. The
// kernel routes what the raw socket sends and runs its OUTPUT hook on
// it (a queue rule there sees it again).
func (s *Server) sendAnswers(f *datapath.Fate) {
	if f.Kind == datapath.Delivered {
		return
	}
	for _, a := range f.Answers {
		if a.Fate.Kind != datapath.Sent || a.Pkt == nil {
			continue
		}
		var dst unix.SockaddrInet4
		binary.BigEndian.PutUint32(dst.Addr[:], a.Pkt.Dst)
		if err := unix.Sendto(s.raw, a.Pkt.IP, 0, &dst); err != nil {
			s.answerErrs.Add(1)
			continue
		}
		s.answers.Add(1)
	}
}

// rawSocket opens an IPPROTO_RAW socket (IP_HDRINCL) in the named
// namespace ("" = ours).
func rawSocket(name string) (int, error) {
	fd := -1
	err := inNetNS(name, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	if err != nil && fd >= 0 {
		unix.Close(fd)
		fd = -1
	}
	return fd, err
}

// inNetNS runs fn in the named namespace ("" = ours, on the calling
// goroutine), on a locked thread that is set back before it is
// released; a thread that cannot be set back stays locked and dies with
// its goroutine. What fn opens (sockets, proc files) belongs to the
// namespace.
func inNetNS(name string, fn func() error) error { return netnsrun.InNamed(name, fn) }

// Now is the server's engine clock (monotonic nanoseconds), for
// whoever reads the engine's conntrack table alongside the server.
func (s *Server) Now() int64 { return s.now() }
