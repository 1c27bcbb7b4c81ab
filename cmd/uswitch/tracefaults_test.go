package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
)

const traceFaultsFile = `
[experiment]
seed = 7

[[fault]]
name  = "in-loss"
at    = "wire:eth0:ingress"
match = "-p tcp"
netem = "loss 20%"

[[fault]]
name   = "every10"
at     = "hook:ipv4:FORWARD@-10"
action = "loss"
every  = 10

[[fault]]
name  = "out-delay"
at    = "wire:eth1:egress"
netem = "delay 10ms 5ms"
`

// TestTraceFaults: uswitch trace --faults prints each fault's decision
// per packet with the capture's timestamps as the clock; the ingress
// loss drops exactly the packets the fault's seeded draws pick (the
// decisions a live run makes for the same packets), the hook fault
// every 10th packet reaching FORWARD, and the egress delay says when
// each packet leaves; another seed drops others.
func TestTraceFaults(t *testing.T) {
	dir := t.TempDir()
	ff := filepath.Join(dir, "faults.toml")
	os.WriteFile(ff, []byte(traceFaultsFile), 0o644)
	syn := specBytes(t, "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1")
	var pc bytes.Buffer
	pw := pcapgo.NewWriter(&pc)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	const n = 200
	for i := range n {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)*1e6), CaptureLength: len(syn), Length: len(syn)}
		pw.WritePacket(ci, syn)
	}
	capFile := filepath.Join(dir, "c.pcap")
	os.WriteFile(capFile, pc.Bytes(), 0o644)
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--pcap", capFile, "--iif", "eth0", "--faults", ff)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.HasPrefix(out, "FAULTS: 3, seed 7\n") {
		t.Errorf("no FAULTS line:\n%.200s", out)
	}
	// the decisions a live run makes: the same fault, seed and packets
	set, err := fault.LoadFile(ff, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	f := set.Wire("eth0", false)[0]
	want := map[int]bool{}
	p := &packet.Packet{Data: syn}
	p.Decode()
	for i := 1; i <= n; i++ {
		var d fault.Decision
		c := iptables.Ctx{Pkt: p}
		if f.Decide(&c, 0, &d) && d.Orig.Drop {
			want[i] = true
		}
	}
	got := dropSet(out, "in-loss")
	if len(want) < 20 || len(want) > 60 || !equalSets(got, want) {
		t.Errorf("ingress drops %v, want %v", keys(got), keys(want))
	}
	// every 10th packet that reached FORWARD
	hook := regexp.MustCompile(`(?m)^FAULT: (\d+) every10 hook:ipv4:FORWARD@-10 n=(\d+) (\w+)`).FindAllStringSubmatch(out, -1)
	if len(hook) != n-len(want) {
		t.Errorf("%d hook decisions, want %d", len(hook), n-len(want))
	}
	for _, m := range hook {
		k, _ := strconv.Atoi(m[2])
		if (k%10 == 0) != (m[3] == "drop") {
			t.Errorf("hook decision %v", m)
		}
	}
	if d := len(dropSet(out, "every10")); d != (n-len(want))/10 {
		t.Errorf("%d dropped by every10, want %d", d, (n-len(want))/10)
	}
	if c := strings.Count(out, "out-delay wire:eth1:egress n="); c != n-len(want)-(n-len(want))/10 {
		t.Errorf("%d egress decisions", c)
	}
	if !regexp.MustCompile(`out-delay wire:eth1:egress n=1 delay \d+\.\d{3}ms, leaves \+\d+\.\d{3}ms`).MatchString(out) {
		t.Errorf("no egress delay line:\n%s", out[:min(len(out), 2000)])
	}
	// another seed: other packets
	out2, _, _ := runTrace(t, "--snapshot", "../../examples/router", "--pcap", capFile, "--iif", "eth0", "--faults", ff, "--seed", "8")
	if equalSets(dropSet(out2, "in-loss"), got) {
		t.Error("seed 8 drops the packets seed 7 drops")
	}
}

func dropSet(out, name string) map[int]bool {
	s := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^FATE: (\d+) .*dropped by fault: `+name+`\b`).FindAllStringSubmatch(out, -1) {
		i, _ := strconv.Atoi(m[1])
		s[i] = true
	}
	return s
}

func equalSets(a, b map[int]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTraceFaultsExample runs the README's fault example.
func TestTraceFaultsExample(t *testing.T) {
	out, errs, code := runTrace(t, "--snapshot", "../../examples/router", "--packet", "tcp 10.0.0.2:40000 > 10.0.0.1:80 syn iif eth0", "--faults", "../../examples/faults/router.toml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"FAULTS: 3, seed 42\n",
		"FAULT: 1 eth0-lossy wire:eth0:ingress n=1 accept\n",
		"FAULT: 1 third hook:ipv4:FORWARD@-10 n=1 pass\n",
		"FAULT: 1 eth1-slow wire:eth1:egress n=1 delay 9.415ms, leaves +9.415ms\n",
		"FATE: 1 forwarded out eth1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
