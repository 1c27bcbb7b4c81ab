package conntrack

import (
	"sync"
	"testing"
	"unsafe"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// established sets up an assured TCP flow and returns a data packet of it.
func established(tb testing.TB, t *Table) (*packet.Packet, *packet.Packet) {
	now := int64(0)
	for _, s := range []packet.Spec{
		tcpSpec(true, 3000, 80, fS, 1, 0, 0),
		tcpSpec(false, 80, 3000, fS|fA, 100, 2, 0),
		tcpSpec(true, 3000, 80, fA, 2, 101, 0),
	} {
		r, _ := t.In(mkpkt(tb, s, nil), 0, netfilter.PreRouting, now)
		t.Confirm(r, now)
	}
	return mkpkt(tb, tcpSpec(true, 3000, 80, fA, 2, 101, 0), nil), mkpkt(tb, tcpSpec(false, 80, 3000, fA, 101, 2, 0), nil)
}

func TestNoAllocsExistingFlow(t *testing.T) {
	tb := testTable()
	p, q := established(t, tb)
	u := mkpkt(t, udpSpec(true, 4000, 53), nil)
	r, _ := tb.In(u, 0, netfilter.PreRouting, 0)
	tb.Confirm(r, 0)
	e := mkpkt(t, icmpErr(srvIP, cliIP, 3, 3, udpSpec(true, 4000, 53)), nil)
	var sink StateBits
	n := testing.AllocsPerRun(1000, func() {
		for _, x := range []*packet.Packet{p, q, u, e} {
			r, _ := tb.In(x, 0, netfilter.PreRouting, 1)
			r, _ = tb.Confirm(r, 1)
			sink |= r.State()
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per run on existing flows", n)
	}
	if sink&StateInvalid != 0 {
		t.Error("an existing-flow packet was invalid")
	}
}

func BenchmarkInEstablished(b *testing.B) {
	tb := testTable()
	p, q := established(b, tb)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		x := p
		if i&1 == 1 {
			x = q
		}
		r, _ := tb.In(x, 0, netfilter.PreRouting, 1)
		tb.Confirm(r, 1)
	}
}

func BenchmarkInUDP4096Flows(b *testing.B) {
	tb := testTable()
	pkts := make([]*packet.Packet, 4096)
	for i := range pkts {
		pkts[i] = mkpkt(b, udpSpec(true, uint16(i), 53), nil)
	}
	b.ReportAllocs()
	now := int64(0)
	for i := 0; b.Loop(); i++ {
		now += 1e6
		r, _ := tb.In(pkts[i%len(pkts)], 0, netfilter.PreRouting, now)
		tb.Confirm(r, now)
		if i%1024 == 0 {
			tb.Reap(now, 256)
		}
	}
}

// TestConcurrent hammers one table from several goroutines (run with
// -race): flows are sharded by goroutine as the engine shards by flow
// hash, while a reaper and a lister run beside them.
func TestConcurrent(t *testing.T) {
	tb := testTable()
	var wg sync.WaitGroup
	const workers, flows = 4, 200
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < flows; i++ {
				sp := uint16(w*1000 + i)
				now := int64(i) * 1e7
				for _, s := range []packet.Spec{
					tcpSpec(true, sp, 80, fS, 1, 0, 0),
					tcpSpec(false, 80, sp, fS|fA, 100, 2, 0),
					tcpSpec(true, sp, 80, fA, 2, 101, 0),
					udpSpec(true, sp, 53),
					udpSpec(false, 53, sp),
					icmpErr(srvIP, cliIP, 3, 3, udpSpec(true, sp, 53)),
					tcpSpec(false, 80, sp, fR|fA, 101, 2, 0),
				} {
					p := mkpkt(t, s, nil)
					r, _ := tb.In(p, 0, netfilter.PreRouting, now)
					tb.Confirm(r, now)
				}
			}
		}(w)
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for now := int64(0); ; now += 1e8 {
			select {
			case <-stop:
				return
			default:
			}
			tb.Reap(now, 100)
			tb.Range(now, func(c *Conn) bool { _ = c.Format(now, false); return true })
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	n := 0
	tb.Range(0, func(*Conn) bool { n++; return true })
	if n != tb.Count() {
		t.Errorf("Range saw %d entries, Count says %d", n, tb.Count())
	}
}

// FuzzIn feeds arbitrary bytes (as a decoded packet) through In and
// Confirm at both hooks: no panic, and the Ref is consistent.
func FuzzIn(f *testing.F) {
	f.Add(packet.Build(tcpSpec(true, 1, 2, fS, 1, 0, 0)), uint8(0))
	f.Add(packet.Build(udpSpec(true, 1, 2)), uint8(3))
	f.Add(packet.Build(icmpErr(srvIP, cliIP, 3, 3, udpSpec(true, 1, 2))), uint8(0))
	f.Add(packet.Build(icmpSpec(cliIP, srvIP, 8, 0, 1, nil)), uint8(0))
	tb := testTable()
	var now int64
	f.Fuzz(func(t *testing.T, b []byte, hook uint8) {
		now += 1e8
		p := &packet.Packet{Data: b}
		if p.Decode() != nil {
			return
		}
		for _, h := range []netfilter.Hook{netfilter.PreRouting, netfilter.LocalOut} {
			if hook&1 == 1 {
				h = netfilter.LocalOut
			}
			r, _ := tb.In(p, uint16(hook>>4), h, now)
			if (r.Conn == nil) != (r.State()&(StateInvalid|StateUntracked) != 0) {
				t.Fatalf("inconsistent ref %+v", r)
			}
			tb.Confirm(r, now)
			if r.Conn != nil {
				_ = r.Conn.Format(now, true)
			}
		}
		tb.Reap(now, 16)
	})
}

// A conntrack entry, the one allocation of a new connection, stays in
// the allocator's 320-byte size class.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 320 {
		t.Errorf("Conn is %d bytes, more than the 320-byte size class", n)
	}
}

// TestNoAllocsWithListener: a listener costs no allocation on packets
// that change nothing (an established flow's data), and nothing at all
// is allocated for events while nobody listens (TestNoAllocsExistingFlow).
func TestNoAllocsWithListener(t *testing.T) {
	tb := testTable()
	events := 0
	tb.Subscribe(func(*Event) { events++ })
	p, q := established(t, tb)
	if events != 3 {
		t.Fatalf("%d events for the handshake, want NEW and two UPDATEs", events)
	}
	n := testing.AllocsPerRun(1000, func() {
		for _, x := range []*packet.Packet{p, q} {
			r, _ := tb.In(x, 0, netfilter.PreRouting, 1)
			tb.Confirm(r, 1)
		}
	})
	if n != 0 || events != 3 {
		t.Errorf("%v allocations per run, %d events", n, events)
	}
}

// BenchmarkInEstablishedListening is BenchmarkInEstablished with an
// event listener attached (conntrack -E running).
func BenchmarkInEstablishedListening(b *testing.B) {
	tb := testTable()
	tb.Subscribe(func(*Event) {})
	p, q := established(b, tb)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		x := p
		if i&1 == 1 {
			x = q
		}
		r, _ := tb.In(x, 0, netfilter.PreRouting, 1)
		tb.Confirm(r, 1)
	}
}
