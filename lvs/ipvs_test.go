package lvs

import (
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/netfilter"
	"github.com/uswitch-lab/uswitch/packet"
)

// firstAvail is a test scheduler: the first available dest in list order.
type firstAvail struct{}

func (firstAvail) Name() string { return "test-first" }
func (firstAvail) Schedule(svc *Service, f *Flow) *Dest {
	for _, d := range svc.Dests {
		if d.Available() {
			return d
		}
	}
	return nil
}
func (firstAvail) Update(*Service) {}

func init() {
	RegisterScheduler("test-first", func(*Service) Scheduler { return firstAvail{} })
}

func pk(t testing.TB, spec string) *packet.Packet {
	t.Helper()
	sp, meta, err := packet.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := &packet.Packet{Data: packet.Build(sp), Meta: meta}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return p
}

var vip = ServiceKey{Proto: ProtoTCP, Addr: 0x0a000001, Port: 80}

func director(t testing.TB, svc ServiceConfig, dests ...DestConfig) *Director {
	t.Helper()
	d := NewDirector()
	if svc.SchedName == "" {
		svc.SchedName = "test-first"
	}
	if err := d.AddService(svc); err != nil {
		t.Fatal(err)
	}
	for _, x := range dests {
		if err := d.AddDest(svc.Key, x); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func dest(last byte, w int32) DestConfig {
	return DestConfig{Addr: 0xc0a80100 | uint32(last), Port: 8080, Fwd: Masq, Weight: w}
}

const sec = int64(time.Second)

func counts(d *Dest) [3]int32 {
	return [3]int32{d.ActiveConns.Load(), d.InactConns.Load(), d.PersistConns.Load()}
}

// A TCP connection's IPVS states and the dest's active/inactive counts
// follow tcp_states (INPUT/OUTPUT for NAT) and its timeouts.
func TestTCPStatesNAT(t *testing.T) {
	d := director(t, ServiceConfig{Key: vip}, dest(2, 1))
	ds := d.Services()[0].Dests[0]
	steps := []struct {
		spec  string
		out   bool
		state string
		cnt   [3]int32
		tmo   int64
	}{
		// SYN_RECV counts as active (tcp_state_active, since 4.7)
		{"tcp 10.0.0.2:1000 > 10.0.0.1:80 syn", false, "SYN_RECV", [3]int32{1, 0, 0}, 60},
		{"tcp 192.168.1.2:8080 > 10.0.0.2:1000 syn ack 1", true, "SYN_RECV", [3]int32{1, 0, 0}, 60},
		{"tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1", false, "ESTABLISHED", [3]int32{1, 0, 0}, 900},
		{"tcp 10.0.0.2:1000 > 10.0.0.1:80 fin ack 1", false, "CLOSE_WAIT", [3]int32{0, 1, 0}, 60},
		{"tcp 192.168.1.2:8080 > 10.0.0.2:1000 fin ack 1", true, "TIME_WAIT", [3]int32{0, 1, 0}, 120},
	}
	now := sec
	var cp *Conn
	for i, s := range steps {
		p := pk(t, s.spec)
		var r Result
		if s.out {
			r = d.Out(p, netfilter.Forward, now)
			if r.Conn == nil || p.Src != vip.Addr || p.SrcPort != 80 || !p.TransportChecksumOK() {
				t.Fatalf("step %d: reply not rewritten: %v %08x:%d", i, r, p.Src, p.SrcPort)
			}
		} else {
			r = d.In(p, netfilter.LocalIn, now, nil)
			if r.V != Xmit {
				t.Fatalf("step %d: %v", i, r.V)
			}
		}
		cp = r.Conn
		if cp.StateName() != s.state || counts(ds) != s.cnt || cp.Expires(now) != s.tmo*sec {
			t.Errorf("step %d: state %s counts %v expires %d; want %s %v %d", i, cp.StateName(), counts(ds), cp.Expires(now)/sec, s.state, s.cnt, s.tmo)
		}
		now += sec
	}
	// expiry unbinds the dest
	if n := d.Conns.Reap(now + 121*sec); n != 1 || counts(ds) != [3]int32{} {
		t.Fatalf("reaped %d, counts %v", n, counts(ds))
	}
}

// DR/TUN connections see only the client's half: INPUT-ONLY states.
func TestTCPStatesInputOnly(t *testing.T) {
	x := dest(2, 1)
	x.Fwd = Route
	d := director(t, ServiceConfig{Key: vip}, x)
	ds := d.Services()[0].Dests[0]
	for _, s := range []struct{ spec, state string }{
		{"tcp 10.0.0.2:1000 > 10.0.0.1:80 syn", "SYN_RECV"},
		{"tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1", "ESTABLISHED"},
		{"tcp 10.0.0.2:1000 > 10.0.0.1:80 fin ack 1", "FIN_WAIT"},
		{"tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 2", "FIN_WAIT"},
	} {
		r := d.In(pk(t, s.spec), netfilter.LocalIn, sec, nil)
		if r.Conn.StateName() != s.state {
			t.Errorf("%s: %s, want %s", s.spec, r.Conn.StateName(), s.state)
		}
	}
	if r := d.Out(pk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:1000 ack 1"), netfilter.Forward, sec); r.Conn != nil {
		t.Error("a DR connection's reply was rewritten")
	}
	if counts(ds) != [3]int32{0, 1, 0} {
		t.Errorf("counts %v", counts(ds))
	}
}

// Only a SYN opens a TCP connection; UDP connections are inactive with
// the UDP timeout; a non-service port is left alone.
func TestScheduleRules(t *testing.T) {
	d := director(t, ServiceConfig{Key: vip}, dest(2, 1))
	if r := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1"), netfilter.LocalIn, sec, nil); r.V != Accept || r.Conn != nil {
		t.Errorf("ACK without connection: %v", r.V)
	}
	if r := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:81 syn"), netfilter.LocalIn, sec, nil); r.V != Accept {
		t.Errorf("other port: %v", r.V)
	}
	if r := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn rst"), netfilter.LocalIn, sec, nil); r.V != Accept {
		t.Errorf("SYN+RST: %v", r.V)
	}
	u := ServiceKey{Proto: ProtoUDP, Addr: 0x0a000001, Port: 53}
	if err := d.AddService(ServiceConfig{Key: u, SchedName: "test-first"}); err != nil {
		t.Fatal(err)
	}
	if err := d.AddDest(u, DestConfig{Addr: 0xc0a80102, Port: 53, Fwd: Masq, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	r := d.In(pk(t, "udp 10.0.0.2:1000 > 10.0.0.1:53"), netfilter.LocalIn, sec, nil)
	if r.V != Xmit || r.Conn.StateName() != "UDP" || r.Conn.Expires(sec) != 300*sec {
		t.Fatalf("udp: %v %s %d", r.V, r.Conn.StateName(), r.Conn.Expires(sec))
	}
	d.SetTimeouts(Timeouts{UDP: 10})
	r = d.In(pk(t, "udp 10.0.0.2:1000 > 10.0.0.1:53"), netfilter.LocalIn, 2*sec, nil)
	if r.New || r.Conn.Expires(2*sec) != 10*sec {
		t.Errorf("udp after --set: new %v expires %d", r.New, r.Conn.Expires(2*sec)/sec)
	}
	if got := counts(d.Service(u).Dests[0]); got != [3]int32{0, 1, 0} {
		t.Errorf("udp counts %v", got)
	}
}

// A weight-0 dest takes no new connections but keeps its established
// ones; a removed dest's connections are dropped.
func TestQuiesceAndRemove(t *testing.T) {
	// -a puts each dest at the head of the list, so test-first picks
	// the one added last (.2)
	d := director(t, ServiceConfig{Key: vip}, dest(3, 1), dest(2, 1))
	r := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, sec, nil)
	if r.Conn.DAddr != 0xc0a80102 {
		t.Fatalf("first to %08x", r.Conn.DAddr)
	}
	q := dest(2, 0)
	if err := d.EditDest(vip, q); err != nil {
		t.Fatal(err)
	}
	if r := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1"), netfilter.LocalIn, 2*sec, nil); r.V != Xmit || r.Conn.DAddr != 0xc0a80102 {
		t.Fatalf("established on quiesced dest: %v", r.V)
	}
	if r := d.In(pk(t, "tcp 10.0.0.3:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, 2*sec, nil); r.Conn.DAddr != 0xc0a80103 {
		t.Fatalf("new connection went to %08x", r.Conn.DAddr)
	}
	if err := d.DelDest(vip, 0xc0a80102, 8080); err != nil {
		t.Fatal(err)
	}
	if r := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1"), netfilter.LocalIn, 3*sec, nil); r.V != Drop {
		t.Fatalf("packet for a removed dest: %v", r.V)
	}
	// added back before its connections expired, it keeps its counters
	if err := d.AddDest(vip, dest(2, 1)); err != nil {
		t.Fatal(err)
	}
	// ... and goes back to the head of the list, as a new dest
	back := d.Services()[0].Dests[0]
	if back.Addr != 0xc0a80102 || d.Services()[0].Dests[1].Addr != 0xc0a80103 {
		t.Fatalf("dest back from the trash is not at the head: %08x", back.Addr)
	}
	if back.ActiveConns.Load() != 1 {
		t.Errorf("dest back from the trash: active %d", back.ActiveConns.Load())
	}
}

