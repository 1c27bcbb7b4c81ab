package fault

import (
	"reflect"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/iptables"
)

// fuzzSeeds are [[fault]] tables of every kind, placement and key: the
// seeds of FuzzFaultFile (TestFuzzSeedsCover checks they name every
// key of Spec and every kind). Each compiles on its own.
var fuzzSeeds = []string{
	`name = "n1"
at = "wire:t0:egress"
match = "-p tcp --sport 80"
netem = "delay 40ms 10ms 25% distribution normal loss 5% 25% duplicate 1% corrupt 0.1% reorder 25% 50% gap 5 rate 1mbit 20 48 4 slot 1ms 2ms packets 2 bytes 1500"
limit = 100
order = "fifo"
scope = "fault"`,
	`name = "l1"
at = "hook:ipv4:PREROUTING@-250"
match = "-p udp --dport 53"
action = "loss"
probability = "5%"
correlation = 0.25
skip = 1
every = 3
offset = 1
times = 4
start = "1s"
stop = "9s"`,
	`name = "l2"
at = "wire:t0:ingress"
action = "drop"
nth = [1, 2, 5]
schedule = { start = "1s", stop = "20s", every = "10s", for = "3s" }`,
	`name = "d1"
at = "wire:t0:egress"
action = "delay"
delay = "40ms"
jitter = "10ms"
correlation = "25%"
distribution = "pareto"
ramp = { param = "delay", from = "10ms", to = "50ms", over = "4s", step = "1s" }`,
	`name = "d2"
at = "wire:t0:egress"
action = "duplicate"
probability = 50
steps = [ { at = "0s", probability = "1%" }, { at = "2s", netem = "duplicate 5%" }, { at = "3s", probability = "10%", delay = "1ms", jitter = "1ms" } ]`,
	`name = "c1"
at = "nfqueue:verdict"
action = "corrupt"
probability = "1%"`,
	`name = "r1"
at = "nfqueue:7:verdict"
action = "rate"
rate = "10kbit"
schedule = { after_packets = 10 }`,
	`name = "p1"
action = "partition"
groups = { a = ["10.10.1.0/24"], b = ["10.10.3.2"] }
direction = "a->b"
mode = "reject"
reject_with = "tcp-reset"
at = "hook:ipv4:FORWARD"`,
	`name = "m1"
action = "mangle"
at = "hook:ipv4:PREROUTING@-500"
ttl = 1
tos = 16
mark = "0x10/0xff"`,
	`name = "m2"
action = "mangle"
at = "wire:tun-server:ingress"
match = "-p tcp --sport 8080"
nth = [60]
tcp_seq = 1073741824`,
	`name = "b1"
at = "hook:bridge:FORWARD@-250"
ebt_match = "-p ARP --arp-ip-dst 10.0.0.1"
match = "-p udp"
action = "loss"`,
	`name = "ctf"
action = "conntrack-full"
max = 64
schedule = { start = "1s", stop = "2s" }`,
	`name = "nx"
action = "nat-exhaust"
ports = 4`,
	`name = "ev"
action = "conntrack-evict"
filter = "-p tcp --orig-dst 10.96.0.10 --dport 80"
schedule = { at = ["1s", "2s"] }`,
	`name = "ex"
action = "conntrack-expire"
filter = "-p udp"
timeout = "1s"
match = "-p udp"
schedule = { on = "conntrack:new" }`,
	`name = "cl"
action = "conntrack-clash"
match = "-p udp --dport 53"
twin = "no-nat"`,
	`name = "cl2"
action = "conntrack-clash"
twin_dnat = "10.0.0.9:53"`,
	`name = "cl3"
action = "conntrack-clash"
twin_snat = "10.0.0.8"`,
	`name = "rs"
action = "rules-swap"
rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j DROP\nCOMMIT\n"
atomic = true
schedule = { start = "1s", stop = "2s" }`,
	`name = "rs2"
action = "rules-swap"
rules = "-A FORWARD -j DROP\n-D FORWARD 1"
atomic = false
step = "10ms"
family = "ipv4"
schedule = { at = "1s" }`,
	`name = "rs3"
action = "rules-swap"
file = "/nonexistent/rules-v2.txt"
family = "bridge"`,
	`name = "sc"
action = "sysctl"
set = ["net.ipv4.ip_forward=0", "net/bridge/bridge-nf-call-iptables=0"]
schedule = { start = "1s", stop = "2s" }`,
	`name = "f1"
action = "fdb"
op = "poison"
bridge = "br0"
mac = "02:00:00:00:00:01"
port = "tap1"
schedule = { at = "1s" }`,
	`name = "f2"
action = "fdb"
op = "age"
bridge = "br0"
ageing = "1s"`,
	`name = "k1"
action = "datapath-kill"
duration = "1s"
schedule = { at = "1s" }`,
	`name = "s1"
action = "datapath-stall"
duration = "500ms"
schedule = { at = ["1s", "3s"] }`,
	`name = "ln"
at = "wire:t0"
action = "link"
schedule = { every = "2s", for = "1s" }`,
}

