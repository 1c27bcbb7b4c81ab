package datapath

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/conntrack"
	"github.com/uswitch-lab/uswitch/datapath/datapathtest"
	"github.com/uswitch-lab/uswitch/internal/prom"
	"github.com/uswitch-lab/uswitch/iptables"
	"github.com/uswitch-lab/uswitch/packet"
	"github.com/uswitch-lab/uswitch/route"
)

// withOptions is the packet of spec with the IP options opts (padded
// with end-of-list), arriving on in.
func withOptions(t *testing.T, spec, in string, opts ...byte) *packet.Packet {
	t.Helper()
	for len(opts)%4 != 0 {
		opts = append(opts, packet.OptEnd)
	}
	sp, _, err := packet.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	b := insertOptions(packet.Build(sp), opts, &packet.Options{}, 0)
	p := &packet.Packet{Data: b, Meta: packet.Meta{InIf: in}}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	return p
}

func optEngine(t testing.TB, mod func(*route.Config)) *Engine {
	t.Helper()
	cfg := testFIB(t).Config()
	if mod != nil {
		mod(&cfg)
	}
	f, err := route.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{FIB: f, IPForward: true}, conntrack.DefaultConfig(), 1)
}

func checkCsum(t *testing.T, b []byte) {
	t.Helper()
	h := packet.IPv4(b)
	if packet.Checksum(h[:h.HeaderLen()], 0) != 0xffff {
		t.Errorf("bad IP header checksum: % x", b[:h.HeaderLen()])
	}
}

// TestOptionsInvalid: a record route of length 0 is dropped and counted
// as ip_options, and the sender gets a parameter problem pointing at the
// option (ip_options_compile, icmp_send(ICMP_PARAMETERPROB)).
func TestOptionsInvalid(t *testing.T) {
	e := optEngine(t, nil)
	var all DropCounts
	for _, c := range []struct {
		name string
		opts []byte
		ptr  uint8
	}{
		{"rr-len0", []byte{packet.OptRR, 0, 4, 0}, 20},
		{"rr-ptr3", []byte{packet.OptRR, 7, 3, 0, 0, 0, 0}, 22},
		{"past-header", []byte{packet.OptNoop, packet.OptTimestamp, 12, 5}, 21},
		{"ra-len3", []byte{packet.OptRA, 3, 0, 0}, 21},
		{"ts-overflow", []byte{packet.OptTimestamp, 8, 9, 0xf0, 0, 0, 0, 0}, 23},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := withOptions(t, "udp 10.0.0.2:1000 > 8.8.8.8:53", "eth0", c.opts...)
			f := e.Receive(p, 1e9, nil)
			if f.Kind != Dropped || f.Reason != DropIPOptions || f.Detail != uint32(c.ptr) {
				t.Fatalf("fate %v (%v, %d)", f, f.Reason, f.Detail)
			}
			all.Add(&f)
			if f.By() != "ip_options: bad option at offset "+strconv.Itoa(int(c.ptr)) {
				t.Errorf("by %q", f.By())
			}
			if len(f.Answers) != 1 {
				t.Fatalf("%d answers", len(f.Answers))
			}
			a := f.Answers[0]
			l4 := a.Pkt.IP.Payload()
			if a.Fate.Kind != Sent || a.Fate.OutIf != "eth0" || a.Pkt.Dst != 0x0a000002 || a.Pkt.Src != 0x0a000001 ||
				l4[0] != packet.ICMPParamProb || l4[1] != 0 || binary.BigEndian.Uint32(l4[4:]) != uint32(c.ptr)<<24 {
				t.Errorf("answer %v: % x", a.Fate, a.Pkt.Data)
			}
		})
	}
	var b strings.Builder
	WriteDropMetrics(prom.New(&b), all.Snapshot())
	if line := `uswitch_drops_total{reason="ip_options"} 5` + "\n"; !strings.Contains(b.String(), line) {
		t.Errorf("metrics lack %q:\n%s", line, b.String())
	}
}

