package experiment

import (
	"math"
	"sort"
	"sync"
	"time"
)

// series collects one workload's outcomes by slot (a tenth of a
// second) of the run: a request counts in the slot it started (a
// request sent into a fault window belongs to it, however late it
// fails), bytes in the slot they arrived.
type series struct {
	mu     sync.Mutex
	t0     time.Time
	secs   []bucket // slots
	errs   map[string]int
	served map[string]int
}

// slot is the series' resolution; slotsPerSec slots make a second.
const (
	slot        = 100 * time.Millisecond
	slotsPerSec = int(time.Second / slot)
)

type bucket struct {
	ok, fail int
	bytes    int64
	lat      []float64 // ms, of the successes
	// starts are the start times (s from t0) of the requests: the
	// per-window counts use them
	starts []sample
}

type sample struct {
	t   float64
	ok  bool
	lat float64
}

func newSeries(t0 time.Time) *series {
	return &series{t0: t0, errs: map[string]int{}, served: map[string]int{}}
}

func (s *series) bucket(at time.Time) *bucket {
	i := int(at.Sub(s.t0) / slot)
	if i < 0 {
		i = 0
	}
	for len(s.secs) <= i {
		s.secs = append(s.secs, bucket{})
	}
	return &s.secs[i]
}

// request records a request that started at start: its latency on
// success, the kind of error on failure ("" success), and who served
// it ("" unknown).
func (s *series) request(start time.Time, lat time.Duration, errKind, servedBy string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucket(start)
	ms := float64(lat) / 1e6
	sm := sample{t: start.Sub(s.t0).Seconds(), ok: errKind == "", lat: ms}
	b.starts = append(b.starts, sm)
	if errKind != "" {
		b.fail++
		s.errs[errKind]++
		return
	}
	b.ok++
	b.lat = append(b.lat, ms)
	if servedBy != "" {
		s.served[servedBy]++
	}
}

// conn records a tcp-bulk connection that started at start: it ended
// with the run ("" errKind) or broke; it has no latency.
func (s *series) conn(start time.Time, errKind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bucket(start)
	b.starts = append(b.starts, sample{t: start.Sub(s.t0).Seconds(), ok: errKind == "", lat: -1})
	if errKind != "" {
		b.fail++
		s.errs[errKind]++
		return
	}
	b.ok++
}

// bytes records n bytes received at at.
func (s *series) bytes(at time.Time, n int) {
	s.mu.Lock()
	s.bucket(at).bytes += int64(n)
	s.mu.Unlock()
}

