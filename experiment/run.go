package experiment

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/internal/prom"
	"github.com/uswitch-lab/uswitch/lab"
	"github.com/uswitch-lab/uswitch/packet"
)

// Options are a run's options (the command's flags).
type Options struct {
	// Out is the report folder ("" = [experiment] report, else
	// out/NAME).
	Out string
	// Seed, when not 0, replaces the file's seed.
	Seed uint64
	// Short scales every time of the run by [experiment] short /
	// duration.
	Short bool
	// Trace records the datapath's live trace lines (fault decisions
	// among them) in trace.txt.
	Trace bool
	// Log receives progress lines and the seed (nil: none).
	Log io.Writer
}

// Load reads an experiment: a lab file with its [experiment],
// [[workload]], [[step]] and [[fault]] tables, and optionally a second
// file (--faults) whose tables join them.
func Load(path, faults string) (*lab.Config, []byte, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := lab.Parse(path, src)
	if err != nil {
		return nil, nil, err
	}
	if faults != "" {
		b, err := os.ReadFile(faults)
		if err != nil {
			return nil, nil, err
		}
		if err := cfg.AddFaults(faults, b); err != nil {
			return nil, nil, err
		}
		src = append(append(src, '\n'), b...)
	}
	if len(cfg.Workloads) == 0 {
		return nil, nil, fmt.Errorf("%s: no [[workload]]: an experiment needs traffic to measure", path)
	}
	return cfg, src, nil
}

// event is one line of timeline.jsonl.
type event struct {
	T     float64 `json:"t"`
	Seq   uint64  `json:"seq"`
	Fault string  `json:"fault,omitempty"`
	Ev    string  `json:"ev"`
	Hook  string  `json:"hook,omitempty"`
	Flow  string  `json:"flow,omitempty"`
	N     uint64  `json:"n,omitempty"`
	Step  string  `json:"step,omitempty"`
	Out   string  `json:"result,omitempty"`
	// Log is the kernel's log line the event stands for.
	Log string `json:"log,omitempty"`
	// Delta is what conntrack -S counted since the last sample (ev
	// "conntrack -S"; the sampler looks every 100 ms).
	Delta map[string]uint64 `json:"delta,omitempty"`
}

// observed is a fault decision as the observer saw it.
type observed struct {
	at  time.Time
	seq uint64
	d   fault.Decision
}

// maxEvents bounds the per-packet events kept for timeline.jsonl; the
// rest are counted (summary.json events.lost).
const maxEvents = 1 << 20

