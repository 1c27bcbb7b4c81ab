package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/bench/rulegen"
	"github.com/uswitch-lab/uswitch/packet"
)

// replayServices is the number of kube-proxy services of the replay
// snapshot: about 6 rules each, so 10,000 rules in all.
const replayServices = 1667

// replaySnapshot writes a host snapshot into dir: examples/router's
// devices and sysctls, a kube-proxy-shaped rule set of about 10,000
// rules (rulegen.KubeProxy) with a FORWARD rule for DNS to 192.168.1/24,
// pods 10.244/16 behind eth1 (gateway 192.168.1.254) and clients in
// 10.244.200/22 on eth0 (pod to service traffic: no masquerade, so a
// capture can hold the replies).
func replaySnapshot(tb testing.TB, dir string) {
	tb.Helper()
	src := "../../examples/router"
	ents, err := os.ReadDir(src)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		switch e.Name() {
		case "iptables-save":
			rules := rulegen.KubeProxy(replayServices)
			rules = strings.Replace(rules, "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n",
				"-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n-A FORWARD -d 192.168.1.0/24 -p udp -m udp --dport 53 -j ACCEPT\n-A FORWARD -p udp -m udp --dport 9998 -j DROP\n-A FORWARD -p udp -m udp --dport 9997 -j REJECT\n-A FORWARD -s 10.244.0.0/16 -m comment --comment \"pod traffic\" -j ACCEPT\n", 1)
			b = []byte(rules)
		case "ip-route.json":
			s := strings.Replace(string(b), "[", `[{"dst":"10.244.0.0/16","gateway":"192.168.1.254","dev":"eth1","protocol":"static","flags":[]},{"dst":"10.244.200.0/22","dev":"eth0","protocol":"static","scope":"link","flags":[]},`, 1)
			b = []byte(s)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// replayFlow is one flow of the generated capture.
type replayFlow struct {
	kind       int // 0 TCP to a service, 1 DNS, 2 UDP dropped, 3 UDP to the host
	c, s       uint32
	cport, svc uint16
	ep         uint32 // the service's endpoint (TCP)
	cseq, sseq uint32
	step, n    int
}

// writeReplayCapture writes a pcapng of n raw IP packets on interfaces
// eth0 and eth1: mixed TCP and UDP flows, mostly established packets
// (70% TCP to kube services with handshakes, data both ways and a
// close; 25% DNS with replies; 3% UDP that FORWARD drops (policy, a
// DROP rule) or rejects (port unreachable answers); 2%
// UDP to the host's own address, answered with port unreachable). It
// is deterministic from seed.
func writeReplayCapture(tb testing.TB, file string, n int, seed uint64) {
	tb.Helper()
	f, err := os.Create(file)
	if err != nil {
		tb.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := pcapgo.NewNgWriterInterface(bw, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeIPv4}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		tb.Fatal(err)
	}
	eth1, err := w.AddInterface(pcapgo.NgInterface{Name: "eth1", LinkType: layers.LinkTypeIPv4})
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	const active = 2000
	flows := make([]*replayFlow, 0, active)
	nflow := 0
	newFlow := func() *replayFlow {
		nflow++
		fl := &replayFlow{cport: uint16(1024 + nflow%60000), cseq: rng.Uint32(), sseq: rng.Uint32()}
		switch r := rng.IntN(100); {
		case r < 70:
			i := rng.IntN(replayServices)
			if i%3 == 0 { // two endpoints: the statistic draw would choose
				i++
			}
			fl.kind, fl.svc = 0, 80
			fl.c = 0x0af4c800 + uint32(nflow/60000)<<8 + uint32(1+nflow%250)
			fl.s = 0x0a600000 + uint32(i+10)
			fl.ep = 0x0af40000 + uint32(2*i+1)
			fl.n = 6 + 2*(5+rng.IntN(30))
		case r < 95:
			fl.kind, fl.svc, fl.n = 1, 53, 2*(1+rng.IntN(20))
			fl.c, fl.s = 0x0a000002+uint32(rng.IntN(250)), 0xc0a80102+uint32(rng.IntN(240))
		case r < 98:
			// the FORWARD policy, a DROP rule, a REJECT rule
			fl.kind, fl.svc, fl.n = 2, uint16(9997+rng.IntN(3)), 1+rng.IntN(5)
			fl.c, fl.s = 0x0a000002+uint32(rng.IntN(250)), 0xc0a80102+uint32(rng.IntN(240))
		default:
			fl.kind, fl.svc, fl.n = 3, 9, 1+rng.IntN(3)
			fl.c, fl.s = 0x0a000002+uint32(rng.IntN(250)), 0x0a000001
		}
		return fl
	}
	payload := make([]byte, 64)
	ts := time.Unix(1700000000, 0)
	for written := 0; written < n; written++ {
		for len(flows) < active {
			flows = append(flows, newFlow())
		}
		j := rng.IntN(len(flows))
		fl := flows[j]
		sp := packet.Spec{Src: fl.c, Dst: fl.s, SrcPort: fl.cport, DstPort: fl.svc}
		iface := 0
		reply := false
		switch fl.kind {
		case 0:
			sp.Proto = packet.ProtoTCP
			last := fl.n - 3
			switch st := fl.step; {
			case st == 0:
				sp.TCPFlags, sp.Seq = packet.TCPSyn, fl.cseq
				fl.cseq++
			case st == 1:
				reply = true
				sp.TCPFlags, sp.Seq, sp.Ack = packet.TCPSyn|packet.TCPAck, fl.sseq, fl.cseq
				fl.sseq++
			case st == 2:
				sp.TCPFlags, sp.Seq, sp.Ack = packet.TCPAck, fl.cseq, fl.sseq
			case st < last:
				reply = st%2 == 0
				sp.TCPFlags, sp.Payload = packet.TCPAck|packet.TCPPsh, payload
				if reply {
					sp.Seq, sp.Ack = fl.sseq, fl.cseq
					fl.sseq += 64
				} else {
					sp.Seq, sp.Ack = fl.cseq, fl.sseq
					fl.cseq += 64
				}
			case st == last:
				sp.TCPFlags, sp.Seq, sp.Ack = packet.TCPFin|packet.TCPAck, fl.cseq, fl.sseq
				fl.cseq++
			case st == last+1:
				reply = true
				sp.TCPFlags, sp.Seq, sp.Ack = packet.TCPFin|packet.TCPAck, fl.sseq, fl.cseq
				fl.sseq++
			default:
				sp.TCPFlags, sp.Seq, sp.Ack = packet.TCPAck, fl.cseq, fl.sseq
			}
			if reply {
				sp.Src, sp.Dst, sp.SrcPort, sp.DstPort = fl.ep, fl.c, 8080, fl.cport
			}
		default:
			sp.Proto, sp.Payload = packet.ProtoUDP, payload[:32]
			if fl.kind == 1 && fl.step%2 == 1 {
				reply = true
				sp.Src, sp.Dst, sp.SrcPort, sp.DstPort = fl.s, fl.c, fl.svc, fl.cport
			}
		}
		if reply {
			iface = eth1
		}
		data := packet.Build(sp)
		ts = ts.Add(time.Microsecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data), InterfaceIndex: iface}, data); err != nil {
			tb.Fatal(err)
		}
		fl.step++
		if fl.step >= fl.n {
			flows[j] = flows[len(flows)-1]
			flows = flows[:len(flows)-1]
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// replayPackets is the size of BenchmarkTraceReplay's capture
// (USWITCH_REPLAY_PACKETS overrides it).
func replayPackets() int {
	n := 1000000
	if s := os.Getenv("USWITCH_REPLAY_PACKETS"); s != "" {
		fmt.Sscan(s, &n)
	}
	return n
}

// BenchmarkTraceReplay: `uswitch trace --snapshot S --pcap C` end to end
// (the capture read, decoded, run through the engine and printed as
// FATE lines into a discarded output) on a generated capture of 1 M
// packets (replayPackets) through a snapshot of about 10,000
// kube-proxy rules. It reports packets per second, the time of the
// whole command (the snapshot's load too); run it with -benchtime 1x.
// The sub-benchmark "load" replays a 1-packet capture: the snapshot's
// load and the engine's set-up alone; "stats" is the replay with
// --stats. cpu-ns/pkt is the process's CPU time per packet (every
// thread), which other work on the machine distorts less than pkts/s.
func BenchmarkTraceReplay(b *testing.B) {
	dir := b.TempDir()
	replaySnapshot(b, dir)
	n := replayPackets()
	capFile := filepath.Join(dir, "replay.pcapng")
	writeReplayCapture(b, capFile, n, 1)
	one := filepath.Join(dir, "one.pcapng")
	writeReplayCapture(b, one, 1, 1)
	for _, c := range []struct {
		name  string
		file  string
		n     int
		extra []string
	}{{"load", one, 1, nil}, {"fate-lines", capFile, n, nil}, {"stats", capFile, n, []string{"--stats"}}} {
		b.Run(c.name, func(b *testing.B) {
			args := append([]string{"--snapshot", dir, "--pcap", capFile}, c.extra...)
			args[3] = c.file
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if rc := traceCmd(args, strings.NewReader(""), io.Discard, os.Stderr); rc != 0 {
					b.Fatalf("exit %d", rc)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(c.n)*float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
			// the CPU time of the process (all its threads: the reader,
			// the GC) per packet, less sensitive than pkts/s to other
			// work on the machine
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(c.n*b.N), "cpu-ns/pkt")
		})
	}
}

// cpuTime is the process's user and system CPU time in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
