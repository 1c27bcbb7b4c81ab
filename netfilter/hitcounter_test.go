package netfilter

import (
	"sync"
	"testing"
)

// Counters is a HitCounter's reading, for the tests.
type Counters struct{ Packets, Bytes uint64 }

func (h *HitCounter) load(base Counters) Counters {
	p, b := h.Load()
	return Counters{base.Packets + p, base.Bytes + b}
}

func TestHitCounterFold(t *testing.T) {
	var h HitCounter
	h.Add(100)
	h.Add(60)
	if got := h.load(Counters{}); got != (Counters{2, 160}) {
		t.Fatalf("before a fold: %+v", got)
	}
	if h.pkts.Load() != 0 {
		t.Fatal("folded early")
	}
	// just short of either mark: no fold
	h.acc.Store((foldPkts-2)<<accShift | (foldBytes - 100))
	h.Add(50)
	if h.pkts.Load() != 0 || h.acc.Load() != (foldPkts-1)<<accShift|(foldBytes-50) {
		t.Fatalf("folded short of the marks: acc %x pkts %d", h.acc.Load(), h.pkts.Load())
	}
	// the packets field reaches its mark
	h.acc.Store((foldPkts-1)<<accShift | 7)
	h.Add(3)
	if h.acc.Load() != 0 || h.pkts.Load() != foldPkts || h.bytes.Load() != 10 || h.seq.Load() != 2 {
		t.Fatalf("packets fold: acc %x pkts %d bytes %d seq %d", h.acc.Load(), h.pkts.Load(), h.bytes.Load(), h.seq.Load())
	}
	// the bytes field reaches its mark
	h.acc.Store(5<<accShift | (foldBytes - 10))
	h.Add(20)
	if h.acc.Load() != 0 || h.pkts.Load() != foldPkts+6 || h.bytes.Load() != 10+foldBytes+10 {
		t.Fatalf("bytes fold: acc %x pkts %d bytes %d", h.acc.Load(), h.pkts.Load(), h.bytes.Load())
	}
	// a hit too big for acc goes to the totals
	h.Add(bigHit + 1)
	if got := h.load(Counters{Packets: 1, Bytes: 1}); got != (Counters{foldPkts + 8, foldBytes + 20 + bigHit + 2}) {
		t.Fatalf("big hit: %+v", got)
	}
	var nilh *HitCounter
	if got := nilh.load(Counters{3, 4}); got != (Counters{3, 4}) {
		t.Fatalf("nil counter: %+v", got)
	}
}

// TestHitCounterConcurrent: adders cross the fold mark while a reader
// reads; nothing is lost and no read goes backwards (run with -race).
func TestHitCounterConcurrent(t *testing.T) {
	var h HitCounter
	const start = foldPkts - 5000
	h.acc.Store(start << accShift)
	const workers, each = 4, 20000
	var wg sync.WaitGroup
	done := make(chan struct{})
	var readErr error
	go func() {
		defer close(done)
		var last Counters
		for {
			c := h.load(Counters{})
			if c.Packets < last.Packets || c.Bytes < last.Bytes {
				readErr = errBackwards{last, c}
				return
			}
			last = c
			if c.Packets == start+workers*each {
				return
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				h.Add(40 + (i+w)%1460)
			}
		}(w)
	}
	wg.Wait()
	<-done
	if readErr != nil {
		t.Fatal(readErr)
	}
	var bytes uint64
	for w := 0; w < workers; w++ {
		for i := 0; i < each; i++ {
			bytes += uint64(40 + (i+w)%1460)
		}
	}
	if got := h.load(Counters{}); got != (Counters{start + workers*each, bytes}) {
		t.Fatalf("got %+v, want %d packets %d bytes", got, start+workers*each, bytes)
	}
	if h.pkts.Load() == 0 {
		t.Fatal("no fold happened")
	}
}

type errBackwards [2]Counters

func (e errBackwards) Error() string { return "a read went backwards" }

// BenchmarkHitCounter: one rule hit's counting, as every packet that
// matches a rule (or meets a policy) pays it.
func BenchmarkHitCounter(b *testing.B) {
	var h HitCounter
	for i := 0; i < b.N; i++ {
		h.Add(60)
	}
}

// AddShort counts as Add does, folding at the same marks.
func TestHitCounterAddShort(t *testing.T) {
	var a, b HitCounter
	for _, start := range []uint64{0, (foldPkts-1)<<accShift | 7, 5<<accShift | (foldBytes - 10)} {
		a.acc.Store(start)
		b.acc.Store(start)
		for _, n := range []int{0, 20, 1500, 65535} {
			a.Add(n)
			b.AddShort(uint16(n))
			if a.acc.Load() != b.acc.Load() || a.pkts.Load() != b.pkts.Load() || a.bytes.Load() != b.bytes.Load() || a.seq.Load() != b.seq.Load() {
				t.Fatalf("start %x, %d bytes: Add acc %x pkts %d bytes %d, AddShort acc %x pkts %d bytes %d", start, n,
					a.acc.Load(), a.pkts.Load(), a.bytes.Load(), b.acc.Load(), b.pkts.Load(), b.bytes.Load())
			}
		}
	}
	if b.pkts.Load() == 0 {
		t.Fatal("no fold happened")
	}
}

// TestHitCounterAddN: AddN's counts add up with Add's, through acc and,
// past its bounds, the totals.
func TestHitCounterAddN(t *testing.T) {
	var h HitCounter
	h.AddN(3, 300)
	h.Add(50)
	h.AddN(0, 0)
	if got := h.load(Counters{}); got != (Counters{4, 350}) || h.pkts.Load() != 0 {
		t.Fatalf("through acc: %+v (totals %d)", got, h.pkts.Load())
	}
	h.AddN(bigBatchPkts, 5)
	h.AddN(2, bigHit)
	if got := h.load(Counters{}); got != (Counters{4 + bigBatchPkts + 2, 355 + bigHit}) {
		t.Fatalf("past the bounds: %+v", got)
	}
	// across the fold mark
	h.acc.Store((foldPkts - 10) << accShift)
	h.AddN(20, 7)
	if h.acc.Load() != 0 || h.seq.Load() != 2 {
		t.Fatalf("no fold: acc %x seq %d", h.acc.Load(), h.seq.Load())
	}
}

// TestHitCounterAddNConcurrent: goroutines adding batches of their own
// sizes at once lose no hit (run with -race).
func TestHitCounterAddNConcurrent(t *testing.T) {
	var h HitCounter
	h.acc.Store((foldPkts - 3000) << accShift)
	const workers, each = 4, 20000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				h.AddN(uint64(w+1), uint64(100*(w+1)))
			}
		}()
	}
	wg.Wait()
	want := Counters{foldPkts - 3000, 0}
	for w := range workers {
		want.Packets += uint64(each * (w + 1))
		want.Bytes += uint64(each * 100 * (w + 1))
	}
	if got := h.load(Counters{}); got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
}
