package bench

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/uswitch-lab/uswitch/bench/rulegen"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
	"golang.org/x/sys/unix"
)

// threadCPU is the calling thread's CPU time in nanoseconds.
func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

func engine(b testing.TB, ruleset string) *datapath.Engine { return engineMode(b, ruleset, false) }

// engineMode is engine with the classifier on (linear false) or the
// linear reference walk.
func engineMode(b testing.TB, ruleset string, linear bool) *datapath.Engine {
	b.Helper()
	rs, err := (&iptables.Loader{}).LoadString(ruleset)
	if err != nil {
		b.Fatal(err)
	}
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		b.Fatal(err)
	}
	return datapath.New(datapath.Config{Rules: rs, FIB: fib, IPForward: true, Linear: linear}, conntrack.DefaultConfig(), 1)
}

var modes = []struct {
	name   string
	linear bool
}{{"compiled", false}, {"linear", true}}

func build(b testing.TB, spec string) []byte {
	sp, _, err := packet.ParseSpec(spec)
	if err != nil {
		b.Fatal(err)
	}
	return packet.Build(sp)
}

// runPkt copies tmpl into buf, decodes and runs it; it reports the fate.
func runPkt(b testing.TB, e *datapath.Engine, buf, tmpl []byte, p *packet.Packet, in string, now int64) datapath.Fate {
	return runFlow(b, e, buf, tmpl, p, in, now, -1)
}

// runFlow is runPkt with the source made unique for flow >= 0 (port and
// address rewritten with incremental checksums), so every run is the
// first packet of a new connection.
func runFlow(b testing.TB, e *datapath.Engine, buf, tmpl []byte, p *packet.Packet, in string, now int64, flow int) datapath.Fate {
	return runFlowAt(b, e, buf, tmpl, p, packet.Meta{InIf: in}, now, flow)
}

// receiver is an Engine or one of its Workers.
type receiver interface {
	Receive(p *packet.Packet, now int64, tr *datapath.Tracer) datapath.Fate
}

// runFlowAt is runFlow through rx with the packet's metadata in (the
// input device's name, and its index where the caller knows it, as the
// TUN readers of link/datapath.go set both).
func runFlowAt(b testing.TB, rx receiver, buf, tmpl []byte, p *packet.Packet, in packet.Meta, now int64, flow int) datapath.Fate {
	copy(buf, tmpl)
	*p = packet.Packet{Data: buf[:len(tmpl)], Meta: in}
	if err := p.Decode(); err != nil {
		b.Fatal(err)
	}
	if flow >= 0 {
		p.SetSrcPort(uint16(1024 + flow%60000))
		p.SetSrc(p.Src + uint32(flow/60000))
	}
	return rx.Receive(p, now, nil)
}

