package fault

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/iptables"
)

// Spec is a fault as a [[fault]] table of a lab or fault file gives it.
// Every fault has a name (its random stream's name) and a placement;
// what it does is either netem words, an action with its keys, or both
// (the action's keys become netem words):
//
//	[[fault]]
//	name  = "web1-slow"
//	at    = "wire:tun-web1:egress"
//	match = "-p tcp --sport 80"
//	netem = "delay 40ms 10ms 25% distribution normal loss 5% 25%"
//
//	[[fault]]
//	name = "drop-every-5th-dns"
//	at   = "hook:ipv4:PREROUTING@-250"
//	match = "-p udp --dport 53"
//	action = "loss"
//	every = 5
//
//	[[fault]]
//	name = "cut"
//	action = "partition"
//	groups = { a = ["10.10.1.0/24"], b = ["10.10.3.2/32"] }
//	direction = "a->b"
//	mode = "reject"
type Spec struct {
	Name   string `toml:"name"`
	At     string `toml:"at"`
	Match  string `toml:"match"`
	Action string `toml:"action"`
	Netem  string `toml:"netem"`
	// action keys (netem: loss, duplicate, corrupt, reorder take
	// probability and correlation; delay takes delay, jitter,
	// correlation, distribution; rate takes rate)
	Probability  *Percent `toml:"probability"`
	Correlation  *Percent `toml:"correlation"`
	Delay        string   `toml:"delay"`
	Jitter       string   `toml:"jitter"`
	Distribution string   `toml:"distribution"`
	Rate         string   `toml:"rate"`
	Limit        int      `toml:"limit"`
	// order "time" (default, tfifo) or "fifo"; scope "flow" (default)
	// or "fault"
	Order string `toml:"order"`
	Scope string `toml:"scope"`
	// deterministic selection
	Skip   uint64   `toml:"skip"`
	Every  uint64   `toml:"every"`
	Offset uint64   `toml:"offset"`
	Nth    []uint64 `toml:"nth"`
	Times  uint64   `toml:"times"`
	// schedule, from the experiment's start ("5s"; "" = from the start
	// / never stops)
	Start    string    `toml:"start"`
	Stop     string    `toml:"stop"`
	Schedule *Schedule `toml:"schedule"`
	// partition
	Groups     map[string][]string `toml:"groups"`
	Direction  string              `toml:"direction"`
	Mode       string              `toml:"mode"`
	RejectWith string              `toml:"reject_with"`
	// mangle
	TTL  *int   `toml:"ttl"`
	TOS  *int   `toml:"tos"`
	Mark string `toml:"mark"`
	// TCPSeq is added to a TCP segment's sequence number (mod 2^32;
	// negative moves it back)
	TCPSeq *int64 `toml:"tcp_seq"`
	// conntrack-full: the emulated nf_conntrack_max; nat-exhaust: the
	// ports left in every source NAT pool
	Max   int `toml:"max"`
	Ports int `toml:"ports"`
	// conntrack-evict, conntrack-expire: a conntrack(8) filter and
	// (expire) the time left
	Filter  string `toml:"filter"`
	Timeout string `toml:"timeout"`
	// conntrack-clash: what the twin's NAT was
	Twin     string `toml:"twin"`
	TwinDNAT string `toml:"twin_dnat"`
	TwinSNAT string `toml:"twin_snat"`
	// rules-swap
	File   string `toml:"file"`
	Rules  string `toml:"rules"`
	Family string `toml:"family"`
	Atomic *bool  `toml:"atomic"`
	Step   string `toml:"step"`
	// sysctl: name=value
	Set []string `toml:"set"`
	// fdb
	Op     string `toml:"op"`
	Bridge string `toml:"bridge"`
	MAC    string `toml:"mac"`
	Port   string `toml:"port"`
	Ageing string `toml:"ageing"`
	// datapath-kill (0: for good), datapath-stall at instants
	Duration string `toml:"duration"`
	// ramp and steps: netem parameters over time (schedule.go)
	Ramp  *Ramp  `toml:"ramp"`
	Steps []Step `toml:"steps"`
	// EbtMatch: at a bridge placement, an ebtables match on the frame
	// (-p ARP, -s MAC, --arp-ip-dst ...): it sees every frame, IPv4 or
	// not (bridge.go)
	EbtMatch string `toml:"ebt_match"`
}

