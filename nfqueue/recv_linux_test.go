package nfqueue

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/uswitch-lab/uswitch/netfilter"
	"golang.org/x/sys/unix"
)

// dgramPair is a connected pair of non-blocking datagram sockets, a
// stand-in for the kernel end of a queue socket: what is written to
// the first is read from the second, one datagram a message.
func dgramPair(t testing.TB) (w, r int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	// room for a few batches of small datagrams
	unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
	unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return fds[0], fds[1]
}

func newTestRecvBatch(t testing.TB, n, slot int) *recvBatchState {
	t.Helper()
	rb, err := newRecvBatch(n, slot)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rb.close)
	return rb
}

// TestRecvBatch: one recv returns every waiting datagram up to the
// batch size, each in its slot with its length; a datagram longer than
// a slot is flagged truncated; an empty socket is EAGAIN.
func TestRecvBatch(t *testing.T) {
	w, r := dgramPair(t)
	const slot = 256
	rb := newTestRecvBatch(t, 8, slot)
	if _, err := rb.recv(uintptr(r), unix.MSG_DONTWAIT); err != unix.EAGAIN {
		t.Fatalf("empty socket: %v, want EAGAIN", err)
	}
	const sent = 11
	for i := range sent {
		m := make([]byte, 1+i*10)
		m[0] = byte(i)
		if i == 9 {
			m = make([]byte, slot+1)
			m[0] = 9
		}
		if _, err := unix.Write(w, m); err != nil {
			t.Fatal(err)
		}
	}
	n, err := rb.recv(uintptr(r), unix.MSG_DONTWAIT)
	if err != nil || n != 8 {
		t.Fatalf("first recv: %d, %v; want the batch of 8", n, err)
	}
	for i := range n {
		b, trunc := rb.msg(i)
		if len(b) != 1+i*10 || b[0] != byte(i) || trunc {
			t.Errorf("message %d: %d bytes starting %d, truncated %v", i, len(b), b[0], trunc)
		}
	}
	n, err = rb.recv(uintptr(r), unix.MSG_DONTWAIT)
	if err != nil || n != sent-8 {
		t.Fatalf("second recv: %d, %v; want the %d left", n, err, sent-8)
	}
	if b, trunc := rb.msg(1); len(b) != slot || b[0] != 9 || !trunc {
		t.Errorf("long message: %d bytes starting %d, truncated %v; want %d bytes, truncated", len(b), b[0], trunc, slot)
	}
	if b, trunc := rb.msg(2); len(b) != 101 || b[0] != 10 || trunc {
		t.Errorf("message after the long one: %d bytes starting %d, truncated %v", len(b), b[0], trunc)
	}
	if _, err := rb.recv(uintptr(r), unix.MSG_DONTWAIT); err != unix.EAGAIN {
		t.Fatalf("drained socket: %v, want EAGAIN", err)
	}
}

// packetMsg is a netlink NFQNL_MSG_PACKET datagram for packet id with
// a 64-byte payload, as nfqnl_build_packet_message lays it out.
func packetMsg(t testing.TB, id uint32) []byte {
	t.Helper()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nfqaPacketHdr, Data: []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id), 0x08, 0x00, byte(netfilter.Forward)}},
		{Type: nfqaIfindexIndev, Data: binary.BigEndian.AppendUint32(nil, 2)},
		{Type: nfqaIfindexOutdev, Data: binary.BigEndian.AppendUint32(nil, 3)},
		{Type: nfqaPayload, Data: append([]byte{0x45, 0, 0, 64}, make([]byte, 60)...)},
	})
	if err != nil {
		t.Fatal(err)
	}
	data := append([]byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 1}, attrs...)
	m := netlink.Message{Header: netlink.Header{Length: uint32(unix.SizeofNlMsghdr + len(data)),
		Type: nfnlSubsysQueue<<8 | nfqnlMsgPacket}, Data: data}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadNoAllocs: in steady state the reader's path from the socket