func fuzzFile(tables ...string) string {
	var b strings.Builder
	b.WriteString("[experiment]\nname = \"fz\"\nseed = 9\n")
	for _, t := range tables {
		b.WriteString("\n[[fault]]\n" + t + "\n")
	}
	return b.String()
}

// TestFuzzSeedsCover: the fuzz seeds compile one by one, and between
// them give every key of a [[fault]] table and every kind.
func TestFuzzSeedsCover(t *testing.T) {
	all := strings.Join(fuzzSeeds, "\n")
	st := reflect.TypeOf(Spec{})
	for i := range st.NumField() {
		key := st.Field(i).Tag.Get("toml")
		if !strings.Contains(all, "\n"+key+" = ") && !strings.HasPrefix(all, key+" = ") {
			t.Errorf("no seed has key %q", key)
		}
	}
	for _, k := range []reflect.Type{reflect.TypeOf(Schedule{}), reflect.TypeOf(Ramp{}), reflect.TypeOf(Step{})} {
		for i := range k.NumField() {
			if key := k.Field(i).Tag.Get("toml"); !strings.Contains(all, key+" = ") {
				t.Errorf("no seed has %s key %q", k.Name(), key)
			}
		}
	}
	for _, k := range kindNames {
		if k != "netem" && !strings.Contains(all, `action = "`+k+`"`) {
			t.Errorf("no seed has action %q", k)
		}
	}
	for _, s := range fuzzSeeds {
		f, err := ParseFile("seed", []byte(fuzzFile(s)))
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if _, err := NewSet(f.Faults, 1, nil); err != nil && !strings.Contains(err.Error(), "/nonexistent/") {
			t.Errorf("%s: %v", s, err)
		}
	}
}

// FuzzFaultFile: the fault file parser and compiler never panic on any
// input; a set that compiles lists, describes itself and decides (and
// acts, for state faults with no engine behind them) on packets without
// panicking.
func FuzzFaultFile(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(fuzzFile(s))
	}
	f.Add(fuzzFile(fuzzSeeds...))
	f.Add(sampleFile)
	f.Fuzz(func(t *testing.T, s string) {
		pf, err := ParseFile("f.toml", []byte(s))
		if err != nil {
			return
		}
		set, err := NewSet(pf.Faults, pf.Experiment.Seed, nil)
		if err != nil {
			return
		}
		var b strings.Builder
		set.WriteList(&b)
		set.SetEpoch(0)
		p := udp(t, ipA, ipB, 1, 53, 64)
		for _, now := range []int64{0, 1e9, 25e8, 1e10} {
			set.Tick(now)
			for _, x := range set.Faults {
				c := iptables.Ctx{Pkt: p}
				x.Act(&c, now, true)
				d, ok := decide(x, p, now)
				if !ok {
					continue
				}
				if x.Queued() {
					q := NewQueue[int](x, 0)
					q.Enqueue(now, len(p.IP), &d.Orig, 1)
					q.Dequeue(now + 1e12)
				}
				_ = d.Text()
			}
		}
		set.WriteList(&b)
	})
}