// Schedule is the schedule table: { start = "5s", stop = "15s" }.
type Schedule struct {
	Start string `toml:"start"`
	Stop  string `toml:"stop"`
	// Every and For make the fault flip-flop from Start on: active for
	// For at the start of every period of Every (Jepsen's flip-flop;
	// { every = "10s", for = "3s" }).
	Every string `toml:"every"`
	For   string `toml:"for"`
	// At are instants (state faults act at each); AfterPackets and On
	// are triggers that start the schedule's clock (schedule.go).
	At           Instants `toml:"at"`
	AfterPackets uint64   `toml:"after_packets"`
	On           string   `toml:"on"`
}

// Percent is a probability written as "5%", or as a number: a fraction
// (0.05) when a float, a percentage when an integer (5).
type Percent float64

// UnmarshalTOML implements toml.Unmarshaler.
func (p *Percent) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		f, err := parsePercent(x)
		*p = Percent(f)
		return err
	case float64:
		if x < 0 || x > 1 {
			return fmt.Errorf("%v: a fraction is between 0 and 1 (or write \"5%%\")", x)
		}
		*p = Percent(x)
		return nil
	case int64:
		if x < 0 || x > 100 {
			return fmt.Errorf("%d: a percentage is between 0 and 100", x)
		}
		*p = Percent(float64(x) / 100)
		return nil
	}
	return fmt.Errorf("%v: want a percentage", v)
}

func (p Percent) words() string { return strconv.FormatFloat(float64(p)*100, 'g', -1, 64) + "%" }

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

