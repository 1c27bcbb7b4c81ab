package fault

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// File is a fault file: an [experiment] table and [[fault]] tables (the
// same tables a lab file may carry).
type File struct {
	Experiment Experiment `toml:"experiment"`
	Faults     []Spec     `toml:"fault"`
}

// Experiment is the [experiment] table.
type Experiment struct {
	Name string `toml:"name"`
	// Seed seeds every fault's draws (0: the lab's seed, or the clock;
	// the seed used is always printed).
	Seed uint64 `toml:"seed"`
}

// ParseFile reads a fault file; name is for errors.
func ParseFile(name string, data []byte) (*File, error) {
	var f File
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		return nil, fmt.Errorf("%s: unknown key %s", name, u[0])
	}
	return &f, nil
}

// Set is an experiment's compiled faults.
type Set struct {
	Seed   uint64
	Faults []*Fault
	epoch  int64
}

// NewSet compiles specs with seed. Names are unique.
func NewSet(specs []Spec, seed uint64, sets iptables.SetLookup) (*Set, error) {
	s := &Set{Seed: seed}
	seen := map[string]bool{}
	for i := range specs {
		f, err := Compile(&specs[i], seed, sets)
		if err != nil {
			n := specs[i].Name
			if n == "" {
				n = "#" + strconv.Itoa(i+1)
			}
			return nil, &SpecError{Index: i, Name: n, Err: err}
		}
		if seen[f.Name] {
			return nil, &SpecError{Index: i, Name: f.Name, Err: errors.New("a second fault of that name")}
		}
		seen[f.Name] = true
		s.Faults = append(s.Faults, f)
	}
	return s, nil
}

// SpecError is a [[fault]] that does not compile.
type SpecError struct {
	Index int
	Name  string
	Err   error
}

func (e *SpecError) Error() string { return fmt.Sprintf("fault %s: %v", e.Name, e.Err) }
func (e *SpecError) Unwrap() error { return e.Err }