// Persistence: a client net keeps its dest for the service timeout after
// its last connection; templates are counted as PersistConn.
func TestPersistence(t *testing.T) {
	svc := ServiceConfig{Key: vip, Flags: SvcPersistent, Timeout: 300, Netmask: 0xffffff00, SchedName: "test-rr"}
	RegisterScheduler("test-rr", func(*Service) Scheduler { return &testRR{} })
	d := director(t, svc, dest(2, 1), dest(3, 1))
	first := d.In(pk(t, "udp 10.0.0.2:1000 > 10.0.0.1:80"), netfilter.LocalIn, sec, nil)
	if first.V != Accept {
		t.Fatalf("udp to a tcp service: %v", first.V)
	}
	a := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, sec, nil).Conn
	b := d.In(pk(t, "tcp 10.0.0.7:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, 2*sec, nil).Conn
	if a.DAddr != b.DAddr || a.Control == nil || a.Control != b.Control {
		t.Fatalf("same /24 went to %08x and %08x", a.DAddr, b.DAddr)
	}
	other := d.In(pk(t, "tcp 10.0.1.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, 2*sec, nil).Conn
	if other.DAddr == a.DAddr {
		t.Fatalf("rr gave the other net the same dest")
	}
	ds := a.Dest
	if got := counts(ds); got != [3]int32{2, 0, 1} { // SYN_RECV is active
		t.Errorf("counts %v", got)
	}
	// the connections end (SYN_RECV: 60 s); the template outlives them:
	// its timeout runs from its last use (2 s)
	now := 63 * sec
	d.Conns.Reap(now)
	if got := counts(ds); got != [3]int32{0, 0, 1} {
		t.Fatalf("after the connections: %v", got)
	}
	c := d.In(pk(t, "tcp 10.0.0.9:2000 > 10.0.0.1:80 syn"), netfilter.LocalIn, now, nil).Conn
	if c.DAddr != a.DAddr {
		t.Fatalf("within the persistence timeout: %08x", c.DAddr)
	}
	// used again at 63 s: it lasts until 363 s
	d.Conns.Reap(362 * sec)
	if got := counts(ds); got != [3]int32{0, 0, 1} {
		t.Fatalf("before the template expired: %v", got)
	}
	d.Conns.Reap(363 * sec)
	if got := counts(ds); got != [3]int32{} {
		t.Fatalf("after the template expired: %v", got)
	}
	n := d.In(pk(t, "tcp 10.0.0.9:2001 > 10.0.0.1:80 syn"), netfilter.LocalIn, 364*sec, nil).Conn
	if n.Control == c.Control {
		t.Fatal("an expired template was reused")
	}
}

type testRR struct{ i int }

func (r *testRR) Name() string { return "test-rr" }
func (r *testRR) Schedule(svc *Service, f *Flow) *Dest {
	for n := 0; n < len(svc.Dests); n++ {
		d := svc.Dests[(r.i+n)%len(svc.Dests)]
		if d.Available() {
			r.i = (r.i + n + 1) % len(svc.Dests)
			return d
		}
	}
	return nil
}
func (r *testRR) Update(*Service) {}

// A fwmark service matches marked packets of any protocol and port; its
// template is keyed <IPPROTO_IP, cnet, mark>.
func TestFwmarkService(t *testing.T) {
	fk := ServiceKey{FwMark: 7}
	x := dest(2, 1)
	x.Port = 0
	d := director(t, ServiceConfig{Key: fk, Flags: SvcPersistent, Timeout: 30}, x)
	p := pk(t, "tcp 10.0.0.2:1000 > 10.0.0.99:443 syn")
	p.Mark = 7
	r := d.In(p, netfilter.LocalIn, sec, nil)
	if r.V != Xmit || r.Conn.DPort != 443 || r.Conn.Control == nil || r.Conn.Control.Proto != 0 || r.Conn.Control.VAddr != 7 {
		t.Fatalf("fwmark: %v %+v", r.V, r.Conn)
	}
	p = pk(t, "udp 10.0.0.2:1000 > 10.0.0.99:53")
	if r := d.In(p, netfilter.LocalIn, sec, nil); r.V != Accept {
		t.Fatalf("unmarked: %v", r.V)
	}
}

// Thresholds: the dest is overloaded at total >= upper and back below
// the lower threshold.
func TestThresholds(t *testing.T) {
	x := dest(2, 1)
	x.UThreshold, x.LThreshold = 2, 1
	d := director(t, ServiceConfig{Key: vip}, x)
	for i := 0; i < 3; i++ {
		p := pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn")
		p.SetSrcPort(uint16(1000 + i))
		r := d.In(p, netfilter.LocalIn, sec, nil)
		if i < 2 && r.V != Xmit || i == 2 && r.V != Leave {
			t.Fatalf("conn %d: %v", i, r.V)
		}
	}
	ds := d.Services()[0].Dests[0]
	d.Conns.Reap(100 * sec)
	if ds.Flags.Load()&DestOverload != 0 {
		t.Error("still overloaded with no connections")
	}
}

func TestOnePacket(t *testing.T) {
	u := ServiceKey{Proto: ProtoUDP, Addr: 0x0a000001, Port: 53}
	d := director(t, ServiceConfig{Key: u, Flags: SvcOnePacket}, DestConfig{Addr: 0xc0a80102, Port: 53, Fwd: Masq, Weight: 1})
	for i := 0; i < 2; i++ {
		if r := d.In(pk(t, "udp 10.0.0.2:1000 > 10.0.0.1:53"), netfilter.LocalIn, sec, nil); r.V != Xmit || !r.New {
			t.Fatalf("packet %d: %v new=%v", i, r.V, r.New)
		}
	}
	if d.Conns.Len() != 0 || counts(d.Service(u).Dests[0]) != [3]int32{} {
		t.Errorf("one-packet connections kept: %d %v", d.Conns.Len(), counts(d.Service(u).Dests[0]))
	}
}

func TestEncapDecap(t *testing.T) {
	for _, tc := range []struct {
		typ  TunType
		flag uint16
		port uint16
	}{{TunIPIP, 0, 0}, {TunGRE, 0, 0}, {TunGRE, TunFlagCsum, 0}, {TunGUE, 0, 6080}, {TunGUE, TunFlagCsum, 6080}} {
		p := pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn")
		inner := append([]byte(nil), p.IP...)
		dst := &Dest{}
		dst.SetParams(DestParams{Fwd: Tunnel, TunType: tc.typ, TunFlags: tc.flag, TunPort: tc.port})
		cp := &Conn{DAddr: 0xc0a80105, Dest: dst}
		if err := Encap(p, cp, 0xc0a80101, 99); err != nil {
			t.Fatal(err)
		}
		if p.Src != 0xc0a80101 || p.Dst != 0xc0a80105 || p.IP.TTL() != inner[8] || len(p.IP) != len(inner)+EncapLen(cp.Dest) {
			t.Errorf("%v: outer %08x > %08x ttl %d len %d", tc.typ, p.Src, p.Dst, p.IP.TTL(), len(p.IP))
		}
		if tc.typ == TunGUE && tc.flag != 0 && !p.TransportChecksumOK() {
			t.Errorf("GUE checksum")
		}
		got, ok := Decap(p.IP, tc.port)
		if !ok || string(got) != string(inner) {
			t.Errorf("%v: decap %v", tc.typ, ok)
		}
	}
	if _, ok := Decap([]byte{0x45, 0, 0, 20}, 0); ok {
		t.Error("short packet decapsulated")
	}
}

func FuzzDecap(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}, uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		in, ok := Decap(b, port)
		if ok && len(in) < 20 {
			t.Fatalf("inner of %d bytes", len(in))
		}
	})
}

