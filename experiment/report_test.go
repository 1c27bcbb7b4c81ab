package experiment

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/lab"
)

func TestPercentiles(t *testing.T) {
	var v []float64
	for i := 100; i >= 1; i-- {
		v = append(v, float64(i))
	}
	p := percentiles(v)
	if p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 || p.N != 100 {
		t.Errorf("1..100: %+v", p)
	}
	if p := percentiles([]float64{7}); p.P50 != 7 || p.P99 != 7 {
		t.Errorf("one sample: %+v", p)
	}
	if p := percentiles(nil); p != (Percentiles{}) {
		t.Errorf("none: %+v", p)
	}
}

// synthetic is a series of 10 s: a request every 100 ms, failing in
// [3, 5) s; 1000 bytes arrive per 100 ms, 100 in [3, 5).
func synthetic() *series {
	t0 := time.Unix(1000, 0)
	s := newSeries(t0)
	for i := 0; i < 100; i++ {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		sec := float64(i) / 10
		if sec >= 3 && sec < 5 {
			s.request(at, 0, "timeout", "")
			s.bytes(at, 100)
			continue
		}
		s.request(at, time.Duration(i+1)*time.Millisecond, "", "web1")
		s.bytes(at, 1000)
	}
	return s
}

func TestSeriesWindowsAndPhases(t *testing.T) {
	s := synthetic()
	wins := []FaultWindows{{Fault: "cut", Windows: [][2]float64{{3, 5}}}}
	r := s.result(0, 10, wins)
	if r.Requests != 100 || r.OK != 80 || r.Failed != 20 || r.Errors["timeout"] != 20 || r.ServedBy["web1"] != 80 {
		t.Fatalf("totals: %+v", r)
	}
	if len(r.PerSecond) != 10 || r.PerSecond[3].Failed != 10 || r.PerSecond[3].OK != 0 || r.PerSecond[2].OK != 10 || r.PerSecond[2].Bytes != 10000 {
		t.Errorf("per second: %+v", r.PerSecond)
	}
	if len(r.Windows) != 2 {
		t.Fatalf("windows: %+v", r.Windows)
	}
	in, out := r.Windows[0], r.Windows[1]
	if in.Fault != "cut" || in.Requests != 20 || in.OK != 0 || in.SuccessRatio != 0 {
		t.Errorf("in the window: %+v", in)
	}
	// goodput inside: 100 bytes per 100 ms = 8000 bit/s (the first
	// quarter of the window left out)
	if in.GoodputBps != 8000 {
		t.Errorf("goodput in the window %v, want 8000", in.GoodputBps)
	}
	if out.Fault != "" || out.Requests != 80 || out.SuccessRatio != 1 || out.GoodputBps != 80000 {
		t.Errorf("outside: %+v", out)
	}
	ph := s.phases(0, 10, []float64{3, 5}, []string{"kill", "heal"})
	if len(ph) != 3 || ph[0].Requests != 30 || ph[0].SuccessRatio != 1 || ph[1].Fault != "kill" || ph[1].OK != 0 || ph[2].Fault != "heal" || ph[2].Requests != 50 {
		t.Errorf("phases: %+v", ph)
	}
	if len(r.Slots) == 0 || r.Slots[0].OK <= 0 {
		t.Errorf("slots: %+v", r.Slots)
	}
}

func TestScaleTimes(t *testing.T) {
	c := &lab.Config{
		Faults: []fault.Spec{{Name: "f", Start: "4s", Stop: "10s"}, {Name: "g", Schedule: &fault.Schedule{Start: "2s", Every: "4s", For: "1s"}},
			{Name: "h", Schedule: &fault.Schedule{At: fault.Instants{"2s", "6s"}}, Ramp: &fault.Ramp{Over: "8s", Step: "2s"},
				Steps: []fault.Step{{At: "0s"}, {At: "4s"}}, Duration: "1s"}},
		Workloads: []lab.Workload{{Name: "w", Start: "1s"}},
		Steps:     []lab.Step{{At: "8s"}},
	}
	orig := c.Faults[1].Schedule
	if err := scaleTimes(c, 0.5); err != nil {
		t.Fatal(err)
	}
	if c.Faults[0].Start != "2s" || c.Faults[0].Stop != "5s" || c.Faults[1].Schedule.Every != "2s" || c.Faults[1].Schedule.For != "500ms" ||
		c.Workloads[0].Start != "500ms" || c.Steps[0].At != "4s" {
		t.Errorf("scaled: %+v %+v %+v %+v", c.Faults, *c.Faults[1].Schedule, c.Workloads, c.Steps)
	}
	h := c.Faults[2]
	if h.Schedule.At[1] != "3s" || h.Ramp.Over != "4s" || h.Ramp.Step != "1s" || h.Steps[1].At != "2s" || h.Duration != "1s" {
		t.Errorf("scaled h: %+v %+v %+v %q", *h.Schedule, *h.Ramp, h.Steps, h.Duration)
	}
	if orig.Every != "4s" {
		t.Errorf("the original schedule changed: %+v", orig)
	}
}

