package bench

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/uswitch-lab/uswitch/internal/kerneltest"
	"github.com/uswitch-lab/uswitch/lab"
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

var labSeq atomic.Int32

func needRoot(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root: makes network namespaces, TUN and veth devices")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		b.Skipf("no /dev/net/tun: %v", err)
	}
}

func uniqueName() string {
	return fmt.Sprintf("ub%d.%d", os.Getpid()%100000, labSeq.Add(1)) // <= 15 with "-c"
}

// labPair brings up the TUN lab and returns its client and server
// namespaces; it is removed at cleanup.
func labPair(b *testing.B) (client, server string) {
	needRoot(b)
	p := uniqueName()
	src := strings.ReplaceAll(strings.Replace(labTOML, "RULES", labRules, 1), "P-", p+"-")
	c, err := lab.Parse("bench.toml", []byte(src))
	if err != nil {
		b.Fatal(err)
	}
	l, err := lab.Up(c, nil)
	if err != nil {
		lab.Down(c)
		b.Fatal(err)
	}
	b.Cleanup(func() {
		l.Close()
		lab.Down(c)
	})
	return p + "-c", p + "-s"
}

// kernelPair makes client, router and server namespaces joined by veth,
// the router's interfaces named as uswitch's in the lab (ua, ub), with
// forwarding on and labRules restored; removed at cleanup.
func kernelPair(b *testing.B) (client, server string) {
	needRoot(b)
	kerneltest.Require(b)
	p := uniqueName()
	cl, rt, sv := p+"-c", p+"-r", p+"-s"
	for _, ns := range []string{cl, rt, sv} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add %s: %v %s", ns, err, out)
		}
		b.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run := func(args ...string) {
		b.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	in := func(ns string, args ...string) {
		b.Helper()
		run(append([]string{"ip", "netns", "exec", ns}, args...)...)
	}
	run("ip", "link", "add", "eth0", "netns", cl, "type", "veth", "peer", "name", "ua", "netns", rt)
	run("ip", "link", "add", "eth0", "netns", sv, "type", "veth", "peer", "name", "ub", "netns", rt)
	for _, ns := range []string{cl, rt, sv} {
		in(ns, "ip", "link", "set", "lo", "up")
	}
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
	cmd := exec.Command("ip", "netns", "exec", rt, "iptables-restore")
	cmd.Stdin = strings.NewReader(labRules)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("iptables-restore: %v\n%s", err, out)
	}
	return cl, sv
}

// inNS runs fn on a thread inside the named namespace, so the sockets it
// opens belong there; the thread is set back before it is released (or
// left locked, and discarded, if it cannot be).
func inNS(b *testing.B, name string, fn func() error) {
	b.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- err
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// udpFlows is how many client sockets send at once (several flows, so
// uswitch's flow-sharded workers all have work).
const udpFlows = 4

// benchUDP64 sends b.N 64-byte packets from the client to the service as
// fast as the sockets take them and counts what reaches the server. It
// reports the received packets per second (first send to last receive)
// and the loss.
func benchUDP64(b *testing.B, client, server string) {
	var rc *net.UDPConn
	inNS(b, server, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: udpPort})
		if err == nil {
			c.SetReadBuffer(8 << 20)
			rc = c
		}
		return err
	})
	defer rc.Close()
	var got atomic.Int64
	var last atomic.Int64 // UnixNano of the last receive
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rc.Read(buf); err != nil {
				return
			}
			got.Add(1)
			last.Store(time.Now().UnixNano())
		}
	}()
	conns := make([]*net.UDPConn, udpFlows)
	for i := range conns {
		inNS(b, client, func() error {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(vip), Port: udpPort})
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
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	var sendErr atomic.Int64
	for i, c := range conns {
		n := b.N / udpFlows
		if i < b.N%udpFlows {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := make([]byte, udp64Payload)
			for range n {
				if _, err := c.Write(m); err != nil {
					sendErr.Add(1) // ENOBUFS from a full device queue
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	// drain: wait until nothing more arrives for 100ms (bounded)
	prev := int64(-1)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		n := got.Load()
		if n == prev || n >= int64(b.N) {
			break
		}
		prev = n
		time.Sleep(100 * time.Millisecond)
	}
	rx := got.Load()
	if rx == 0 {
		b.Fatalf("none of %d packets arrived", b.N)
	}
	el := time.Duration(last.Load() - t0.UnixNano())
	b.ReportMetric(float64(rx)/el.Seconds(), "pps")
	b.ReportMetric(100*float64(int64(b.N)-rx)/float64(b.N), "%loss")
	if sendErr.Load() > 0 {
		b.Logf("%d sends failed (device queue full)", sendErr.Load())
	}
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
