package lab

import (
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/uswitch-lab/uswitch/control"
	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/fault/faulthost"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/link"
)

// A lab file's [experiment] and [[fault]] tables (package fault): the
// faults are checked with the file and compiled again at Up with the
// lab's seed ([experiment] seed, else [uswitch] seed, else the clock;
// printed either way).

// checkFaults compiles the faults once to check them, and checks what
// only the lab knows: a wire placement names one of its interfaces, and
// bridge placements wait for the bridge datapath.
func (c *Config) checkFaults(src string) error {
	if len(c.Faults) == 0 {
		return nil
	}
	s, err := fault.NewSet(c.Faults, 1, c.setLookup())
	if err != nil {
		var se *fault.SpecError
		if errors.As(err, &se) {
			return &ConfigError{File: c.File, Line: faultLine(src, se.Index), Key: "fault", Err: err}
		}
		return &ConfigError{File: c.File, Key: "fault", Err: err}
	}
	for i, f := range s.Faults {
		if err := c.checkPlacement(f); err != nil {
			return &ConfigError{File: c.File, Line: faultLine(src, i), Key: "fault.at", Err: err}
		}
	}
	return nil
}

// checkPlacement: a wire placement names one of the lab's interfaces.
func (c *Config) checkPlacement(f *fault.Fault) error {
	switch f.At.Kind {
	case fault.WireIngress, fault.WireEgress:
		for _, it := range c.Interfaces {
			if it.Name == f.At.Iface {
				return nil
			}
		}
		return fmt.Errorf("fault %s: %s: the lab has no interface %s", f.Name, f.At, f.At.Iface)
	case fault.WireBoth:
		for _, it := range c.Interfaces {
			if it.Name == f.At.Iface {
				return nil
			}
		}
		return fmt.Errorf("fault %s: %s: the lab has no interface %s", f.Name, f.At, f.At.Iface)
	}
	return nil
}

// faultControl answers `uswitch fault list|add|del|pause|resume`: add compiles the
// [[fault]] tables of req.Input with the running set's seed and installs
// the set with them (hook faults by a swap of the engine's
// configuration, wire faults on the datapath); del removes one by name
// (what it held is dropped); pause and resume one by name. Faults of
// both sets keep their state.
func (l *Lab) faultControl(req control.Request) control.Response {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	cur := l.dp.Faults()
	if cur == nil {
		return control.Response{Code: 1, Stderr: "uswitch fault: this lab runs without faults\n"}
	}
	var next *fault.Set
	switch req.Op {
	case "list":
		var b strings.Builder
		cur.WriteList(&b)
		return control.Response{Stdout: b.String()}
	case "add":
		ff, err := fault.ParseFile("fault", []byte(req.Input))
		if err != nil {
			return control.Response{Code: 1, Stderr: "uswitch fault: " + err.Error() + "\n"}
		}
		if len(ff.Faults) == 0 {
			return control.Response{Code: 2, Stderr: "uswitch fault: add: no [[fault]] table\n"}
		}
		if next, err = cur.With(ff.Faults, l.cfg.setLookup()); err != nil {
			return control.Response{Code: 1, Stderr: "uswitch fault: " + err.Error() + "\n"}
		}
		for _, f := range next.Faults[len(cur.Faults):] {
			if err := l.cfg.checkPlacement(f); err != nil {
				return control.Response{Code: 1, Stderr: "uswitch fault: " + err.Error() + "\n"}
			}
		}
	case "del":
		var ok bool
		if next, ok = cur.Without(req.Name); !ok {
			return control.Response{Code: 1, Stderr: fmt.Sprintf("uswitch fault: no fault called %q\n", req.Name)}
		}
		for _, f := range cur.Faults {
			if f.Name == req.Name {
				defer f.Release() // after the swap: no stage sets it again
			}
		}
	case "pause", "resume":
		for _, f := range cur.Faults {
			if f.Name == req.Name {
				if req.Op == "pause" {
					f.Pause()
				} else {
					f.Resume()
				}
				return control.Response{}
			}
		}
		return control.Response{Code: 1, Stderr: fmt.Sprintf("uswitch fault: no fault called %q\n", req.Name)}
	default:
		return control.Response{Code: 2, Stderr: fmt.Sprintf("uswitch fault: unknown operation %q (list, add, del, pause, resume)\n", req.Op)}
	}
	next.BindState(l.eng.CT, l.eng.NAT)
	next.BindHost(l.faultHost())
	l.cfgMu.Lock()
	ec := l.eng.Config()
	ec.Faults = faultStages(next)
	ec.BridgeFaults = bridgeFaultStages(next)
	l.eng.Swap(ec)
	l.cfgMu.Unlock()
	if err := l.dp.SetFaults(next); err != nil {
		return control.Response{Code: 1, Stderr: "uswitch fault: " + err.Error() + "\n"}
	}
	return control.Response{}
}

