package datapath

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

// coinRules drops half the forwarded packets at random (xt_statistic
// --mode random draws from the packet's worker).
const coinRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m statistic --mode random --probability 0.5 -j DROP
COMMIT
`

func coinEngine(t testing.TB, seed uint64) *Engine {
	t.Helper()
	rs, err := (&iptables.Loader{}).LoadString(coinRules)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), seed)
}

// flips runs n UDP packets through run and returns their fates as a
// string of 'f' (forwarded) and 'd' (dropped).
func flips(t testing.TB, n int, run func(*packet.Packet) Fate) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		f := run(mk(t, fmt.Sprintf("udp 10.0.0.2:%d > 192.168.1.2:53 iif eth0", 1000+i)))
		switch f.Kind {
		case Forwarded:
			b[i] = 'f'
		case Dropped:
			b[i] = 'd'
		default:
			t.Fatalf("packet %d: %v", i, f)
		}
	}
	return string(b)
}

// TestWorkerRandom: worker 0 draws what Engine.Receive draws, a worker's
// draws repeat with the seed, and other workers draw other sequences.
func TestWorkerRandom(t *testing.T) {
	const n = 64
	e := coinEngine(t, 7)
	ref := flips(t, n, func(p *packet.Packet) Fate { return e.Receive(p, 1e9, nil) })
	if !strings.Contains(ref, "f") || !strings.Contains(ref, "d") {
		t.Fatalf("the rule draws nothing: %s", ref)
	}
	w0 := coinEngine(t, 7).NewWorker(0)
	if got := flips(t, n, func(p *packet.Packet) Fate { return w0.Receive(p, 1e9, nil) }); got != ref {
		t.Errorf("worker 0 %s\nengine   %s", got, ref)
	}
	var byWorker []string
	for i := 1; i <= 3; i++ {
		a, b := coinEngine(t, 7).NewWorker(i), coinEngine(t, 7).NewWorker(i)
		ga := flips(t, n, func(p *packet.Packet) Fate { return a.Receive(p, 1e9, nil) })
		gb := flips(t, n, func(p *packet.Packet) Fate { return b.Receive(p, 1e9, nil) })
		if ga != gb {
			t.Errorf("worker %d does not repeat:\n%s\n%s", i, ga, gb)
		}
		byWorker = append(byWorker, ga)
	}
	byWorker = append(byWorker, ref)
	for i := range byWorker {
		for j := range i {
			if byWorker[i] == byWorker[j] {
				t.Errorf("two workers draw the same: %s", byWorker[i])
			}
		}
	}
}

// TestWorkersConcurrent: workers run packets at once on one engine
// (go test -race checks they share no unguarded state), and so do
// callers of Engine.Receive.
func TestWorkersConcurrent(t *testing.T) {
	e := coinEngine(t, 1)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := e.NewWorker(i)
			run := w.Receive
			if i == 3 {
				run = e.Receive
			}
			for j := range 200 {
				sp, meta, err := packet.ParseSpec(fmt.Sprintf("udp 10.0.%d.2:%d > 192.168.1.2:53 iif eth0", i, 1000+j))
				if err != nil {
					t.Error(err)
					return
				}
				p := &packet.Packet{Data: packet.Build(sp), Meta: meta}
				if err := p.Decode(); err != nil {
					t.Error(err)
					return
				}
				if f := run(p, 1e9, nil); f.Kind != Forwarded && f.Kind != Dropped {
					t.Errorf("fate %v", f)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestWorkerNoAllocs: an established packet on a Worker allocates
// nothing either.
func TestWorkerNoAllocs(t *testing.T) {
	e := testEngine(t)
	w := e.NewWorker(1)
	tmpl := established(t, e)
	buf := make([]byte, len(tmpl))
	p := &packet.Packet{}
	run := func() {
		copy(buf, tmpl)
		*p = packet.Packet{Data: buf, Meta: packet.Meta{InIf: "eth0"}}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		if f := w.Receive(p, 2e9, nil); f.Kind != Forwarded {
			t.Fatalf("fate %v", f)
		}
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Fatalf("established packet on a worker allocates %v times", n)
	}
}

// TestWorkerPktReuse: a worker's packets reuse its own pkt, cleared
// between them; a packet run while the worker's pkt is busy (one run
// inside another) gets the pool's and leaves the worker's alone.
func TestWorkerPktReuse(t *testing.T) {
	e := coinEngine(t, 5)
	w := e.NewWorker(0)
	ref := flips(t, 64, func(p *packet.Packet) Fate { return e.Receive(p, 1e9, nil) })
	if got := flips(t, 64, func(p *packet.Packet) Fate { return w.Receive(p, 1e9, nil) }); got != ref {
		t.Fatalf("worker 0 with its own pkt: %s, engine %s", got, ref)
	}
	k := w.k
	if k == nil || w.busy || k.p != nil || k.fate.Kind != 0 {
		t.Fatalf("worker pkt after the packets: %p busy %v, not cleared", k, w.busy)
	}
	// as if a packet of this worker were running: the next one does not
	// touch the worker's pkt
	w.busy = true
	k.fate.Arg = "in use"
	f := w.Receive(mk(t, "udp 10.0.0.2:999 > 192.168.1.2:53 iif eth0"), 1e9, nil)
	if f.Kind != Forwarded && f.Kind != Dropped {
		t.Fatalf("nested packet: %v", f)
	}
	if w.k != k || !w.busy || k.fate.Arg != "in use" {
		t.Fatal("a nested packet used the busy worker pkt")
	}
}
