package fault

import (
	"testing"
)

const ms = int64(1e6)

// drain dequeues everything with a clock stepping by 1µs up to until,
// returning the values and their departure times.
func drain(q *Queue[int], from, until int64) (vals []int, times []int64) {
	for now := from; now <= until; now += 1000 {
		for {
			v, ok := q.Dequeue(now)
			if !ok {
				break
			}
			vals = append(vals, v)
			times = append(times, now)
		}
	}
	return vals, times
}

// TestRate: departure times of a packet sequence through rate 1mbit,
// exactly as netem chains them from the last queued packet, with the
// overhead and cells.
func TestRate(t *testing.T) {
	for _, tc := range []struct {
		words string
		arr   []int64 // arrival times
		lens  []int
		want  []int64 // time_to_send
	}{
		// 1000 B at 125000 B/s: 8 ms each, back to back
		{"rate 1mbit", []int64{0, 0, 0}, []int{1000, 1000, 1000}, []int64{8 * ms, 16 * ms, 24 * ms}},
		// a gap: the link idles, the fourth starts at its arrival
		{"rate 1mbit", []int64{0, 0, 30 * ms}, []int{1000, 500, 1000}, []int64{8 * ms, 12 * ms, 38 * ms}},
		// overhead 20, cells of 64 with 4 bytes each: 1020 → 16 cells → 1088 B = 8.704 ms
		{"rate 1mbit 20 64 4", []int64{0, 0}, []int{1000, 1000}, []int64{8704000, 2 * 8704000}},
		// delay 10ms then rate: the second packet's delay is eaten by the
		// first's time to send (netem: delay -= last - now)
		{"delay 10ms rate 1mbit", []int64{0, 0, 1 * ms}, []int{1000, 1000, 1000}, []int64{18 * ms, 26 * ms, 34 * ms}},
	} {
		f := mustFault(t, Spec{Name: "rate", At: "wire:t0:egress", Netem: tc.words}, 1)
		q := NewQueue[int](f, 0)
		for i := range tc.arr {
			p := udp(t, ipA, ipB, 1, 2, 10)
			d, _ := decide(f, p, tc.arr[i])
			got, ok := q.Enqueue(tc.arr[i], tc.lens[i], &d.Orig, i)
			if !ok || got != tc.want[i] {
				t.Errorf("%s: packet %d leaves at %d (%v), want %d", tc.words, i, got, ok, tc.want[i])
			}
		}
		vals, times := drain(q, 0, 100*ms)
		for i := range vals {
			if vals[i] != i || times[i] != tc.want[i] {
				t.Errorf("%s: dequeued %d at %d, want %d at %d", tc.words, vals[i], times[i], i, tc.want[i])
			}
		}
	}
}

// TestTfifoReorders: jitter wider than the spacing reorders packets (the
// tfifo sends by time); order = "fifo" keeps them in order.
func TestTfifoReorders(t *testing.T) {
	for _, fifo := range []bool{false, true} {
		s := Spec{Name: "j", At: "wire:t0:egress", Netem: "delay 20ms 15ms"}
		if fifo {
			s.Order = "fifo"
		}
		f := mustFault(t, s, 3)
		q := NewQueue[int](f, 0)
		p := udp(t, ipA, ipB, 1, 2, 10)
		for i := range 100 {
			d, _ := decide(f, p, int64(i)*ms)
			q.Enqueue(int64(i)*ms, 100, &d.Orig, i)
		}
		vals, times := drain(q, 0, 200*ms)
		if len(vals) != 100 {
			t.Fatalf("fifo %v: %d dequeued", fifo, len(vals))
		}
		inversions := 0
		for i := 1; i < len(vals); i++ {
			if vals[i] < vals[i-1] {
				inversions++
			}
			if times[i] < times[i-1] {
				t.Fatal("departures out of time order")
			}
		}
		if fifo && inversions != 0 || !fifo && inversions == 0 {
			t.Errorf("fifo %v: %d inversions", fifo, inversions)
		}
	}
}

// TestReorderHead: a packet the gap rule reorders leaves before
// everything queued (the head queue), at once.
func TestReorderHead(t *testing.T) {
	f := mustFault(t, Spec{Name: "r", At: "wire:t0:egress", Netem: "delay 10ms reorder 100% gap 3"}, 1)
	q := NewQueue[int](f, 0)
	p := udp(t, ipA, ipB, 1, 2, 10)
	for i := range 6 {
		d, _ := decide(f, p, 0)
		q.Enqueue(0, 100, &d.Orig, i+1)
	}
	vals, times := drain(q, 0, 20*ms)
	want := []int{3, 6, 1, 2, 4, 5}
	for i := range want {
		if vals[i] != want[i] {
			t.Fatalf("order %v, want %v", vals, want)
		}
	}
	if times[0] != 0 || times[2] != 10*ms {
		t.Errorf("times %v", times)
	}
}

// TestLimit: the queue limit drops what does not fit.
func TestLimit(t *testing.T) {
	f := mustFault(t, Spec{Name: "l", At: "wire:t0:egress", Netem: "delay 10ms limit 3"}, 1)
	q := NewQueue[int](f, 0)
	o := One{Delay: 10 * ms}
	for i := range 5 {
		_, ok := q.Enqueue(0, 100, &o, i)
		if ok != (i < 3) {
			t.Errorf("packet %d: queued %v", i, ok)
		}
	}
	if f.LimitDrops.Load() != 2 {
		t.Errorf("limit drops %d", f.LimitDrops.Load())
	}
}

// TestSlot: slot 10ms packets 2: two packets per slot, a slot every
// 10 ms (min = max: no randomness).
func TestSlot(t *testing.T) {
	f := mustFault(t, Spec{Name: "s", At: "wire:t0:egress", Netem: "slot 10ms 10ms packets 2"}, 1)
	q := NewQueue[int](f, 0)
	o := One{}
	for i := range 5 {
		q.Enqueue(0, 100, &o, i)
	}
	_, times := drain(q, 0, 50*ms)
	want := []int64{0, 0, 10 * ms, 10 * ms, 20 * ms}
	if len(times) != len(want) {
		t.Fatalf("times %v, want %v", times, want)
	}
	for i := range want {
		if times[i] != want[i] {
			t.Fatalf("times %v, want %v", times, want)
		}
	}
}