const natRules = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2:8080
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -d 192.168.1.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT
COMMIT
`

// BenchmarkEstablishedNAT: one packet of an established flow with DNAT
// and SNAT (MASQUERADE) through PREROUTING, FORWARD and POSTROUTING,
// with the flow cache and without.
func BenchmarkEstablishedNAT(b *testing.B) {
	b.Run("flowcache", func(b *testing.B) { benchEstablishedNAT(b, false) })
	b.Run("nocache", func(b *testing.B) { benchEstablishedNAT(b, true) })
}

func benchEstablishedNAT(b *testing.B, nocache bool) {
	e := engine(b, natRules)
	if nocache {
		cfg := e.Config()
		cfg.NoFlowCache = true
		e.Swap(cfg)
	}
	buf := make([]byte, 2048)
	p := &packet.Packet{}
	for _, s := range []struct{ spec, in string }{
		{"tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1", "eth0"},
		{"tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7", "eth1"},
		{"tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2", "eth0"},
	} {
		if f := runPkt(b, e, buf, build(b, s.spec), p, s.in, 1e9); f.Kind != datapath.Forwarded {
			b.Fatalf("%s: %v", s.spec, f)
		}
	}
	tmpl := build(b, "tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2 psh len 64")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if f := runPkt(b, e, buf, tmpl, p, "eth0", 2e9); f.Kind != datapath.Forwarded {
			b.Fatal(f)
		}
	}
}

// BenchmarkNewConnFilter: the first packet of a new connection through a
// FORWARD chain of N rules that it matches none of, through the compiled
// classifier and through the linear walk.
func BenchmarkNewConnFilter(b *testing.B) {
	for _, m := range modes {
		for _, n := range []int{100, 1000, 10000, 30000} {
			if m.linear && n > 10000 && testing.Short() {
				continue
			}
			b.Run(fmt.Sprintf("%s/rules-%d", m.name, n), func(b *testing.B) {
				benchNewConnFilter(b, n, m.linear)
			})
		}
	}
}

func benchNewConnFilter(b *testing.B, n int, linear bool) {
	{
		{
			e := engineMode(b, rulegen.FilterChain(n), linear)
			buf := make([]byte, 2048)
			p := &packet.Packet{}
			tmpl := build(b, "udp 10.0.1.2:1024 > 192.168.1.2:53")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if f := runFlow(b, e, buf, tmpl, p, "eth0", int64(i), i); f.Kind != datapath.Forwarded {
					b.Fatal(f)
				}
			}
		}
	}
}

// BenchmarkKubeProxyFirstPacket: the first packet of a connection to a
// service VIP through a kube-proxy-shaped nat table of N services.
//
// On a loaded machine ns/op varies by 2x from run to run; cpu-ns/op less.
// A count that does not vary is the instructions per packet: run the
// test binary under valgrind --tool=cachegrind with GOGC=off
// GOMAXPROCS=1 at -test.benchtime 5000x and 25000x and divide the
// difference of the I refs by 20,000.
// With GOGC left on the GC's share of the entry's allocation adds
// 4,500-5,000 (30000x against 90000x, both with their flushes: 14,400-
// 14,700 against 9,700-9,850 with GOGC=off). From 10,000 services on the rule set's loading varies
// by more than that difference (map seeds); count only inside runFlowAt
// instead: valgrind --tool=callgrind
// --toggle-collect=github.com/uswitch-lab/uswitch/bench.runFlowAt with
// GODEBUG=asyncpreemptoff=1 (callgrind stops at Go's preemption
// signal), and divide the collected count by N+3 (about 8,700 at every
// size; 10,000 before the lean walk's typed tests and visit state and
// the one-pass NAT rewrite).
func BenchmarkKubeProxyFirstPacket(b *testing.B) {
	for _, m := range modes {
		for _, n := range []int{100, 1000, 10000, 30000} {
			b.Run(fmt.Sprintf("%s/services-%d", m.name, n), func(b *testing.B) {
				benchKubeFirst(b, n, m.linear)
			})
		}
	}
}

func benchKubeFirst(b *testing.B, n int, linear bool) {
	{
		{
			e := engineMode(b, rulegen.KubeProxy(n), linear)
			buf := make([]byte, 2048)
			p := &packet.Packet{}
			// the last service: the whole KUBE-SERVICES chain is walked
			vip := 0x0a600000 + uint32(n-1+10)
			tmpl := build(b, fmt.Sprintf("tcp 10.0.1.2:1024 > %d.%d.%d.%d:80 syn", vip>>24, vip>>16&0xff, vip>>8&0xff, vip&0xff))
			if f := runFlow(b, e, buf, tmpl, p, "eth0", 1, 0); f.Kind != datapath.Forwarded || p.Dst>>16 != 0x0af4 {
				b.Fatalf("fate %v, dst %08x", f, p.Dst)
			}
			// as the TUN readers run packets (link/datapath.go): on a
			// worker of the engine, with the input device's index known
			w := e.NewWorker(0)
			in := packet.Meta{InIf: "eth0", InIndex: e.Config().FIB.Ifindex("eth0")}
			// cpu-ns/op is the benchmark thread's own CPU time per packet
			// (CLOCK_THREAD_CPUTIME_ID, the flushes left out), which a
			// loaded machine inflates less than the wall clock's ns/op;
			// it leaves out the GC's background workers, not its assists
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := -threadCPU()
			for i := 0; i < b.N; i++ {
				if i > 0 && i%flushEvery == 0 {
					b.StopTimer()
					cpu += threadCPU()
					flushConntrack(e)
					cpu -= threadCPU()
					b.StartTimer()
				}
				if f := runFlowAt(b, w, buf, tmpl, p, in, int64(i), i+1); f.Kind != datapath.Forwarded {
					b.Fatal(f)
				}
			}
			cpu += threadCPU()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		}
	}
}

// flushEvery bounds the connections the kube-proxy benchmark keeps: every
// flow is masqueraded (--random-fully) to one address and one endpoint,
// so the 64,512 ports of 1024-65535 run out (and the kernel too fails
// the insert) long before 200,000 flows; the table is flushed, outside
// the timer, before the port space is half full.
const flushEvery = 30000

// flushConntrack deletes every entry (conntrack -F).
func flushConntrack(e *datapath.Engine) {
	var all []*conntrack.Conn
	e.CT.Range(0, func(c *conntrack.Conn) bool { all = append(all, c); return true })
	for _, c := range all {
		e.CT.Delete(c)
	}
}