func TestEstablishedNoAllocs(t *testing.T) {
	d := director(t, ServiceConfig{Key: vip}, dest(2, 1))
	p := pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn")
	d.In(p, netfilter.LocalIn, sec, nil)
	in := pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1")
	out := pk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:1000 ack 1")
	orig := append([]byte(nil), out.Data...)
	n := testing.AllocsPerRun(100, func() {
		if r := d.In(in, netfilter.LocalIn, 2*sec, nil); r.V != Xmit {
			t.Fatal(r.V)
		}
		copy(out.Data, orig)
		_ = out.Decode()
		if r := d.Out(out, netfilter.Forward, 2*sec); r.Conn == nil {
			t.Fatal("no reply conn")
		}
	})
	if n != 0 {
		t.Errorf("%v allocs per established packet pair", n)
	}
}

// The estimator follows ip_vs_est.c: 10 connections in each 2 s tick
// settle at 5/s.
func TestEstimator(t *testing.T) {
	d := director(t, ServiceConfig{Key: vip}, dest(2, 1))
	port := uint16(1000)
	for tick := 0; tick < 40; tick++ {
		for i := 0; i < 10; i++ {
			p := pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn")
			p.SetSrcPort(port)
			port++
			d.In(p, netfilter.LocalIn, sec, nil)
		}
		d.Estimate()
	}
	r := d.Services()[0].Rate
	if r.CPS != 5 || r.InPPS != 5 || r.OutPPS != 0 || r.InBPS != 5*40 {
		t.Errorf("rates %+v", r)
	}
	if dr := d.Services()[0].Dests[0].Stats.Rates(); dr != r {
		t.Errorf("dest rates %+v, service %+v", dr, r)
	}
}

