package datapath

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/bridge/fdb"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// bridgeEngine is an engine with a bridge br0 of two ports (bridged
// frames need no route, so the router's FIB serves), br_netfilter on
// and conntrack rules in FORWARD.
func bridgeEngine(t testing.TB) *Engine {
	rs, err := (&iptables.Loader{}).LoadString(`*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -m physdev --physdev-is-bridged -m conntrack --ctstate NEW -j ACCEPT
COMMIT
`)
	if err != nil {
		t.Fatal(err)
	}
	fib, err := datapathtest.RouterFIB()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Rules: rs, FIB: fib, Bridges: []BridgeConfig{{
		CallIPTables: true,
		FDB: fdb.Config{Name: "br0", MAC: packet.MAC{2, 0, 0, 0, 0, 0xfe}, MACSet: true, Ports: []fdb.PortConfig{
			{Name: "p1", MAC: packet.MAC{2, 0, 0, 0, 1, 1}, Flags: fdb.DefaultPortFlags},
			{Name: "p2", MAC: packet.MAC{2, 0, 0, 0, 1, 2}, Flags: fdb.DefaultPortFlags}}},
	}}}
	e := New(cfg, conntrack.DefaultConfig(), 1)
	if e.BridgeErr != nil {
		t.Fatal(e.BridgeErr)
	}
	return e
}

var (
	hostA = packet.MAC{2, 0, 0, 0, 0, 0xa}
	hostB = packet.MAC{2, 0, 0, 0, 0, 0xb}
)

func udpFrame(dst, src packet.MAC, s string) []byte {
	sp, _, err := packet.ParseSpec(s)
	if err != nil {
		panic(err)
	}
	return packet.BuildFrame(dst, src, packet.EtherTypeIPv4, packet.Build(sp))
}

// TestBridgeEstablished: an established bridged UDP flow through
// br_netfilter and conntrack goes to its learned port.
func TestBridgeEstablished(t *testing.T) {
	e := bridgeEngine(t)
	ab := udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53")
	ba := udpFrame(hostA, hostB, "udp 10.1.0.2:53 > 10.1.0.1:1000")
	if f := e.ReceiveFrame(append([]byte(nil), ab...), "p1", 1, nil); len(f.Out) != 1 || f.Out[0].Port != "p2" {
		t.Fatalf("first frame: %v", f)
	}
	if f := e.ReceiveFrame(append([]byte(nil), ba...), "p2", 2, nil); len(f.Out) != 1 || f.Out[0].Port != "p1" {
		t.Fatalf("answer: %v", f)
	}
	f := e.ReceiveFrame(append([]byte(nil), ab...), "p1", 3, nil)
	if len(f.Out) != 1 || f.Out[0].Port != "p2" || f.Drop != "" {
		t.Fatalf("established: %v", f)
	}
}

func BenchmarkBridgeEstablished(b *testing.B) { benchBridgeEstablished(b, bridgeEngine(b), true) }

// BenchmarkBridgeEstablishedEngine is BenchmarkBridgeEstablished
// through Engine.ReceiveFrameInto (no Worker: a pooled call state, the
// counters added to per frame).
func BenchmarkBridgeEstablishedEngine(b *testing.B) {
	benchBridgeEstablished(b, bridgeEngine(b), false)
}

// establishBridgeFlow sends a UDP flow's first frame (hostA to hostB)
// in p1 and its answer in p2, at times 1 and 2, and returns the flow's
// frame from p1.
func establishBridgeFlow(e *Engine) []byte {
	ab := udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53")
	ba := udpFrame(hostA, hostB, "udp 10.1.0.2:53 > 10.1.0.1:1000")
	e.ReceiveFrame(append([]byte(nil), ab...), "p1", 1, nil)
	e.ReceiveFrame(append([]byte(nil), ba...), "p2", 2, nil)
	return ab
}

