package fault

import (
	"strings"
	"testing"
)

// TestParseNetem: tc's words, defaults and refusals.
func TestParseNetem(t *testing.T) {
	n, err := ParseNetem(strings.Fields("delay 40ms 10ms 25% distribution normal loss 5% 25% duplicate 1% corrupt 0.1% reorder 25% 50% gap 5 rate 1mbit 20 64 4 limit 100"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Latency != 40e6 || n.Jitter != 10e6 || n.DelayCorr != ProbOf(.25) || n.Dist == nil || n.Dist.Name != "normal" ||
		n.Model != LossRandom || n.Loss != ProbOf(.05) || n.LossCorr != ProbOf(.25) || n.Duplicate != ProbOf(.01) ||
		n.Corrupt != ProbOf(.001) || n.Reorder != ProbOf(.25) || n.ReorderCorr != ProbOf(.5) || n.Gap != 5 ||
		n.Rate != 125000 || n.PacketOverhead != 20 || n.CellSize != 64 || n.CellOverhead != 4 || n.Limit != 100 {
		t.Errorf("parsed %+v", n)
	}
	if n, _ := ParseNetem(strings.Fields("delay 10ms reorder 25%")); n.Gap != 1 {
		t.Errorf("reorder without gap: gap %d, want 1", n.Gap)
	}
	if n, _ := ParseNetem(strings.Fields("loss gemodel 1%")); n.A2 != ProbOf(.99) || n.A3 != 0 || n.A4 != 0 {
		t.Errorf("gemodel defaults: %+v", n)
	}
	if n, _ := ParseNetem(strings.Fields("loss gemodel 1% 10% 70% 0.1%")); n.A3 != ProbOf(.3)+1 && n.A3 != ProbOf(.3) {
		t.Errorf("gemodel 1-h 70%%: h %v", n.A3.Float())
	}
	if n, _ := ParseNetem(strings.Fields("loss state 1%")); n.A2 != ProbOf(.99) || n.A5 != ProbOf(1) {
		t.Errorf("state defaults: %+v", n)
	}
	if n, _ := ParseNetem(strings.Fields("delay 100")); n.Latency != 100e3 {
		t.Errorf("bare time: %d ns, want 100 µs", n.Latency)
	}
	for _, bad := range []struct{ words, msg string }{
		{"reorder 25%", "reordering not possible without specifying some delay"},
		{"delay 10ms gap 5", "gap specified without reorder probability"},
		{"delay 10ms distribution normal", "distribution specified but no latency and jitter values"},
		{"ecn", "ecn requested without loss model"},
		{"loss 101%", "not a percentage"},
		{"delay 10ms 1ms distribution cauchy", "unknown distribution"},
		{"seed 7", "experiment's seed"},
		{"rate 1furlong", "unknown rate unit"},
		{"slot 10ms 5ms", "slot min delay greater than max delay"},
		{"packets 3", "belongs to slot"},
		{"frobnicate", "unknown word"},
	} {
		_, err := ParseNetem(strings.Fields(bad.words))
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: %v, want %q", bad.words, err, bad.msg)
		}
	}
}

// TestParsePlacement: the placements and their printing.
func TestParsePlacement(t *testing.T) {
	for _, s := range []string{"wire:tun-web1:ingress", "wire:t:egress", "hook:ipv4:PREROUTING@-250", "hook:ipv4:FORWARD", "hook:bridge:FORWARD@-250", "hook:bridge:BROUTING", "wire:t"} {
		p, err := ParsePlacement(s)
		if err != nil || p.String() != s {
			t.Errorf("%s: %v %q", s, err, p)
		}
	}
	for _, s := range []string{"wire:", "wire::egress", "wire:t:both", "hook:ipv6:INPUT", "hook:ipv4:NOPE", "hook:ipv4:INPUT@x", "tc:eth0"} {
		if _, err := ParsePlacement(s); err == nil {
			t.Errorf("%s: accepted", s)
		}
	}
}

const sampleFile = `
[experiment]
name = "svc"
seed = 42

[[fault]]
name  = "web1-slow"
at    = "wire:tun-web1:egress"
match = "-p tcp --sport 80"
netem = "delay 40ms 10ms 25% distribution normal loss 5% 25%"
schedule = { start = "5s", stop = "15s" }

[[fault]]
name = "dns"
at = "hook:ipv4:PREROUTING@-250"
match = "-p udp --dport 53"
action = "loss"
nth = [1, 2]

[[fault]]
name = "cut"
action = "partition"
groups = { a = ["10.10.1.0/24"], b = ["10.10.3.2"] }
direction = "a->b"
mode = "reject"
at = "hook:ipv4:FORWARD"

[[fault]]
name = "ttl1"
action = "mangle"
at = "hook:ipv4:PREROUTING@-500"
ttl = 1
mark = "0x10/0xff"
`

func TestParseFile(t *testing.T) {
	f, err := ParseFile("x.toml", []byte(sampleFile))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(f.Faults, f.Experiment.Seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Faults) != 4 || len(s.Wire("tun-web1", true)) != 1 || len(s.Hooks()) != 3 {
		t.Fatalf("%d faults", len(s.Faults))
	}
	w := s.Faults[0]
	if w.Start != 5e9 || w.Stop != 15e9 || w.Netem.Latency != 40e6 {
		t.Errorf("web1-slow: %+v", w)
	}
	c := s.Faults[2]
	if c.Kind != KindPartition || c.Dir != AToB || !c.Reject || c.B[0].String() != "10.10.3.2/32" {
		t.Errorf("cut: %+v", c)
	}
	m := s.Faults[3]
	if !m.SetTTL || m.TTL != 1 || m.Mark != 0x10 || m.MarkMask != 0xff {
		t.Errorf("ttl1: %+v", m)
	}
	for _, bad := range []struct{ toml, msg string }{
		{"[[fault]]\nname = \"x\"\nat = \"hook:ipv4:INPUT\"\nnetem = \"delay 10ms\"\n", "need a wire placement"},
		{"[[fault]]\nname = \"x\"\nat = \"wire:t:egress\"\naction = \"partition\"\ngroups = { a = [\"1.2.3.4\"], b = [\"5.6.7.8\"] }\nmode = \"reject\"\n", "reject needs a hook placement"},
		{"[[fault]]\nname = \"x y\"\nat = \"wire:t:egress\"\nnetem = \"loss 1%\"\n", "name"},
		{"[[fault]]\nname = \"x\"\nat = \"wire:t:egress\"\nnetem = \"loss 1%\"\n[[fault]]\nname = \"x\"\nat = \"wire:t:egress\"\nnetem = \"loss 1%\"\n", "second fault"},
		{"[[fault]]\nname = \"x\"\nat = \"wire:t:egress\"\nnetem = \"loss 1%\"\nbogus = 1\n", "unknown key"},
		{"[[fault]]\nname = \"x\"\nat = \"wire:t:egress\"\nnetem = \"loss 1%\"\nstart = \"5\"\n", "unit"},
	} {
		f, err := ParseFile("x.toml", []byte(bad.toml))
		if err == nil {
			_, err = NewSet(f.Faults, 1, nil)
		}
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: %v, want %q", bad.toml, err, bad.msg)
		}
	}
}

// FuzzParseNetem: netem words never panic.
func FuzzParseNetem(f *testing.F) {
	f.Add("delay 40ms 10ms 25% distribution normal loss 5% 25% duplicate 1% corrupt 0.1% reorder 25% 50% gap 5 rate 1mbit limit 1000")
	f.Add("slot 1ms 2ms packets 2 bytes 100 loss gemodel 1% 2% 3% 4%")
	f.Fuzz(func(t *testing.T, s string) {
		ParseNetem(strings.Fields(s))
	})
}