// Run runs the experiment of cfg (from Load; src is its text, for the
// report's checksum) and writes its report: it brings the lab up, runs
// the workloads while the faults act on their schedules and the steps
// happen, then brings the lab down. The report is written also when a
// workload did badly; an error means the run itself failed.
func Run(cfg *lab.Config, src []byte, o Options) (*Summary, error) {
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	e := cfg.Experiment
	seed := o.Seed
	if seed == 0 {
		seed = e.Seed
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	name := e.Name
	if name == "" {
		name = cfg.Name
	}
	out := o.Out
	if out == "" {
		out = e.Report
	}
	if out == "" {
		out = "out/" + name
	}
	fmt.Fprintf(logw, "experiment %s: seed %d\n", name, seed)
	// the seed of the faults, and of the engine unless the file fixes it
	c := *cfg
	c.Experiment.Seed = seed
	if c.Uswitch.Seed == 0 {
		c.Uswitch.Seed = seed
	}
	dur := 10 * time.Second
	if e.Duration != "" {
		dur, _ = lab.ParseTime(e.Duration)
	}
	scale := 1.0
	if o.Short && e.Short != "" {
		s, _ := lab.ParseTime(e.Short)
		scale = float64(s) / float64(dur)
	}
	if err := scaleTimes(&c, scale); err != nil {
		return nil, err
	}
	dur = time.Duration(float64(dur) * scale)

	// per-packet fault decisions, from the datapath's goroutines
	obs := make(chan observed, 1<<16)
	var lost atomic.Uint64
	var lref atomic.Pointer[seqSource]
	observe := func(d fault.Decision) {
		if !d.Acted {
			return
		}
		var seq uint64
		if src := lref.Load(); src != nil {
			seq = src.n()
		}
		select {
		case obs <- observed{at: time.Now(), seq: seq, d: d}:
		default:
			lost.Add(1)
		}
	}
	var collected []observed
	cdone := make(chan struct{})
	go func() {
		defer close(cdone)
		for x := range obs {
			if len(collected) < maxEvents {
				collected = append(collected, x)
			} else {
				lost.Add(1)
			}
		}
	}()
	// in NFQUEUE mode the faults are the decider's (the lab has no
	// datapath of its own to fault)
	var nqSpecs []fault.Spec
	if c.NFQueue != nil {
		nqSpecs, c.Faults = c.Faults, nil
	}
	l, err := lab.UpWith(&c, logw, lab.UpOptions{Observe: observe})
	if err != nil {
		close(obs)
		<-cdone
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			l.Close()
		}
	}()
	var nq *nfq
	set, now, ct := l.Faults(), l.Now, l.Engine().CT
	received := l.Received
	if c.NFQueue != nil {
		if nq, err = startNFQueue(c.NFQueue, nqSpecs, seed, observe, logw); err != nil {
			return nil, err
		}
		defer nq.result() // stopped on every way out
		set, now, ct, received = nq.set, nq.srv.Now, nq.eng.CT, nq.packets
	}
	lref.Store(&seqSource{received})
	// the run's time 0 is the faults' epoch: their schedules count from it
	t0 := time.Now().Add(-time.Duration(now() - set.Epoch()))
	startWall := time.Now()

	var trace []string
	var tdone, tstop chan struct{}
	var tcancel func()
	if o.Trace {
		// cancel stops the lines (it does not close the channel): the
		// reader then takes what is left and ends
		lines, cancel := l.SubscribeTrace(4096)
		tcancel, tdone, tstop = cancel, make(chan struct{}), make(chan struct{})
		go func() {
			defer close(tdone)
			keep := func(ln string) {
				if len(trace) < maxEvents {
					trace = append(trace, ln)
				}
			}
			for {
				select {
				case ln := <-lines:
					keep(ln)
				case <-tstop:
					for {
						select {
						case ln := <-lines:
							keep(ln)
						default:
							return
						}
					}
				}
			}
		}()
	}

	ctBefore := ctStats(ct)
	windows := faultWindows(set, dur)
	var evmu sync.Mutex
	var events []event
	addEvent := func(ev event) {
		evmu.Lock()
		events = append(events, ev)
		evmu.Unlock()
	}
	// timers: the window edges and the steps; cbs counts the callbacks
	// that may still run (stopTimers waits for them)
	var timers []*time.Timer
	var cbs sync.WaitGroup
	at := func(off time.Duration, fn func()) {
		cbs.Add(1)
		timers = append(timers, time.AfterFunc(time.Until(t0.Add(off)), func() {
			defer cbs.Done()
			fn()
		}))
	}
	stopTimers := func() {
		for _, t := range timers {
			if t.Stop() {
				cbs.Done()
			}
		}
		timers = nil
		cbs.Wait()
	}
	defer stopTimers()
	// fault window edges, stamped live with the packet number
	for _, fw := range windows {
		for _, w := range fw.Windows {
			f := fw.Fault
			for k, edge := range []float64{w[0], w[1]} {
				ev := []string{"start", "stop"}[k]
				if k == 1 && edge >= dur.Seconds() {
					continue
				}
				at(time.Duration(edge*1e9), func() {
					addEvent(event{T: edge, Seq: received(), Fault: f, Ev: ev})
				})
			}
		}
	}
	// steps
	var steps []StepResult
	var stmu sync.Mutex
	for i, st := range c.Steps {
		off, _ := lab.ParseTime(st.At)
		at(off, func() {
			now := time.Since(t0).Seconds()
			what, res := doStep(l, st)
			addEvent(event{T: round6(now), Seq: received(), Ev: "step", Step: what, Out: res})
			stmu.Lock()
			steps = append(steps, StepResult{At: off.Seconds(), Did: round6(now), What: what, Result: res, Note: st.Note, idx: i})
			stmu.Unlock()
			fmt.Fprintf(logw, "  %.3fs step: %s: %s\n", now, what, res)
		})
	}
	// workloads
	gens := make([]*gen, len(c.Workloads))
	for i, w := range c.Workloads {
		g := &gen{w: w, l: l, s: newSeries(t0), timeout: time.Second}
		if w.Timeout != "" {
			g.timeout, _ = lab.ParseTime(w.Timeout)
		}
		g.size = w.Size
		if g.size == 0 {
			g.size = map[string]int{lab.WorkUDP: 64, lab.WorkTCPRR: 32}[w.Kind]
		}
		if err := g.prepare(); err != nil {
			for _, h := range gens[:i] {
				h.release()
			}
			return nil, fmt.Errorf("workload %s: %w", w.Name, err)
		}
		gens[i] = g
	}
	var wg sync.WaitGroup
	spans := make([][2]float64, len(gens))
	for i, g := range gens {
		from, to := time.Duration(0), dur
		if g.w.Start != "" {
			from, _ = lab.ParseTime(g.w.Start)
		}
		if g.w.Stop != "" {
			to, _ = lab.ParseTime(g.w.Stop)
			to = min(to, dur)
		}
		spans[i] = [2]float64{from.Seconds(), to.Seconds()}
		ctx, cancel := context.WithDeadline(context.Background(), t0.Add(to))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			defer g.release()
			if d := time.Until(t0.Add(from)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			g.run(ctx)
		}()
	}
	fmt.Fprintf(logw, "running %d workloads for %v (faults: %d)\n", len(gens), dur, len(set.Faults))
	sstop, sdone := make(chan struct{}), make(chan struct{})
	go sampleConntrack(ct, received, set, t0, sstop, sdone, addEvent)
	wg.Wait()
	if d := time.Until(t0.Add(dur)); d > 0 {
		time.Sleep(d)
	}
	stopTimers()
	close(sstop)
	<-sdone

	// what the faults and conntrack counted, before the lab goes
	ctAfter := ctStats(ct)
	faults := faultResults(set, windows)
	metrics := l.Metrics()
	if nq != nil {
		// the decider's faults: the lab's datapath has none
		var b bytes.Buffer
		set.WriteMetrics(prom.New(&b))
		metrics += b.String()
	}
	var nqr *NFQueueResult
	extra := map[string]string{}
	if nq != nil {
		extra["nfqueue-metrics.prom"] = nq.metrics()
		nqr = nq.result()
	}
	if tcancel != nil {
		tcancel()
		close(tstop)
		<-tdone
	}
	packets := received()
	lref.Store(nil)
	closed = true
	cerr := l.Close()
	close(obs)
	<-cdone

	sum := &Summary{
		Experiment: name, Seed: seed, Start: startWall.UTC().Format(time.RFC3339Nano), Duration: dur.Seconds(),
		Short: o.Short && scale != 1, Scale: scale, Config: cfg.File, ConfigSHA256: sha(src),
		Faults: faults, Windows: windows, Steps: steps, Packets: packets, NFQueue: nqr,
	}
	stmu.Lock()
	sort.Slice(sum.Steps, func(i, j int) bool {
		a, b := sum.Steps[i], sum.Steps[j]
		return a.At < b.At || a.At == b.At && a.idx < b.idx
	})
	stmu.Unlock()
	sum.Conntrack = ctDelta(ctBefore, ctAfter)
	var stepAt []float64
	var stepWhat []string
	for _, st := range sum.Steps {
		if len(stepAt) > 0 && stepAt[len(stepAt)-1] == st.At {
			stepWhat[len(stepWhat)-1] += "; " + st.What
			continue
		}
		stepAt, stepWhat = append(stepAt, st.At), append(stepWhat, st.What)
	}
	for i, g := range gens {
		r := g.s.result(spans[i][0], spans[i][1], windows)
		g.s.mu.Lock()
		r.Phases = g.s.phases(spans[i][0], spans[i][1], stepAt, stepWhat)
		g.s.mu.Unlock()
		r.Name, r.Kind, r.From, r.To, r.Mode = g.w.Name, g.w.Kind, g.w.From, g.w.To, g.w.Mode
		if r.Kind == lab.WorkDNS && r.Mode == "" {
			r.Mode = "parallel"
		}
		r.Resent = g.resent.Load()
		sum.Workloads = append(sum.Workloads, r)
	}
	for _, x := range collected {
		events = append(events, event{T: round6(x.at.Sub(t0).Seconds()), Seq: x.seq, Fault: x.d.Fault.Name, Ev: x.d.Action(),
			Hook: x.d.Fault.At.String(), Flow: flowText(x.d.Flow), N: x.d.N})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].T < events[j].T })
	sum.Events = EventCount{Total: len(events), Lost: lost.Load()}
	if e.Model == "mathis" {
		sum.Model = mathis(&c, set, sum)
	}
	if err := writeReport(out, sum, events, metrics, trace, o.Trace, extra); err != nil {
		return sum, err
	}
	sum.Out = out
	fmt.Fprintf(logw, "report: %s (seed %d)\n", out, seed)
	if cerr != nil {
		return sum, fmt.Errorf("removing the lab: %w", cerr)
	}
	return sum, nil
}

