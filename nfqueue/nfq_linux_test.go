package nfqueue

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/internal/testtools"
	"github.com/uswitch-lab/uswitch/iptables"
)

// The topology: client ─ veth ─ router ─ veth ─ server, the router's
// kernel forwarding with one rule, -A FORWARD -j NFQUEUE, and uswitch
// deciding every forwarded packet with ruleSet.
//
//	client 10.77.1.2/24 (+10.77.1.99/32, the SNAT address)
//	router 10.77.1.1/24, 10.77.2.1/24
//	server 10.77.2.2/24
const ruleSet = `*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A FORWARD -p udp -m udp --dport 9001 -j MARK --set-xmark 0x42/0xffffffff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.77.1.2/32 -p tcp -m tcp --dport 8003 -j SNAT --to-source 10.77.1.99
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p icmp -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8001 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8003 -j ACCEPT
-A FORWARD -p udp -m udp --dport 9001 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8005 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8006 -j REJECT --reject-with tcp-reset
COMMIT
`

// noICMP is ruleSet without the ICMP accept.
var noICMP = strings.Replace(ruleSet, "-A FORWARD -p icmp -j ACCEPT\n", "", 1)

type topo struct {
	client, router, server string
	queue                  uint16
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	return labtest.Run(t, args...)
}

func needRoot(t testing.TB) {
	t.Helper()
	labtest.Root(t, "makes network namespaces and binds NFQUEUE queues")
	testtools.Need(t, "ip", "iptables", "ping", "sysctl")
	if testing.Short() {
		t.Skip("namespaces: not in -short")
	}
}

// newTopo makes the three namespaces with unique names and removes them
// at cleanup.
// queueRule is the iptables arguments of the router's queue rule, with
// %d for the queue number, e.g. "-A FORWARD -j NFQUEUE --queue-num %[1]d".
func newTopo(t testing.TB, queueRule string) *topo {
	needRoot(t)
	id := labtest.Name("")
	tp := &topo{client: "usq-c" + id, router: "usq-r" + id, server: "usq-s" + id, queue: uint16(1000 + os.Getpid()%20000)}
	for _, ns := range []string{tp.client, tp.router, tp.server} {
		labtest.Netns(t, ns)
	}
	ns := func(n string, args ...string) { t.Helper(); labtest.In(t, n, args...) }
	run(t, "ip", "link", "add", "uqa"+id, "netns", tp.client, "type", "veth", "peer", "name", "ra", "netns", tp.router)
	run(t, "ip", "link", "add", "uqb"+id, "netns", tp.server, "type", "veth", "peer", "name", "rb", "netns", tp.router)
	ns(tp.client, "ip", "link", "set", "uqa"+id, "name", "eth0")
	ns(tp.server, "ip", "link", "set", "uqb"+id, "name", "eth0")
	for _, n := range []string{tp.client, tp.router, tp.server} {
		ns(n, "ip", "link", "set", "lo", "up")
	}
	ns(tp.client, "ip", "addr", "add", "10.77.1.2/24", "dev", "eth0")
	for a := 99; a < 107; a++ {
		ns(tp.client, "ip", "addr", "add", fmt.Sprintf("10.77.1.%d/32", a), "dev", "eth0")
	}
	ns(tp.client, "ip", "link", "set", "eth0", "up")
	ns(tp.client, "ip", "route", "add", "default", "via", "10.77.1.1")
	ns(tp.server, "ip", "addr", "add", "10.77.2.2/24", "dev", "eth0")
	ns(tp.server, "ip", "link", "set", "eth0", "up")
	ns(tp.server, "ip", "route", "add", "default", "via", "10.77.2.1")
	ns(tp.router, "ip", "addr", "add", "10.77.1.1/24", "dev", "ra")
	ns(tp.router, "ip", "addr", "add", "10.77.2.1/24", "dev", "rb")
	ns(tp.router, "ip", "link", "set", "ra", "up")
	ns(tp.router, "ip", "link", "set", "rb", "up")
	ns(tp.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// the kernel's only rules: the queue, and a counter of marked
	// packets after it (neither loads conntrack)
	if queueRule != "" {
		ns(tp.router, append([]string{"iptables"}, strings.Fields(fmt.Sprintf(queueRule, tp.queue, tp.queue+1))...)...)
	}
	ns(tp.router, "iptables", "-t", "mangle", "-A", "POSTROUTING", "-m", "mark", "--mark", "0x42", "-j", "ACCEPT")
	return tp
}

// engine is uswitch's engine on the router's captured state with rs as
// its rule set.
func (tp *topo) engine(t testing.TB, rs string) (*datapath.Engine, datapath.Config, func(int) string) {
	dir := t.TempDir()
	if err := host.Capture(dir, tp.router); err != nil {
		t.Fatal(err)
	}
	s, err := host.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.EngineConfig()
	if cfg.Rules, err = (&iptables.Loader{}).LoadString(rs); err != nil {
		t.Fatal(err)
	}
	return datapath.New(cfg, s.ConntrackConfig(), 1), cfg, s.FIB.LinkName
}

// inNS runs fn on a thread inside the namespace; sockets fn opens stay
// in it.
func inNS(t testing.TB, name string, fn func()) {
	t.Helper()
	labtest.InNetns(t, name, func() error { fn(); return nil })
}

// servers starts, in the server namespace, TCP servers that answer with
// the client's address then echo, and UDP echo servers.
func (tp *topo) servers(t testing.TB) {
	inNS(t, tp.server, func() {
		for _, port := range []int{8001, 8002, 8003} {
			l, err := net.Listen("tcp4", fmt.Sprintf("10.77.2.2:%d", port))
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
						fmt.Fprintf(c, "%-16s", host)
						io.Copy(c, c)
					}()
				}
			}()
		}
		// 8005 discards
		sink, err := net.Listen("tcp4", "10.77.2.2:8005")
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { sink.Close() })
		go func() {
			for {
				c, err := sink.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(io.Discard, c); c.Close() }()
			}
		}()
		for _, port := range []int{9001, 9002} {
			pc, err := net.ListenPacket("udp4", fmt.Sprintf("10.77.2.2:%d", port))
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { pc.Close() })
			go func() {
				buf := make([]byte, 2048)
				for {
					n, a, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo(buf[:n], a)
				}
			}()
		}
	})
}

