package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/host"
	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/internal/labtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/lab"
	"github.com/uswitch-lab/uswitch/nfqueue"
	"golang.org/x/sys/unix"
)

// The live-datapath benchmarks: the same traffic between a client and a
// server namespace, routed by uswitch through the TUN lab (BenchmarkLab*)
// and by the kernel over veth with the same rule set restored into a
// router namespace (BenchmarkKernel*). bench/lab.sh runs both in one
// `go test` and prints the ratios.
//
//	client 10.10.1.2/24 ─ ua 10.10.1.1 [uswitch | kernel router] ub 10.10.2.1 ─ server 10.10.2.2/24
//
// The client sends to the service address 10.96.0.10, DNATed to the
// server, through a FORWARD policy of DROP: conntrack, NAT and the filter
// are on every packet's path on both sides.
const labRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:SVC - [0:0]
-A PREROUTING -d 10.96.0.10/32 -j SVC
-A SVC -p udp -m udp --dport 9000 -j DNAT --to-destination 10.10.2.2:9000
-A SVC -p tcp -m tcp --dport 9001 -j DNAT --to-destination 10.10.2.2:9001
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i ua -o ub -d 10.10.2.2/32 -p udp -m udp --dport 9000 -j ACCEPT
-A FORWARD -i ua -o ub -d 10.10.2.2/32 -p tcp -m tcp --dport 9001 -j ACCEPT
COMMIT
`

const labTOML = `
name = "bench"
[uswitch]
rules = """
RULES"""
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1

[[interface]]
name = "ua"
netns = "P-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "ub"
netns = "P-s"
addresses = ["10.10.2.1/24"]