func round6(x float64) float64 { return float64(int64(x*1e6+0.5)) / 1e6 }

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// scaleTimes multiplies the times of the run (fault schedules,
// workload windows, steps) by s.
func scaleTimes(c *lab.Config, s float64) error {
	if s == 1 {
		return nil
	}
	sc := func(v *string) error {
		if *v == "" {
			return nil
		}
		d, err := lab.ParseTime(*v)
		if err != nil {
			return err
		}
		*v = time.Duration(float64(d) * s).String()
		return nil
	}
	c.Faults = append([]fault.Spec(nil), c.Faults...)
	for i := range c.Faults {
		f := &c.Faults[i]
		for _, v := range []*string{&f.Start, &f.Stop} {
			if err := sc(v); err != nil {
				return fmt.Errorf("fault %s: %w", f.Name, err)
			}
		}
		// the fault's own times: a kill's or stall's duration, an
		// expiry's timeout and a line-by-line swap's step stay (they are
		// the fault's size, not when it happens)
		if f.Schedule != nil {
			sch := *f.Schedule
			sch.At = append(fault.Instants(nil), sch.At...)
			vs := []*string{&sch.Start, &sch.Stop, &sch.Every, &sch.For}
			for i := range sch.At {
				vs = append(vs, &sch.At[i])
			}
			for _, v := range vs {
				if err := sc(v); err != nil {
					return fmt.Errorf("fault %s: schedule: %w", f.Name, err)
				}
			}
			f.Schedule = &sch
		}
		if f.Ramp != nil {
			r := *f.Ramp
			for _, v := range []*string{&r.Over, &r.Step} {
				if err := sc(v); err != nil {
					return fmt.Errorf("fault %s: ramp: %w", f.Name, err)
				}
			}
			f.Ramp = &r
		}
		if f.Steps != nil {
			f.Steps = append([]fault.Step(nil), f.Steps...)
			for i := range f.Steps {
				if err := sc(&f.Steps[i].At); err != nil {
					return fmt.Errorf("fault %s: steps: %w", f.Name, err)
				}
			}
		}
	}
	c.Workloads = append([]lab.Workload(nil), c.Workloads...)
	for i := range c.Workloads {
		w := &c.Workloads[i]
		for _, v := range []*string{&w.Start, &w.Stop} {
			if err := sc(v); err != nil {
				return fmt.Errorf("workload %s: %w", w.Name, err)
			}
		}
	}
	c.Steps = append([]lab.Step(nil), c.Steps...)
	for i := range c.Steps {
		if err := sc(&c.Steps[i].At); err != nil {
			return err
		}
	}
	return nil
}