// dialTCP connects from the client namespace.
func (tp *topo) dialTCP(t testing.TB, port int, timeout time.Duration) (net.Conn, error) {
	return tp.dialFrom(t, "10.77.1.2", fmt.Sprintf("10.77.2.2:%d", port), timeout)
}

func (tp *topo) dialFrom(t testing.TB, src, dst string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	inNS(t, tp.client, func() {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err = d.Dial("tcp4", dst)
	})
	return c, err
}

// tcpSeen connects, and returns the source address the server saw.
func (tp *topo) tcpSeen(t testing.TB, port int) (string, error) {
	return tp.tcpSeenTo(t, "10.77.1.2", fmt.Sprintf("10.77.2.2:%d", port))
}

func (tp *topo) tcpSeenTo(t testing.TB, src, dst string) (string, error) {
	c, err := tp.dialFrom(t, src, dst, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	if _, err := io.ReadFull(c, buf); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", err
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(c, echo); err != nil || string(echo) != "ping" {
		return "", fmt.Errorf("echo %q: %v", echo, err)
	}
	return strings.TrimSpace(string(buf)), nil
}

func (tp *topo) udp(t testing.TB, port int) error { return tp.udpFrom(t, "10.77.1.2", port) }

func (tp *topo) udpFrom(t testing.TB, src string, port int) error {
	var pc net.PacketConn
	var err error
	inNS(t, tp.client, func() { pc, err = net.ListenPacket("udp4", src+":0") })
	if err != nil {
		return err
	}
	defer pc.Close()
	dst := &net.UDPAddr{IP: net.IPv4(10, 77, 2, 2), Port: port}
	if _, err := pc.WriteTo([]byte("hello"), dst); err != nil {
		return err
	}
	pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 64)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "hello" {
		return fmt.Errorf("echo %q", buf[:n])
	}
	return nil
}

func (tp *topo) ping(t testing.TB) error {
	_, err := tp.pingOut(t)
	return err
}

