package bench

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/nfqueue"
	"golang.org/x/sys/unix"
)

// BenchmarkNFQueueUDP64RateOffload: the forwarding rate
// (benchUDP64Rate) of the kernel with uswitch deciding each flow's
// first packet from the queue and the flow then offloaded to the
// kernel (nfqueue.Options.Offload), beside BenchmarkKernelUDP64Rate.
func BenchmarkNFQueueUDP64RateOffload(b *testing.B) {
	c, _, s, srv := nfqueuePairWith(b, nfqueue.Options{Offload: true})
	benchUDP64Rate(b, c, s)
	b.ReportMetric(float64(srv.Packets()), "queued-packets")
}

// BenchmarkNFQueueOffloadVsKernel: BenchmarkNFQueueUDP64RateOffload
// and BenchmarkKernelUDP64Rate in turn in the same run (each op one
// sweep of each), so the ratio is taken under the same load.
func BenchmarkNFQueueOffloadVsKernel(b *testing.B) {
	kc, ks := kernelPair(b)
	oc, _, os, srv := nfqueuePairWith(b, nfqueue.Options{Offload: true})
	best := func(c, s string) float64 {
		var top float64
		for _, r := range offeredRates {
			pps, _ := udp64To(b, c, s, vip, int(r*sweepTime.Seconds()), false, false, r, sweepTime)
			top = max(top, pps)
		}
		return top
	}
	var k, o float64
	for range b.N {
		k += best(kc, ks)
		o += best(oc, os)
	}
	b.ReportMetric(k/float64(b.N), "kernel-pps")
	b.ReportMetric(o/float64(b.N), "offload-pps")
	b.ReportMetric(o/k, "offload/kernel")
	b.ReportMetric(float64(srv.Packets()), "queued-packets")
}

// BenchmarkNFQueueNewFlows: new connections decided per second with
// offload: the client sends one 64-byte UDP datagram to the service on
// each of many flows (distinct source addresses and ports, from a raw
// socket), each the first of its flow, so each is queued, decided
// (DNAT) and installed in the kernel; the server counts what arrives.
// Offered loads sweep as benchUDP64Rate's do (100 ms each); it reports
// the most flows a second uswitch installed (decided/s: offloaded flows
// over the time from the step's first send until the count stopped
// growing), where, and the share of that step's flows not installed
// (fail-open or refused). Each op sweeps the kernel forwarding the same
// new flows with labRules first (kernel-flows/s: datagrams the server
// received a second), so the two are measured under the same load.
// -benchtime 1x.
func BenchmarkNFQueueNewFlows(b *testing.B) { newFlows(b, false) }

// BenchmarkNFQueueNewFlowsInline: BenchmarkNFQueueNewFlows with the
// queue's reader deciding what it read (Options.Inline).
func BenchmarkNFQueueNewFlowsInline(b *testing.B) { newFlows(b, true) }

// newFlowRates are the offered new flows per second of the sweep.
var newFlowRates = []float64{50e3, 100e3, 150e3, 200e3, 300e3}

// BenchmarkNFQueueNewFlowsNoOffload: the same new flows decided by
// uswitch without offload (the queue in raw PREROUTING, as
// BenchmarkNFQueueUDP64Rate has it): decided/s counts what reached the
// server; the difference to BenchmarkNFQueueNewFlows is the installs'
// cost (and the kernel's conntrack).
func BenchmarkNFQueueNewFlowsNoOffload(b *testing.B) { newFlowsMode(b, false, false) }

// BenchmarkNFQueueNewFlowsTwoQueues: BenchmarkNFQueueNewFlows with two
// queues (--queue-balance; a reader and a worker each), as many as the
// machine has cores.
func BenchmarkNFQueueNewFlowsTwoQueues(b *testing.B) { newFlowsQueues(b, false, true, 2) }

func newFlows(b *testing.B, inline bool) { newFlowsMode(b, inline, true) }

func newFlowsMode(b *testing.B, inline, offload bool) { newFlowsQueues(b, inline, offload, 1) }

