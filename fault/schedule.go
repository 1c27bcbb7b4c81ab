package fault

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
)

// Schedules beyond start/stop and every/for:
//
//	schedule = { at = ["15s", "20s"] }          instants (state faults act at each)
//	schedule = { after_packets = 1000 }          a trigger: the fault's 1000th matching packet
//	schedule = { on = "conntrack:new" }          a trigger: a matching packet that made a new entry
//	ramp  = { param = "loss", from = "0.1%", to = "5%", over = "60s", step = "5s" }
//	steps = [ { at = "0s", netem = "delay 10ms" }, { at = "10s", netem = "delay 200ms loss 1%" } ]
//
// With a trigger, every time of the schedule (start, stop, every/for,
// at, the ramp's and steps' times) counts from the trigger's packet
// instead of the experiment's start; the trigger's own packet is not
// acted on. Every time is read on the clock the decisions use (the
// datapath's, or a capture's timestamps offline), so a schedule changes
// the same packets live and offline. A state fault acts at the first
// packet its stage sees at or after an instant (the moment the change
// can first matter).

type trigKind uint8

const (
	trigNone trigKind = iota
	trigPackets
	trigCTNew
)

// schedule is a fault's compiled instants, trigger and phases.
type schedule struct {
	at   []int64 // instants, ns from the epoch (or the trigger)
	trig trigKind
	// afterPackets: trigPackets' count; count the matching packets so
	// far
	afterPackets uint64
	count        atomic.Uint64
	// fired is 1 + the trigger's time from the epoch (0: not yet)
	fired atomic.Int64
	// phases: the netem parameters from each phase's time on (a ramp's
	// steps or a step list), sorted, the first at 0
	phases []phase
}

type phase struct {
	at int64
	nm Netem
}

// Instants is a schedule's `at`: one time or a list.
type Instants []string

// UnmarshalTOML implements toml.Unmarshaler.
func (in *Instants) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*in = Instants{x}
		return nil
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("at: %v is not a time (\"15s\")", e)
			}
			*in = append(*in, s)
		}
		return nil
	}
	return fmt.Errorf("at: %v: a time or a list of times", v)
}

// Ramp moves one netem parameter from From to To over Over in steps of
// Step: the value at k·Step is From + (To−From)·k/n, n = Over/Step.
type Ramp struct {
	// Param is loss, duplicate, corrupt or reorder (probabilities:
	// "0.1%", 0.001) or delay, jitter (times: "10ms").
	Param string `toml:"param"`
	From  any    `toml:"from"`
	To    any    `toml:"to"`
	Over  string `toml:"over"`
	Step  string `toml:"step"`
}

// Step is one entry of a step list: from At on, the fault's netem
// parameters are these (netem words, or the action's probability or
// delay).
type Step struct {
	At          string   `toml:"at"`
	Netem       string   `toml:"netem"`
	Probability *Percent `toml:"probability"`
	Delay       string   `toml:"delay"`
	Jitter      string   `toml:"jitter"`
}