// AddFaults adds a fault file's tables to the lab (uswitch lab
// --faults FILE, uswitch experiment run --faults FILE): its [[fault]],
// [[workload]] and [[step]] tables join the lab's, its [experiment]
// keys replace the lab's where set. They are checked as the lab file's.
func (c *Config) AddFaults(file string, data []byte) error {
	var f experimentFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		return &ConfigError{File: file, Line: keyLine(string(data), u[0]), Key: u[0].String(), Err: errors.New("unknown key")}
	}
	old := *c
	c.Faults = append(append([]fault.Spec(nil), c.Faults...), f.Faults...)
	c.Workloads = append(append([]Workload(nil), c.Workloads...), f.Workloads...)
	c.Steps = append(append([]Step(nil), c.Steps...), f.Steps...)
	e, o := &c.Experiment, &f.Experiment
	for _, kv := range []struct{ dst, src *string }{{&e.Name, &o.Name}, {&e.Duration, &o.Duration}, {&e.Short, &o.Short},
		{&e.Report, &o.Report}, {&e.Model, &o.Model}, {&e.ModelWorkload, &o.ModelWorkload}, {&e.RTT, &o.RTT}} {
		if *kv.src != "" {
			*kv.dst = *kv.src
		}
	}
	if o.Seed != 0 {
		e.Seed = o.Seed
	}
	if o.MSS != 0 {
		e.MSS = o.MSS
	}
	err = c.checkExperiment("")
	if err == nil {
		err = c.checkFaults("")
	}
	if err != nil {
		*c = old
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File, ce.Line = file, 0
		}
		return err
	}
	return nil
}

// faultLine is the line of the i-th [[fault]] header.
func faultLine(src string, i int) int {
	n := -1
	for ln, line := range strings.Split(src, "\n") {
		if strings.TrimSpace(line) == "[[fault]]" {
			n++
			if n == i {
				return ln + 1
			}
		}
	}
	return 0
}

// FaultSeed is the seed the faults draw from: [experiment] seed, else
// [uswitch] seed, else engineSeed (the one Up picked).
func (c *Config) FaultSeed(engineSeed uint64) uint64 {
	if c.Experiment.Seed != 0 {
		return c.Experiment.Seed
	}
	return engineSeed
}

// FaultSet compiles the lab's faults with seed (an empty set when it
// has none: faults can be added live).
func (c *Config) FaultSet(seed uint64) (*fault.Set, error) {
	return fault.NewSet(c.Faults, seed, c.setLookup())
}

// faultStages are the set's IPv4 hook faults as engine stages.
func faultStages(s *fault.Set) []datapath.FaultStage {
	var out []datapath.FaultStage
	for _, f := range s.Hooks() {
		out = append(out, f)
	}
	return out
}

// bridgeFaultStages are the set's bridge hook faults as engine stages.
func bridgeFaultStages(s *fault.Set) []datapath.BridgeFaultStage {
	var out []datapath.BridgeFaultStage
	for _, f := range s.Bridge() {
		out = append(out, f)
	}
	return out
}

// faultHost is what the lab's state faults act through: the engine,
// and the TUN/TAP datapath for datapath-kill and -stall (link/kill.go).
func (l *Lab) faultHost() *faulthost.Host {
	dp := func() (*link.Datapath, error) {
		if d := l.dpa.Load(); d != nil {
			return d, nil
		}
		return nil, errors.New("the lab's datapath is not up yet")
	}
	return &faulthost.Host{Eng: l.eng, Sets: l.cfg.Sets, Lock: &l.cfgMu,
		KillFn: func(d int64) error {
			p, err := dp()
			if err != nil {
				return err
			}
			return p.Kill(d)
		},
		StallFn: func(d int64) error {
			p, err := dp()
			if err != nil {
				return err
			}
			return p.Stall(d)
		}}
}

// setLookup resolves -m set names in fault matches (nil: no sets).
func (c *Config) setLookup() iptables.SetLookup {
	if c.Sets == nil {
		return nil
	}
	return c.Sets
}