// faultWindows samples each fault's schedule every millisecond of the
// run: the windows in which it was active (whatever the schedule's
// form: fault.ActiveAt).
func faultWindows(s *fault.Set, dur time.Duration) []FaultWindows {
	var out []FaultWindows
	const step = int64(time.Millisecond)
	for _, f := range s.Faults {
		fw := FaultWindows{Fault: f.Name}
		on := false
		var from int64
		for t := int64(0); t <= int64(dur); t += step {
			a := f.ActiveAt(t)
			if a && !on {
				from = t
			}
			if !a && on {
				fw.Windows = append(fw.Windows, [2]float64{float64(from) / 1e9, float64(t) / 1e9})
			}
			on = a
		}
		if on {
			fw.Windows = append(fw.Windows, [2]float64{float64(from) / 1e9, dur.Seconds()})
		}
		out = append(out, fw)
	}
	return out
}

// doStep does a step at now (s); it returns what it did and the
// result.
func doStep(l *lab.Lab, st lab.Step) (what, result string) {
	switch {
	case st.Run != "":
		args := strings.Fields(st.Run)
		req := control.Request{Cmd: args[0], Args: args[1:]}
		if args[0] == "fault" && len(args) > 1 {
			req = control.Request{Cmd: "fault", Op: args[1]}
			if len(args) > 2 {
				req.Name = args[2]
			}
		}
		r := l.Control(req)
		res := strings.TrimSpace(r.Stdout + r.Stderr)
		if r.Code != 0 {
			res = fmt.Sprintf("exit %d: %s", r.Code, res)
		} else if res == "" {
			res = "ok"
		}
		return st.Run, res
	case st.StopServer != "":
		ns, p, _ := strings.Cut(st.StopServer, ":")
		port, _ := strconv.Atoi(p)
		n, err := l.StopServer(ns, port)
		if err != nil {
			return "stop_server " + st.StopServer, err.Error()
		}
		return "stop_server " + st.StopServer, fmt.Sprintf("%d server(s) stopped", n)
	}
	return "?", "nothing to do"
}

