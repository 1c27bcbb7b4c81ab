package nfq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uswitch-lab/uswitch/datapath"
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
	// Logf reports errors that do not stop the server.
	Logf func(format string, args ...any)

	// hold, in tests, stops the workers until it is closed.
	hold chan struct{}
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
	// DropsBy counts drops by the engine's reason (Fate.By).
	DropsBy map[string]uint64
	// PerQueue counts the packets of each queue, in Options.Queues order.
	PerQueue []uint64
}

func (s Stats) String() string {
	return fmt.Sprintf("%d packets (per queue %v): %d accepted (%d rewritten, %d re-marked), %d dropped (%d malformed); "+
		"%d verdict sendmsgs, %d batch verdicts; %d route mismatches; %d receive errors, %d send errors; %d answers sent (%d failed); drops by %v",
		s.Packets, s.PerQueue, s.Accepted, s.Rewritten, s.Remarked, s.Dropped, s.Malformed,
		s.Sendmsgs, s.BatchVerdicts, s.RouteMismatch, s.RecvErrors, s.SendErrors, s.Answers, s.AnswerErrors, s.DropsBy)
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
	wg     sync.WaitGroup
	once   sync.Once

	dmu     sync.Mutex // guards dropsBy
	dropsBy map[string]uint64

	answers, answerErrs atomic.Uint64

	pkts, acc, drop, malf, rew, remark, mism, sends, batches, rerr, serr atomic.Uint64
}

type queue struct {
	pkts atomic.Uint64
	num  uint16
	conn *netlink.Conn
	ch   chan Queued
	// free holds payload buffers the worker is done with.
	free chan []byte
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
	s := &Server{eng: eng, name: name, opts: o, start: time.Now(), cancel: cancel, raw: -1}
	fd, err := rawSocket(o.NetNS)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("nfqueue: raw socket for answers: %w", err)
	}
	s.raw = fd
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
		q := &queue{num: n, conn: c, ch: make(chan Queued, depth), free: make(chan []byte, chanDepth+maxBatch)}
		s.queues = append(s.queues, q)
		if err := setupSocket(c); err != nil {
			s.Close()
			return nil, fmt.Errorf("nfqueue: queue %d: %w", n, err)
		}
		if err := bindQueue(c, n, o.MaxQueueLen); err != nil {
			s.Close()
			return nil, fmt.Errorf("nfqueue: bind queue %d: %w", n, err)
		}
		s.wg.Add(2)
		go s.reader(ctx, q)
		go s.worker(ctx, q)
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

// reader receives the queue's packet messages into one reused buffer,
// copies each payload into a buffer of the queue's free list and hands
// it to the worker. It blocks when the worker is behind; the kernel
// queue then fills and fail-open accepts the overflow.
func (s *Server) reader(ctx context.Context, q *queue) {
	defer s.wg.Done()
	rc, err := q.conn.SyscallConn()
	if err != nil {
		s.opts.Logf("nfqueue: queue %d: %v", q.num, err)
		return
	}
	buf := make([]byte, 256<<10)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN && rerr != unix.EINTR
		})
		if err != nil || ctx.Err() != nil {
			return // closed
		}
		if rerr != nil {
			s.rerr.Add(1)
			if rerr == unix.ENOBUFS {
				continue
			}
			s.opts.Logf("nfqueue: queue %d: receive: %v", q.num, rerr)
			if rerr == unix.EBADF {
				return
			}
			continue
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			if typ == nfnlSubsysQueue<<8|nfqnlMsgPacket && l >= unix.SizeofNlMsghdr+4 {
				if it, ok := parsePacket(b[unix.SizeofNlMsghdr+4:l], q); ok {
					select {
					case q.ch <- it:
					case <-ctx.Done():
						return
					}
				}
			}
			b = b[min(nlmsgAlign(l), len(b)):]
		}
	}
}

func nlmsgAlign(n int) int { return (n + 3) &^ 3 }

// parsePacket reads the attributes of an NFQNL_MSG_PACKET
// (nfqnl_build_packet_message); the payload is copied into a buffer of
// the queue's free list (the receive buffer is reused).
func parsePacket(b []byte, q *queue) (Queued, bool) {
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
				it.ID, it.Hook, haveID = binary.BigEndian.Uint32(v), v[6], true
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
	d := &Decider{Eng: s.eng, Name: s.name, Now: s.now}
	if s.opts.hold != nil {
		select {
		case <-s.opts.hold:
		case <-ctx.Done():
			return
		}
	}
	items := make([]Queued, 0, maxBatch)
	msgs := make([]netlink.Message, 0, maxBatch+1)
	for {
		items = items[:0]
		select {
		case it := <-q.ch:
			items = append(items, it)
		case <-ctx.Done():
			return
		}
	fill:
		for len(items) < maxBatch {
			select {
			case it := <-q.ch:
				items = append(items, it)
			default:
				break fill
			}
		}
		q.pkts.Add(uint64(len(items)))
		msgs = msgs[:0]
		var last uint32
		plain := false
		for i := range items {
			it := &items[i]
			dec := d.Decide(it)
			s.count(&dec)
			s.sendAnswers(&dec.Fate)
			if !s.opts.NoBatch && dec.Batchable() {
				last, plain = it.ID, true
				continue
			}
			msgs = append(msgs, verdictMsg(q.num, it.ID, dec.Verdict, false, dec.SetMark, dec.Mark, dec.Payload))
			if s.opts.NoBatch {
				s.send(q, msgs)
				msgs = msgs[:0]
			}
		}
		if plain {
			// every id up to last is decided: the special ones by the
			// messages before this one, the rest are plain accepts
			msgs = append(msgs, verdictMsg(q.num, last, VerdictAccept, true, false, 0, nil))
			s.batches.Add(1)
		}
		if len(msgs) > 0 {
			s.send(q, msgs)
		}
		for i := range items {
			q.recycle(items[i].Payload)
			items[i] = Queued{}
		}
	}
}