// TestOptionsSourceRoute: with accept_source_route off (the default:
// all=0) a loose or strict source route is dropped without an answer;
// with it on, a loose route whose destination is not ours is forwarded
// and a strict one is a parameter problem (ip_options_rcv_srr).
func TestOptionsSourceRoute(t *testing.T) {
	lsrr := []byte{packet.OptLSRR, 7, 4, 192, 168, 1, 9}
	ssrr := []byte{packet.OptSSRR, 7, 4, 192, 168, 1, 9}
	e := optEngine(t, nil)
	for _, o := range [][]byte{lsrr, ssrr} {
		f := e.Receive(withOptions(t, "udp 10.0.0.2:1000 > 8.8.8.8:53", "eth0", o...), 1e9, nil)
		if f.Kind != Dropped || f.Reason != DropSourceRoute || len(f.Answers) != 0 || f.By() != "ip_options: source route not accepted" {
			t.Errorf("option %x: %v, %d answers", o[0], f, len(f.Answers))
		}
	}
	e = optEngine(t, func(c *route.Config) {
		c.All.AcceptSourceRoute = true
		d := c.Dev["eth0"]
		d.AcceptSourceRoute = true
		c.Dev["eth0"] = d
	})
	if f := e.Receive(withOptions(t, "udp 10.0.0.2:1000 > 8.8.8.8:53", "eth0", lsrr...), 1e9, nil); f.Kind != Forwarded {
		t.Errorf("lsrr accepted: %v", f)
	}
	f := e.Receive(withOptions(t, "udp 10.0.0.2:1000 > 8.8.8.8:53", "eth0", ssrr...), 1e9, nil)
	if f.Kind != Dropped || f.Reason != DropSourceRouteFailed || len(f.Answers) != 1 {
		t.Fatalf("ssrr accepted: %v", f)
	}
	if l4 := f.Answers[0].Pkt.IP.Payload(); l4[0] != packet.ICMPParamProb || l4[4] != 16 {
		t.Errorf("answer % x", l4)
	}
	// a loose route through us: on to its next hop 192.168.1.9, whose
	// slot records our output address
	p := withOptions(t, "udp 10.0.0.2:1000 > 10.0.0.1:53", "eth0", lsrr...)
	f = e.Receive(p, 1e9, nil)
	if f.Kind != Forwarded || f.OutIf != "eth1" || p.Dst != 0xc0a80109 || packet.IPv4(p.Data).Dst() != 0xc0a80109 {
		t.Fatalf("lsrr through us: %v to %08x", f, p.Dst)
	}
	if got, want := p.IP.Options(), []byte{packet.OptLSRR, 7, 8, 192, 168, 1, 1, 0}; !bytes.Equal(got, want) {
		t.Errorf("options % x, want % x", got, want)
	}
	checkCsum(t, p.Data)
}

// TestOptionsForward: a record route is forwarded with the output
// address recorded (ip_forward_options) and a right checksum; so is
// one that is full, unchanged; a router alert is forwarded (no
// IP_ROUTER_ALERT socket).
func TestOptionsForward(t *testing.T) {
	e := optEngine(t, nil)
	p := withOptions(t, "udp 10.0.0.2:1000 > 8.8.8.8:53", "eth0", packet.OptRR, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0)
	f := e.Receive(p, 1e9, nil)
	if f.Kind != Forwarded || f.OutIf != "eth1" {
		t.Fatalf("fate %v", f)
	}
	if got, want := p.IP.Options(), []byte{packet.OptRR, 11, 8, 192, 168, 1, 1, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("options % x, want % x", got, want)
	}
	checkCsum(t, p.Data)
	full := []byte{packet.OptRR, 7, 8, 1, 2, 3, 4}
	p = withOptions(t, "udp 10.0.0.2:1000 > 8.8.8.8:53", "eth0", full...)
	if f := e.Receive(p, 1e9, nil); f.Kind != Forwarded || !bytes.Equal(p.IP.Options()[:7], full) {
		t.Errorf("full rr: %v % x", f, p.IP.Options())
	}
	checkCsum(t, p.Data)
	p = withOptions(t, "udp 10.0.0.2:1000 > 8.8.8.8:53", "eth0", packet.OptRA, 4, 0, 0)
	if f := e.Receive(p, 1e9, nil); f.Kind != Forwarded {
		t.Errorf("router alert: %v", f)
	}
	checkCsum(t, p.Data)
}