// The director keeps the kernel's svc->destinations order: -a puts the
// dest at the head (list_add_rcu in __ip_vs_update_dest), also when it
// comes back from the trash; -e leaves it in place; -d unlinks it. The
// schedulers walk that list, so rr's first pick after adding A, B, C is
// C (sched_data starts at the list head), and wlc's tie goes to C.
func TestDirectorKernelDestOrder(t *testing.T) {
	a, b, c := dest(1, 1), dest(2, 1), dest(3, 1)
	order := func(d *Director) string {
		s := ""
		for _, x := range d.Service(vip).Dests {
			s += string(rune('A' + x.Addr&0xff - 1))
		}
		return s
	}
	pick := func(d *Director, n int) string {
		svc := d.Service(vip)
		s := ""
		for range n {
			x := svc.Sched.Schedule(svc, &Flow{Proto: ProtoTCP})
			if x == nil {
				s += "-"
				continue
			}
			s += string(rune('A' + x.Addr&0xff - 1))
		}
		return s
	}
	for _, tc := range []struct{ sched, want string }{
		{"rr", "CBACBA"},
		{"wrr", "CBACBA"},
		{"wlc", "CCC"}, // no connections counted here: always the tie
		{"lc", "CCC"},
		{"sed", "CCC"},
		{"nq", "CCC"},
		{"fo", "CCC"},
		{"ovf", "CCC"},
	} {
		d := director(t, ServiceConfig{Key: vip, SchedName: tc.sched}, a, b, c)
		if got := order(d); got != "CBA" {
			t.Fatalf("%s: list %s after adding A, B, C; want CBA", tc.sched, got)
		}
		if got := pick(d, len(tc.want)); got != tc.want {
			t.Errorf("%s: picks %s, want %s", tc.sched, got, tc.want)
		}
	}

	d := director(t, ServiceConfig{Key: vip, SchedName: "rr"}, a, b, c)
	if got := pick(d, 1); got != "C" {
		t.Fatalf("rr first pick %s", got)
	}
	// -e keeps the place, and leaves rr's cursor on C
	a2 := a
	a2.Weight = 5
	if err := d.EditDest(vip, a2); err != nil {
		t.Fatal(err)
	}
	if got := order(d); got != "CBA" {
		t.Fatalf("after -e A: %s", got)
	}
	if got := pick(d, 2); got != "BA" {
		t.Fatalf("rr after -e: %s, want BA", got)
	}
	// -d B with a connection: it goes to the trash; -a B takes it back
	// and puts it at the head
	old := d.Service(vip).Dests[1]
	old.ActiveConns.Store(1)
	if err := d.DelDest(vip, b.Addr, b.Port); err != nil {
		t.Fatal(err)
	}
	if got := order(d); got != "CA" {
		t.Fatalf("after -d B: %s", got)
	}
	if err := d.AddDest(vip, b); err != nil {
		t.Fatal(err)
	}
	if got := order(d); got != "BCA" || d.Service(vip).Dests[0] != old {
		t.Fatalf("after -a B from the trash: %s (same dest %v)", got, d.Service(vip).Dests[0] == old)
	}
	// rr's cursor is still on A (the tail), so the list head comes next
	if got := pick(d, 3); got != "BCA" {
		t.Fatalf("rr after the re-add: %s, want BCA", got)
	}
	// Clone (restore's scratch copy) keeps the order
	c2, err := Clone(d)
	if err != nil {
		t.Fatal(err)
	}
	if got := order(c2); got != "BCA" {
		t.Errorf("clone: %s, want BCA", got)
	}
}