// sampleConntrack adds an event each time conntrack -S's drop,
// early_drop, insert_failed, clash_resolve or invalid counters moved
// (looked at every 100 ms), naming the state fault active then: the
// timeline's view of what state faults did, which has no per-packet
// decision.
func sampleConntrack(ct *conntrack.Table, received func() uint64, set *fault.Set, t0 time.Time, stop, done chan struct{}, add func(event)) {
	defer close(done)
	prev := ct.Stats()
	prevT := time.Since(t0)
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		cur := ct.Stats()
		var inv, pinv uint64
		for i := range cur.Invalid {
			inv += cur.Invalid[i]
			pinv += prev.Invalid[i]
		}
		d := map[string]uint64{}
		for _, x := range []struct {
			k    string
			a, b uint64
		}{{"drop", cur.Drop, prev.Drop}, {"early_drop", cur.EarlyDrop, prev.EarlyDrop}, {"insert_failed", cur.InsertFailed, prev.InsertFailed},
			{"clash_resolve", cur.Clash, prev.Clash}, {"invalid", inv, pinv}} {
			if x.a > x.b {
				d[x.k] = x.a - x.b
			}
		}
		t, since := time.Since(t0), prevT
		prev, prevT = cur, t
		if len(d) == 0 {
			continue
		}
		// the counts moved in (since, t]: the state fault active then
		name := ""
		for _, f := range set.Faults {
			if (f.Kind == fault.KindConntrackFull || f.Kind == fault.KindNATExhaust) && (f.ActiveAt(int64(t)) || f.ActiveAt(int64(since))) {
				name = f.Name
				break
			}
		}
		ev := event{T: round6(t.Seconds()), Seq: received(), Fault: name, Ev: "conntrack -S", Delta: d}
		if d["drop"] > 0 && name != "" {
			ev.Log = fault.TableFullMessage
		}
		add(ev)
	}
}

// ctStats is conntrack -S's line (as the table prints it) as a map,
// and the entries as count (conntrack -C).
func ctStats(ct *conntrack.Table) map[string]uint64 {
	m := map[string]uint64{}
	for _, f := range strings.Fields(string(ct.AppendStats(nil))) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "cpu" {
			continue
		}
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			m[k] += n
		}
	}
	m["count"] = uint64(ct.Count())
	return m
}

func ctDelta(before, after map[string]uint64) ConntrackStats {
	d := map[string]int64{}
	for k, v := range after {
		d[k] = int64(v) - int64(before[k])
	}
	return ConntrackStats{Before: before, After: after, Delta: d}
}

func flowText(f fault.Flow) string {
	p := map[uint8]string{1: "icmp", 6: "tcp", 17: "udp"}[f.Proto]
	if p == "" {
		p = strconv.Itoa(int(f.Proto))
	}
	a := func(x uint32) string { return packet.AddrOf(x).String() }
	if f.Src == 0 && f.Dst == 0 {
		return ""
	}
	if f.Proto == 6 || f.Proto == 17 {
		return fmt.Sprintf("%s %s:%d>%s:%d", p, a(f.Src), f.SPort, a(f.Dst), f.DPort)
	}
	return fmt.Sprintf("%s %s>%s", p, a(f.Src), a(f.Dst))
}

// seqSource gives the global packet number: the packets the lab's
// datapath (or the NFQUEUE decider) has read.
type seqSource struct{ n func() uint64 }