// Percentiles are latency percentiles in ms (nearest rank; 0 when
// there is no sample).
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Percentiles{P50: round3(rank(0.5)), P90: round3(rank(0.9)), P99: round3(rank(0.99)), Max: round3(s[len(s)-1]), N: len(s)}
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// Second is one second of a workload.
type Second struct {
	T          int     `json:"t"`
	OK         int     `json:"ok"`
	Failed     int     `json:"failed"`
	Bytes      int64   `json:"bytes"`
	GoodputBps float64 `json:"goodput_bps"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
}

// Window is a workload's results inside one fault window (or, with
// Fault "", outside every window).
type Window struct {
	Fault        string  `json:"fault"`
	From         float64 `json:"from"`
	To           float64 `json:"to"`
	Requests     int     `json:"requests"`
	OK           int     `json:"ok"`
	Failed       int     `json:"failed"`
	SuccessRatio float64 `json:"success_ratio"`
	// GoodputBps is the bits per second received in the window's whole
	// seconds (tcp-bulk).
	GoodputBps float64     `json:"goodput_bps"`
	Latency    Percentiles `json:"latency_ms"`
}

// WorkloadResult is what a workload did.
type WorkloadResult struct {
	Name         string         `json:"name"`
	Kind         string         `json:"kind"`
	From         string         `json:"from"`
	To           string         `json:"to"`
	Mode         string         `json:"mode,omitempty"`
	Requests     int            `json:"requests"`
	OK           int            `json:"ok"`
	Failed       int            `json:"failed"`
	SuccessRatio float64        `json:"success_ratio"`
	Latency      Percentiles    `json:"latency_ms"`
	Bytes        int64          `json:"bytes"`
	GoodputBps   float64        `json:"goodput_bps"`
	Errors       map[string]int `json:"errors"`
	// Resent counts dns queries sent again after a timeout (the
	// lookup may still succeed, late).
	Resent    int64          `json:"resent,omitempty"`
	ServedBy  map[string]int `json:"served_by,omitempty"`
	PerSecond []Second       `json:"per_second"`
	Windows   []Window       `json:"windows"`
	// Active is the workload's window in the run (s).
	Active [2]float64 `json:"active"`
	// Phases are the workload's results between the steps: from the
	// start to the first step's time, then from each step's time to
	// the next's (Fault names the step that began it, "" the start).
	Phases []Window `json:"phases,omitempty"`
	// Slots are the plot's bins (timeline.svg), not in the file.
	Slots []Slot `json:"-"`
}

func ratio(ok, n int) float64 {
	if n == 0 {
		return 0
	}
	return round3(float64(ok) / float64(n))
}

// result summarises the series over the workload's active seconds
// [from, to) and per fault window.
func (s *series) result(from, to float64, windows []FaultWindows) WorkloadResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r WorkloadResult
	r.Active = [2]float64{from, to}
	var all []float64
	last := int(math.Ceil(to))
	for i := int(from); i < last; i++ {
		var b bucket
		for j := i * slotsPerSec; j < (i+1)*slotsPerSec && j < len(s.secs); j++ {
			x := &s.secs[j]
			b.ok += x.ok
			b.fail += x.fail
			b.bytes += x.bytes
			b.lat = append(b.lat, x.lat...)
		}
		p := percentiles(b.lat)
		r.PerSecond = append(r.PerSecond, Second{T: i, OK: b.ok, Failed: b.fail, Bytes: b.bytes,
			GoodputBps: float64(b.bytes) * 8, P50: p.P50, P99: p.P99})
		r.OK += b.ok
		r.Failed += b.fail
		r.Bytes += b.bytes
		all = append(all, b.lat...)
	}
	// what started before the workload's window or after its end
	// (none, as the generators run) and answers of the last requests
	for j := 0; j < len(s.secs); j++ {
		if j >= int(from)*slotsPerSec && j < last*slotsPerSec {
			continue
		}
		r.OK += s.secs[j].ok
		r.Failed += s.secs[j].fail
		all = append(all, s.secs[j].lat...)
	}
	r.Slots = s.slots(from, to)
	r.Requests = r.OK + r.Failed
	r.SuccessRatio = ratio(r.OK, r.Requests)
	r.Latency = percentiles(all)
	if to > from {
		r.GoodputBps = math.Round(float64(r.Bytes) * 8 / (to - from))
	}
	r.Errors = map[string]int{}
	for k, v := range s.errs {
		r.Errors[k] = v
	}
	if len(s.served) > 0 {
		r.ServedBy = map[string]int{}
		for k, v := range s.served {
			r.ServedBy[k] = v
		}
	}
	in := func(t float64, ws [][2]float64) bool {
		for _, w := range ws {
			if t >= w[0] && t < w[1] {
				return true
			}
		}
		return false
	}
	var union [][2]float64
	for _, fw := range windows {
		union = append(union, fw.Windows...)
		for _, w := range fw.Windows {
			r.Windows = append(r.Windows, s.window(fw.Fault, w[0], w[1], func(t float64) bool { return t >= w[0] && t < w[1] }))
		}
	}
	if len(windows) > 0 {
		// outside every window (left out when the windows cover the run)
		nw := s.window("", from, to, func(t float64) bool { return t >= from && t < to && !in(t, union) })
		if nw.Requests > 0 || nw.GoodputBps > 0 {
			r.Windows = append(r.Windows, nw)
		}
	}
	return r
}

// phases splits [from, to) at the steps' times (s, sorted; names what
// each did).
func (s *series) phases(from, to float64, at []float64, names []string) []Window {
	if len(at) == 0 {
		return nil
	}
	var out []Window
	start, name := from, ""
	for i := 0; i <= len(at); i++ {
		end := to
		if i < len(at) {
			end = math.Min(math.Max(at[i], from), to)
		}
		if end > start {
			a, b := start, end
			w := s.window(name, a, b, func(t float64) bool { return t >= a && t < b })
			out = append(out, w)
		}
		if i < len(at) {
			start, name = math.Max(end, start), names[i]
		}
	}
	return out
}

// window counts the requests that started where keep says, and the
// goodput of the whole seconds inside [from, to).
func (s *series) window(name string, from, to float64, keep func(float64) bool) Window {
	w := Window{Fault: name, From: from, To: to}
	var lat []float64
	for _, b := range s.secs {
		for _, sm := range b.starts {
			if !keep(sm.t) {
				continue
			}
			if sm.ok {
				w.OK++
				if sm.lat >= 0 {
					lat = append(lat, sm.lat)
				}
			} else {
				w.Failed++
			}
		}
	}
	w.Requests = w.OK + w.Failed
	w.SuccessRatio = ratio(w.OK, w.Requests)
	w.Latency = percentiles(lat)
	// goodput: the slots within the window, the first quarter of it
	// (up to a second) left out: the flow's state from before the
	// window still shows there
	settle := math.Min(1, (to-from)/4)
	var bytes int64
	n := 0
	for i := int(math.Ceil((from + settle) * float64(slotsPerSec))); float64(i+1)/float64(slotsPerSec) <= to+1e-9; i++ {
		t := float64(i) / float64(slotsPerSec)
		if !keep(t) || !keep(t+0.0999) {
			continue
		}
		if i < len(s.secs) {
			bytes += s.secs[i].bytes
		}
		n++
	}
	if n > 0 {
		w.GoodputBps = math.Round(float64(bytes) * 8 / (float64(n) / float64(slotsPerSec)))
	}
	return w
}

// Slot is one bin of the timeline's plot.
type Slot struct {
	T0, T1 float64
	// OK, Failed and Bytes are rates: per second
	OK, Failed, Bps float64
	P50, P99        float64
	N               int // latency samples
}

// slots bins [from, to) for the plot: bins of a whole number of slots,
// about 60 over the run.
func (s *series) slots(from, to float64) []Slot {
	k := max(1, int(math.Round((to-from)*float64(slotsPerSec)/60)))
	if k > slotsPerSec {
		k = slotsPerSec // at least one point a second
	}
	width := float64(k) / float64(slotsPerSec)
	var out []Slot
	for i := int(math.Floor(from * float64(slotsPerSec))); float64(i)/float64(slotsPerSec) < to-1e-9; i += k {
		var ok, fail int
		var bytes int64
		var lat []float64
		for j := i; j < i+k && j < len(s.secs); j++ {
			ok += s.secs[j].ok
			fail += s.secs[j].fail
			bytes += s.secs[j].bytes
			lat = append(lat, s.secs[j].lat...)
		}
		p := percentiles(lat)
		t0 := float64(i) / float64(slotsPerSec)
		out = append(out, Slot{T0: t0, T1: t0 + width, OK: float64(ok) / width, Failed: float64(fail) / width,
			Bps: float64(bytes) * 8 / width, P50: p.P50, P99: p.P99, N: p.N})
	}
	return out
}

// FaultWindows are the windows (s from the run's start) in which a
// fault was active.
type FaultWindows struct {
	Fault   string       `json:"fault"`
	Windows [][2]float64 `json:"windows"`
}