[[namespace]]
name = "P-c"
addresses = ["10.10.1.2/24"]
routes = ["default via 10.10.1.1"]
[[namespace]]
name = "P-s"
addresses = ["10.10.2.2/24"]
routes = ["default via 10.10.2.1"]
`

const (
	vip     = "10.96.0.10"
	udpPort = 9000
	tcpPort = 9001
	// udp64Payload makes 64-byte IPv4 packets (20 IP + 8 UDP + 36).
	udp64Payload = 64 - 28
	tcpChunk     = 64 << 10
)

func needRoot(b *testing.B) {
	b.Helper()
	labtest.Root(b, "makes network namespaces, TUN and veth devices")
	labtest.TUN(b)
}

func uniqueName() string { return labtest.Name("ub") }

// labPair brings up the TUN lab and returns its client and server
// namespaces; it is removed at cleanup.
func labPair(b *testing.B) (client, server string) {
	return labPairWith(b, "")
}

// labPairWith is labPair with extra [uswitch] keys (offload, queues,
// inline, workers).
func labPairWith(b *testing.B, uswitch string) (client, server string) {
	return labPairRules(b, labRules, uswitch)
}

// labPairRules is labPairWith with another rule set.
func labPairRules(b *testing.B, ruleset, uswitch string) (client, server string) {
	src := strings.Replace(strings.Replace(labTOML, "RULES", ruleset, 1), "[uswitch]\n", "[uswitch]\n"+uswitch+"\n", 1)
	return upLabPair(b, "bench.toml", src)
}

// upLabPair brings up the lab of src, its "P-" names made unique, and
// returns its client and server namespaces (P-c, P-s); it is removed
// at cleanup.
func upLabPair(b *testing.B, file, src string) (client, server string) {
	needRoot(b)
	p := uniqueName()
	c, err := lab.Parse(file, []byte(strings.ReplaceAll(src, "P-", p+"-")))
	if err != nil {
		b.Fatal(err)
	}
	labtest.Up(b, func() (*lab.Lab, error) { return lab.Up(c, nil) }, func() error {
		_, _, err := lab.Down(c)
		return err
	})
	return p + "-c", p + "-s"
}

// kernelPair makes client, router and server namespaces joined by veth,
// the router's interfaces named as uswitch's in the lab (ua, ub), with
// forwarding on and labRules restored; removed at cleanup.
func kernelPair(b *testing.B) (client, server string) { return kernelPairRules(b, labRules) }

// kernelPairRules is kernelPair with another rule set.
func kernelPairRules(b *testing.B, ruleset string) (client, server string) {
	cl, rt, sv := routerPair(b)
	cmd := exec.Command("ip", "netns", "exec", rt, "iptables-restore")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("iptables-restore: %v\n%s", err, out)
	}
	return cl, sv
}

var queueSeq atomic.Int32

// nfqueuePair is kernelPair with uswitch deciding instead of the
// kernel's rules: the router's only rule queues every arriving packet
// from raw PREROUTING (before any routing, so uswitch's DNAT decides the
// route; see nfqueue), and uswitch runs labRules on the router's
// captured state. noBatch sends one verdict per sendmsg.
func nfqueuePair(b *testing.B, noBatch bool) (client, router, server string, srv *nfqueue.Server) {
	return nfqueuePairWith(b, nfqueue.Options{NoBatch: noBatch})
}

// nfqueuePairWith is nfqueuePair with the server's options (Queues,
// NetNS and Logf are set here).
func nfqueuePairWith(b *testing.B, o nfqueue.Options) (client, router, server string, srv *nfqueue.Server) {
	cl, rt, sv := routerPair(b)
	q := uint16(30000 + os.Getpid()%20000 + int(queueSeq.Add(1))*50)
	// with offload the queue is after the kernel's conntrack (mangle),
	// behind the connmark rule Start inserts
	table := "raw"
	if o.Offload {
		table = "mangle"
	}
	// len(o.Queues) > 1 asks for that many queues: --queue-balance
	// (the kernel spreads the flows over them by hash), a reader and a
	// worker each
	nq := max(1, len(o.Queues))
	target := []string{"--queue-num", fmt.Sprint(q)}
	if nq > 1 {
		target = []string{"--queue-balance", fmt.Sprintf("%d:%d", q, q+uint16(nq)-1)}
	}
	if out, err := exec.Command("ip", append([]string{"netns", "exec", rt, "iptables", "-t", table, "-A", "PREROUTING",
		"-j", "NFQUEUE"}, target...)...).CombinedOutput(); err != nil {
		b.Fatalf("queue rule: %v\n%s", err, out)
	}
	dir := b.TempDir()
	if err := host.Capture(dir, rt); err != nil {
		b.Fatal(err)
	}
	snap, err := host.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	cfg := snap.EngineConfig()
	if cfg.Rules, err = (&iptables.Loader{}).LoadString(labRules); err != nil {
		b.Fatal(err)
	}
	eng := datapath.New(cfg, snap.ConntrackConfig(), 1)
	o.Queues, o.NetNS, o.Logf = nil, rt, b.Logf
	for i := range nq {
		o.Queues = append(o.Queues, q+uint16(i))
	}
	srv, err = nfqueue.Start(eng, snap.FIB.LinkName, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return cl, rt, sv, srv
}

// rxPackets is the packets the router's two interfaces received (from
// ip -s link: what the kernel saw arrive, queued or not).
func rxPackets(b *testing.B, router string) uint64 {
	out, err := exec.Command("ip", "-n", router, "-s", "-j", "link", "show").Output()
	if err != nil {
		b.Fatalf("ip -s link: %v", err)
	}
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		b.Fatalf("ip -s link: %v", err)
	}
	var n uint64
	for _, l := range links {
		if l.Name == "ua" || l.Name == "ub" {
			n += l.Stats.RX.Packets
		}
	}
	return n
}

// routerPair makes the client, router and server namespaces and their
// veth links, addresses, routes and forwarding, and no rule.
func routerPair(b *testing.B) (client, router, server string) {
	cl, rt, sv := kernelTrio(b, "r", "ua", "ub")
	in := func(ns string, args ...string) { b.Helper(); labtest.In(b, ns, args...) }
	in(cl, "ip", "addr", "add", "10.10.1.2/24", "dev", "eth0")
	in(cl, "ip", "link", "set", "eth0", "up")
	in(cl, "ip", "route", "add", "default", "via", "10.10.1.1")
	in(sv, "ip", "addr", "add", "10.10.2.2/24", "dev", "eth0")
	in(sv, "ip", "link", "set", "eth0", "up")
	in(sv, "ip", "route", "add", "default", "via", "10.10.2.1")
	in(rt, "ip", "addr", "add", "10.10.1.1/24", "dev", "ua")
	in(rt, "ip", "addr", "add", "10.10.2.1/24", "dev", "ub")
	in(rt, "ip", "link", "set", "ua", "up")
	in(rt, "ip", "link", "set", "ub", "up")
	in(rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return cl, rt, sv
}

// kernelTrio makes the client, middle and server namespaces (NAME-c,
// NAME-mid, NAME-s; removed at cleanup) with lo up, the client's eth0 a
// veth pair with the middle's a, the server's eth0 one with its bn (both
// still down, without addresses).
func kernelTrio(b *testing.B, mid, a, bn string) (cl, md, sv string) {
	needRoot(b)
	kerneltest.Require(b, "sysctl")
	p := uniqueName()
	cl, md, sv = p+"-c", p+"-"+mid, p+"-s"
	for _, ns := range []string{cl, md, sv} {
		labtest.Netns(b, ns)
	}
	labtest.Run(b, "ip", "link", "add", "eth0", "netns", cl, "type", "veth", "peer", "name", a, "netns", md)
	labtest.Run(b, "ip", "link", "add", "eth0", "netns", sv, "type", "veth", "peer", "name", bn, "netns", md)
	for _, ns := range []string{cl, md, sv} {
		labtest.In(b, ns, "ip", "link", "set", "lo", "up")
	}
	return cl, md, sv
}

// inNS runs fn on a thread inside the named namespace, so the sockets it
// opens belong there.
// udpListener is a UDP socket on udpPort in namespace ns with an 8 MiB
// receive buffer.
func udpListener(b *testing.B, ns string) *net.UDPConn {
	var rc *net.UDPConn
	inNS(b, ns, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: udpPort})
		if err == nil {
			c.SetReadBuffer(8 << 20)
			rc = c
		}
		return err
	})
	return rc
}

func inNS(b *testing.B, name string, fn func() error) {
	b.Helper()
	labtest.InNetns(b, name, fn)
}

// udpFlows is how many client sockets send at once (several flows, so
// uswitch's flow-sharded workers all have work).
const udpFlows = 4

// benchUDP64 sends b.N 64-byte packets from the client to the service as
// fast as the sockets take them and counts what reaches the server. It
// reports the received packets per second (first send to last receive)
// and the loss.
func benchUDP64(b *testing.B, client, server string) {
	pps, loss := udp64(b, client, server, b.N, true)
	b.ReportMetric(pps, "pps")
	b.ReportMetric(loss, "%loss")
}

// udp64 sends n 64-byte packets from the client to the service and
// returns the packets per second that reached the server (first send to
// last receive) and the loss in percent; timer: reset the benchmark
// timer at the first send and stop it after the last.
func udp64(b *testing.B, client, server string, n int, timer bool) (pps, loss float64) {
	return udp64With(b, client, server, n, timer, false)
}

// udp64With is udp64; with proc the packets are sent by a child
// process (the test binary again, udpSenderMain) on the client's
// sockets, so the load generator is scheduled by the kernel beside
// uswitch as a namespace's programs are, not by this process's Go
// scheduler among uswitch's own goroutines (whose readers, woken by
// the network poller, wait behind senders that never block).
func udp64With(b *testing.B, client, server string, n int, timer, proc bool) (pps, loss float64) {
	return udp64Paced(b, client, server, n, timer, proc, senderPPS*udpFlows, 0)
}

// udp64Paced is udp64With with the senders together offering rate
// packets per second (0: as fast as the sockets take them; a child
// sender paces by USWITCH_BENCH_PPS alone) and, when dur > 0, stopping
// after dur with what they have sent by then (in-process senders).
func udp64Paced(b *testing.B, client, server string, n int, timer, proc bool, rate float64, dur time.Duration) (pps, loss float64) {
	return udp64To(b, client, server, vip, n, timer, proc, rate, dur)
}

// udp64To is udp64Paced to the address dst (port udpPort) instead of
// the service address.
func udp64To(b *testing.B, client, server, dst string, n int, timer, proc bool, rate float64, dur time.Duration) (pps, loss float64) {
	rc := udpListener(b, server)
	defer rc.Close()
	var got atomic.Int64
	var last atomic.Int64 // UnixNano of the last receive
	go recvUDP(rc, &got, &last)
	conns := make([]*net.UDPConn, udpFlows)
	for i := range conns {
		inNS(b, client, func() error {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(dst), Port: udpPort})
			if err == nil {
				c.SetWriteBuffer(4 << 20)
				conns[i] = c
			}
			return err
		})
		defer conns[i].Close()
	}
	// one packet per flow first: the conntrack entries exist and the
	// path is warm before the clock starts
	msg := make([]byte, udp64Payload)
	for _, c := range conns {
		c.Write(msg)
	}
	deadline := time.Now().Add(2 * time.Second)
	for got.Load() < udpFlows && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got.Load() < udpFlows {
		b.Fatalf("warm-up: %d of %d packets arrived", got.Load(), udpFlows)
	}
	got.Store(0)
	var child *exec.Cmd
	var childIn io.WriteCloser
	if proc {
		child, childIn = startUDPSender(b, conns, n)
	}
	if timer {
		b.ResetTimer()
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	var sendErr, attempted atomic.Int64
	var stop time.Time
	if dur > 0 {
		stop = t0.Add(dur)
	}
	if proc {
		childIn.Write([]byte{1}) // go
		childIn.Close()
		if err := child.Wait(); err != nil {
			b.Fatalf("sender: %v: %s", err, child.Stdout)
		} else if out := child.Stdout.(*strings.Builder).String(); out != "" {
			b.Logf("sender: %s", out)
		}
		conns = nil
	}
	for i, c := range conns {
		k := n / udpFlows
		if i < n%udpFlows {
			k++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			done, fails, err := sendUDP64(c, k, rate/udpFlows, stop)
			if err != nil {
				b.Errorf("sender: %v", err)
			}
			sendErr.Add(fails) // ENOBUFS from a full device queue
			attempted.Add(int64(done))
		}()
	}
	wg.Wait()
	if !proc {
		n = int(attempted.Load())
	}
	if timer {
		b.StopTimer()
	}
	// drain: wait until nothing more arrives for 100ms (bounded)
	prev := int64(-1)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		k := got.Load()
		if k == prev || k >= int64(n) {
			break
		}
		prev = k
		time.Sleep(100 * time.Millisecond)
	}
	rx := got.Load()
	if rx == 0 {
		b.Fatalf("none of %d packets arrived", n)
	}
	el := time.Duration(last.Load() - t0.UnixNano())
	if sendErr.Load() > 0 {
		b.Logf("%d sends failed (device queue full)", sendErr.Load())
	}
	return float64(rx) / el.Seconds(), 100 * float64(int64(n)-rx) / float64(n)
}

// udpSenderEnv makes the test binary a UDP sender (udpSenderMain): the
// count of packets for each of the sockets passed as fds 3, 4, ...
const udpSenderEnv = "USWITCH_BENCH_UDP_SENDER"

func TestMain(m *testing.M) {
	if v := os.Getenv(udpSenderEnv); v != "" {
		os.Exit(udpSenderMain(v))
	}
	os.Exit(m.Run())
}

// startUDPSender starts the child that will send n 64-byte packets
// over conns (a share each, on the same sockets) once it reads a byte
// from its stdin.
func startUDPSender(b *testing.B, conns []*net.UDPConn, n int) (*exec.Cmd, io.WriteCloser) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	var counts []string
	for i, c := range conns {
		f, err := c.File()
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		k := n / len(conns)
		if i < n%len(conns) {
			k++
		}
		counts = append(counts, fmt.Sprint(k))
	}
	cmd.Env = append(os.Environ(), udpSenderEnv+"="+strings.Join(counts, ","))
	cmd.Stdout = new(strings.Builder)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return cmd, in
}

// udpSenderMain is the child of startUDPSender: counts is the packets
// to send on fds 3, 4, ..., one goroutine each, after a byte on stdin.
func udpSenderMain(counts string) int {
	var one [1]byte
	os.Stdin.Read(one[:])
	var wg sync.WaitGroup
	var fails atomic.Int64
	for i, c := range strings.Split(counts, ",") {
		var k int
		fmt.Sscan(c, &k)
		// the socket as a net.UDPConn (a dup of fd 3+i, non-blocking
		// under the runtime's poller), as the in-process senders have it
		conn, err := net.FilePacketConn(os.NewFile(uintptr(3+i), "udp"))
		if err != nil {
			fmt.Printf("socket %d: %v", i, err)
			return 1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, f, err := sendUDP64(conn.(*net.UDPConn), k, senderPPS, time.Time{})
			if err != nil {
				fmt.Printf("sender: %v; ", err)
			}
			fails.Add(f)
		}()
	}
	wg.Wait()
	if f := fails.Load(); f > 0 {
		fmt.Printf("%d sends failed", f)
	}
	return 0
}

// senderPPS paces each sender of sendUDP64 (USWITCH_BENCH_PPS divided
// among the udpFlows senders); 0: as fast as the sockets take packets.
var senderPPS = func() float64 {
	v, _ := strconv.ParseFloat(os.Getenv("USWITCH_BENCH_PPS"), 64)
	return v / udpFlows
}()

// recvUDP counts the datagrams arriving on c (got, and last: the
// UnixNano of the last arrival) until c is closed, reading up to
// sendBatch a recvmmsg(2): the sink of every UDP benchmark, kernel and
// uswitch alike.
func recvUDP(c *net.UDPConn, got, last *atomic.Int64) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	bufs := make([]byte, sendBatch*2048)
	var iovs [sendBatch]unix.Iovec
	var hdrs [sendBatch]mmsghdr
	for i := range hdrs {
		iovs[i].Base = &bufs[i*2048]
		iovs[i].SetLen(2048)
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
	}
	var n int
	var errno syscall.Errno
	recv := func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), sendBatch, unix.MSG_DONTWAIT, 0, 0)
		n, errno = int(r), e
		return e != unix.EAGAIN && e != unix.EINTR
	}
	for {
		if err := rc.Read(recv); err != nil || (errno != 0 && errno != unix.EAGAIN && errno != unix.EINTR) {
			return
		}
		if errno == 0 && n > 0 {
			got.Add(int64(n))
			last.Store(time.Now().UnixNano())
		}
	}
}

// sendBatch is how many datagrams one sendmmsg(2) of sendUDP64 sends.
const sendBatch = 64

// mmsghdr is struct mmsghdr (include/linux/socket.h); Go pads it to the
// kernel's size.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// sendUDP64 sends k 64-byte datagrams on the connected socket c, at
// most pps a second (0: no limit) and not after stop (zero: no limit),
// sendBatch a sendmmsg(2) (net/socket.c __sys_sendmmsg): the load
// generator of every UDP benchmark, in process and in udpSenderMain,
// for uswitch and for the kernel alike. It waits for room in the
// socket (EAGAIN) as c.Write does. Every datagram is either sent or
// counted in fails, once, as one write(2) a datagram did: a datagram
// the kernel refuses (sendmmsg returns the error when it is the first
// of the call) is counted and skipped, the rest are sent again. err is
// a failure of c itself; done counts the datagrams sent or failed.
func sendUDP64(c *net.UDPConn, k int, pps float64, stop time.Time) (done int, fails int64, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	payload := make([]byte, udp64Payload)
	var iov unix.Iovec
	iov.Base = &payload[0]
	iov.SetLen(len(payload))
	var hdrs [sendBatch]mmsghdr
	for i := range hdrs {
		hdrs[i].hdr.Iov = &iov // the same bytes for each datagram
		hdrs[i].hdr.SetIovlen(1)
	}
	var sent int
	var errno syscall.Errno
	send := func(fd uintptr) bool {
		for {
			n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(min(k, sendBatch)), 0, 0, 0)
			sent, errno = int(n), e
			if e != unix.EINTR {
				return e != unix.EAGAIN
			}
		}
	}
	t0, total := time.Now(), 0
	for k > 0 && (stop.IsZero() || time.Now().Before(stop)) {
		if pps > 0 {
			// paced: no earlier than the offered rate allows
			if d := time.Duration(float64(total) / pps * float64(time.Second)); time.Since(t0) < d {
				time.Sleep(d - time.Since(t0))
			}
		}
		if err := rc.Write(send); err != nil {
			return done, fails, err
		}
		total += max(sent, 1)
		if errno != 0 {
			sent = 1 // refused, as a write(2) of it would have been
			fails++
		}
		k -= sent
		done += sent
	}
	return done, fails, nil
}

// BenchmarkLabUDP64Proc: BenchmarkLabUDP64 with the packets sent by
// another process (udp64With).
func BenchmarkLabUDP64Proc(b *testing.B) {
	c, s := labPair(b)
	pps, loss := udp64With(b, c, s, b.N, true, true)
	b.ReportMetric(pps, "pps")
	b.ReportMetric(loss, "%loss")
}

// BenchmarkKernelUDP64Proc: BenchmarkKernelUDP64 with the packets sent
// by another process.
func BenchmarkKernelUDP64Proc(b *testing.B) {
	c, s := kernelPair(b)
	pps, loss := udp64With(b, c, s, b.N, true, true)
	b.ReportMetric(pps, "pps")
	b.ReportMetric(loss, "%loss")
}

// benchTCP streams b.N chunks of 64 KiB from the client to a server that
// discards them, over one connection, and stops the clock when the
// server has read the last byte.
func benchTCP(b *testing.B, client, server string) {
	var ln net.Listener
	inNS(b, server, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", tcpPort))
		return err
	})
	defer ln.Close()
	read := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			read <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		read <- n
	}()
	var conn *net.TCPConn
	inNS(b, client, func() error {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", vip, tcpPort), 2*time.Second)
		if err == nil {
			conn = c.(*net.TCPConn)
		}
		return err
	})
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	buf := make([]byte, tcpChunk)
	b.SetBytes(tcpChunk)
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	conn.CloseWrite()
	n := <-read
	b.StopTimer()
	if n != int64(b.N)*tcpChunk {
		b.Fatalf("server read %d bytes, want %d", n, int64(b.N)*tcpChunk)
	}
}

// BenchmarkLabUDP64: 64-byte UDP packets per second through uswitch's
// TUN lab.
func BenchmarkLabUDP64(b *testing.B) {
	c, s := labPair(b)
	benchUDP64(b, c, s)
}

// labModes are the TUN lab's datapath configurations BenchmarkLabModes
// compares: one queue without offloads and with workers (the lab
// before offloads), offloads with workers, and the default (offloads,
// a queue per CPU, each queue's reader running the engine).
var labModes = []struct{ name, toml string }{
	{"plain-1q-workers", "offload = false\nqueues = 1\ninline = false"},
	{"plain-Nq-inline", "offload = false"},
	{"offload-1q-workers", "queues = 1\ninline = false"},
	{"offload-1q-inline", "queues = 1"},
	{"offload-Nq-workers", "inline = false"},
	{"offload-Nq-inline", ""},
	{"offload-4q-inline", "queues = 4"},
}

// BenchmarkLabModes: BenchmarkLabTCP and BenchmarkLabUDP64 in each of
// labModes.
func BenchmarkLabModes(b *testing.B) {
	for _, m := range labModes {
		b.Run("TCP/"+m.name, func(b *testing.B) {
			c, s := labPairWith(b, m.toml)
			benchTCP(b, c, s)
		})
		b.Run("UDP64/"+m.name, func(b *testing.B) {
			c, s := labPairWith(b, m.toml)
			benchUDP64(b, c, s)
		})
	}
}

// labRulesN is labRules with n rules at the head of FORWARD that no
// packet matches (distinct source /32s and TCP ports, as
// rulegen.FilterChain), before even the conntrack rule: every packet
// walks them, in the kernel one by one.
func labRulesN(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "-A FORWARD -s 172.16.%d.%d/32 -p tcp -m tcp --dport %d -j DROP\n", i/250, 1+i%250, 1024+i)
	}
	return strings.Replace(labRules, "-A FORWARD -m conntrack", b.String()+"-A FORWARD -m conntrack", 1)
}

// BenchmarkLabUDP64Rules10k / BenchmarkKernelUDP64Rules10k: 64-byte UDP
// through a FORWARD chain of 10,000 rules none matches (the issue's
// "10,000-rule set"), uswitch's lab (compiled classifier) vs the kernel.
func BenchmarkLabUDP64Rules10k(b *testing.B) {
	c, s := labPairRules(b, labRulesN(10000), "")
	benchUDP64(b, c, s)
}

func BenchmarkKernelUDP64Rules10k(b *testing.B) {
	c, s := kernelPairRules(b, labRulesN(10000))
	benchUDP64(b, c, s)
}

// offeredRates are the offered loads (packets per second, all flows
// together) the forwarding-rate benchmarks sweep.
var offeredRates = []float64{50e3, 100e3, 150e3, 200e3, 250e3, 275e3, 300e3, 325e3, 350e3, 400e3, 450e3, 500e3, 600e3, 700e3}

// sweepTime is how long each offered load of the sweep lasts.
const sweepTime = 500 * time.Millisecond

// benchUDP64Rate is the forwarding rate from client to server: the most
// 64-byte packets per second that reached the server over a sweep of
// offered loads (offeredRates, each for sweepTime, paced sendmmsg
// batches), RFC 2889's maximum forwarding rate; the unpaced benchmarks
// give its forwarding rate at maximum offered load. An unpaced sender overloads the 2-CPU machine: every packet
// the TUN or veth queue drops has cost the sender a trip through the
// client's stack on the CPUs the forwarding needs, so the rate
// delivered at overload is below what the path can carry (the kernel
// too: 185,000 pps unpaced, 300,000 paced). It reports pps (the best),
// offered-pps (where), and loss-at-best. b.N is ignored but for
// repetition: run it with -benchtime 1x.
func benchUDP64Rate(b *testing.B, client, server string) {
	benchUDP64RateTo(b, client, server, vip)
}

// benchUDP64RateTo is benchUDP64Rate to the address dst.
func benchUDP64RateTo(b *testing.B, client, server, dst string) {
	for range b.N {
		var best, at, bloss float64
		for _, r := range offeredRates {
			pps, loss := udp64To(b, client, server, dst, int(r*sweepTime.Seconds()), false, false, r, sweepTime)
			b.Logf("offered %.0f pps: %.0f pps reached the server (%.1f%% lost)", r, pps, loss)
			if pps > best {
				best, at, bloss = pps, r, loss
			}
		}
		b.ReportMetric(best, "pps")
		b.ReportMetric(at, "offered-pps")
		b.ReportMetric(bloss, "%loss")
	}
}

// BenchmarkLabUDP64Rate / BenchmarkKernelUDP64Rate and the Rules10k
// pair: forwarding rates (benchUDP64Rate) through the TUN lab and the
// kernel, without rules and with the 10,000-rule FORWARD chain.
func BenchmarkLabUDP64Rate(b *testing.B) {
	c, s := labPair(b)
	benchUDP64Rate(b, c, s)
}

func BenchmarkKernelUDP64Rate(b *testing.B) {
	c, s := kernelPair(b)
	benchUDP64Rate(b, c, s)
}

func BenchmarkLabUDP64Rules10kRate(b *testing.B) {
	c, s := labPairRules(b, labRulesN(10000), "")
	benchUDP64Rate(b, c, s)
}

func BenchmarkKernelUDP64Rules10kRate(b *testing.B) {
	c, s := kernelPairRules(b, labRulesN(10000))
	benchUDP64Rate(b, c, s)
}

// BenchmarkNFQueueUDP64Rate: the forwarding rate (benchUDP64Rate) of
// the kernel with uswitch deciding every packet from the NFQUEUE queue
// (batched verdicts), beside BenchmarkKernelUDP64Rate; %failopen is the
// share of the best step's packets uswitch never saw.
func BenchmarkNFQueueUDP64Rate(b *testing.B) {
	c, _, s, _ := nfqueuePair(b, false)
	benchUDP64Rate(b, c, s)
}

// BenchmarkNFQueueUDP64RateInline: BenchmarkNFQueueUDP64Rate with the
// queue's reader deciding what it read itself (Options.Inline).
func BenchmarkNFQueueUDP64RateInline(b *testing.B) {
	c, _, s, _ := nfqueuePairWith(b, nfqueue.Options{Inline: true})
	benchUDP64Rate(b, c, s)
}

// BenchmarkKernelUDP64: the same through the kernel forwarding over veth.
func BenchmarkKernelUDP64(b *testing.B) {
	c, s := kernelPair(b)
	benchUDP64(b, c, s)
}

// BenchmarkLabTCP: bulk TCP throughput through uswitch's TUN lab.
func BenchmarkLabTCP(b *testing.B) {
	c, s := labPair(b)
	benchTCP(b, c, s)
}

// BenchmarkKernelTCP: the same through the kernel forwarding over veth.
func BenchmarkKernelTCP(b *testing.B) {
	c, s := kernelPair(b)
	benchTCP(b, c, s)
}

// BenchmarkNFQueueUDP64: 64-byte UDP packets per second forwarded by
// the kernel with uswitch deciding every packet from an NFQUEUE queue,
// with batched verdicts (one sendmsg and one NFQNL_MSG_VERDICT_BATCH a
// worker round) and with one verdict per sendmsg, against the kernel
// forwarding with labRules itself, each over its own client, router and
// server namespaces. Each op sends a packet through each of the three
// in turn, so they are measured in the same run under the same load;
// the metrics are each one's pps, its loss, and the ratios to the
// kernel. The queue is fail-open: packets the queue or the socket has
// no room for pass unseen (here without their DNAT, so they are lost
// further on); %failopen is the share of the packets that arrived at
// the router that uswitch never decided.
func BenchmarkNFQueueUDP64(b *testing.B) { nfqueueUDP64(b, false) }

// BenchmarkNFQueueUDP64Proc: BenchmarkNFQueueUDP64 with the packets
// sent by another process (udp64With), so the senders do not take the
// Go scheduler's Ps from the queue readers and workers.
func BenchmarkNFQueueUDP64Proc(b *testing.B) { nfqueueUDP64(b, true) }

func nfqueueUDP64(b *testing.B, proc bool) {
	kc, ks := kernelPair(b)
	bc, br, bs, bsrv := nfqueuePair(b, false)
	nc, nr, ns, nsrv := nfqueuePair(b, true)
	brx0, nrx0 := rxPackets(b, br), rxPackets(b, nr)
	bst0, nst0 := bsrv.Stats(), nsrv.Stats()
	b.ResetTimer()
	kpps, kloss := udp64With(b, kc, ks, b.N, false, proc)
	bpps, bloss := udp64With(b, bc, bs, b.N, false, proc)
	npps, nloss := udp64With(b, nc, ns, b.N, false, proc)
	b.StopTimer()
	bst, nst := bsrv.Stats(), nsrv.Stats()
	// unseen: arrived at the router but never decided by uswitch, i.e.
	// accepted by fail-open (full kernel queue or socket overrun); a
	// few ARP packets are counted too
	unseen := func(rx0, rx1 uint64, st0, st1 nfqueue.Stats) float64 {
		arrived, decided := float64(rx1-rx0), float64(st1.Packets-st0.Packets)
		if arrived == 0 {
			return 0
		}
		return 100 * max(arrived-decided, 0) / arrived
	}
	bunseen := unseen(brx0, rxPackets(b, br), bst0, bst)
	nunseen := unseen(nrx0, rxPackets(b, nr), nst0, nst)
	b.ReportMetric(kpps, "kernel-pps")
	b.ReportMetric(bpps, "batch-pps")
	b.ReportMetric(npps, "nobatch-pps")
	b.ReportMetric(bpps/kpps, "batch/kernel")
	b.ReportMetric(npps/kpps, "nobatch/kernel")
	b.ReportMetric(kloss, "kernel-%loss")
	b.ReportMetric(bloss, "batch-%loss")
	b.ReportMetric(nloss, "nobatch-%loss")
	b.ReportMetric(bunseen, "batch-%failopen")
	b.ReportMetric(nunseen, "nobatch-%failopen")
	// the mean number of messages a recvmmsg of the queue reader
	// returned, and of packets a verdict sendmsg answered
	perCall := func(x1, x0, calls1, calls0 uint64) float64 {
		if calls1 == calls0 {
			return 0
		}
		return float64(x1-x0) / float64(calls1-calls0)
	}
	b.ReportMetric(perCall(bst.Messages, bst0.Messages, bst.Reads, bst0.Reads), "batch-msgs/read")
	b.ReportMetric(perCall(nst.Messages, nst0.Messages, nst.Reads, nst0.Reads), "nobatch-msgs/read")
	b.ReportMetric(perCall(bst.Verdicts, bst0.Verdicts, bst.Sendmsgs, bst0.Sendmsgs), "batch-verdicts/sendmsg")
}