func (tp *topo) pingOut(t testing.TB) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", tp.client, "ping", "-c1", "-W1", "10.77.2.2").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// markedPackets is the kernel's count of packets leaving the router
// with mark 0x42.
func (tp *topo) markedPackets(t testing.TB) string {
	out := run(t, "ip", "netns", "exec", tp.router, "iptables-save", "-c", "-t", "mangle")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--mark 0x42") {
			return strings.Fields(l)[0]
		}
	}
	t.Fatalf("no mark counter in\n%s", out)
	return ""
}

// TestForwardQueue: a FORWARD queue decided by uswitch, with workers
// (the default) and with the readers deciding inline.
func TestForwardQueue(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) { forwardQueue(t, inline) })
	}
}

func forwardQueue(t *testing.T, inline bool) {
	tp := newTopo(t, "-A FORWARD -j NFQUEUE --queue-num %[1]d")
	eng, cfg, names := tp.engine(t, ruleSet)
	srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, Logf: t.Logf, Inline: inline})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tp.servers(t)

	if err := tp.ping(t); err != nil {
		t.Errorf("ping through uswitch's ACCEPT: %v", err)
	}
	if src, err := tp.tcpSeen(t, 8001); err != nil || src != "10.77.1.2" {
		t.Errorf("tcp 8001 (accepted): server saw %q, %v", src, err)
	}
	if c, err := tp.dialTCP(t, 8002, 500*time.Millisecond); err == nil {
		c.Close()
		t.Errorf("tcp 8002: connected through uswitch's DROP")
	}
	// REJECT: uswitch's RST reaches the client through the raw socket
	if c, err := tp.dialTCP(t, 8006, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("tcp 8006: connected through uswitch's REJECT")
	} else if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("tcp 8006: %v, want connection refused (uswitch's RST)", err)
	}
	// SNAT by uswitch: the packet the kernel forwards is uswitch's
	// rewritten one, and the reply is de-NATed on its way back
	if src, err := tp.tcpSeen(t, 8003); err != nil || src != "10.77.1.99" {
		t.Errorf("tcp 8003 (SNAT to 10.77.1.99): server saw %q, %v", src, err)
	}
	for range 3 {
		if err := tp.udp(t, 9001); err != nil {
			t.Errorf("udp 9001 (accepted, marked): %v", err)
		}
	}
	if err := tp.udp(t, 9002); err == nil {
		t.Errorf("udp 9002: answered through uswitch's DROP")
	}
	tp.transfer(t, 10<<20)
	if got := tp.markedPackets(t); got != "[3:99]" {
		t.Errorf("packets leaving with uswitch's mark 0x42: %s, want [3:99] (the three UDP requests)", got)
	}
	// a new rule set without the ICMP accept: ping dies
	if cfg.Rules, err = (&iptables.Loader{}).LoadString(noICMP); err != nil {
		t.Fatal(err)
	}
	eng.Swap(cfg)
	if err := tp.ping(t); err == nil {
		t.Errorf("ping passed uswitch's DROP")
	}
	st := srv.Stats()
	t.Logf("stats: %v", st)
	if st.Rewritten == 0 || st.Remarked != 3 || st.Dropped == 0 || st.BatchVerdicts == 0 || st.Answers != 1 {
		t.Errorf("stats: %v", st)
	}
}

// TestQueueBalance: --queue-balance over two queues, flows from 16
// address and protocol pairs spread over both, every packet decided.
func TestQueueBalance(t *testing.T) {
	tp := newTopo(t, "-A FORWARD -j NFQUEUE --queue-balance %[1]d:%[2]d")
	eng, _, names := tp.engine(t, ruleSet)
	srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue, tp.queue + 1}, NetNS: tp.router, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tp.servers(t)
	for a := 99; a < 107; a++ {
		src := fmt.Sprintf("10.77.1.%d", a)
		if err := tp.udpFrom(t, src, 9001); err != nil {
			t.Errorf("udp from %s: %v", src, err)
		}
		// SNAT applies to 10.77.1.2 only: the others are seen as they are
		if seen, err := tp.tcpSeenTo(t, src, "10.77.2.2:8001"); err != nil || seen != src {
			t.Errorf("tcp from %s: seen %q, %v", src, seen, err)
		}
	}
	if err := tp.udpFrom(t, "10.77.1.99", 9002); err == nil {
		t.Errorf("udp 9002 passed uswitch's DROP")
	}
	st := srv.Stats()
	t.Logf("stats: %v", st)
	if len(st.PerQueue) != 2 || st.PerQueue[0] == 0 || st.PerQueue[1] == 0 {
		t.Errorf("packets per queue %v: want both queues used", st.PerQueue)
	}
}