// TestFaultWindows: the windows sampled from a compiled set's
// schedules, including a flip-flop.
func TestFaultWindows(t *testing.T) {
	set, err := fault.NewSet([]fault.Spec{
		{Name: "a", At: "wire:x:ingress", Netem: "loss 1%", Start: "1s", Stop: "2500ms"},
		{Name: "b", At: "wire:x:ingress", Netem: "loss 1%", Schedule: &fault.Schedule{Start: "1s", Every: "2s", For: "500ms"}},
		{Name: "c", At: "wire:x:ingress", Netem: "loss 1%"},
	}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := faultWindows(set, 6*time.Second)
	want := [][][2]float64{{{1, 2.5}}, {{1, 1.5}, {3, 3.5}, {5, 5.5}}, {{0, 6}}}
	for i := range want {
		if len(w[i].Windows) != len(want[i]) {
			t.Errorf("fault %s: windows %v, want %v", w[i].Fault, w[i].Windows, want[i])
			continue
		}
		for j := range want[i] {
			if math.Abs(w[i].Windows[j][0]-want[i][j][0]) > 1e-9 || math.Abs(w[i].Windows[j][1]-want[i][j][1]) > 1e-9 {
				t.Errorf("fault %s: windows %v, want %v", w[i].Fault, w[i].Windows, want[i])
			}
		}
	}
}

func TestMathis(t *testing.T) {
	// MSS 1448 B, RTT 20 ms, p 1%: 1448*8/0.02 * 1.2247/0.1 = 7.094 Mbit/s
	if v := MathisBps(1448, 0.020, 0.01); math.Abs(v-7.0943e6) > 1e3 {
		t.Errorf("MathisBps = %v", v)
	}
	// goodput goes as 1/sqrt(p): 4x the loss, half the goodput
	if r := MathisBps(1448, 0.02, 0.04) / MathisBps(1448, 0.02, 0.01); math.Abs(r-0.5) > 1e-9 {
		t.Errorf("ratio %v", r)
	}
}

// syntheticSummary is a report of the synthetic series with one fault
// window and a step.
func syntheticSummary() (*Summary, []event) {
	s := synthetic()
	wins := []FaultWindows{{Fault: "cut", Windows: [][2]float64{{3, 5}}}}
	r := s.result(0, 10, wins)
	r.Name, r.Kind, r.From, r.To = "vip", "http", "client", "http://10.96.0.10/"
	r.Phases = s.phases(0, 10, []float64{7}, []string{"ipvsadm -e"})
	sum := &Summary{Experiment: "synthetic", Seed: 42, Start: "2026-01-01T00:00:00Z", Duration: 10, Scale: 1, Config: "x.toml",
		ConfigSHA256: sha([]byte("x")), Windows: wins, Workloads: []WorkloadResult{r},
		Faults: []FaultResult{{Name: "cut", Placement: "hook:ipv4:FORWARD", Kind: "partition", Windows: wins[0].Windows, Matched: 20, Acted: 20,
			Actions: map[string]uint64{"drop": 20}}},
		Steps: []StepResult{{At: 7, Did: 7.001, What: "ipvsadm -e", Result: "ok"}},
	}
	ev := []event{{T: 3, Seq: 10, Fault: "cut", Ev: "start"}, {T: 3.1, Seq: 11, Fault: "cut", Ev: "drop", Flow: "tcp 10.0.0.1:1>10.0.0.2:80", N: 1},
		{T: 5, Seq: 30, Fault: "cut", Ev: "stop"}, {T: 7.001, Seq: 40, Ev: "step", Step: "ipvsadm -e", Out: "ok"}}
	sum.Events.Total = len(ev)
	return sum, ev
}

const syntheticMetrics = "# HELP uswitch_fault_matched_total Packets.\n# TYPE uswitch_fault_matched_total counter\nuswitch_fault_matched_total{fault=\"cut\"} 20\n"

// TestReportRoundTrip: a written report reads back (readReport's
// checks) with the same numbers, and summary.txt says what happened.
func TestReportRoundTrip(t *testing.T) {
	sum, ev := syntheticSummary()
	dir := t.TempDir()
	if err := writeReport(dir, sum, ev, syntheticMetrics, []string{"TRACE: 0 0 fault:wire:x:ingress:rule:0x0:DROP  cut n=1 drop"}, true, nil); err != nil {
		t.Fatal(err)
	}
	got := readReport(t, dir)
	if got.Workloads[0].Windows[0].Failed != 20 || got.Faults[0].Actions["drop"] != 20 || got.Steps[0].What != "ipvsadm -e" {
		t.Errorf("read back: %+v", got)
	}
	txt, _ := os.ReadFile(filepath.Join(dir, "summary.txt"))
	for _, want := range []string{"seed=42", "cut ", "drop 20 (100.00%)", "3.000-5.000s", "100 requests, ok 80 (80.0%), failed 20 (timeout 20)", "after ipvsadm -e"} {
		if !strings.Contains(string(txt), want) {
			t.Errorf("summary.txt lacks %q:\n%s", want, txt)
		}
	}
	if tr, err := os.ReadFile(filepath.Join(dir, "trace.txt")); err != nil || !strings.Contains(string(tr), "fault:wire:x:ingress") {
		t.Errorf("trace.txt: %q %v", tr, err)
	}
}

// TestReportSVGBroken: the SVG check fails on what it is there to
// catch.
func TestReportSVGBroken(t *testing.T) {
	ok := `<svg xmlns="http://www.w3.org/2000/svg"><rect class="fault-window" data-fault="a" width="3"/><rect/></svg>`
	if w, err := parseSVG([]byte(ok)); err != nil || w["a"] != 1 || len(w) != 1 {
		t.Errorf("windows %v %v", w, err)
	}
	for _, bad := range []string{`<svg><rect></svg>`, `<html/>`, `<svg><script>x</script></svg>`, `<svg><image href="http://x/y.png"/></svg>`,
		`<svg><rect class="fault-window" width="3"/></svg>`} {
		if _, err := parseSVG([]byte(bad)); err == nil {
			t.Errorf("%s passed", bad)
		}
	}
}
