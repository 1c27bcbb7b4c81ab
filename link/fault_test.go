package link_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/lab"
	"github.com/uswitch-lab/uswitch/link"
	"github.com/uswitch-lab/uswitch/link/linktest"
	"github.com/uswitch-lab/uswitch/packet"
)

const faultTUNs = `
name = "f"
[uswitch]
seed = 5
[uswitch.sysctl]
"net.ipv4.ip_forward" = 1
[[interface]]
name = "tc"
netns = "x-c"
addresses = ["10.10.1.1/24"]
[[interface]]
name = "ts"
netns = "x-s"
addresses = ["10.10.2.1/24"]
[[namespace]]
name = "x-c"
addresses = ["10.10.1.2/24"]
[[namespace]]
name = "x-s"
addresses = ["10.10.2.2/24"]
`

// faultPath runs the lab's engine and faults over two fake TUNs and
// returns the datapath and its devices.
func faultPath(t *testing.T, faults string) (*link.Datapath, *linktest.Dev, *linktest.Dev) {
	return faultPathWorkers(t, faults, 2, true)
}

func faultPathWorkers(t *testing.T, faults string, workers int, inline bool) (*link.Datapath, *linktest.Dev, *linktest.Dev) {
	t.Helper()
	src := faultTUNs
	if !inline {
		src = strings.Replace(src, "seed = 5\n", "seed = 5\ninline = false\n", 1)
	}
	c, err := lab.Parse("f.toml", []byte(src+faults))
	if err != nil {
		t.Fatal(err)
	}
	ecfg, ctcfg, err := c.EngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := c.FaultSet(c.FaultSeed(5))
	if err != nil {
		t.Fatal(err)
	}
	var st []datapath.FaultStage
	for _, f := range fs.Hooks() {
		st = append(st, f)
	}
	ecfg.Faults = st
	tc, ts := linktest.New("tc"), linktest.New("ts")
	opts := c.DatapathOptions()
	if inline {
		opts = append(opts, link.WithInline())
	}
	dp := link.NewDatapath(datapath.New(ecfg, ctcfg, 5), []link.Device{tc, ts}, nil, workers, append(opts, link.WithFaults(fs))...)
	t.Cleanup(func() { dp.Close() })
	return dp, tc, ts
}

func udpN(i int) []byte {
	return packet.Build(packet.Spec{Src: packet.MustAddr("10.10.1.2"), Dst: packet.MustAddr("10.10.2.2"), TTL: 64, Proto: packet.ProtoUDP,
		SrcPort: 1000, DstPort: 7, Payload: []byte{byte(i)}})
}

func ids(t *testing.T, pkts [][]byte) []int {
	var out []int
	for _, b := range pkts {
		p := packet.Packet{Data: b}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		out = append(out, int(p.L4[8]))
	}
	return out
}

// TestWireDelayReorder: delay 20ms reorder 100% gap 5 on the egress
// wire: the delay goroutine sends the 5th and 10th packets at once (the
// head of the queue), the others 20 ms later, in order.
func TestWireDelayReorder(t *testing.T) {
	dp, tc, ts := faultPath(t, `
[[fault]]
name = "slow"
at = "wire:ts:egress"
netem = "delay 20ms reorder 100% gap 5"
`)
	start := time.Now()
	for i := 1; i <= 10; i++ {
		tc.In <- udpN(i)
	}
	got := ts.WaitWritten(10, 2*time.Second)
	el := time.Since(start)
	g := ids(t, got)
	want := []int{5, 10, 1, 2, 3, 4, 6, 7, 8, 9}
	if len(g) != len(want) {
		t.Fatalf("written %v", g)
	}
	for i := range want {
		if g[i] != want[i] {
			t.Fatalf("written %v, want %v", g, want)
		}
	}
	if el < 20*time.Millisecond {
		t.Errorf("delayed packets written after %v, before their 20 ms", el)
	}
	if f := dp.Faults().Faults[0]; f.Reordered.Load() != 2 || f.Delayed.Load() != 8 {
		t.Errorf("reordered %d, delayed %d", f.Reordered.Load(), f.Delayed.Load())
	}
}