// to the worker's channel (recvmmsg of a batch, parse, payload copy
// into a recycled buffer, hand-off) allocates nothing.
func TestReadNoAllocs(t *testing.T) {
	w, r := dgramPair(t)
	msgs := make([][]byte, recvBatch)
	for i := range msgs {
		msgs[i] = packetMsg(t, uint32(i+1))
	}
	q := &queue{ch: make(chan Queued, recvBatch), free: make(chan []byte, chanDepth+maxBatch)}
	rb := newTestRecvBatch(t, recvBatch, recvSlot)
	ctx := context.Background()
	round := func() {
		for _, m := range msgs {
			if _, err := unix.Write(w, m); err != nil {
				t.Fatal(err)
			}
		}
		n, err := rb.recv(uintptr(r), unix.MSG_DONTWAIT)
		if err != nil || n != recvBatch {
			t.Fatalf("recv: %d, %v; want %d", n, err, recvBatch)
		}
		for i := range n {
			b, _ := rb.msg(i)
			q.deliver(ctx, b)
		}
		for range n {
			it := <-q.ch
			if len(it.Payload) != 64 || it.InDev != 2 {
				t.Fatalf("delivered %+v", it)
			}
			q.recycle(it.Payload)
		}
	}
	if a := testing.AllocsPerRun(20, round); a != 0 {
		t.Errorf("%.1f allocations a batch of %d, want 0", a, recvBatch)
	}
	if q.overruns.Load() != 0 || q.lastID != recvBatch {
		t.Errorf("overruns %d, last id %d", q.overruns.Load(), q.lastID)
	}
}

// TestReadBurstBatched: a burst that waits in the socket (the worker
// held) is read many datagrams a recvmmsg, every one decided and
// answered, and the counts show in Stats and the metrics.
func TestReadBurstBatched(t *testing.T) {
	tp := newTopo(t, "-A FORWARD -j NFQUEUE --queue-num %[1]d")
	eng, _, names := tp.engine(t, ruleSet)
	hold := make(chan struct{})
	srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, Logf: t.Logf, hold: hold})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var pc net.PacketConn
	inNS(t, tp.client, func() { pc, err = net.ListenPacket("udp4", "10.77.1.2:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// port 9002: dropped by ruleSet, so no echo adds packets
	dst := &net.UDPAddr{IP: net.IPv4(10, 77, 2, 2), Port: 9002}
	const sent = 400
	for i := range sent {
		if _, err := pc.WriteTo([]byte(fmt.Sprint(i)), dst); err != nil {
			t.Fatal(err)
		}
	}
	// the burst waits in the kernel queue and the socket
	deadline := time.Now().Add(2 * time.Second)
	for q := srv.Stats().Queues[0]; q.Kernel.Depth < sent && time.Now().Before(deadline); q = srv.Stats().Queues[0] {
		time.Sleep(10 * time.Millisecond)
	}
	close(hold)
	deadline = time.Now().Add(2 * time.Second)
	for srv.Stats().Verdicts < sent && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := srv.Stats()
	q := st.Queues[0]
	t.Logf("%v", st)
	if q.Packets != sent || q.Verdicts != sent || q.Dropped != sent || q.Overruns != 0 {
		t.Fatalf("queue %+v: want %d packets decided, dropped and answered, no overrun", q, sent)
	}
	if q.Messages != sent || st.Messages != sent || st.Reads != q.Reads {
		t.Errorf("queue %+v, totals %d messages in %d reads: want %d messages", q, st.Messages, st.Reads, sent)
	}
	// the first packet is read alone (the socket was empty) and the
	// reader waits for the held worker with one batch in hand; the
	// rest is read in full batches
	if max := 2 + (sent+recvBatch-1)/recvBatch; q.Reads > uint64(max) || st.ReadBatch() < float64(sent)/float64(max) {
		t.Errorf("%d messages in %d reads (%.1f a read), want at most %d reads", q.Messages, q.Reads, st.ReadBatch(), max)
	}
	var b strings.Builder
	srv.WriteMetrics(&b)
	for _, line := range []string{
		fmt.Sprintf("uswitch_nfqueue_reads_total{queue=\"%d\"} %d\n", tp.queue, q.Reads),
		fmt.Sprintf("uswitch_nfqueue_messages_received_total{queue=\"%d\"} %d\n", tp.queue, sent),
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, b.String())
		}
	}
}