// TestOptionsEcho: an echo request with a record route to the router is
// answered with the option echoed and our address added (icmp_reply,
// ip_options_echo, ip_options_build); a port unreachable carries it too.
func TestOptionsEcho(t *testing.T) {
	e := optEngine(t, nil)
	rr := []byte{packet.OptRR, 15, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	p := withOptions(t, "icmp 10.0.0.2 > 10.0.0.1 id 7 seq 1", "eth0", rr...)
	f := e.Receive(p, 1e9, nil)
	if f.Kind != Delivered || len(f.Answers) != 1 {
		t.Fatalf("fate %v, %d answers", f, len(f.Answers))
	}
	a := f.Answers[0].Pkt
	want := []byte{packet.OptRR, 15, 12, 10, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0}
	if got := a.IP.Options(); !bytes.Equal(got, want) || a.ICMPType != packet.ICMPEchoReply || a.Dst != 0x0a000002 {
		t.Errorf("reply % x\nwant options % x", a.Data, want)
	}
	checkCsum(t, a.Data)
	p = withOptions(t, "udp 10.0.0.2:1000 > 10.0.0.1:9", "eth0", rr...)
	f = e.Receive(p, 1e9, nil)
	if len(f.Answers) != 1 {
		t.Fatalf("%d answers", len(f.Answers))
	}
	a = f.Answers[0].Pkt
	if got := a.IP.Options(); !bytes.Equal(got, want) || a.ICMPType != packet.ICMPDestUnreach {
		t.Errorf("unreachable % x", a.Data)
	}
	checkCsum(t, a.Data)
}

// FuzzReceiveOptions: any options on a packet to the router, through it
// or looping through its own source route never panic the engine, and a
// forwarded packet or an answer leaves with a right header checksum.
func FuzzReceiveOptions(f *testing.F) {
	f.Add([]byte{packet.OptRR, 0, 4, 0}, uint8(0))
	f.Add([]byte{packet.OptLSRR, 11, 4, 10, 0, 0, 1, 192, 168, 1, 9}, uint8(1))
	f.Add([]byte{packet.OptSSRR, 11, 12, 10, 0, 0, 1, 10, 0, 0, 3}, uint8(2))
	f.Add([]byte{packet.OptTimestamp, 12, 5, 3, 10, 0, 0, 1, 0, 0, 0, 0}, uint8(3))
	e := optEngine(f, func(c *route.Config) {
		c.All.AcceptSourceRoute = true
		d := c.Dev["eth0"]
		d.AcceptSourceRoute = true
		c.Dev["eth0"] = d
	})
	forms := []string{"icmp 10.0.0.2 > 10.0.0.1 id 1 seq 1", "udp 10.0.0.2:1 > 8.8.8.8:53", "tcp 10.0.0.2:1 > 10.0.0.1:80 syn",
		"udp 10.0.0.2:1 > 192.168.1.9:53 ttl 1"}
	f.Fuzz(func(t *testing.T, opts []byte, form uint8) {
		if len(opts) > packet.OptionsMaxLen {
			opts = opts[:packet.OptionsMaxLen]
		}
		p := withOptions(t, forms[int(form)%len(forms)], "eth0", opts...)
		fate := e.Receive(p, 1e9, nil)
		if fate.Kind == Forwarded {
			checkCsum(t, p.Data)
		}
		for _, a := range fate.Answers {
			checkCsum(t, a.Pkt.Data)
		}
	})
}

// TestOptionsErrorRoute: an unreachable route is an ip_error route, so
// the options are compiled first: invalid ones get a parameter problem,
// valid ones are echoed in the unreachable.
func TestOptionsErrorRoute(t *testing.T) {
	e := optEngine(t, func(c *route.Config) {
		c.Routes = append(c.Routes, route.Route{Table: 254, Type: route.Unreachable, Dst: netip.MustParsePrefix("10.70.0.0/16")},
			route.Route{Table: 254, Type: route.Blackhole, Dst: netip.MustParsePrefix("10.71.0.0/16")})
	})
	// a blackhole is an ip_error route too (silent, but after the options)
	if f := e.Receive(withOptions(t, "udp 10.0.0.2:1 > 10.71.0.1:53", "eth0", packet.OptRR, 0, 4, 0), 1e9, nil); f.Reason != DropIPOptions || len(f.Answers) != 1 {
		t.Errorf("blackhole: %v", f)
	}
	f := e.Receive(withOptions(t, "udp 10.0.0.2:1 > 10.70.0.1:53", "eth0", packet.OptRR, 0, 4, 0), 1e9, nil)
	if f.Reason != DropIPOptions || len(f.Answers) != 1 || f.Answers[0].Pkt.ICMPType != packet.ICMPParamProb {
		t.Errorf("invalid: %v", f)
	}
	f = e.Receive(withOptions(t, "udp 10.0.0.2:1 > 10.70.0.1:53", "eth0", packet.OptRR, 7, 4, 0, 0, 0, 0), 1e9, nil)
	if f.Reason != DropRoute || len(f.Answers) != 1 || f.Answers[0].Pkt.ICMPType != packet.ICMPDestUnreach ||
		!bytes.Equal(f.Answers[0].Pkt.IP.Options(), []byte{packet.OptRR, 7, 8, 10, 0, 0, 1, 0}) {
		t.Errorf("valid: %v", f)
	}
}

// TestOptionsRejectCsum: without conntrack a REJECT's checksum check
// fails on a header whose options were rewritten (nf_ip_checksum sums
// the stale header): no reset, no unreachable; an unchanged header is
// answered.
func TestOptionsRejectCsum(t *testing.T) {
	rs, err := (&iptables.Loader{}).LoadString(datapathtest.Table("filter",
		"-A FORWARD -p tcp -m tcp --dport 25 -j REJECT --reject-with tcp-reset",
		"-A FORWARD -p udp -m udp --dport 69 -j REJECT"))
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Rules: rs, FIB: testFIB(t), IPForward: true}, conntrack.DefaultConfig(), 1)
	rr := []byte{packet.OptRR, 7, 4, 0, 0, 0, 0}
	full := []byte{packet.OptRR, 7, 8, 1, 2, 3, 4}
	for _, c := range []struct {
		form    string
		opts    []byte
		answers int
	}{
		{"tcp 10.0.0.2:1 > 8.8.8.8:25 syn", rr, 0},
		{"tcp 10.0.0.2:1 > 8.8.8.8:25 syn", full, 1},
		{"udp 10.0.0.2:1 > 8.8.8.8:69", rr, 0},
		{"udp 10.0.0.2:1 > 8.8.8.8:69", full, 1},
	} {
		f := e.Receive(withOptions(t, c.form, "eth0", c.opts...), 1e9, nil)
		if f.Kind != Dropped || len(f.Answers) != c.answers {
			t.Errorf("%s % x: %v, %d answers", c.form, c.opts, f, len(f.Answers))
		}
	}
}

// TestOptionsTimestamp: a forwarded timestamp option gets the
// milliseconds since midnight UTC (inet_current_timestamp) and, with
// flag 1, the address the host records (fib_compute_spec_dst).
func TestOptionsTimestamp(t *testing.T) {
	defer func(c func() time.Time) { wallClock = c }(wallClock)
	wallClock = func() time.Time { return time.Date(2026, 1, 2, 1, 2, 3, 456e6, time.FixedZone("x", 3600)) }
	const ms = (2*60+3)*1000 + 456 // 00:02:03.456 UTC
	e := optEngine(t, nil)
	p := withOptions(t, "udp 10.0.0.2:1 > 8.8.8.8:53", "eth0", packet.OptTimestamp, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0)
	if f := e.Receive(p, 1e9, nil); f.Kind != Forwarded {
		t.Fatalf("fate %v", f)
	}
	want := []byte{packet.OptTimestamp, 12, 13, 1, 10, 0, 0, 1, 0, ms >> 16, ms >> 8 & 0xff, ms & 0xff}
	if got := p.IP.Options(); !bytes.Equal(got, want) {
		t.Errorf("options % x, want % x", got, want)
	}
	checkCsum(t, p.Data)
}