// TestWireDuplicateAndNth: duplicate 100% on the egress wire writes each
// packet twice; an ingress fault dropping the flow's 2nd packet (nth)
// keeps it from the engine.
func TestWireDuplicateAndNth(t *testing.T) {
	_, tc, ts := faultPath(t, `
[[fault]]
name = "second"
at = "wire:tc:ingress"
action = "loss"
nth = [2]

[[fault]]
name = "twice"
at = "wire:ts:egress"
netem = "duplicate 100%"
`)
	for i := 1; i <= 3; i++ {
		tc.In <- udpN(i)
	}
	got := ids(t, ts.WaitWritten(4, 2*time.Second))
	if len(got) != 4 {
		t.Fatalf("written %v", got)
	}
	n := map[int]int{}
	for _, i := range got {
		n[i]++
	}
	if n[1] != 2 || n[3] != 2 || n[2] != 0 {
		t.Errorf("written %v: want 1 and 3 twice, 2 never", got)
	}
}

// TestHookFaultLive: a hook fault runs in the live engine: every other
// packet dropped at FORWARD.
func TestHookFaultLive(t *testing.T) {
	dp, tc, ts := faultPath(t, `
[[fault]]
name = "half"
at = "hook:ipv4:FORWARD@-10"
action = "loss"
every = 2
`)
	for i := 1; i <= 6; i++ {
		tc.In <- udpN(i)
	}
	got := ids(t, ts.WaitWritten(3, 2*time.Second))
	if len(got) != 3 || got[0] != 1 || got[1] != 3 || got[2] != 5 {
		t.Errorf("written %v, want [1 3 5]", got)
	}
	time.Sleep(20 * time.Millisecond)
	if s := dp.Stats(); s.Drops[datapath.DropKey{Reason: datapath.DropFault}] != 3 {
		t.Errorf("drops %v", s.Drops)
	}
}

// TestWireFaultTrace: while a live trace listens, a wire fault's
// decisions are trace lines.
func TestWireFaultTrace(t *testing.T) {
	dp, tc, _ := faultPath(t, `
[[fault]]
name = "first"
at = "wire:tc:ingress"
action = "loss"
nth = [1]
`)
	lines, cancel := dp.SubscribeTrace(16)
	defer cancel()
	tc.In <- udpN(1)
	select {
	case l := <-lines:
		if l != " TRACE: 2 00000000 fault:wire:tc:ingress:rule:0x0:DROP  -4 -t fault -A wire:tc:ingress first n=1 drop" {
			t.Errorf("line %q", l)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no trace line")
	}
}

// TestWireLossWorkers: the same packets through a 30% loss fault leave
// the same survivors with 1, 2 and 4 workers (flows spread over the
// workers by hash) and inline: the draws are per flow and index.
func TestWireLossWorkers(t *testing.T) {
	const flows, per = 40, 25
	var ref []string
	for _, tc := range []struct {
		workers int
		inline  bool
	}{{1, false}, {2, false}, {4, false}, {2, true}} {
		dp, in, out := faultPathWorkers(t, `
[[fault]]
name = "lossy"
at = "wire:ts:egress"
netem = "loss 30%"
`, tc.workers, tc.inline)
		go func() {
			for i := range per {
				for f := range flows {
					in.In <- packet.Build(packet.Spec{Src: packet.MustAddr("10.10.1.2"), Dst: packet.MustAddr("10.10.2.2"), TTL: 64, Proto: packet.ProtoUDP,
						SrcPort: uint16(2000 + f), DstPort: 7, Payload: []byte{byte(i)}})
				}
			}
		}()
		// every packet is written or dropped by the fault
		var got []string
		for deadline := time.Now().Add(5 * time.Second); len(got)+int(dp.FaultDrops()) < flows*per && time.Now().Before(deadline); {
			for _, b := range out.Take() {
				p := packet.Packet{Data: b}
				p.Decode()
				got = append(got, fmt.Sprintf("%d/%d", p.SrcPort, p.L4[8]))
			}
			time.Sleep(time.Millisecond)
		}
		slices.Sort(got)
		if len(got) < flows*per*60/100 || len(got) > flows*per*80/100 {
			t.Fatalf("%+v: %d of %d survived", tc, len(got), flows*per)
		}
		if ref == nil {
			ref = got
			continue
		}
		if !slices.Equal(got, ref) {
			t.Errorf("%+v: %d survivors differ from 1 worker's %d", tc, len(got), len(ref))
		}
	}
}