// benchBatch is the frames a benchmark's worker runs between two
// FlushHits: the lab's batch (link's batchSize).
const benchBatch = 64

// benchBridgeEstablished establishes the hostA-hostB flow on e and
// times its frames from p1, on a Worker that flushes its hits every
// benchBatch frames, as the lab's workers do (worker), or through
// Engine.ReceiveFrameInto; it returns the last frame's fate.
func benchBridgeEstablished(b *testing.B, e *Engine, worker bool) FrameFate {
	ab := establishBridgeFlow(e)
	buf := make([]byte, len(ab))
	var ff FrameFate
	w := e.NewWorker(0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		copy(buf, ab)
		if worker {
			w.ReceiveFrameInto(&ff, buf, "p1", int64(3+i), nil)
			if i%benchBatch == benchBatch-1 {
				w.FlushHits()
			}
		} else {
			e.ReceiveFrameInto(&ff, buf, "p1", int64(3+i), nil)
		}
	}
	w.FlushHits()
	return ff
}

// TestBridgeEstablishedNoAllocs: an established bridged flow through
// br_netfilter and conntrack allocates nothing when the caller reuses
// its FrameFate (ReceiveFrameInto, of the engine or of a Worker as the
// lab's workers call it, with its hit batch flushed).
func TestBridgeEstablishedNoAllocs(t *testing.T) {
	e := bridgeEngine(t)
	ab := establishBridgeFlow(e)
	buf := make([]byte, len(ab))
	var ff FrameFate
	now := int64(3)
	e.ReceiveFrameInto(&ff, append([]byte(nil), ab...), "p1", now, nil)
	n := testing.AllocsPerRun(1000, func() {
		now++
		copy(buf, ab)
		e.ReceiveFrameInto(&ff, buf, "p1", now, nil)
	})
	if n != 0 || len(ff.Out) != 1 || ff.Out[0].Port != "p2" {
		t.Errorf("%v allocations per frame; fate %v", n, ff)
	}
	w := e.NewWorker(1)
	w.ReceiveFrameInto(&ff, append([]byte(nil), ab...), "p1", now, nil)
	n = testing.AllocsPerRun(1000, func() {
		now++
		copy(buf, ab)
		w.ReceiveFrameInto(&ff, buf, "p1", now, nil)
		w.FlushHits()
	})
	if n != 0 || len(ff.Out) != 1 || ff.Out[0].Port != "p2" || !ff.FlowCached {
		t.Errorf("worker: %v allocations per frame; fate %v (cached %v)", n, ff, ff.FlowCached)
	}
}