// Compile checks a spec and makes the fault; seed is the experiment's
// seed; sets resolves -m set names in the match (nil: none).
func Compile(s *Spec, seed uint64, sets iptables.SetLookup) (*Fault, error) {
	if !nameRe.MatchString(s.Name) {
		return nil, fmt.Errorf("name %q: 1 to 64 letters, digits, '_', '.', '-'", s.Name)
	}
	f := &Fault{Name: s.Name, Match: strings.TrimSpace(s.Match), key: Key(seed, s.Name), Spec: *s}
	action := s.Action
	if action == "" {
		switch {
		case s.Netem != "" || len(s.Steps) > 0:
			action = "netem"
		case s.Groups != nil:
			action = "partition"
		default:
			return nil, errors.New("no action and no netem words")
		}
	}
	at := s.At
	if k := kindOf[action]; at == "" && k.stateKind() {
		// a state fault: its stage watches the clock, before conntrack
		// (after it, to see a new entry, with on = "conntrack:new")
		at = "hook:ipv4:PREROUTING@-201"
		if s.Schedule != nil && s.Schedule.On != "" {
			at = "hook:ipv4:PREROUTING@-199"
		}
	}
	if at == "" && action == "conntrack-clash" {
		at = "hook:ipv4:POSTROUTING@2147483646" // just before confirm
	}
	if at == "" {
		if action != "partition" && action != "mangle" {
			return nil, fmt.Errorf("action %s needs a placement (at = \"wire:IFACE:egress\", ...)", action)
		}
		at = "hook:ipv4:PREROUTING"
	}
	var err error
	if f.At, err = ParsePlacement(at); err != nil {
		return nil, err
	}
	if f.Match != "" {
		if f.match, err = iptables.ParseMatch(f.Match, f.At.matchHook(), sets); err != nil {
			return nil, fmt.Errorf("match %q: %w", f.Match, err)
		}
	}
	kind, ok := kindOf[action]
	if !ok && !netemActions[action] {
		return nil, fmt.Errorf("unknown action %q (netem, loss, delay, duplicate, corrupt, rate, partition, mangle, link, %s)", action, strings.Join(stateActions, ", "))
	}
	f.Kind = kind
	words, err := actionWords(action, s)
	if err != nil {
		return nil, err
	}
	switch f.Kind {
	case KindConntrackFull:
		if s.Max <= 0 {
			return nil, errors.New("conntrack-full: max = N (the emulated nf_conntrack_max, at least 1)")
		}
		f.Max = s.Max
	case KindNATExhaust:
		if s.Ports <= 0 || s.Ports > 65535 {
			return nil, errors.New("nat-exhaust: ports = K (1 to 65535: the ports left in each source NAT pool)")
		}
		f.Ports = s.Ports
	}
	if f.Kind == KindNetem {
		if f.Netem, err = ParseNetem(words); err != nil {
			return nil, err
		}
	} else if len(words) > 0 {
		return nil, fmt.Errorf("action %s takes no netem words", action)
	}
	switch s.Order {
	case "", "time":
	case "fifo":
		f.Fifo = true
	default:
		return nil, fmt.Errorf("order %q: time or fifo", s.Order)
	}
	switch s.Scope {
	case "", "flow":
	case "fault":
		f.ScopeFault = true
	default:
		return nil, fmt.Errorf("scope %q: flow or fault", s.Scope)
	}
	f.Skip, f.Every, f.Offset, f.Times = s.Skip, s.Every, s.Offset, s.Times
	f.Nth = append([]uint64(nil), s.Nth...)
	for _, x := range f.Nth {
		if x == 0 {
			return nil, errors.New("nth: packets are counted from 1")
		}
	}
	start, stop := s.Start, s.Stop
	if s.Schedule != nil {
		if start != "" || stop != "" {
			return nil, errors.New("start/stop and schedule both given")
		}
		start, stop = s.Schedule.Start, s.Schedule.Stop
		if (s.Schedule.Every == "") != (s.Schedule.For == "") {
			return nil, errors.New("schedule: every and for go together")
		}
		if s.Schedule.Every != "" {
			if f.Period, err = parseDuration(s.Schedule.Every); err != nil {
				return nil, fmt.Errorf("schedule every: %w", err)
			}
			if f.For, err = parseDuration(s.Schedule.For); err != nil {
				return nil, fmt.Errorf("schedule for: %w", err)
			}
			if f.Period <= 0 || f.For <= 0 || f.For > f.Period {
				return nil, errors.New("schedule: 0 < for <= every")
			}
		}
	}
	if start != "" {
		if f.Start, err = parseDuration(start); err != nil {
			return nil, fmt.Errorf("start: %w", err)
		}
	}
	if stop != "" {
		if f.Stop, err = parseDuration(stop); err != nil {
			return nil, fmt.Errorf("stop: %w", err)
		}
		if f.Stop <= f.Start {
			return nil, errors.New("stop is not after start")
		}
	}
	if err := f.compileKind(s); err != nil {
		return nil, err
	}
	if err := f.compileSchedule(s, func(sp *Spec) ([]string, error) { return actionWords(sp.Action, sp) }); err != nil {
		return nil, err
	}
	if err := f.compileAction(s); err != nil {
		return nil, err
	}
	if err := f.compileEbtMatch(s, sets); err != nil {
		return nil, err
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if m := f.match; m != nil && m.IP.Proto != 0 && m.IP.Inv&iptables.InvProto == 0 && !f.Kind.stateKind() {
		f.qProto = m.IP.Proto
		for _, x := range m.Matches {
			switch x := x.(type) {
			case *iptables.TCPMatch:
				if f.qProto == 6 && !x.InvDst && !x.Dst.Any() {
					f.qPorts, f.qDLo, f.qDHi = true, x.Dst.Lo, x.Dst.Hi
				}
			case *iptables.UDPMatch:
				if f.qProto == 17 && !x.InvDst && !x.Dst.Any() {
					f.qPorts, f.qDLo, f.qDHi = true, x.Dst.Lo, x.Dst.Hi
				}
			}
		}
	}
	return f, nil
}

// kindOf maps the actions that are not netem shorthands to their kind.
var kindOf = map[string]Kind{
	"partition": KindPartition, "mangle": KindMangle, "conntrack-full": KindConntrackFull, "nat-exhaust": KindNATExhaust,
	"conntrack-evict": KindConntrackEvict, "conntrack-expire": KindConntrackExpire, "rules-swap": KindRulesSwap,
	"sysctl": KindSysctl, "fdb": KindFDB, "datapath-kill": KindDatapathKill, "datapath-stall": KindDatapathStall,
	"conntrack-clash": KindConntrackClash, "link": KindLink,
}

var stateActions = []string{"conntrack-full", "nat-exhaust", "conntrack-evict", "conntrack-expire", "conntrack-clash",
	"rules-swap", "sysctl", "fdb", "datapath-kill", "datapath-stall"}

var netemActions = map[string]bool{"netem": true, "loss": true, "drop": true, "duplicate": true, "corrupt": true, "delay": true, "rate": true}

// actionWords are the netem words of a spec: its netem line and what a
// shorthand action (loss, delay...) with its keys makes.
func actionWords(action string, s *Spec) ([]string, error) {
	if action == "" && s.Netem != "" {
		action = "netem"
	}
	words := strings.Fields(s.Netem)
	prob := func(def string) string {
		w := def
		if s.Probability != nil {
			w = s.Probability.words()
		}
		if s.Correlation != nil {
			w += " " + s.Correlation.words()
		}
		return w
	}
	switch action {
	case "loss", "drop":
		words = append(words, strings.Fields("loss random "+prob("100%"))...)
	case "duplicate", "corrupt":
		words = append(words, strings.Fields(action+" "+prob("100%"))...)
	case "delay":
		if s.Delay == "" {
			return nil, errors.New("action delay: no delay")
		}
		w := "delay " + s.Delay
		if s.Jitter != "" {
			w += " " + s.Jitter
			if s.Correlation != nil {
				w += " " + s.Correlation.words()
			}
		}
		if s.Distribution != "" {
			w += " distribution " + s.Distribution
		}
		words = append(words, strings.Fields(w)...)
	case "rate":
		if s.Rate == "" {
			return nil, errors.New("action rate: no rate")
		}
		words = append(words, "rate", s.Rate)
	}
	if s.Limit > 0 {
		words = append(words, "limit", strconv.Itoa(s.Limit))
	}
	return words, nil
}

func parseDuration(s string) (int64, error) {
	v, err := ParseTime(s)
	if err != nil {
		return 0, err
	}
	if !strings.ContainsAny(s, "smun") {
		return 0, fmt.Errorf("%q: give a unit (s, ms, us, ns)", s)
	}
	return v, nil
}

func (f *Fault) compileKind(s *Spec) error {
	switch f.Kind {
	case KindPartition:
		if len(s.Groups) != 2 || s.Groups["a"] == nil || s.Groups["b"] == nil {
			return errors.New("partition: groups = { a = [CIDR...], b = [CIDR...] }")
		}
		for _, g := range []struct {
			in  []string
			out *[]netip.Prefix
		}{{s.Groups["a"], &f.A}, {s.Groups["b"], &f.B}} {
			for _, c := range g.in {
				p, err := netip.ParsePrefix(c)
				if err != nil {
					a, err2 := netip.ParseAddr(c)
					if err2 != nil {
						return fmt.Errorf("partition: %q is not an address or prefix", c)
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				if !p.Addr().Is4() {
					return fmt.Errorf("partition: %q is not IPv4", c)
				}
				*g.out = append(*g.out, p.Masked())
			}
		}
		switch s.Direction {
		case "", "both", "a<->b":
			f.Dir = Both
		case "a->b":
			f.Dir = AToB
		case "b->a":
			f.Dir = BToA
		default:
			return fmt.Errorf("partition: direction %q: a->b, b->a or both", s.Direction)
		}
		switch s.Mode {
		case "", "drop":
		case "reject":
			f.Reject = true
		default:
			return fmt.Errorf("partition: mode %q: drop or reject", s.Mode)
		}
		switch s.RejectWith {
		case "", "icmp-port-unreachable":
		case "tcp-reset":
			f.RejectTCP = true
		default:
			return fmt.Errorf("partition: reject_with %q: icmp-port-unreachable or tcp-reset", s.RejectWith)
		}
	case KindMangle:
		if s.TTL != nil {
			if *s.TTL < 0 || *s.TTL > 255 {
				return errors.New("mangle: ttl 0 to 255")
			}
			f.SetTTL, f.TTL = true, uint8(*s.TTL)
		}
		if s.TOS != nil {
			if *s.TOS < 0 || *s.TOS > 255 {
				return errors.New("mangle: tos 0 to 255")
			}
			f.SetTOS, f.TOS = true, uint8(*s.TOS)
		}
		if s.Mark != "" {
			v, m, ok := strings.Cut(s.Mark, "/")
			mark, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				return fmt.Errorf("mangle: mark %q", s.Mark)
			}
			mask := uint64(0xffffffff)
			if ok {
				if mask, err = strconv.ParseUint(m, 0, 32); err != nil {
					return fmt.Errorf("mangle: mark mask %q", s.Mark)
				}
			}
			f.SetMark, f.Mark, f.MarkMask = true, uint32(mark&mask), uint32(mask)
		}
		if s.TCPSeq != nil {
			if *s.TCPSeq == 0 || *s.TCPSeq <= -(1<<31) || *s.TCPSeq >= 1<<31 {
				return errors.New("mangle: tcp_seq: a nonzero offset within ±2^31 (a sequence number moved further is behind, not ahead)")
			}
			f.SeqAdd = uint32(*s.TCPSeq)
		}
		if !f.SetTTL && !f.SetTOS && !f.SetMark && f.SeqAdd == 0 {
			return errors.New("mangle: set ttl, tos, mark or tcp_seq")
		}
	}
	return nil
}

// check refuses what a placement cannot do.
func (f *Fault) check() error {
	if f.Kind.stateKind() || f.Kind == KindConntrackClash {
		if f.At.Kind != HookIPv4 {
			return fmt.Errorf("%s: %s runs as an IPv4 hook stage (leave `at` out)", f.At, f.Kind)
		}
	}
	if f.Kind.stateKind() && f.Match != "" && f.sched.trig == trigNone {
		return fmt.Errorf("%s: a state fault has no match (but for its trigger: schedule on or after_packets)", f.Kind)
	}
	if f.Kind == KindLink && f.At.Kind != WireIngress && f.At.Kind != WireEgress && f.At.Kind != WireBoth {
		return fmt.Errorf("%s: link needs a wire placement (wire:IFACE, both ways, or wire:IFACE:ingress|egress)", f.At)
	}
	if f.At.Kind == WireBoth && f.Kind != KindLink {
		return fmt.Errorf("%s: wire:IFACE (both ways) is for link faults; give ingress or egress", f.At)
	}
	if f.At.Kind == NFQueueVerdict && f.Kind != KindNetem && f.Kind != KindPartition && f.Kind != KindMangle {
		return fmt.Errorf("%s: the verdict path takes netem actions (loss, delay, duplicate, corrupt, rate...), partition and mangle", f.At)
	}
	if f.EbtMatch != "" && f.At.Kind != HookBridge {
		return fmt.Errorf("%s: ebt_match is for bridge placements (hook:bridge:HOOK)", f.At)
	}
	switch f.At.Kind {
	case HookIPv4, HookBridge:
		if f.Kind == KindNetem && (f.Netem.delays() || f.Netem.Duplicate != 0) {
			return fmt.Errorf("%s: delay, reorder, rate, slot and duplicate need a wire placement (a hook placement drops, rejects, corrupts, marks or mangles in place)", f.At)
		}
	default:
		if f.Reject {
			return fmt.Errorf("%s: reject needs a hook placement (the engine sends the answer)", f.At)
		}
	}
	return nil
}