// TestFailOpen: with the reader stalled and the kernel queue full, the
// kernel accepts packets (NFQA_CFG_F_FAIL_OPEN) instead of dropping
// them; once the reader goes on, the queued ones get uswitch's verdict.
func TestFailOpen(t *testing.T) {
	tp := newTopo(t, "-A FORWARD -j NFQUEUE --queue-num %[1]d")
	eng, _, names := tp.engine(t, ruleSet)
	hold := make(chan struct{})
	srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, MaxQueueLen: 4, Logf: t.Logf, hold: hold})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tp.servers(t)
	var pc net.PacketConn
	inNS(t, tp.client, func() { pc, err = net.ListenPacket("udp4", "10.77.1.2:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := &net.UDPAddr{IP: net.IPv4(10, 77, 2, 2), Port: 9001}
	const sent = 100
	for i := range sent {
		pc.WriteTo([]byte(fmt.Sprint(i)), dst)
	}
	echoes := 0
	buf := make([]byte, 64)
	pc.SetReadDeadline(time.Now().Add(time.Second))
	for {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			break
		}
		echoes++
	}
	if echoes < sent/2 {
		t.Errorf("%d of %d echoes with the reader stalled: fail-open did not let the overflow through", echoes, sent)
	}
	if n := srv.Stats().Packets; n != 0 {
		t.Errorf("%d packets decided while held", n)
	}
	// the kernel queue is full (4 packets numbered and waiting); the
	// rest passed by fail-open before being numbered
	if q := srv.Stats().Queues[0]; !q.HasKernel || q.Kernel.Depth != 4 || q.Kernel.IDSequence != 4 || q.Overruns != 0 {
		t.Errorf("while held: %+v, want kernel depth 4, 4 ids, no overrun", q)
	}
	close(hold)
	time.Sleep(200 * time.Millisecond)
	st := srv.Stats()
	t.Logf("%d of %d echoes while stalled; then %v", echoes, sent, st)
	if st.Packets == 0 {
		t.Errorf("no queued packet decided after the stall")
	}
	// the 4 queued packets decided and answered (and their echoes,
	// queued in turn); every id the kernel gave out decided
	if q := st.Queues[0]; q.Packets < 4 || q.Verdicts != q.Packets || uint64(q.Kernel.IDSequence) != q.Packets || q.Kernel.Depth != 0 {
		t.Errorf("after the stall: %+v, want the 4 queued packets (and what followed) decided and answered", q)
	}
	if err := tp.udp(t, 9001); err != nil {
		t.Errorf("after the stall: %v", err)
	}
}

// TestCounters: every packet of N pings and a dropped UDP datagram is
// counted once, given a verdict once, and matches the kernel's own
// numbering of the queue.
func TestCounters(t *testing.T) {
	tp := newTopo(t, "-A FORWARD -j NFQUEUE --queue-num %[1]d")
	eng, _, names := tp.engine(t, ruleSet)
	srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tp.servers(t)
	const pings = 5
	if out, err := exec.Command("ip", "netns", "exec", tp.client, "ping", "-c", fmt.Sprint(pings), "-i", "0.05", "-W", "1", "10.77.2.2").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	if err := tp.udp(t, 9002); err == nil {
		t.Errorf("udp 9002: answered through uswitch's DROP")
	}
	// the verdict of the last packet is sent after its decision
	time.Sleep(50 * time.Millisecond)
	st := srv.Stats()
	t.Logf("%v", st)
	if len(st.Queues) != 1 {
		t.Fatalf("queues %+v", st.Queues)
	}
	q := st.Queues[0]
	// each ping crosses FORWARD twice (request, reply); the datagram once
	want := uint64(2*pings + 1)
	if q.Num != tp.queue || q.Packets != want || q.Verdicts != want || q.Accepted != 2*pings || q.Dropped != 1 ||
		st.Packets != want || st.Verdicts != want || st.Accepted != 2*pings || st.Dropped != 1 {
		t.Errorf("queue %+v, totals %v: want %d packets and verdicts, %d accepted, 1 dropped", q, st, want, 2*pings)
	}
	if q.Overruns != 0 || q.ENOBUFS != 0 || q.Backlog != 0 || q.LastBatch < 1 {
		t.Errorf("queue %+v: want no overrun, no backlog, a last batch", q)
	}
	if !q.HasKernel || q.Kernel.IDSequence != uint32(want) || q.Kernel.Depth != 0 || q.Kernel.Dropped != 0 || q.Kernel.UserDropped != 0 {
		t.Errorf("kernel's queue %+v (read: %v): want %d ids given out, none waiting or dropped", q.Kernel, q.HasKernel, want)
	}
	var b strings.Builder
	srv.WriteMetrics(&b)
	for _, line := range []string{
		fmt.Sprintf("uswitch_nfqueue_packets_received_total{queue=\"%d\"} %d\n", tp.queue, want),
		fmt.Sprintf("uswitch_nfqueue_verdicts_total{queue=\"%d\"} %d\n", tp.queue, want),
		fmt.Sprintf("uswitch_nfqueue_packets_total{queue=\"%d\",verdict=\"accept\"} %d\n", tp.queue, 2*pings),
		fmt.Sprintf("uswitch_nfqueue_packets_total{queue=\"%d\",verdict=\"drop\"} 1\n", tp.queue),
		fmt.Sprintf("uswitch_nfqueue_failopen_total{queue=\"%d\"} 0\n", tp.queue),
		fmt.Sprintf("uswitch_nfqueue_kernel_queue_depth{queue=\"%d\"} 0\n", tp.queue),
		fmt.Sprintf("uswitch_nfqueue_kernel_packet_ids_total{queue=\"%d\"} %d\n", tp.queue, want),
		`uswitch_drops_total{reason="table",table="filter",hook="FORWARD"} 1` + "\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, b.String())
		}
	}
}