// TestBridgeWorkerHitsExact: workers running established bridged flows
// at once, each with its replayed counters in its own hit batch and
// flushing at its own pace, leave every iptables and ebtables counter
// (packets and bytes, as the saves with counters print them) exactly
// as one engine that ran the same frames one by one without a worker:
// no hit lost or counted twice (run with -race too).
func TestBridgeWorkerHitsExact(t *testing.T) {
	const workers, each = 4, 3000
	par, ref := bridgeEngineEbtables(t), bridgeEngineEbtables(t)
	flowFrames := func(i int) (ab, ba []byte) {
		ab = udpFrame(hostB, hostA, fmt.Sprintf("udp 10.1.0.1:%d > 10.1.0.2:53 len %d", 1000+i, 10*i))
		ba = udpFrame(hostA, hostB, fmt.Sprintf("udp 10.1.0.2:53 > 10.1.0.1:%d", 1000+i))
		return ab, ba
	}
	var wg sync.WaitGroup
	cached := make([]int, workers)
	for i := range workers {
		ab, ba := flowFrames(i)
		ref.ReceiveFrame(append([]byte(nil), ab...), "p1", 1, nil)
		ref.ReceiveFrame(append([]byte(nil), ba...), "p2", 2, nil)
		for j := range each {
			ref.ReceiveFrame(append([]byte(nil), ab...), "p1", int64(3+j), nil)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := par.NewWorker(i)
			var ff FrameFate
			w.ReceiveFrameInto(&ff, append([]byte(nil), ab...), "p1", 1, nil)
			w.ReceiveFrameInto(&ff, append([]byte(nil), ba...), "p2", 2, nil)
			buf := make([]byte, len(ab))
			for j := range each {
				copy(buf, ab)
				w.ReceiveFrameInto(&ff, buf, "p1", int64(3+j), nil)
				if ff.FlowCached {
					cached[i]++
				}
				if j%(17+13*i) == 0 {
					w.FlushHits()
				}
			}
			w.FlushHits()
		}()
	}
	wg.Wait()
	for i, c := range cached {
		if c < each-1 {
			t.Fatalf("worker %d: only %d of %d frames replayed", i, c, each)
		}
	}
	save := func(e *Engine) string {
		var b bytes.Buffer
		cfg := e.Config()
		if err := cfg.Rules.Save(&b, iptables.SaveOptions{Counters: true}); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Ebtables.Save(&b, ebtables.SaveOptions{Counters: true}); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if a, b := save(ref), save(par); a != b {
		t.Fatalf("counters differ\none by one:\n%s\nworkers:\n%s", a, b)
	}
	if !strings.Contains(save(par), fmt.Sprintf("[%d:", workers*(each+1))) {
		t.Fatalf("no counter shows the %d established frames:\n%s", workers*(each+1), save(par))
	}
}

// FuzzReceiveFrame: any frame on a bridge port (with br_netfilter,
// conntrack rules and ebtables on the way) never panics, and every frame
// that leaves decodes as Ethernet.
func FuzzReceiveFrame(f *testing.F) {
	f.Add(udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53"), uint8(0))
	f.Add(udpFrame(packet.Broadcast, hostA, "udp 10.1.0.1:1000 > 10.1.0.255:53"), uint8(1))
	f.Add(udpFrame(packet.MAC{2, 0, 0, 0, 0, 0xfe}, hostA, "icmp 10.1.0.1 > 10.1.0.254 id 1 seq 1"), uint8(0))
	f.Add(packet.BuildFrame(packet.Broadcast, hostA, packet.EtherTypeARP, make([]byte, 28)), uint8(0))
	e := bridgeEngine(f)
	rs, rerr := (&ebtables.Loader{}).Load("*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n-A FORWARD -p IPv4 --ip-proto udp -j mark --mark-set 0x5 --mark-target CONTINUE\n*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n-A PREROUTING -p ARP -j arpreply --arpreply-mac 02:00:00:00:00:77\n")
	if rerr != nil {
		f.Fatal(rerr)
	}
	cfg := e.Config()
	cfg.Ebtables = rs
	e.Swap(cfg)
	now := int64(1)
	f.Fuzz(func(t *testing.T, b []byte, port uint8) {
		now += 1e6
		ff := e.ReceiveFrame(append([]byte(nil), b...), []string{"p1", "p2"}[port&1], now, nil)
		for _, o := range ff.Out {
			fr := packet.Frame{Data: o.Data}
			if err := fr.Decode(); err != nil {
				t.Fatalf("a frame left %s undecodable: %v", o.Port, err)
			}
		}
	})
}

// benchEbtables is a small ebtables rule set on the bridged path: a
// mark in nat PREROUTING (read by nothing), filter FORWARD rules the
// flow passes over before the one that accepts it, and a nat
// POSTROUTING rule.
const benchEbtables = `*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
-A FORWARD -p ARP -j ACCEPT
-A FORWARD -p IPv4 --ip-proto tcp --ip-dport 22 -j DROP
-A FORWARD -s 02:00:00:00:00:99 -j DROP
-A FORWARD -p IPv4 --ip-src 10.1.0.0/24 -j ACCEPT
*nat
:PREROUTING ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A PREROUTING -p IPv4 --ip-proto udp -j mark --mark-or 0x1 --mark-target CONTINUE
-A POSTROUTING -o p2 -p IPv4 -j CONTINUE
`

// bridgeEngineEbtables is bridgeEngine with benchEbtables.
func bridgeEngineEbtables(t testing.TB) *Engine {
	e := bridgeEngine(t)
	rs, err := (&ebtables.Loader{}).Load(benchEbtables)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Config()
	cfg.Ebtables = rs
	e.Swap(cfg)
	return e
}

// BenchmarkBridgeEstablishedEbtables is BenchmarkBridgeEstablished with
// ebtables rules in nat PREROUTING, filter FORWARD and nat POSTROUTING.
func BenchmarkBridgeEstablishedEbtables(b *testing.B) {
	ff := benchBridgeEstablished(b, bridgeEngineEbtables(b), true)
	if len(ff.Out) != 1 || !ff.FlowCached {
		b.Fatalf("fate %v (cached %v)", ff, ff.FlowCached)
	}
}

// BenchmarkBridgeEstablishedEbtablesEngine is
// BenchmarkBridgeEstablishedEbtables through Engine.ReceiveFrameInto.
func BenchmarkBridgeEstablishedEbtablesEngine(b *testing.B) {
	ff := benchBridgeEstablished(b, bridgeEngineEbtables(b), false)
	if len(ff.Out) != 1 || !ff.FlowCached {
		b.Fatalf("fate %v (cached %v)", ff, ff.FlowCached)
	}
}

// TestBridgeEstablishedEbtablesNoAllocs: the same through ebtables.
func TestBridgeEstablishedEbtablesNoAllocs(t *testing.T) {
	e := bridgeEngineEbtables(t)
	ab := establishBridgeFlow(e)
	buf := make([]byte, len(ab))
	var ff FrameFate
	now := int64(3)
	n := testing.AllocsPerRun(1000, func() {
		now++
		copy(buf, ab)
		e.ReceiveFrameInto(&ff, buf, "p1", now, nil)
	})
	if n != 0 || len(ff.Out) != 1 || ff.Out[0].Port != "p2" || !ff.FlowCached {
		t.Errorf("%v allocations per frame; fate %v (cached %v)", n, ff, ff.FlowCached)
	}
}

// TestBridgeFrameCsumValid: conntrack verifies the UDP checksum of a
// bridged frame in PREROUTING (br_netfilter, nf_conntrack_checksum):
// an established flow's frame with a bad checksum is INVALID, and
// FORWARD's policy drops it, unless its device vouched for the checksum
// (Worker.ReceiveFrameCsum), which nf_ip_checksum does not verify.
func TestBridgeFrameCsumValid(t *testing.T) {
	e := bridgeEngine(t)
	ab := establishBridgeFlow(e)
	bad := append([]byte(nil), ab...)
	bad[14+20+6] ^= 0x5a // the UDP checksum
	w := e.NewWorker(1)
	var ff FrameFate
	for i, c := range []struct {
		frame   []byte
		how     string
		through bool
	}{
		{ab, "engine", true},
		{bad, "engine", false},
		{bad, "worker, unvouched", false},
		{bad, "worker, vouched", true},
		{ab, "worker, vouched", true},
		{bad, "worker, unvouched", false},
	} {
		buf := append([]byte(nil), c.frame...)
		now := int64(10 + i)
		switch c.how {
		case "engine":
			ff = e.ReceiveFrame(buf, "p1", now, nil)
		case "worker, unvouched":
			w.ReceiveFrameCsum(&ff, buf, false, "p1", now, nil)
		default:
			w.ReceiveFrameCsum(&ff, buf, true, "p1", now, nil)
		}
		if through := len(ff.Out) == 1 && ff.Out[0].Port == "p2"; through != c.through {
			t.Errorf("%d (%s, bad checksum %v): fate %v", i, c.how, &c.frame[0] == &bad[0], ff)
		}
	}
}