// compileSchedule reads the schedule's instants, trigger, ramp and steps.
func (f *Fault) compileSchedule(s *Spec, words func(*Spec) ([]string, error)) error {
	sc := s.Schedule
	if sc != nil {
		for _, a := range sc.At {
			v, err := parseDuration(a)
			if err != nil {
				return fmt.Errorf("schedule at: %w", err)
			}
			if n := len(f.sched.at); n > 0 && v <= f.sched.at[n-1] {
				return errors.New("schedule at: times in increasing order")
			}
			f.sched.at = append(f.sched.at, v)
		}
		if len(sc.At) > 0 && (sc.Start != "" || sc.Stop != "" || sc.Every != "") {
			return errors.New("schedule: at (instants) or start/stop/every, not both")
		}
		switch {
		case sc.AfterPackets > 0 && sc.On != "":
			return errors.New("schedule: after_packets or on, not both")
		case sc.AfterPackets > 0:
			f.sched.trig, f.sched.afterPackets = trigPackets, sc.AfterPackets
		case sc.On == "conntrack:new":
			f.sched.trig = trigCTNew
		case sc.On != "":
			return fmt.Errorf("schedule on %q: the event is conntrack:new", sc.On)
		}
	}
	if len(f.sched.at) > 0 && !f.Kind.stateKind() {
		return fmt.Errorf("schedule at: instants are for state faults; %s acts on packets (start/stop, every/for)", f.Kind)
	}
	if s.Ramp == nil && len(s.Steps) == 0 {
		return nil
	}
	if s.Ramp != nil && len(s.Steps) > 0 {
		return errors.New("ramp or steps, not both")
	}
	if f.Kind != KindNetem {
		return fmt.Errorf("ramp and steps change netem parameters; %s has none", f.Kind)
	}
	if s.Ramp != nil {
		return f.compileRamp(s.Ramp)
	}
	for i := range s.Steps {
		st := &s.Steps[i]
		at, err := parseDuration(st.At)
		if err != nil {
			return fmt.Errorf("steps[%d] at: %w", i, err)
		}
		if i == 0 && at != 0 {
			return errors.New("steps: the first step is at 0s (the schedule's start)")
		}
		if i > 0 && at <= f.sched.phases[i-1].at {
			return fmt.Errorf("steps[%d]: times in increasing order", i)
		}
		sp := *s
		sp.Netem, sp.Probability, sp.Delay, sp.Jitter = st.Netem, st.Probability, st.Delay, st.Jitter
		if sp.Delay == "" && st.Netem == "" && s.Action == "delay" {
			sp.Delay = s.Delay
		}
		w, err := words(&sp)
		if err != nil {
			return fmt.Errorf("steps[%d]: %w", i, err)
		}
		nm, err := ParseNetem(w)
		if err != nil {
			return fmt.Errorf("steps[%d]: %w", i, err)
		}
		if err := sameQueue(&f.Netem, &nm); err != nil {
			return fmt.Errorf("steps[%d]: %w", i, err)
		}
		f.sched.phases = append(f.sched.phases, phase{at: at, nm: nm})
	}
	f.Netem = f.sched.phases[0].nm
	return nil
}

// sameQueue: the phases of a fault share its queue, so they agree on
// what the queue does (limit, rate, slots) and on whether it holds
// packets.
func sameQueue(a, b *Netem) error {
	if a.Limit != b.Limit || a.Rate != b.Rate || a.PacketOverhead != b.PacketOverhead || a.CellSize != b.CellSize ||
		a.CellOverhead != b.CellOverhead || a.HasSlot != b.HasSlot || a.SlotMin != b.SlotMin || a.SlotMax != b.SlotMax ||
		a.SlotPackets != b.SlotPackets || a.SlotBytes != b.SlotBytes || a.SlotDelay != b.SlotDelay || a.SlotJitter != b.SlotJitter {
		return errors.New("a step changes limit, rate or slot (the fault's queue keeps them: make another fault)")
	}
	if (a.delays() || a.Duplicate != 0) != (b.delays() || b.Duplicate != 0) {
		return errors.New("every step delays (or duplicates), or none does (a delay 0ms keeps the queue)")
	}
	return nil
}