// TestOverrun: with the worker held and a receive buffer of a few
// messages, the kernel cannot deliver most packets to the socket and
// accepts them by fail-open; the reader counts them from the gaps in
// the packet ids, and every id the kernel gave out is either decided
// or counted so.
func TestOverrun(t *testing.T) {
	tp := newTopo(t, "-A FORWARD -j NFQUEUE --queue-num %[1]d")
	eng, _, names := tp.engine(t, ruleSet)
	hold := make(chan struct{})
	srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, Logf: t.Logf, hold: hold, rcvbuf: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tp.servers(t)
	var pc net.PacketConn
	inNS(t, tp.client, func() { pc, err = net.ListenPacket("udp4", "10.77.1.2:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := &net.UDPAddr{IP: net.IPv4(10, 77, 2, 2), Port: 9001}
	const sent = 100
	for i := range sent {
		pc.WriteTo([]byte(fmt.Sprint(i)), dst)
	}
	echoes := 0
	buf := make([]byte, 64)
	pc.SetReadDeadline(time.Now().Add(time.Second))
	for {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			break
		}
		echoes++
	}
	close(hold)
	time.Sleep(200 * time.Millisecond) // the backlog drains
	// one more exchange: its ids close any gap at the end
	if err := tp.udp(t, 9001); err != nil {
		t.Errorf("after the stall: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	st := srv.Stats()
	q := st.Queues[0]
	t.Logf("%d of %d echoes while stalled; then %+v", echoes, sent, q)
	if q.Overruns == 0 || st.Overruns != q.Overruns {
		t.Errorf("no overrun counted with a %d-byte receive buffer: %+v", 4096, q)
	}
	if !q.HasKernel || uint64(q.Kernel.IDSequence) != q.Packets+q.Overruns {
		t.Errorf("kernel gave out %d ids; uswitch decided %d and counted %d overruns", q.Kernel.IDSequence, q.Packets, q.Overruns)
	}
	if q.Verdicts != q.Packets || q.Kernel.Depth != 0 || q.Kernel.UserDropped != 0 {
		t.Errorf("%+v: want a verdict for every decided packet, none waiting or dropped", q)
	}
	if echoes == 0 {
		t.Errorf("no echo while stalled: the overrun packets were not accepted by fail-open")
	}
}

// prerouteRules: DNAT of a service address and MASQUERADE to the
// router's own address, which a FORWARD queue cannot do (see the
// package doc).
const prerouteRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.77.9.9/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.77.2.2:8001
-A POSTROUTING -o rb -p tcp -m tcp --dport 8003 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p icmp -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8001 -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 8003 -j ACCEPT
COMMIT
`

// TestPreroutingQueue: the queue in raw PREROUTING, uswitch doing the
// NAT and the kernel routing what uswitch hands back.
func TestPreroutingQueue(t *testing.T) {
	tp := newTopo(t, "-t raw -A PREROUTING -j NFQUEUE --queue-num %[1]d")
	// the MASQUERADEd packet has the router's own address as source
	// when the kernel routes it
	run(t, "ip", "netns", "exec", tp.router, "sysctl", "-qw", "net.ipv4.conf.ra.accept_local=1")
	eng, _, names := tp.engine(t, prerouteRules)
	srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tp.servers(t)
	out, err := tp.pingOut(t)
	if err != nil {
		t.Errorf("ping: %v", err)
	} else if !strings.Contains(out, "ttl=63") {
		t.Errorf("ping: want ttl=63 (one decrement, by the kernel):\n%s", out)
	}
	if seen, err := tp.tcpSeenTo(t, "10.77.1.2", "10.77.9.9:80"); err != nil || seen != "10.77.1.2" {
		t.Errorf("tcp to the DNATed 10.77.9.9:80: seen %q, %v", seen, err)
	}
	if seen, err := tp.tcpSeen(t, 8003); err != nil || seen != "10.77.2.1" {
		t.Errorf("tcp 8003 MASQUERADEd: seen %q, want 10.77.2.1: %v", seen, err)
	}
	if c, err := tp.dialTCP(t, 8002, 500*time.Millisecond); err == nil {
		c.Close()
		t.Errorf("tcp 8002: connected through uswitch's DROP")
	}
	t.Logf("stats: %v", srv.Stats())
}

// transfer sends n random bytes through the TCP echo server and checks
// the SHA-256 of what comes back.
func (tp *topo) transfer(t testing.TB, n int) {
	c, err := tp.dialTCP(t, 8001, time.Second)
	if err != nil {
		t.Errorf("transfer: %v", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.ReadFull(c, make([]byte, 16))
	data := make([]byte, n)
	rand.Read(data)
	start := time.Now()
	go c.Write(data)
	h := sha256.New()
	if _, err := io.CopyN(h, c, int64(n)); err != nil {
		t.Errorf("transfer: %v", err)
		return
	}
	if sha256.Sum256(data) != [32]byte(h.Sum(nil)) {
		t.Errorf("transfer: the %d bytes came back different", n)
	}
	t.Logf("%d MB echoed through the queue in %v", n>>20, time.Since(start).Round(time.Millisecond))
}

// BenchmarkForwardTCP: bulk TCP through the router, the kernel alone
// (its FORWARD path with no rule) against uswitch deciding every packet
// from a FORWARD queue, with and without batched verdicts.
func BenchmarkForwardTCP(b *testing.B) {
	for _, mode := range []string{"kernel", "nfqueue-batch", "nfqueue-nobatch"} {
		b.Run(mode, func(b *testing.B) {
			rule := "-A FORWARD -j NFQUEUE --queue-num %[1]d"
			if mode == "kernel" {
				rule = ""
			}
			tp := newTopo(b, rule)
			if mode != "kernel" {
				eng, _, names := tp.engine(b, ruleSet)
				srv, err := Start(eng, names, Options{Queues: []uint16{tp.queue}, NetNS: tp.router, NoBatch: mode == "nfqueue-nobatch"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { b.Logf("%v", srv.Stats()); srv.Close() })
			}
			tp.servers(b)
			c, err := tp.dialTCP(b, 8005, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
