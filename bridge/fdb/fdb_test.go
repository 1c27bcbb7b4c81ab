package fdb

import (
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

func mac(s string) packet.MAC {
	m, err := packet.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

const sec = int64(1e9)

// testBridge: br0 (ifindex 2) with vetha, vethb, vethc (3, 4, 5).
func testBridge(t testing.TB, mod func(*Config)) *Bridge {
	t.Helper()
	cfg := Config{Name: "br0", Index: 2, Ports: []PortConfig{
		{Name: "vetha", Index: 3, MAC: mac("02:00:00:00:00:0a"), Flags: DefaultPortFlags},
		{Name: "vethb", Index: 4, MAC: mac("02:00:00:00:00:0b"), Flags: DefaultPortFlags},
		{Name: "vethc", Index: 5, MAC: mac("02:00:00:00:00:0c"), Flags: DefaultPortFlags},
	}}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	hostA = mac("02:00:00:00:01:0a")
	hostB = mac("02:00:00:00:01:0b")
	hostC = mac("02:00:00:00:01:0c")
	other = mac("02:00:00:00:01:ff")
	mcast = mac("01:00:5e:01:02:03")
)

func frame(dst, src packet.MAC) *packet.Frame {
	f := &packet.Frame{Data: packet.BuildFrame(dst, src, 0x88b5, []byte("x"))}
	if err := f.Decode(); err != nil {
		panic(err)
	}
	return f
}

func ports(d Decision) []int { return d.Out.AppendPorts(nil) }

func eqInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestChooseMAC(t *testing.T) {
	b := testBridge(t, nil)
	if b.MAC != mac("02:00:00:00:00:0a") {
		t.Errorf("bridge MAC %v, want the lowest port's", b.MAC)
	}
	b = testBridge(t, func(c *Config) { c.Ports[2].MAC = mac("00:00:00:00:00:01") })
	if b.MAC != mac("00:00:00:00:00:01") {
		t.Errorf("bridge MAC %v", b.MAC)
	}
	b = testBridge(t, func(c *Config) { c.MAC, c.MACSet = mac("02:00:00:00:00:aa"), true })
	if b.MAC != mac("02:00:00:00:00:aa") {
		t.Errorf("explicit MAC %v", b.MAC)
	}
	if e, ok := b.Lookup(b.MAC); !ok || e.Port != BridgePort || !e.Local {
		t.Errorf("bridge's own entry %+v %v", e, ok)
	}
	// the lowest port's MAC: one local entry, on the port (as the kernel: no dst NULL entry)
	b = testBridge(t, nil)
	if e, _ := b.Lookup(b.MAC); e.Port != 0 {
		t.Errorf("bridge MAC entry on port %d, want 0 (vetha)", e.Port)
	}
	if _, err := New(Config{Name: "br1"}); err == nil {
		t.Error("a bridge without address built")
	}
}

// TestDecide: one step list of frames through Input, with the decision
// expected for each.
func TestDecide(t *testing.T) {
	type step struct {
		name    string
		setup   func(b *Bridge)
		in      int
		dst     packet.MAC
		src     packet.MAC
		verdict Verdict
		up      bool
		out     []int
		reason  DropReason
	}
	steps := []step{
		{name: "unknown unicast floods, not back", in: 0, dst: other, src: hostA, verdict: VerdictFlood, out: []int{1, 2}},
		{name: "known unicast", in: 1, dst: hostA, src: hostB, verdict: VerdictForward, out: []int{0}},
		{name: "reply", in: 0, dst: hostB, src: hostA, verdict: VerdictForward, out: []int{1}},
		{name: "broadcast floods and goes up", in: 2, dst: packet.Broadcast, src: hostC, verdict: VerdictFlood, up: true, out: []int{0, 1}},
		{name: "multicast floods and goes up", in: 2, dst: mcast, src: hostC, verdict: VerdictFlood, up: true, out: []int{0, 1}},
		{name: "to the bridge", in: 0, dst: mac("02:00:00:00:00:0a"), src: hostA, verdict: VerdictLocal, up: true},
		{name: "to another port's address", in: 0, dst: mac("02:00:00:00:00:0c"), src: hostA, verdict: VerdictLocal, up: true},
		{name: "known on the input port", in: 0, dst: hostA, src: other, verdict: VerdictDrop, reason: DropSamePort},
		{name: "hairpin: back out", setup: func(b *Bridge) { b.SetPortFlags(0, DefaultPortFlags|Hairpin) },
			in: 0, dst: hostA, src: other, verdict: VerdictForward, out: []int{0}},
		{name: "hairpin: flood includes the input port", in: 0, dst: mac("02:00:00:00:09:09"), src: hostA, verdict: VerdictFlood, out: []int{0, 1, 2}},
		{name: "flood off", setup: func(b *Bridge) { b.SetPortFlags(0, DefaultPortFlags); b.SetPortFlags(2, DefaultPortFlags&^Flood) },
			in: 0, dst: mac("02:00:00:00:09:09"), src: hostA, verdict: VerdictFlood, out: []int{1}},
		{name: "flood off does not stop broadcast", in: 0, dst: packet.Broadcast, src: hostA, verdict: VerdictFlood, up: true, out: []int{1, 2}},
		{name: "bcast_flood off", setup: func(b *Bridge) { b.SetPortFlags(1, DefaultPortFlags&^BcastFlood) },
			in: 0, dst: packet.Broadcast, src: hostA, verdict: VerdictFlood, up: true, out: []int{2}},
		{name: "mcast_flood off", setup: func(b *Bridge) { b.SetPortFlags(2, DefaultPortFlags&^McastFlood) },
			in: 0, dst: mcast, src: hostA, verdict: VerdictFlood, up: true, out: []int{1}},
		{name: "no port to flood to", setup: func(b *Bridge) {
			b.SetPortFlags(1, DefaultPortFlags&^Flood)
			b.SetPortFlags(2, DefaultPortFlags&^Flood)
		}, in: 0, dst: mac("02:00:00:00:09:09"), src: hostA, verdict: VerdictDrop, reason: DropNoPort},
		{name: "known unicast ignores flood off", in: 0, dst: hostC, src: hostA, verdict: VerdictForward, out: []int{2}},
		{name: "isolated to isolated", setup: func(b *Bridge) {
			for i := 0; i < 3; i++ {
				b.SetPortFlags(i, DefaultPortFlags)
			}
			b.SetPortFlags(0, DefaultPortFlags|Isolated)
			b.SetPortFlags(1, DefaultPortFlags|Isolated)
		}, in: 0, dst: packet.Broadcast, src: hostA, verdict: VerdictFlood, up: true, out: []int{2}},
		{name: "isolated known unicast", in: 0, dst: hostB, src: hostA, verdict: VerdictDrop, reason: DropSamePort},
		{name: "invalid source", setup: func(b *Bridge) {
			b.SetPortFlags(0, DefaultPortFlags)
			b.SetPortFlags(1, DefaultPortFlags)
		}, in: 0, dst: hostB, src: mcast, verdict: VerdictDrop, reason: DropInvalidSource},
		{name: "zero source", in: 0, dst: hostB, src: packet.MAC{}, verdict: VerdictDrop, reason: DropInvalidSource},
		{name: "pause", in: 0, dst: mac("01:80:c2:00:00:01"), src: hostA, verdict: VerdictDrop, reason: DropPause},
		{name: "LLDP stays on the port", in: 0, dst: mac("01:80:c2:00:00:0e"), src: hostA, verdict: VerdictPass},
		{name: "STP group forwarded with STP off", in: 0, dst: mac("01:80:c2:00:00:00"), src: hostA, verdict: VerdictFlood, up: true, out: []int{1, 2}},
	}
	b := testBridge(t, nil)
	now := 10 * sec
	for _, s := range steps {
		if s.setup != nil {
			s.setup(b)
		}
		now += sec
		d := b.Input(s.in, frame(s.dst, s.src), now)
		if d.Verdict != s.verdict || d.Up != s.up || !eqInts(ports(d), s.out) || d.Reason != s.reason {
			t.Errorf("%s: %v up=%v out=%v reason=%v, want %v up=%v out=%v reason=%v",
				s.name, d.Verdict, d.Up, ports(d), d.Reason, s.verdict, s.up, s.out, s.reason)
		}
	}
	if c := b.Counters(); c.Drops[DropInvalidSource] != 2 || c.Drops[DropSamePort] != 2 {
		t.Errorf("counters %+v", c)
	}
}

func TestLearn(t *testing.T) {
	b := testBridge(t, nil)
	b.Learn(0, hostA, 1*sec)
	e, ok := b.Lookup(hostA)
	if !ok || e.Port != 0 || e.Local || e.Static || e.Updated != sec {
		t.Fatalf("learned %+v %v", e, ok)
	}
	// refresh
	b.Learn(0, hostA, 5*sec)
	if e, _ = b.Lookup(hostA); e.Updated != 5*sec || e.Used != sec {
		t.Errorf("refresh: %+v", e)
	}
	// move
	b.Learn(2, hostA, 6*sec)
	if e, _ = b.Lookup(hostA); e.Port != 2 {
		t.Errorf("move: %+v", e)
	}
	// a local entry is never moved; counted
	b.Learn(1, mac("02:00:00:00:00:0a"), 7*sec)
	if e, _ = b.Lookup(mac("02:00:00:00:00:0a")); e.Port != 0 || !e.Local {
		t.Errorf("local moved: %+v", e)
	}
	if c := b.Counters(); c.OwnSourceWarnings != 1 || c.Learned != 1 || c.Moved != 1 {
		t.Errorf("counters %+v", c)
	}
	// multicast / zero sources are not learned
	b.Learn(0, mcast, 8*sec)
	b.Learn(0, packet.MAC{}, 8*sec)
	if _, ok := b.Lookup(mcast); ok {
		t.Error("multicast source learned")
	}
	// learning off on the port
	b.SetPortFlags(1, DefaultPortFlags&^Learning)
	b.Learn(1, hostB, 9*sec)
	if _, ok := b.Lookup(hostB); ok {
		t.Error("learned on a port with learning off")
	}
	// a static entry moves (the kernel checks only LOCAL and STICKY) ...
	if err := b.Add(1, hostC, Static, false, 10*sec); err != nil {
		t.Fatal(err)
	}
	b.Learn(0, hostC, 11*sec)
	if e, _ = b.Lookup(hostC); e.Port != 0 || !e.Static {
		t.Errorf("static after learning: %+v", e)
	}
	// ... a sticky one does not
	if err := b.Add(1, other, Static, true, 10*sec); err != nil {
		t.Fatal(err)
	}
	b.Learn(0, other, 11*sec)
	if e, _ = b.Lookup(other); e.Port != 1 {
		t.Errorf("sticky moved: %+v", e)
	}
	if err := b.Add(1, other, Static, false, 10*sec); err != ErrExist {
		t.Errorf("add over an entry: %v", err)
	}
	if err := b.Add(BridgePort, other, Static, false, 10*sec); err != ErrInvalid {
		t.Errorf("static on the bridge: %v", err)
	}
	if err := b.Add(0, mac("02:00:00:00:05:05"), Permanent, true, 10*sec); err != ErrInvalid {
		t.Errorf("sticky permanent: %v", err)
	}
	// a permanent entry added by the user is local: frames to it go up
	if err := b.Add(2, mac("02:00:00:00:05:05"), Permanent, false, 10*sec); err != nil {
		t.Fatal(err)
	}
	if d := b.Decide(0, mac("02:00:00:00:05:05"), 12*sec); d.Verdict != VerdictLocal {
		t.Errorf("to a user permanent entry: %v", d.Verdict)
	}
}

func TestMaxLearned(t *testing.T) {
	b := testBridge(t, func(c *Config) { c.MaxLearned = 2 })
	b.Learn(0, hostA, sec)
	b.Learn(0, hostB, sec)
	b.Learn(0, hostC, sec)
	if _, ok := b.Lookup(hostC); ok {
		t.Error("fdb_max_learned exceeded")
	}
	b.Expire(1000 * sec)
	b.Learn(0, hostC, 1000*sec)
	if _, ok := b.Lookup(hostC); !ok {
		t.Error("not learned after ageing freed room")
	}
}

func TestAgeing(t *testing.T) {
	b := testBridge(t, nil)
	b.Learn(0, hostA, 0)
	b.Learn(1, hostB, 100*sec)
	b.Add(2, hostC, Static, false, 0)
	// br_fdb_cleanup: gone when updated + ageing_time <= now
	if n, next := b.Expire(299 * sec); n != 0 || next != 300*sec {
		t.Errorf("Expire(299s) = %d, next %d", n, next)
	}
	e, _ := b.Lookup(hostA)
	if s := e.State(b, 300*sec); s != Stale {
		t.Errorf("state at 300 s %v, want stale", s)
	}
	if n, next := b.Expire(300 * sec); n != 1 || next != 400*sec {
		t.Errorf("Expire(300s) = %d, next %d", n, next)
	}
	if _, ok := b.Lookup(hostA); ok {
		t.Error("hostA not aged out")
	}
	if _, ok := b.Lookup(hostB); !ok {
		t.Error("hostB aged out early")
	}
	// forwarding does not refresh ageing (it sets used, not updated)
	b.Decide(0, hostB, 350*sec)
	if n, _ := b.Expire(400 * sec); n != 1 {
		t.Errorf("hostB forwarded-to, still aged: %d", n)
	}
	if _, ok := b.Lookup(hostC); !ok {
		t.Error("static entry aged")
	}
	if _, ok := b.Lookup(mac("02:00:00:00:00:0a")); !ok {
		t.Error("local entry aged")
	}
	// ageing_time 0: no learning at all, and dynamic entries go
	b.Learn(0, hostA, 500*sec)
	b.SetAgeingTime(0)
	b.Learn(1, hostB, 500*sec)
	if _, ok := b.Lookup(hostB); ok {
		t.Error("learned with ageing_time 0")
	}
	if d := b.Decide(1, hostA, 500*sec); d.Verdict != VerdictForward {
		t.Errorf("entry before ageing 0: %v", d.Verdict)
	}
	if n, next := b.Expire(500 * sec); n != 1 || next != 500*sec+minCleanupDelay {
		t.Errorf("Expire with ageing 0: %d next %d", n, next)
	}
}

func TestShow(t *testing.T) {
	b := testBridge(t, func(c *Config) { c.MAC, c.MACSet = mac("02:00:00:00:00:aa"), true })
	b.Learn(0, hostA, sec)
	b.Learn(1, hostB, 2*sec)
	b.Add(1, hostC, Static, false, 3*sec)
	b.Add(1, other, Static, true, 3*sec)
	want := `33:33:00:00:00:01 dev br0 self permanent
01:00:5e:00:00:6a dev br0 self permanent
33:33:00:00:00:6a dev br0 self permanent
01:00:5e:00:00:01 dev br0 self permanent
33:33:ff:00:00:aa dev br0 self permanent
02:00:00:00:00:aa dev br0 master br0 permanent
02:00:00:00:01:0a dev vetha master br0 
02:00:00:00:00:0a dev vetha master br0 permanent
33:33:00:00:00:01 dev vetha self permanent
01:00:5e:00:00:01 dev vetha self permanent
33:33:ff:00:00:0a dev vetha self permanent
02:00:00:00:01:ff dev vethb sticky master br0 static
02:00:00:00:01:0c dev vethb master br0 static
02:00:00:00:01:0b dev vethb master br0 
02:00:00:00:00:0b dev vethb master br0 permanent
33:33:00:00:00:01 dev vethb self permanent
01:00:5e:00:00:01 dev vethb self permanent
33:33:ff:00:00:0b dev vethb self permanent
02:00:00:00:00:0c dev vethc master br0 permanent
33:33:00:00:00:01 dev vethc self permanent
01:00:5e:00:00:01 dev vethc self permanent
33:33:ff:00:00:0c dev vethc self permanent
`
	if got := b.Show(10*sec, false); got != want {
		t.Errorf("show:\n%s\nwant:\n%s", got, want)
	}
	if got := b.Show(302*sec, false); !strings.Contains(got, "02:00:00:00:01:0a dev vetha master br0 stale\n") {
		t.Errorf("aged entry not stale:\n%s", got)
	}
	if got := b.Show(10*sec, true); !strings.Contains(got, "02:00:00:00:01:0a dev vetha used 9/9 master br0 \n") {
		t.Errorf("show -s:\n%s", got)
	}
	js := b.ShowJSON(10 * sec)
	if !strings.HasPrefix(string(js), `[{"mac":"33:33:00:00:00:01","ifname":"br0","flags":["self"],"state":"permanent"},`) ||
		!strings.Contains(string(js), `{"mac":"02:00:00:00:01:0a","ifname":"vetha","flags":[],"master":"br0","state":""}`) ||
		!strings.Contains(string(js), `{"mac":"02:00:00:00:01:ff","ifname":"vethb","flags":["sticky"],"master":"br0","state":"static"}`) ||
		!strings.HasSuffix(string(js), "}]\n") {
		t.Errorf("json: %s", js)
	}
	// round trip through a snapshot
	l, err := ParseShowJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	b2 := testBridge(t, func(c *Config) { c.MAC, c.MACSet = mac("02:00:00:00:00:aa"), true })
	if err := b2.Load(l, 10*sec); err != nil {
		t.Fatal(err)
	}
	if got := b2.ShowJSON(10 * sec); string(got) != string(js) {
		t.Errorf("reloaded:\n%s\nwant\n%s", got, js)
	}
	if e, _ := b2.Lookup(other); !e.Sticky || !e.Static || e.Port != 1 {
		t.Errorf("reloaded sticky %+v", e)
	}
	if _, err := ParseShowJSON([]byte(`[{"mac":"zz"}]`)); err == nil {
		t.Error("bad MAC parsed")
	}
}

func TestPortSet(t *testing.T) {
	var s PortSet
	for _, p := range []int{0, 63, 64, 500, MaxPorts - 1} {
		s.Add(p)
	}
	if got := s.AppendPorts(nil); !eqInts(got, []int{0, 63, 64, 500, MaxPorts - 1}) || s.Len() != 5 {
		t.Errorf("ports %v len %d", got, s.Len())
	}
	if s.Has(1) || !s.Has(500) || s.Has(-1) || s.Has(MaxPorts) {
		t.Error("Has")
	}
	if s.Next(501) != MaxPorts-1 || s.Next(MaxPorts) != -1 {
		t.Error("Next")
	}
}

// TestNoAllocs: learning a known source and forwarding to a known
// destination allocate nothing, nor do flooding and local delivery.
func TestNoAllocs(t *testing.T) {
	b := testBridge(t, nil)
	fa, fb := frame(hostB, hostA), frame(hostA, hostB)
	b.Input(0, fa, 1)
	b.Input(1, fb, 1)
	now := int64(2)
	var d Decision
	unknown := mac("02:00:00:00:00:0c")
	n := testing.AllocsPerRun(1000, func() {
		now++
		b.Learn(0, hostA, now)
		d = b.Decide(0, hostB, now)
		d = b.Input(1, fb, now)
		d = b.Decide(0, packet.Broadcast, now)
		d = b.Decide(0, unknown, now)
		d = b.Decide(0, other, now)
	})
	if n != 0 {
		t.Errorf("%v allocations per Learn+Decide", n)
	}
	_ = d
}

func BenchmarkLearnDecide(b *testing.B) {
	br := testBridge(b, nil)
	f := frame(hostB, hostA)
	br.Learn(1, hostB, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		br.Input(0, f, int64(i))
	}
}

// FuzzInput: any frame on any port gives a consistent decision, and the
// table stays consistent: a learned source is on the input port.
func FuzzInput(f *testing.F) {
	f.Add(packet.BuildFrame(hostB, hostA, 0x0800, []byte{1}), uint8(0))
	f.Add(packet.BuildFrame(packet.Broadcast, hostC, 0x0806, nil), uint8(2))
	f.Add(packet.BuildFrame(mac("01:80:c2:00:00:0e"), hostA, 0x88cc, nil), uint8(1))
	f.Add([]byte{0xff, 0xff}, uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, port uint8) {
		b := testBridge(t, nil)
		fr := packet.Frame{Data: data}
		if fr.Decode() != nil {
			return
		}
		in := int(port % 4) // 3 is not a port
		d := b.Input(in, &fr, sec)
		if in == 3 {
			if d.Verdict != VerdictDrop || d.Reason != DropBadPort {
				t.Fatalf("bad port: %+v", d)
			}
			return
		}
		switch d.Verdict {
		case VerdictDrop:
			if d.Up || d.Out.Len() != 0 || d.Reason == DropNone {
				t.Fatalf("drop %+v", d)
			}
		case VerdictLocal:
			if !d.Up || d.Out.Len() != 0 {
				t.Fatalf("local %+v", d)
			}
		case VerdictPass:
			if d.Up || d.Out.Len() != 0 || d.Kind != LinkLocal {
				t.Fatalf("pass %+v", d)
			}
		case VerdictForward:
			if d.Out.Len() != 1 || d.Out.Has(in) {
				t.Fatalf("forward %+v", d)
			}
		case VerdictFlood:
			if d.Out.Has(in) || d.Out.Len() > 2 {
				t.Fatalf("flood %+v", d)
			}
			if d.Kind != Unicast && !d.Up {
				t.Fatalf("multicast not up %+v", d)
			}
		}
		if e, ok := b.Lookup(fr.Src); ok && !e.Local && e.Port != in {
			t.Fatalf("learned on port %d, came on %d", e.Port, in)
		}
		if fr.Src.IsValidUnicast() && !isLinkLocal(fr.Dst) {
			if _, ok := b.Lookup(fr.Src); !ok {
				t.Fatalf("source %v not learned", fr.Src)
			}
		}
	})
}