func newFlowsQueues(b *testing.B, inline, offload bool, queues int) {
	kc, ks := kernelPair(b)
	c, _, s, srv := nfqueuePairWith(b, nfqueue.Options{Offload: offload, Inline: inline, Queues: make([]uint16, queues)})
	kf, ksink := newFlowSender(b, kc, ks)
	uf, usink := newFlowSender(b, c, s)
	installed := func() uint64 { return srv.OffloadStats().Offloaded }
	if !offload {
		installed = usink
	}
	var kcpu, ucpu float64
	for range b.N {
		c0, k0 := cpuTime(), ksink()
		kbest, _, _ := sweepNewFlows(b, "kernel", kf, ksink)
		c1, u0 := cpuTime(), installed()
		best, at, miss := sweepNewFlows(b, "uswitch", uf, installed)
		c2 := cpuTime()
		kcpu += float64(c1-c0) / 1e3 / float64(max(ksink()-k0, 1))
		ucpu += float64(c2-c1) / 1e3 / float64(max(installed()-u0, 1))
		b.ReportMetric(kbest, "kernel-flows/s")
		b.ReportMetric(best, "decided/s")
		b.ReportMetric(best/kbest, "decided/kernel")
		b.ReportMetric(at, "offered/s")
		b.ReportMetric(miss, "%not-installed")
		b.Logf("uswitch: the server received %d datagrams; %v", usink(), srv.Stats())
	}
	// the process's CPU time (user and system: the sender's sends, the
	// kernel's work in them, uswitch, the server's reads) a flow the
	// kernel forwarded or uswitch installed: less sensitive to the
	// other load of a shared machine than the rates
	b.ReportMetric(kcpu/float64(b.N), "kernel-cpu-us/flow")
	b.ReportMetric(ucpu/float64(b.N), "cpu-us/flow")
}

// cpuTime is the process's user and system CPU time in ns.
func cpuTime() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// newFlowSender returns a function sending n first packets of new UDP
// flows to the service at rate a second from the client (a raw socket),
// and the count of datagrams the server received.
func newFlowSender(b *testing.B, client, server string) (send func(n int, rate float64) time.Time, received func() uint64) {
	var fd int
	inNS(b, client, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	})
	b.Cleanup(func() { unix.Close(fd) })
	rc := udpListener(b, server)
	b.Cleanup(func() { rc.Close() })
	var got, last atomic.Int64
	go recvUDP(rc, &got, &last)
	pkt := make([]byte, 64)
	next := uint32(0)
	dst := unix.SockaddrInet4{Addr: [4]byte{10, 96, 0, 10}}
	send = func(n int, rate float64) time.Time {
		t0 := time.Now()
		for i := range n {
			if d := time.Duration(float64(i) / rate * float64(time.Second)); time.Since(t0) < d {
				time.Sleep(d - time.Since(t0))
			}
			// source 10.10.1.(2..201), port 1024 + k/200: a new flow each
			k := next
			next++
			pkt[0], pkt[1] = 0x45, 0
			binary.BigEndian.PutUint16(pkt[2:], 64)
			binary.BigEndian.PutUint16(pkt[4:], 0)
			binary.BigEndian.PutUint16(pkt[6:], 0)
			pkt[8], pkt[9] = 64, unix.IPPROTO_UDP
			binary.BigEndian.PutUint16(pkt[10:], 0)
			copy(pkt[12:], []byte{10, 10, 1, byte(2 + k%200)})
			copy(pkt[16:], dst.Addr[:])
			binary.BigEndian.PutUint16(pkt[20:], uint16(1024+k/200))
			binary.BigEndian.PutUint16(pkt[22:], udpPort)
			binary.BigEndian.PutUint16(pkt[24:], 44)
			binary.BigEndian.PutUint16(pkt[26:], 0) // no checksum
			for unix.Sendto(fd, pkt, 0, &dst) == unix.ENOBUFS {
				time.Sleep(50 * time.Microsecond)
			}
		}
		return t0
	}
	return send, func() uint64 { return uint64(got.Load()) }
}

// sweepNewFlows offers newFlowRates in turn, 100 ms each, and returns
// the best rate count grew at (its growth over the time from the
// step's first send to its last change), where, and the share of the
// step's flows it missed.
func sweepNewFlows(b *testing.B, who string, send func(int, float64) time.Time, count func() uint64) (best, at, miss float64) {
	for _, r := range newFlowRates {
		n := int(r * 0.1)
		c0 := count()
		t0 := send(n, r)
		// wait until the count stops growing (bounded)
		prev, last := c0, time.Now()
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
			time.Sleep(2 * time.Millisecond)
			cur := count()
			if cur != prev {
				prev, last = cur, time.Now()
			} else if time.Since(last) > 50*time.Millisecond {
				break
			}
		}
		got := float64(prev - c0)
		rate := got / last.Sub(t0).Seconds()
		b.Logf("%s: offered %.0f flows/s: %.0f, %.0f/s (%.1f%% missed)", who, r, got, rate, 100*(float64(n)-got)/float64(n))
		if rate > best {
			best, at, miss = rate, r, 100*(float64(n)-got)/float64(n)
		}
	}
	return best, at, miss
}