func (s *Server) send(q *queue, msgs []netlink.Message) {
	s.sends.Add(1)
	if _, err := q.conn.SendMessages(msgs); err != nil {
		s.serr.Add(1)
		s.opts.Logf("nfqueue: queue %d: verdict: %v", q.num, err)
	}
}

func (s *Server) count(d *Decision) {
	s.pkts.Add(1)
	if d.Verdict == VerdictAccept {
		s.acc.Add(1)
	} else {
		s.drop.Add(1)
		if d.Fate.By != "" {
			s.dmu.Lock()
			if s.dropsBy == nil {
				s.dropsBy = map[string]uint64{}
			}
			s.dropsBy[d.Fate.By]++
			s.dmu.Unlock()
		}
	}
	if d.Malformed {
		s.malf.Add(1)
	}
	if d.Payload != nil {
		s.rew.Add(1)
	}
	if d.SetMark && d.Verdict == VerdictAccept {
		s.remark.Add(1)
	}
	if d.RouteMismatch {
		s.mism.Add(1)
	}
}

// verdictMsg builds an NFQNL_MSG_VERDICT (or _BATCH) message:
// nfgenmsg, NFQA_VERDICT_HDR, and NFQA_MARK and NFQA_PAYLOAD when set
// (net/netfilter/nfnetlink_queue.c nfqnl_recv_verdict).
func verdictMsg(queue uint16, id, verdict uint32, batch, setMark bool, mark uint32, payload []byte) netlink.Message {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[0:], verdict)
	binary.BigEndian.PutUint32(hdr[4:], id)
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(nfqaVerdictHdr, hdr[:])
	if setMark {
		var m [4]byte
		binary.BigEndian.PutUint32(m[:], mark)
		ae.Bytes(nfqaMark, m[:])
	}
	if payload != nil {
		ae.Bytes(nfqaPayload, payload)
	}
	attrs, _ := ae.Encode() // Bytes attributes cannot fail to encode
	data := make([]byte, 4, 4+len(attrs))
	data[0] = unix.AF_INET
	data[1] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(data[2:], queue)
	data = append(data, attrs...)
	typ := nfnlSubsysQueue<<8 | nfqnlMsgVerdict
	if batch {
		typ = nfnlSubsysQueue<<8 | nfqnlMsgVerdictBatch
	}
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request}, Data: data}
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

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{Packets: s.pkts.Load(), Accepted: s.acc.Load(), Dropped: s.drop.Load(), Malformed: s.malf.Load(),
		Rewritten: s.rew.Load(), Remarked: s.remark.Load(), RouteMismatch: s.mism.Load(), Sendmsgs: s.sends.Load(),
		BatchVerdicts: s.batches.Load(), RecvErrors: s.rerr.Load(), SendErrors: s.serr.Load(),
		Answers: s.answers.Load(), AnswerErrors: s.answerErrs.Load()}
	s.dmu.Lock()
	if len(s.dropsBy) > 0 {
		st.DropsBy = maps.Clone(s.dropsBy)
	}
	s.dmu.Unlock()
	for _, q := range s.queues {
		st.PerQueue = append(st.PerQueue, q.pkts.Load())
	}
	return st
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
		if s.raw >= 0 {
			unix.Close(s.raw)
		}
	})
	return nil
}

// rcvbuf is the netlink socket's receive buffer: room for a full kernel
// queue of full-size packets. A message the kernel cannot put in the
// buffer is lost (NETLINK_NO_ENOBUFS: silently) and its packet stays in
// the kernel queue until a later batch verdict accepts it unseen.
const rcvbuf = 32 << 20

// setupSocket sizes the receive buffer (SO_RCVBUFFORCE, as root, past
// net.core.rmem_max) and turns off ENOBUFS reports, so an overrun never
// stops the reader.
func setupSocket(c *netlink.Conn) error {
	if err := c.SetOption(netlink.NoENOBUFS, true); err != nil {
		return fmt.Errorf("NETLINK_NO_ENOBUFS: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf)
		if serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
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
// namespace ("" = ours), on a locked thread that is set back before it
// is released; a thread that cannot be set back stays locked and dies
// with its goroutine.
func rawSocket(name string) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	}
	if name == "" {
		return open()
	}
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		fd, err := open()
		if e := netns.Set(orig); e != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			done <- result{-1, errors.Join(err, fmt.Errorf("setns back: %w", e))}
			return // locked for good
		}
		runtime.UnlockOSThread()
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}
