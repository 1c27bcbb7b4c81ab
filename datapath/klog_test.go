package datapath

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/uswitch-lab/uswitch/bridge/ebtables"
	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/trace"
)

// logRules log in every table and hook, trace UDP to port 53 and ICMP
// in raw, reject TCP to port 23 (an answer), and send group 4 to NFLOG.
const logRules = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 53 -j TRACE
-A PREROUTING -p icmp -j TRACE
-A OUTPUT -j LOG --log-prefix "raw-out "
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p udp -j MARK --set-xmark 0x7/0xffffffff
-A POSTROUTING -j LOG --log-prefix "mangle-post " --log-tcp-sequence --log-tcp-options --log-ip-options
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 192.168.1.2:8080
-A POSTROUTING -o eth1 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:SVC - [0:0]
-A INPUT -p icmp -j LOG --log-prefix "in-icmp " --log-level 6
-A INPUT -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset
-A FORWARD -j NFLOG --nflog-group 4 --nflog-prefix "fwd"
-A FORWARD -p udp -j NFLOG --nflog-group 5 --nflog-size 20
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth0 -j SVC
-A FORWARD -j LOG --log-prefix "fwd-drop "
-A SVC -d 192.168.1.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT
-A SVC -p udp -j LOG --log-prefix "svc-udp "
-A SVC -p udp -j ACCEPT
-A SVC -j RETURN
COMMIT
`

func logEngine(t testing.TB, rules string) *Engine {
	t.Helper()
	rs, err := (&iptables.Loader{}).LoadString(rules)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), 1)
}

var logPackets = []string{
	"tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1 iif eth0",
	"tcp 192.168.1.2:8080 > 192.168.1.1:40000 syn ack 2 seq 7 iif eth1",
	"tcp 10.0.0.2:40000 > 10.0.0.1:80 ack 8 seq 2 iif eth0",
	"udp 10.0.0.2:5000 > 192.168.1.9:53 len 12 iif eth0",
	"udp 10.0.0.2:5000 > 192.168.1.9:54 len 12 iif eth0",
	"icmp 10.0.0.2 > 10.0.0.1 id 7 seq 1 iif eth0",
	"icmp 10.0.0.2 > 192.168.1.9 id 8 seq 1 iif eth0",
	"tcp 10.0.0.2:40001 > 10.0.0.1:23 syn iif eth0",
	"tcp 10.0.0.2:40002 > 192.168.1.9:443 syn iif eth0",
	"udp 10.0.0.1:5353 > 192.168.1.9:53 local",
	"icmp 10.0.0.1 > 127.0.0.1 id 9 local",
}

func runSpec(t *testing.T, e *Engine, spec string, tr *Tracer) {
	t.Helper()
	p := mk(t, spec)
	if p.Local {
		e.Send(p, 1e9, tr)
	} else {
		e.Receive(p, 1e9, tr)
	}
}

// TestLiveLogEqualsTraceLog: an engine with a kernel log writes, packet
// by packet, the lines `uswitch trace --format log` prints for the same
// packets (a FormatLog tracer on a twin engine), FATE lines aside: LOG
// lines of every table and hook, legacy TRACE lines, the answer's. With
// a monitor tracer attached as well (a live `monitor --trace`) the log
// is the same.
func TestLiveLogEqualsTraceLog(t *testing.T) {
	for _, monitor := range []bool{false, true} {
		t.Run(fmt.Sprintf("monitor=%v", monitor), func(t *testing.T) {
			live, ref := logEngine(t, logRules), logEngine(t, logRules)
			kl := NewKernelLog()
			live.SetKernelLog(kl)
			total := 0
			for _, spec := range logPackets {
				before := len(kl.Lines())
				var mon *Tracer
				if monitor {
					mon = &Tracer{}
				}
				runSpec(t, live, spec, mon)
				var got []string
				for _, l := range kl.Lines()[before:] {
					got = append(got, l.Line)
				}
				tr := &Tracer{Format: FormatLog}
				runSpec(t, ref, spec, tr)
				if strings.Join(got, "\n") != strings.Join(tr.Lines, "\n") {
					t.Errorf("%s: live log\n%s\nwant (trace --format log)\n%s", spec, strings.Join(got, "\n"), strings.Join(tr.Lines, "\n"))
				}
				if monitor && len(mon.Lines) == 0 && (strings.Contains(spec, "icmp") && strings.Contains(spec, "eth0")) {
					t.Errorf("%s: the monitor tracer saw nothing", spec)
				}
				total += len(got)
			}
			if total < 20 {
				t.Fatalf("only %d lines: the rules should log more", total)
			}
			text := ""
			for _, l := range kl.Lines() {
				text += l.Line + "\n"
			}
			for _, w := range []string{"TRACE: raw:PREROUTING:policy:3 IN=eth0", "TRACE: filter:INPUT:rule:1 IN=eth0", "in-icmp IN=eth0 OUT= MAC= SRC=10.0.0.2 DST=10.0.0.1",
				"svc-udp IN=eth0 OUT=eth1", "fwd-drop IN=eth0 OUT=eth1", "mangle-post IN= OUT=eth1", "raw-out IN= OUT=eth0 SRC=10.0.0.1 DST=10.0.0.2", "MARK=0x7"} {
				if !strings.Contains(text, w) {
					t.Errorf("the log lacks %q:\n%s", w, text)
				}
			}
		})
	}
}

// TestLiveNFLog: NFLOG rules send records to their group's listeners
// only, with the fields nfnetlink_log gives a packet from a TUN device.
func TestLiveNFLog(t *testing.T) {
	e := logEngine(t, logRules)
	kl := NewKernelLog()
	e.SetKernelLog(kl)
	runSpec(t, e, "udp 10.0.0.2:5000 > 192.168.1.9:54 len 12 iif eth0", nil) // nobody listens
	g4, c4 := kl.SubscribeNFLog(4, 16)
	g5, c5 := kl.SubscribeNFLog(5, 16)
	if !kl.NFLogListening(4) || kl.NFLogListening(6) {
		t.Fatal("listening groups")
	}
	p := mk(t, "udp 10.0.0.2:5000 > 192.168.1.9:54 len 12 iif eth0")
	orig := append([]byte(nil), p.IP...)
	// at FORWARD: the TTL decremented (ip_forward), not yet masqueraded
	want := append([]byte(nil), orig...)
	packet.IPv4(want).SetTTL(63)
	e.Receive(p, 1e9, nil)
	if len(g4) != 1 || len(g5) != 1 {
		t.Fatalf("%d and %d records, want 1 each", len(g4), len(g5))
	}
	r, err := trace.DecodeNFLog((<-g4).Record, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if r.Family != trace.NFProtoIPv4 || r.Group != 4 || r.HWProtocol != 0x0800 || r.Hook != 2 || !r.HasPrefix || r.Prefix != "fwd" ||
		r.InDev != 2 || r.OutDev != 3 || r.Mark != 7 || !r.HasHW || r.HWType != trace.ARPHRDNone || len(r.HWHeader) != 0 || len(r.HWAddr) != 0 ||
		!r.HasTime || r.HasUID || string(r.Payload) != string(want) {
		t.Errorf("record %+v", r)
	}
	r, err = trace.DecodeNFLog((<-g5).Record, binary.LittleEndian)
	if err != nil || r.Prefix != "" || !r.HasPrefix || string(r.Payload) != string(want[:20]) {
		t.Errorf("--nflog-size 20: %+v %v", r, err)
	}
	c4()
	c5()
	if kl.NFLogListening(4) || kl.NFLogListening(5) {
		t.Error("a group still listened after cancel")
	}
	// a packet the host sends: no input device, its socket's owner
	p = mk(t, "udp 10.0.0.1:5353 > 192.168.1.9:53 local")
	p.HasSocket, p.UID, p.GID = true, 1000, 100
	rs, _ := (&iptables.Loader{}).LoadString("*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j NFLOG --nflog-group 9\nCOMMIT\n")
	cfg := e.Config()
	cfg.Rules = rs
	e.Swap(cfg)
	g9, c9 := kl.SubscribeNFLog(9, 4)
	defer c9()
	e.Send(p, 1e9, nil)
	r, err = trace.DecodeNFLog((<-g9).Record, binary.LittleEndian)
	if err != nil || r.Hook != 3 || r.InDev != 0 || r.OutDev != 3 || r.HasHW || r.HasTime || !r.HasUID || r.UID != 1000 || r.GID != 100 {
		t.Errorf("OUTPUT record %+v %v", r, err)
	}
}

// TestKernelLogRing: the ring keeps the last LogRing lines; Subscribe
// hands over what it holds and then every new line, none twice.
func TestKernelLogRing(t *testing.T) {
	kl := NewKernelLog()
	for i := range LogRing + 5 {
		kl.printk(int64(i), fmt.Sprint("line ", i))
	}
	old, ch, cancel := kl.Subscribe(4)
	defer cancel()
	if len(old) != LogRing || old[0].Line != "line 5" || old[LogRing-1].Line != fmt.Sprint("line ", LogRing+4) {
		t.Fatalf("ring: %d lines from %q", len(old), old[0].Line)
	}
	kl.printk(1, "next")
	if e := <-ch; e.Line != "next" || e.Time != 1 {
		t.Errorf("got %+v", e)
	}
	for range 10 {
		kl.printk(2, "flood")
	}
	if kl.Dropped() != 6 {
		t.Errorf("dropped %d, want 6 (a buffer of 4)", kl.Dropped())
	}
}

// TestKernelLogNoAllocs: with a kernel log installed, packets that hit
// no LOG, NFLOG or TRACE rule allocate what they did without one: a
// new connection its conntrack entry, an established one nothing (with
// and without the flow cache), though the rule set has LOG rules on
// other paths and a TRACE rule for other packets.
func TestKernelLogNoAllocs(t *testing.T) {
	rules := strings.Replace(testRules, "-A PREROUTING -p tcp -j TRACE", "-A PREROUTING -p udp -j TRACE", 1)
	rules = strings.Replace(rules, "-A SVC -j RETURN", "-A SVC -j RETURN\n-A INPUT -j LOG\n-A INPUT -j NFLOG --nflog-group 3", 1)
	for _, cached := range []bool{true, false} {
		t.Run(fmt.Sprintf("flowcache=%v", cached), func(t *testing.T) {
			e := logEngine(t, rules)
			kl := NewKernelLog()
			e.SetKernelLog(kl)
			_, _, cancel := kl.Subscribe(16)
			defer cancel()
			_, cancel3 := kl.SubscribeNFLog(3, 16)
			defer cancel3()
			run, p := establishedRun(t, e, cached)
			run()
			if n := testing.AllocsPerRun(200, run); n != 0 {
				t.Errorf("established packet allocates %v times with a kernel log", n)
			}
			sp, _, _ := packet.ParseSpec("tcp 10.0.0.2:40000 > 10.0.0.1:80 syn seq 1")
			syn := packet.Build(sp)
			buf := make([]byte, len(syn))
			flow := 0
			newConn := func() {
				copy(buf[:len(syn)], syn)
				*p = packet.Packet{Data: buf[:len(syn)], Meta: packet.Meta{InIf: "eth0"}}
				if err := p.Decode(); err != nil {
					t.Fatal(err)
				}
				flow++
				p.SetSrcPort(uint16(1024 + flow))
				if f := e.Receive(p, 1e9, nil); f.Kind != Forwarded {
					t.Fatalf("fate %v", f)
				}
			}
			if n := testing.AllocsPerRun(200, newConn); n != 1 {
				t.Errorf("a new connection allocates %v times with a kernel log, want 1 (the entry)", n)
			}
			if kl.Written() != 0 {
				t.Errorf("%d lines written", kl.Written())
			}
		})
	}
}

// TestLiveEbtablesLog: ebtables --log lines reach the kernel log as
// trace --format log prints them, and --nflog records (the bridge
// family, the frame's header as L2HDR) reach group 3's listener.
func TestLiveEbtablesLog(t *testing.T) {
	const ebt = "*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n" +
		"-A FORWARD -p IPv4 --log-level info --log-prefix \"ebt-fwd\" --log-ip -j CONTINUE\n" +
		"-A FORWARD --nflog-group 3 --nflog-prefix \"ebt-nfl\" -j CONTINUE\n"
	rs, rerr := (&ebtables.Loader{}).Load(ebt)
	if rerr != nil {
		t.Fatal(rerr)
	}
	live, ref := bridgeEngine(t), bridgeEngine(t)
	for _, e := range []*Engine{live, ref} {
		cfg := e.Config()
		cfg.Ebtables = rs
		e.Swap(cfg)
	}
	kl := NewKernelLog()
	live.SetKernelLog(kl)
	g3, cancel := kl.SubscribeNFLog(3, 8)
	defer cancel()
	frames := []struct {
		b    []byte
		port string
	}{
		{udpFrame(hostB, hostA, "udp 10.1.0.1:1000 > 10.1.0.2:53 len 5"), "p1"},
		{udpFrame(hostA, hostB, "udp 10.1.0.2:53 > 10.1.0.1:1000"), "p2"},
	}
	for i, f := range frames {
		before := len(kl.Lines())
		live.ReceiveFrame(append([]byte(nil), f.b...), f.port, int64(i+1), nil)
		tr := &Tracer{Format: FormatLog}
		ref.ReceiveFrame(append([]byte(nil), f.b...), f.port, int64(i+1), tr)
		var got []string
		for _, l := range kl.Lines()[before:] {
			got = append(got, l.Line)
		}
		if len(got) == 0 || strings.Join(got, "\n") != strings.Join(tr.Lines, "\n") {
			t.Errorf("frame %d: live\n%s\nwant\n%s", i+1, strings.Join(got, "\n"), strings.Join(tr.Lines, "\n"))
		}
	}
	if len(g3) != 2 {
		t.Fatalf("%d records, want 2", len(g3))
	}
	r, err := trace.DecodeNFLog((<-g3).Record, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if r.Family != trace.NFProtoBridge || r.Hook != 2 || r.Prefix != "ebt-nfl" || r.HWProtocol != 0x0800 || r.HWType != trace.ARPHRDEther ||
		string(r.HWAddr) != string(hostA[:]) || string(r.L2Hdr) != string(frames[0].b[:14]) || string(r.Payload) != string(frames[0].b[14:]) {
		t.Errorf("record %+v", r)
	}
}

// BenchmarkKernelLogEstablished: an established packet (flow cache off,
// so every table runs) with and without a kernel log installed, in a
// rule set whose LOG and TRACE rules it does not meet.
func BenchmarkKernelLogEstablished(b *testing.B) {
	rules := strings.Replace(testRules, "-A PREROUTING -p tcp -j TRACE", "-A PREROUTING -p udp -j TRACE", 1)
	rules = strings.Replace(rules, "-A SVC -j RETURN", "-A SVC -j RETURN\n-A INPUT -j LOG", 1)
	for _, withLog := range []bool{false, true} {
		b.Run(fmt.Sprintf("klog=%v", withLog), func(b *testing.B) {
			e := logEngine(b, rules)
			cfg := e.Config()
			cfg.NoFlowCache = true
			e.Swap(cfg)
			if withLog {
				e.SetKernelLog(NewKernelLog())
			}
			tmpl := established(b, e)
			buf := make([]byte, len(tmpl))
			p := &packet.Packet{}
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, tmpl)
				*p = packet.Packet{Data: buf, Meta: packet.Meta{InIf: "eth0"}}
				p.Decode()
				e.Receive(p, 2e9, nil)
			}
		})
	}
}