// conn_reuse_mode for TCP (is_new_conn_expected): a SYN on a connection
// in TIME_WAIT or CLOSE is scheduled afresh; one a persistence template
// controls is kept (the SYN goes to the same connection).
func TestTCPConnReuse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		persist bool
		close   []string // the packets that end the first connection
		state   string
		fresh   bool
	}{
		{"time-wait", false, []string{"tcp 10.0.0.2:1000 > 10.0.0.1:80 fin ack 1", "out tcp 192.168.1.2:8080 > 10.0.0.2:1000 fin ack 1"}, "TIME_WAIT", true},
		{"close", false, []string{"tcp 10.0.0.2:1000 > 10.0.0.1:80 rst"}, "CLOSE", true},
		{"established", false, nil, "ESTABLISHED", false},
		{"close under a template", true, []string{"tcp 10.0.0.2:1000 > 10.0.0.1:80 rst"}, "CLOSE", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := ServiceConfig{Key: vip}
			if tc.persist {
				svc.Flags, svc.Timeout, svc.Netmask = SvcPersistent, 300, 0xffffffff
			}
			d := director(t, svc, dest(2, 1))
			now := sec
			first := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, now, nil).Conn
			d.Out(pk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:1000 syn ack 1"), netfilter.Forward, now)
			d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1"), netfilter.LocalIn, now, nil)
			for _, s := range tc.close {
				if o, ok := strings.CutPrefix(s, "out "); ok {
					d.Out(pk(t, o), netfilter.Forward, now)
				} else {
					d.In(pk(t, s), netfilter.LocalIn, now, nil)
				}
			}
			if first.StateName() != tc.state {
				t.Fatalf("first connection %s, want %s", first.StateName(), tc.state)
			}
			r := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, now+sec, nil)
			if r.V != Xmit {
				t.Fatalf("the new SYN: %v", r.V)
			}
			if fresh := r.Conn != first; fresh != tc.fresh {
				t.Errorf("scheduled afresh %v, want %v (state %s)", fresh, tc.fresh, r.Conn.StateName())
			}
		})
	}
}