// LoadFile reads and compiles a fault file; seed, when not 0, overrides
// the file's; with neither, def.
func LoadFile(path string, seed, def uint64) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := ParseFile(path, b)
	if err != nil {
		return nil, err
	}
	if seed == 0 {
		seed = f.Experiment.Seed
	}
	if seed == 0 {
		seed = def
	}
	s, err := NewSet(f.Faults, seed, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// SetEpoch sets the time (on the clock Decide's callers use) that the
// schedules count from. Call it before the faults see packets.
func (s *Set) SetEpoch(t int64) {
	s.epoch = t
	for _, f := range s.Faults {
		f.epoch = t
	}
}

// Epoch is the set's epoch (SetEpoch).
func (s *Set) Epoch() int64 { return s.epoch }

// With returns a set of s's faults (the same ones: their state and
// counters go on) and specs compiled with s's seed; names stay unique.
func (s *Set) With(specs []Spec, sets iptables.SetLookup) (*Set, error) {
	add, err := NewSet(specs, s.Seed, sets)
	if err != nil {
		return nil, err
	}
	n := &Set{Seed: s.Seed, epoch: s.epoch}
	for _, f := range add.Faults {
		f.epoch = s.epoch // the faults of s have theirs (and may be running)
	}
	n.Faults = append(append(n.Faults, s.Faults...), add.Faults...)
	seen := map[string]bool{}
	for _, f := range n.Faults {
		if seen[f.Name] {
			return nil, fmt.Errorf("fault %s: a second fault of that name", f.Name)
		}
		seen[f.Name] = true
	}
	return n, nil
}

// Without returns a set of s's faults but the one called name (false:
// none is).
func (s *Set) Without(name string) (*Set, bool) {
	n := &Set{Seed: s.Seed, epoch: s.epoch}
	found := false
	for _, f := range s.Faults {
		if f.Name == name {
			found = true
			continue
		}
		n.Faults = append(n.Faults, f)
	}
	return n, found
}

// Observe makes fn see every decision of the set's faults (offline
// tools: uswitch trace --faults prints them). Call it before the faults
// see packets; fn runs under the fault's flow lock.
func (s *Set) Observe(fn func(Decision)) {
	for _, f := range s.Faults {
		f.observe = fn
	}
}

// Wire returns the faults at wire:iface:ingress (egress false) or
// egress, in file order.
func (s *Set) Wire(iface string, egress bool) []*Fault {
	if s == nil {
		return nil
	}
	k := WireIngress
	if egress {
		k = WireEgress
	}
	var out []*Fault
	for _, f := range s.Faults {
		// a link fault goes first: a link that is down shows nothing to
		// the faults behind it
		if (f.At.Kind == k || f.At.Kind == WireBoth) && f.Kind == KindLink && f.At.Iface == iface {
			out = append(out, f)
		}
	}
	for _, f := range s.Faults {
		if f.At.Kind == k && f.Kind != KindLink && f.At.Iface == iface {
			out = append(out, f)
		}
	}
	return out
}

// Hooks returns the faults at IPv4 hook placements.
func (s *Set) Hooks() []*Fault {
	if s == nil {
		return nil
	}
	var out []*Fault
	for _, f := range s.Faults {
		if f.At.Kind == HookIPv4 {
			out = append(out, f)
		}
	}
	return out
}

// Bridge returns the faults at bridge hook placements: parsed and
// compiled, run by nothing yet.
func (s *Set) Bridge() []*Fault {
	if s == nil {
		return nil
	}
	var out []*Fault
	for _, f := range s.Faults {
		if f.At.Kind == HookBridge {
			out = append(out, f)
		}
	}
	return out
}

// Verdict returns the faults on the verdict path of NFQUEUE queue q
// (nfqueue:verdict and nfqueue:q:verdict), in file order.
func (s *Set) Verdict(q uint16) []*Fault {
	if s == nil {
		return nil
	}
	var out []*Fault
	for _, f := range s.Faults {
		if f.At.Kind == NFQueueVerdict && (f.At.Queue < 0 || f.At.Queue == int32(q)) {
			out = append(out, f)
		}
	}
	return out
}

// Tick runs, at now, the instants and window edges of the set's
// datapath-kill and datapath-stall faults, which stop the process that
// runs the packets and so cannot wait for a packet to reach their stage
// (a stalled datapath decides none): the runner (uswitch nfqueue, a
// lab) calls it on a clock between packets. The other state faults act
// at the first packet at or after their time, as before, so that they
// change the same packets live and offline.
func (s *Set) Tick(now int64) {
	if s == nil {
		return
	}
	for _, f := range s.Faults {
		if f.Kind != KindDatapathKill && f.Kind != KindDatapathStall {
			continue
		}
		if f.sched.trig != trigNone && f.sched.fired.Load() == 0 {
			continue // a trigger waits for its packet
		}
		f.tick(now)
	}
}

// Ifaces lists the interfaces wire placements name.
func (s *Set) Ifaces() []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range s.Faults {
		if (f.At.Kind == WireIngress || f.At.Kind == WireEgress || f.At.Kind == WireBoth) && !seen[f.At.Iface] {
			seen[f.At.Iface] = true
			out = append(out, f.At.Iface)
		}
	}
	return out
}

// Describe is the fault's definition in one line: placement, match,
// action and selection.
func (f *Fault) Describe() string {
	s := f.At.String()
	if f.Match != "" {
		s += " match '" + f.Match + "'"
	}
	sp := &f.Spec
	if f.Kind == KindConntrackFull {
		s += " conntrack-full max " + strconv.Itoa(f.Max)
	} else if f.Kind == KindNATExhaust {
		s += " nat-exhaust ports " + strconv.Itoa(f.Ports)
	} else if f.Kind >= KindConntrackEvict {
		s += " " + f.Kind.String()
		for _, x := range [][2]string{{"filter", sp.Filter}, {"timeout", sp.Timeout}, {"twin", sp.Twin}, {"twin_dnat", sp.TwinDNAT},
			{"twin_snat", sp.TwinSNAT}, {"file", sp.File}, {"family", sp.Family}, {"op", sp.Op}, {"bridge", sp.Bridge},
			{"mac", sp.MAC}, {"port", sp.Port}, {"duration", sp.Duration}} {
			if x[1] != "" {
				s += " " + x[0] + " '" + x[1] + "'"
			}
		}
		if f.Kind == KindRulesSwap && !f.act.atomic {
			s += " (line by line)"
		}
		for _, kv := range f.act.sysctls {
			s += " " + kv[0] + "=" + kv[1]
		}
	} else if sp.Action != "" {
		s += " " + sp.Action
		if sp.Probability != nil {
			s += " " + sp.Probability.words()
		}
	}
	if sp.Netem != "" {
		s += " netem '" + sp.Netem + "'"
	}
	for _, x := range []struct {
		k string
		v uint64
	}{{"skip", f.Skip}, {"every", f.Every}, {"offset", f.Offset}, {"times", f.Times}} {
		if x.v != 0 {
			s += " " + x.k + " " + strconv.FormatUint(x.v, 10)
		}
	}
	if len(f.Nth) > 0 {
		s += fmt.Sprintf(" nth %v", f.Nth)
	}
	if f.Period != 0 {
		s += " every " + time.Duration(f.Period).String() + " for " + time.Duration(f.For).String()
	}
	s += f.describeSchedule()
	if f.Paused() {
		s += " (paused)"
	}
	if f.Start != 0 || f.Stop != 0 {
		s += " from " + time.Duration(f.Start).String()
		if f.Stop != 0 {
			s += " to " + time.Duration(f.Stop).String()
		}
	}
	return s
}

