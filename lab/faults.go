package lab

import (
	"errors"
	"fmt"
	"strings"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/iptables"
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
		switch f.At.Kind {
		case fault.WireIngress, fault.WireEgress:
			found := false
			for _, it := range c.Interfaces {
				found = found || it.Name == f.At.Iface
			}
			if !found {
				return &ConfigError{File: c.File, Line: faultLine(src, i), Key: "fault.at",
					Err: fmt.Errorf("fault %s: %s: the lab has no interface %s", f.Name, f.At, f.At.Iface)}
			}
		case fault.HookBridge:
			return &ConfigError{File: c.File, Line: faultLine(src, i), Key: "fault.at",
				Err: fmt.Errorf("fault %s: %s: bridge placements are parsed but wait for the bridge datapath", f.Name, f.At)}
		}
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

// FaultSet compiles the lab's faults with seed (nil: none).
func (c *Config) FaultSet(seed uint64) (*fault.Set, error) {
	if len(c.Faults) == 0 {
		return nil, nil
	}
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

// setLookup resolves -m set names in fault matches (nil: no sets).
func (c *Config) setLookup() iptables.SetLookup {
	if c.Sets == nil {
		return nil
	}
	return c.Sets
}