// expire_nodest_conn: a SYN on a connection whose dest has weight 0 (a
// terminating pod under kube-proxy) is scheduled afresh on another dest;
// without the sysctl, or for UDP (is_new_conn is TCP SYN and SCTP INIT
// only), it stays on the old one.
func TestExpireNodestConnWeightZero(t *testing.T) {
	for _, tc := range []struct {
		name   string
		expire bool
		pkt    string
		fresh  bool
	}{
		{"syn, expire_nodest_conn", true, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn", true},
		{"syn, off", false, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn", false},
		{"ack, expire_nodest_conn", true, "tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := director(t, ServiceConfig{Key: vip}, dest(3, 1), dest(2, 1))
			sc := d.Sysctls()
			sc.ExpireNodestConn = tc.expire
			d.SetSysctls(sc)
			first := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, sec, nil).Conn
			d.Out(pk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:1000 syn ack 1"), netfilter.Forward, sec)
			d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1"), netfilter.LocalIn, sec, nil)
			// ipvsadm -e ... -w 0 on the first connection's dest
			dc := DestConfig{Addr: first.DAddr, Port: 8080, Fwd: Masq, Weight: 0}
			if err := d.EditDest(vip, dc); err != nil {
				t.Fatal(err)
			}
			r := d.In(pk(t, tc.pkt), netfilter.LocalIn, 2*sec, nil)
			if r.V != Xmit {
				t.Fatalf("%v", r.V)
			}
			if fresh := r.Conn != first; fresh != tc.fresh {
				t.Fatalf("scheduled afresh %v, want %v", fresh, tc.fresh)
			}
			if tc.fresh && r.Conn.DAddr == first.DAddr {
				t.Errorf("rescheduled to the weight-0 dest %08x", r.Conn.DAddr)
			}
		})
	}
}

// A SYN that would reschedule a TIME_WAIT connection while it still
// uses that connection's confirmed conntrack entry is dropped, and the
// old connection expired: the retransmitted SYN is scheduled afresh
// (ip_vs_conn_uses_old_conntrack).
func TestReuseWithOldConntrackDrops(t *testing.T) {
	d := director(t, ServiceConfig{Key: vip}, dest(2, 1))
	first := d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, sec, nil).Conn
	d.Out(pk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:1000 syn ack 1"), netfilter.Forward, sec)
	d.In(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 ack 1"), netfilter.LocalIn, sec, nil)
	d.Out(pk(t, "tcp 192.168.1.2:8080 > 10.0.0.2:1000 rst"), netfilter.Forward, sec)
	if first.StateName() != "CLOSE" {
		t.Fatalf("state %s", first.StateName())
	}
	r := d.InTracked(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, 2*sec, nil, true)
	if r.V != Drop {
		t.Fatalf("the SYN on the old conntrack entry: %v, want dropped", r.V)
	}
	r = d.InTracked(pk(t, "tcp 10.0.0.2:1000 > 10.0.0.1:80 syn"), netfilter.LocalIn, 3*sec, nil, true)
	if r.V != Xmit || r.Conn == first || !r.New {
		t.Fatalf("the retransmitted SYN: %v new %v (same connection %v)", r.V, r.New, r.Conn == first)
	}
}