func (f *Fault) compileRamp(r *Ramp) error {
	over, err := parseDuration(r.Over)
	if err != nil {
		return fmt.Errorf("ramp over: %w", err)
	}
	step, err := parseDuration(r.Step)
	if err != nil {
		return fmt.Errorf("ramp step: %w", err)
	}
	if step <= 0 || over < step || over%step != 0 {
		return errors.New("ramp: 0 < step <= over, over a whole number of steps")
	}
	n := over / step
	if n > 10000 {
		return errors.New("ramp: at most 10000 steps")
	}
	var from, to float64
	prob := func(v any) (float64, error) {
		var p Percent
		if err := p.UnmarshalTOML(v); err != nil {
			return 0, err
		}
		return float64(p), nil
	}
	dur := func(v any) (float64, error) {
		s, ok := v.(string)
		if !ok {
			return 0, fmt.Errorf("%v: a time (\"10ms\")", v)
		}
		d, err := parseDuration(s)
		return float64(d), err
	}
	conv := prob
	switch r.Param {
	case "loss", "duplicate", "corrupt", "reorder":
	case "delay", "jitter":
		conv = dur
	default:
		return fmt.Errorf("ramp param %q: loss, duplicate, corrupt, reorder, delay or jitter", r.Param)
	}
	if from, err = conv(r.From); err != nil {
		return fmt.Errorf("ramp from: %w", err)
	}
	if to, err = conv(r.To); err != nil {
		return fmt.Errorf("ramp to: %w", err)
	}
	base := f.Netem
	switch r.Param {
	case "loss":
		if base.Model != LossRandom && base.Model != LossNone {
			return errors.New("ramp loss: the fault's loss is a model (state, gemodel); ramp a random loss")
		}
	case "reorder":
		if base.Gap == 0 {
			return errors.New("ramp reorder: the fault has no reorder (give reorder P gap N in netem)")
		}
	case "delay", "jitter":
		if !base.delays() {
			return errors.New("ramp delay: the fault does not delay (give it a delay, 0ms at least)")
		}
	}
	for k := int64(0); k <= n; k++ {
		v := from + (to-from)*float64(k)/float64(n)
		nm := base
		switch r.Param {
		case "loss":
			nm.Model, nm.Loss = LossRandom, ProbOf(v)
		case "duplicate":
			nm.Duplicate = ProbOf(v)
		case "corrupt":
			nm.Corrupt = ProbOf(v)
		case "reorder":
			nm.Reorder = ProbOf(v)
		case "delay":
			nm.Latency = int64(v)
		case "jitter":
			nm.Jitter = int64(v)
		}
		f.sched.phases = append(f.sched.phases, phase{at: k * step, nm: nm})
	}
	if r.Param == "duplicate" {
		// whether the fault duplicates (and so needs a wire
		// placement and a queue) is decided by its phases
		f.Netem.Duplicate = max(ProbOf(from), ProbOf(to))
	}
	return nil
}

// netemAt is the fault's netem parameters at now (the callers' clock).
func (f *Fault) netemAt(now int64) *Netem {
	ph := f.sched.phases
	if len(ph) == 0 {
		return &f.Netem
	}
	rel := now - f.epoch - f.Start
	if f.sched.trig != trigNone {
		rel -= f.sched.fired.Load() - 1
	}
	i := len(ph) - 1
	for i > 0 && ph[i].at > rel {
		i--
	}
	return &ph[i].nm
}

// phase sets a flow's correlated streams to the phase's correlations.
func (st *flowState) phase(n *Netem) {
	st.dup.rho, st.loss.rho, st.corrupt.rho = uint32(n.DupCorr), uint32(n.LossCorr), uint32(n.CorruptCorr)
	st.reorder.rho, st.delay.rho = uint32(n.ReorderCorr), uint32(n.DelayCorr)
}

// trigger counts a packet towards the fault's trigger and fires it; it
// reports whether this packet fired it (that packet is not acted on).
func (f *Fault) trigger(c *iptables.Ctx, now int64) bool {
	if f.paused.Load() {
		return false
	}
	if f.match != nil {
		c.HotDrop = false
		if !f.match.Match(c) {
			return false
		}
	}
	switch f.sched.trig {
	case trigPackets:
		if f.sched.count.Add(1) < f.sched.afterPackets {
			return false
		}
	case trigCTNew:
		r := c.CT
		if r.Conn == nil || r.Conn.Confirmed() || r.Info != conntrack.CtNew {
			return false
		}
	}
	return f.sched.fired.CompareAndSwap(0, max(now-f.epoch, 0)+1)
}

// Triggered reports whether the fault's trigger fired, and when (ns
// from the epoch); a fault without a trigger reports false.
func (f *Fault) Triggered() (int64, bool) {
	t := f.sched.fired.Load()
	return t - 1, t != 0
}

// describeSchedule is the schedule's extra parts for Describe.
func (f *Fault) describeSchedule() string {
	var b strings.Builder
	if len(f.sched.at) > 0 {
		b.WriteString(" at")
		for _, a := range f.sched.at {
			b.WriteString(" " + fmtTime(a))
		}
	}
	switch f.sched.trig {
	case trigPackets:
		fmt.Fprintf(&b, " after %d packets", f.sched.afterPackets)
	case trigCTNew:
		b.WriteString(" on conntrack:new")
	}
	if t, ok := f.Triggered(); ok {
		b.WriteString(" (triggered at " + fmtTime(t) + ")")
	}
	if n := len(f.sched.phases); n > 0 {
		fmt.Fprintf(&b, " in %d phases to %s", n, fmtTime(f.sched.phases[n-1].at))
	}
	return b.String()
}

func fmtTime(ns int64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.6f", float64(ns)/1e9), "0"), ".") + "s"
}