// WriteList prints the faults as `uswitch fault list` does: the seed,
// then per fault its definition and counters.
func (s *Set) WriteList(w io.Writer) {
	fmt.Fprintf(w, "seed %d\n", s.Seed)
	for _, f := range s.Faults {
		if f.Kind == KindConntrackFull || f.Kind == KindNATExhaust {
			fmt.Fprintf(w, "%s: %s\n  %s\n", f.Name, f.Describe(), f.stateText())
			continue
		}
		if f.Kind.stateKind() {
			fmt.Fprintf(w, "%s: %s\n  %s\n", f.Name, f.Describe(), f.actionText())
			continue
		}
		if f.Kind == KindConntrackClash {
			n, e := f.Errors()
			fmt.Fprintf(w, "%s: %s\n  matched %d raced %d (twin failed %d: %s)\n", f.Name, f.Describe(), f.Matched.Load(), f.Acted.Load()-n, n, e)
			continue
		}
		fmt.Fprintf(w, "%s: %s\n  matched %d acted %d: dropped %d duplicated %d corrupted %d delayed %d reordered %d ecn %d mangled %d limit %d\n",
			f.Name, f.Describe(), f.Matched.Load(), f.Acted.Load(), f.Dropped.Load(), f.Duplicated.Load(), f.Corrupted.Load(),
			f.Delayed.Load(), f.Reordered.Load(), f.Marked.Load(), f.Mangled.Load(), f.LimitDrops.Load())
	}
}

// The engine's view of a hook fault (datapath.FaultStage).

// FaultHook is the fault's hook and priority.
func (f *Fault) FaultHook() (netfilter.Hook, netfilter.Priority) { return f.At.Hook, f.At.Prio }

// FaultName is the fault's name.
func (f *Fault) FaultName() string { return f.Name }

var (
	rejectICMP = &iptables.RejectRequest{Type: 3, Code: 3}
	rejectTCP  = &iptables.RejectRequest{TCPReset: true}
)

// Act is the fault as a hook stage: it decides for the packet of c at
// the engine's time now and applies the decision in place. matched:
// the fault saw the packet (text then says what it did when traced);
// drop: the packet is gone (with c.Reject set, the engine answers).
// A corrupted packet is decoded again; one whose header no longer
// decodes is dropped, as ip_rcv would drop it.
func (f *Fault) Act(c *iptables.Ctx, now int64, traced bool) (matched, drop bool, text string) {
	if f.quickReject(c.Pkt) {
		return false, false, ""
	}
	if f.Kind.stateKind() {
		if f.sched.trig != trigNone && f.sched.fired.Load() == 0 {
			f.trigger(c, now)
		}
		f.tick(now)
		return false, false, ""
	}
	if !f.Sees(c, now) {
		return false, false, ""
	}
	var d Decision
	f.decide(c, now, &d)
	if traced {
		text = d.Text()
	}
	if !d.Acted {
		return true, false, text
	}
	if d.Orig.Drop {
		if d.Orig.Reject {
			c.Reject = rejectICMP
			if f.RejectTCP && c.Pkt.Proto == 6 {
				c.Reject = rejectTCP
			}
		}
		return true, true, text
	}
	p := c.Pkt
	f.Apply(&d, &d.Orig, p.IP, p)
	if d.Orig.Corrupt && p.Decode() != nil {
		return true, true, text
	}
	return true, false, text
}

var lineRe = regexp.MustCompile(`\s+`)

// MatchText is the fault's match as iptables-save prints it ("" none).
func (f *Fault) MatchText() string {
	if f.match == nil {
		return ""
	}
	return lineRe.ReplaceAllString(iptables.MatchString(f.match), " ")
}
