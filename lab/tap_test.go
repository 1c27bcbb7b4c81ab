package lab

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/datapath"
	"github.com/uswitch-lab/uswitch/packet"
)

// fakeDev is a Device for tests: Read returns what is sent to in (until
// Close), Write records copies.
type fakeDev struct {
	name    string
	in      chan []byte
	mu      sync.Mutex
	written [][]byte
	closed  chan struct{}
	once    sync.Once
}

func newFakeDev(name string) *fakeDev {
	return &fakeDev{name: name, in: make(chan []byte, 64), closed: make(chan struct{})}
}

func (f *fakeDev) Name() string { return f.name }

func (f *fakeDev) Read(bufs [][]byte, sizes []int) (int, error) {
	select {
	case b := <-f.in:
		sizes[0] = copy(bufs[0], b)
		return 1, nil
	case <-f.closed:
		return 0, os.ErrClosed
	}
}

func (f *fakeDev) Write(pkts [][]byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range pkts {
		f.written = append(f.written, append([]byte(nil), p...))
	}
	return len(pkts), nil
}

func (f *fakeDev) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

// take returns and forgets what was written.
func (f *fakeDev) take() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.written
	f.written = nil
	return w
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	testOurMAC   = [6]byte{0x02, 0x75, 0x73, 0, 0, 1}
	testPeerMAC  = [6]byte{0x0a, 0xbb, 0xcc, 0xdd, 0xee, 0x02}
	testOtherMAC = [6]byte{0x0a, 0xbb, 0xcc, 0xdd, 0xee, 0x03}
)

func testTapPort() *tapPort {
	return newTapPort("tp", testOurMAC, []PrefixValue{{netip.MustParsePrefix("10.10.2.1/24")}, {netip.MustParsePrefix("192.0.2.1/24")}}, 1500)
}

// arpFrame is an ARP frame from the peer.
func arpFrame(ethDst [6]byte, op uint16, sha [6]byte, spa, tpa string, tha [6]byte) []byte {
	var s uint32
	if spa != "" {
		s = ip4(spa)
	}
	return putARP(make([]byte, 60), ethDst, sha, arpMsg{op: op, sha: sha, spa: s, tha: tha, tpa: ip4(tpa)})
}

func ipFrame(dst [6]byte, ip []byte) []byte {
	f := make([]byte, ethHeaderLen+len(ip))
	putEth(f, dst, testPeerMAC, etherTypeIPv4)
	copy(f[ethHeaderLen:], ip)
	return f
}

// TestTapInput: frames are classed as eth_type_trans and ip_rcv class
// them; only IPv4 for us, broadcast or multicast goes on.
func TestTapInput(t *testing.T) {
	ip := packet.Build(packet.Spec{Src: ip4("10.10.2.2"), Dst: ip4("10.10.1.2"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	vlan := ipFrame(testOurMAC, ip)
	vlan[12], vlan[13] = 0x81, 0x00
	v6 := ipFrame(testOurMAC, ip)
	v6[12], v6[13] = 0x86, 0xdd
	dot3 := ipFrame(testOurMAC, ip)
	dot3[12], dot3[13] = 0x00, 0x40
	for _, tc := range []struct {
		name    string
		frame   []byte
		ok      bool
		pt      uint8
		counter func(*tapPort) uint64
	}{
		{"ipv4 to us", ipFrame(testOurMAC, ip), true, packet.PktHost, nil},
		{"ipv4 broadcast", ipFrame(broadcastMAC, ip), true, packet.PktBroadcast, nil},
		{"ipv4 multicast", ipFrame(multicastMAC(ip4("224.0.0.5")), ip), true, packet.PktMulticast, nil},
		{"ipv4 to another host", ipFrame(testOtherMAC, ip), false, 0, func(p *tapPort) uint64 { return p.otherHost.Load() }},
		{"vlan", vlan, false, 0, func(p *tapPort) uint64 { return p.vlan.Load() }},
		{"ipv6", v6, false, 0, func(p *tapPort) uint64 { return p.notIPv4.Load() }},
		{"802.3 length", dot3, false, 0, func(p *tapPort) uint64 { return p.notIPv4.Load() }},
		{"short", ipFrame(testOurMAC, ip)[:13], false, 0, func(p *tapPort) uint64 { return p.malformed.Load() }},
		{"bad arp", arpFrame(broadcastMAC, 9, testPeerMAC, "10.10.2.2", "10.10.2.1", [6]byte{}), false, 0, func(p *tapPort) uint64 { return p.malformed.Load() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, dev := testTapPort(), newFakeDev("tp")
			got, pt, ok := tp.input(tc.frame, 1, dev)
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if ok {
				if pt != tc.pt || &got[0] != &tc.frame[ethHeaderLen] || len(got) != len(ip) {
					t.Errorf("pkt_type %d (want %d), packet %x", pt, tc.pt, got)
				}
				return
			}
			if tc.counter(tp) != 1 {
				t.Errorf("not counted")
			}
			if w := dev.take(); len(w) != 0 {
				t.Errorf("wrote %x", w)
			}
		})
	}
}

// TestTapARP: the ARP replies uswitch sends, byte for byte, and what it
// learns from which ARP.
func TestTapARP(t *testing.T) {
	tp, dev := testTapPort(), newFakeDev("tp")

	// a request for our address: a reply from our MAC, and the sender
	// is learned
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testPeerMAC, "10.10.2.2", "10.10.2.1", [6]byte{}), 1, dev)
	w := dev.take()
	want := unhex(t, `0abbccddee02 027573000001 0806
		0001 0800 06 04 0002 027573000001 0a0a0201 0abbccddee02 0a0a0202`)
	if len(w) != 1 || string(w[0]) != string(want) {
		t.Fatalf("reply %x, want %x", w, want)
	}
	if mac, ok := tp.neigh.lookup(ip4("10.10.2.2")); !ok || mac != testPeerMAC {
		t.Errorf("sender not learned: %v %v", mac, ok)
	}
	if tp.arpReplied.Load() != 1 {
		t.Errorf("arpReplied %d", tp.arpReplied.Load())
	}

	// our second address too
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testPeerMAC, "192.0.2.7", "192.0.2.1", [6]byte{}), 1, dev)
	if w := dev.take(); len(w) != 1 || w[0][ethHeaderLen+7] != arpOpReply {
		t.Errorf("no reply for the second address: %x", w)
	}

	// a duplicate address probe (sender 0.0.0.0): answered with target
	// address 0, nothing learned
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testOtherMAC, "", "10.10.2.1", [6]byte{}), 1, dev)
	w = dev.take()
	want = unhex(t, `0abbccddee03 027573000001 0806
		0001 0800 06 04 0002 027573000001 0a0a0201 0abbccddee03 00000000`)
	if len(w) != 1 || string(w[0]) != string(want) {
		t.Fatalf("DAD reply %x, want %x", w, want)
	}
	if _, ok := tp.neigh.lookup(0); ok {
		t.Errorf("learned 0.0.0.0")
	}

	// not for us, an unsolicited reply, a request to another host's
	// MAC: no answer, nothing new learned
	for _, f := range [][]byte{
		arpFrame(broadcastMAC, arpOpRequest, testOtherMAC, "10.10.2.3", "10.10.2.9", [6]byte{}),
		arpFrame(testOurMAC, arpOpReply, testOtherMAC, "10.10.2.3", "10.10.2.1", testOurMAC),
		arpFrame(testPeerMAC, arpOpRequest, testOtherMAC, "10.10.2.3", "10.10.2.1", [6]byte{}),
	} {
		tp.input(f, 1, dev)
	}
	if w := dev.take(); len(w) != 0 {
		t.Errorf("wrote %x", w)
	}
	if _, ok := tp.neigh.lookup(ip4("10.10.2.3")); ok {
		t.Errorf("learned 10.10.2.3 from unsolicited ARP")
	}

	// any ARP from a known host refreshes (and moves) its entry
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testOtherMAC, "10.10.2.2", "10.10.2.9", [6]byte{}), 5, dev)
	if mac, _ := tp.neigh.lookup(ip4("10.10.2.2")); mac != testOtherMAC {
		t.Errorf("entry not updated: %v", mac)
	}
}

// TestTapARPRequest: the request uswitch sends, from its address in
// the target's subnet, else its first.
func TestTapARPRequest(t *testing.T) {
	tp := testTapPort()
	got := tp.request(make([]byte, 64), ip4("192.0.2.9"))
	want := unhex(t, `ffffffffffff 027573000001 0806
		0001 0800 06 04 0001 027573000001 c0000201 000000000000 c0000209`)
	if string(got) != string(want) {
		t.Errorf("request %x, want %x", got, want)
	}
	got = tp.request(make([]byte, 64), ip4("198.51.100.1"))
	if src := got[ethHeaderLen+14 : ethHeaderLen+18]; string(src) != "\x0a\x0a\x02\x01" {
		t.Errorf("sender %x, want the first address", src)
	}
}

// TestTapNeighbourQueue: packets to an unresolved next hop wait (at most
// unresQLen, the oldest dropped beyond), one request goes out, and the
// reply flushes them in order; then frames go out at once.
func TestTapNeighbourQueue(t *testing.T) {
	tp, dev := testTapPort(), newFakeDev("tp")
	var held []*frameBuf
	pkt := func(id byte) []byte {
		return packet.Build(packet.Spec{Src: ip4("10.10.1.2"), Dst: ip4("10.10.2.2"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2, Payload: []byte{id}})
	}
	nh := ip4("10.10.2.2")
	f, req := tp.output(pkt(1), nh, nil, 1, &held)
	if f != nil || req == nil {
		t.Fatalf("first packet: frame %x, request %x", f, req)
	}
	if string(req) != string(tp.request(make([]byte, 64), nh)) {
		t.Errorf("request %x", req)
	}
	for id := byte(2); id <= 4; id++ {
		if f, req := tp.output(pkt(id), nh, nil, 2, &held); f != nil || req != nil {
			t.Fatalf("packet %d: frame %x, request %x", id, f, req)
		}
	}
	if tp.unresolved.Load() != 1 || tp.arpRequested.Load() != 1 {
		t.Errorf("unresolved %d (want 1: the oldest), requested %d", tp.unresolved.Load(), tp.arpRequested.Load())
	}
	for _, h := range held {
		h.release()
	}
	held = held[:0]
	// the reply flushes packets 2, 3, 4
	tp.input(arpFrame(testOurMAC, arpOpReply, testPeerMAC, "10.10.2.2", "10.10.2.1", testOurMAC), 3, dev)
	w := dev.take()
	if len(w) != 3 {
		t.Fatalf("flushed %d frames", len(w))
	}
	for i, fr := range w {
		if [6]byte(fr[0:6]) != testPeerMAC || [6]byte(fr[6:12]) != testOurMAC || fr[12] != 0x08 || fr[13] != 0 {
			t.Errorf("frame %d header %x", i, fr[:14])
		}
		if want := pkt(byte(i + 2)); string(fr[ethHeaderLen:]) != string(want) {
			t.Errorf("frame %d: %x, want %x", i, fr[ethHeaderLen:], want)
		}
	}
	// resolved: in the buffer's headroom, no copy
	own := make([]byte, ethHeaderLen+1500)
	n := copy(own[ethHeaderLen:], pkt(5))
	b := own[ethHeaderLen : ethHeaderLen+n]
	f, req = tp.output(b, nh, own, 4, &held)
	if req != nil || len(f) != n+ethHeaderLen || &f[0] != &own[0] || [6]byte(f[0:6]) != testPeerMAC {
		t.Fatalf("resolved output %x (request %x)", f, req)
	}
	// an answer (no buffer of its own): copied into a pooled frame
	f, _ = tp.output(pkt(6), nh, nil, 4, &held)
	if len(held) != 1 || string(f[ethHeaderLen:]) != string(pkt(6)) || [6]byte(f[0:6]) != testPeerMAC {
		t.Fatalf("answer frame %x, held %d", f, len(held))
	}
	// a broadcast needs no resolution
	f, req = tp.output(pkt(7), ip4("10.10.2.255"), nil, 4, &held)
	if req != nil || f == nil || [6]byte(f[0:6]) != broadcastMAC {
		t.Errorf("broadcast frame %x", f)
	}
}

// TestTapNeighbourAging: an unanswered next hop is asked once a second,
// arpProbes times, then its packets are dropped; a learned one lasts
// neighLifetime after its last ARP.
func TestTapNeighbourAging(t *testing.T) {
	tp, dev := testTapPort(), newFakeDev("tp")
	var held []*frameBuf
	pkt := packet.Build(packet.Spec{Src: ip4("10.10.1.2"), Dst: ip4("10.10.2.9"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	const s = int64(time.Second)
	tp.output(pkt, ip4("10.10.2.9"), nil, 0, &held)
	tp.output(pkt, ip4("10.10.2.9"), nil, 0, &held)
	tp.tick(s/2, dev) // too early
	if w := dev.take(); len(w) != 0 {
		t.Fatalf("re-sent after half a second")
	}
	for i := int64(1); i <= 2; i++ {
		tp.tick(i*s, dev)
		if w := dev.take(); len(w) != 1 || w[0][ethHeaderLen+7] != arpOpRequest {
			t.Fatalf("second %d: wrote %x", i, w)
		}
	}
	tp.tick(3*s, dev)
	if w := dev.take(); len(w) != 0 || tp.unresolved.Load() != 2 || tp.arpRequested.Load() != 3 {
		t.Fatalf("after %d requests: wrote %d, unresolved %d (want 2), requested %d", arpProbes, len(w), tp.unresolved.Load(), tp.arpRequested.Load())
	}
	if len(tp.neigh.m) != 0 {
		t.Errorf("failed entry kept")
	}
	// learned at 10 s, refreshed at 50 s: gone at 110 s, not before
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testPeerMAC, "10.10.2.2", "10.10.2.1", [6]byte{}), 10*s, dev)
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testPeerMAC, "10.10.2.2", "10.10.2.77", [6]byte{}), 50*s, dev)
	tp.tick(109*s, dev)
	if _, ok := tp.neigh.lookup(ip4("10.10.2.2")); !ok {
		t.Errorf("entry gone before its lifetime")
	}
	tp.tick(110*s, dev)
	if _, ok := tp.neigh.lookup(ip4("10.10.2.2")); ok {
		t.Errorf("entry kept past its lifetime")
	}
}

// TestTapOutputNoAllocs: a packet to a resolved next hop is framed in
// its buffer's headroom without allocating.
func TestTapOutputNoAllocs(t *testing.T) {
	tp, dev := testTapPort(), newFakeDev("tp")
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testPeerMAC, "10.10.2.2", "10.10.2.1", [6]byte{}), 1, dev)
	own := make([]byte, ethHeaderLen+1500)
	n := copy(own[ethHeaderLen:], packet.Build(packet.Spec{Src: ip4("10.10.1.2"), Dst: ip4("10.10.2.2"), Proto: packet.ProtoTCP, SrcPort: 1, DstPort: 2}))
	b := own[ethHeaderLen : ethHeaderLen+n]
	held := make([]*frameBuf, 0, 8)
	nh := ip4("10.10.2.2")
	if a := testing.AllocsPerRun(1000, func() {
		if f, _ := tp.output(b, nh, own, 2, &held); f == nil {
			panic("not resolved")
		}
	}); a != 0 {
		t.Errorf("resolved output allocates %v times", a)
	}
	if len(held) != 0 {
		t.Errorf("the headroom path used pooled frames")
	}
}

// TestTapConfig: kind and mac parse, default to a TUN and to
// DefaultMAC, and bad values name their key and line.
func TestTapConfig(t *testing.T) {
	const base = `name = "x"
[[interface]]
name = "t0"
netns = "a"
addresses = ["10.0.0.1/24"]
KIND
[[namespace]]
name = "a"
addresses = ["10.0.0.2/24"]
`
	parse := func(kind string) (*Config, error) {
		return Parse("lab.toml", []byte(strings.Replace(base, "KIND", kind, 1)))
	}
	c, err := parse(`kind = "tap"` + "\n" + `mac = "02:00:00:aa:bb:cc"`)
	if err != nil {
		t.Fatal(err)
	}
	if it := c.Interfaces[0]; it.Kind != KindTAP || it.LinkMAC() != [6]byte{2, 0, 0, 0xaa, 0xbb, 0xcc} {
		t.Errorf("interface %+v", it)
	}
	c, err = parse(`kind = "tap"`)
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Interfaces[0].LinkMAC(); m != DefaultMAC("t0") || m[0] != 0x02 || m[1] != 0x75 || m[2] != 0x73 || DefaultMAC("t1") == m {
		t.Errorf("default MAC %s", macString(m))
	}
	if c, err = parse(""); err != nil || c.Interfaces[0].Kind == KindTAP {
		t.Errorf("default kind: %v %v", c, err)
	}
	// the datapath option makes the device an Ethernet port
	c, _ = parse(`kind = "tap"`)
	d := &Datapath{byName: map[string]*port{"t0": {name: "t0", mtu: 1500}}}
	for _, o := range c.tapOptions() {
		o(d)
	}
	if l2 := d.byName["t0"].l2; l2 == nil || l2.mac != DefaultMAC("t0") || len(l2.addrs) != 1 {
		t.Errorf("tap port %+v", l2)
	}
	for _, tc := range []struct{ text, key, msg string }{
		{`kind = "tup"`, "interface.kind", `kind "tup": want tun or tap`},
		{`kind = "tap"` + "\n" + `mac = "01:00:5e:00:00:01"`, "interface.mac", "unicast"},
		{`kind = "tap"` + "\n" + `mac = "02:00:00"`, "interface.mac", "Ethernet address"},
		{`mac = "02:00:00:00:00:01"`, "interface.mac", `only a kind = "tap"`},
	} {
		_, err := parse(tc.text)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: error %v, want a *ConfigError", tc.text, err)
		}
		line := 6
		if strings.Contains(tc.text, "\n") {
			line = 7
		}
		if ce.Key != tc.key || ce.Line != line || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %q (key %q line %d), want key %q line %d containing %q", tc.text, err, ce.Key, ce.Line, tc.key, line, tc.msg)
		}
	}
}

// waitWritten waits until the device has written n frames or packets.
func waitWritten(t *testing.T, f *fakeDev, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	var got [][]byte
	for len(got) < n && time.Now().Before(deadline) {
		got = append(got, f.take()...)
		time.Sleep(time.Millisecond)
	}
	if len(got) != n {
		t.Fatalf("%s wrote %d, want %d: %x", f.name, len(got), n, got)
	}
	return got
}

// TestTapDatapath: a TUN and a TAP port in one datapath over fake
// devices (no root): a forwarded packet waits for ARP and is flushed by
// the reply, the next goes at once; the TAP's IPv4 reaches the TUN; an
// echo request to uswitch's TAP address is answered in a frame; a frame
// to another MAC is dropped.
func TestTapDatapath(t *testing.T) {
	c, err := Parse("t.toml", []byte(strings.ReplaceAll(strings.ReplaceAll(tapLab, "P-", "x-"), `server = [{ kind = "http", port = 8080 }]`, "")))
	if err != nil {
		t.Fatal(err)
	}
	ecfg, ctcfg, err := c.EngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	tun, tap := newFakeDev("tc"), newFakeDev("ts")
	dp := NewDatapath(datapath.New(ecfg, ctcfg, 1), []Device{tun, tap}, nil, 2, c.tapOptions()...)
	defer dp.Close()
	ours := DefaultMAC("ts")
	udp := func(id byte) []byte {
		return packet.Build(packet.Spec{Src: ip4("10.10.1.2"), Dst: ip4("10.10.2.2"), TTL: 64, Proto: packet.ProtoUDP, SrcPort: 1000, DstPort: 7, Payload: []byte{id}})
	}
	tun.in <- udp(1)
	w := waitWritten(t, tap, 1)
	if string(w[0]) != string(dp.byName["ts"].l2.request(make([]byte, 64), ip4("10.10.2.2"))) {
		t.Fatalf("not the ARP request: %x", w[0])
	}
	tap.in <- arpFrame(ours, arpOpReply, testPeerMAC, "10.10.2.2", "10.10.2.1", ours)
	w = waitWritten(t, tap, 1)
	check := func(f []byte, id byte) {
		t.Helper()
		if [6]byte(f[0:6]) != testPeerMAC || [6]byte(f[6:12]) != ours || f[12] != 8 || f[13] != 0 {
			t.Errorf("header %x", f[:14])
		}
		ip := packet.IPv4(f[ethHeaderLen:])
		if ip.TTL() != 63 || ip.Dst() != ip4("10.10.2.2") || f[len(f)-1] != id {
			t.Errorf("packet %x", ip)
		}
	}
	check(w[0], 1)
	tun.in <- udp(2)
	check(waitWritten(t, tap, 1)[0], 2)

	// the server's answer, to our MAC, reaches the TUN as a packet
	back := packet.Build(packet.Spec{Src: ip4("10.10.2.2"), Dst: ip4("10.10.1.2"), TTL: 64, Proto: packet.ProtoUDP, SrcPort: 7, DstPort: 1000, Payload: []byte("x")})
	f := make([]byte, ethHeaderLen+len(back))
	putEth(f, ours, testPeerMAC, etherTypeIPv4)
	copy(f[ethHeaderLen:], back)
	tap.in <- f
	if p := waitWritten(t, tun, 1)[0]; len(p) != len(back) || packet.IPv4(p).Src() != ip4("10.10.2.2") || packet.IPv4(p).TTL() != 63 {
		t.Errorf("on the TUN: %x", p)
	}
	// an echo request to uswitch's own TAP address: the reply is framed
	ping := packet.Build(packet.Spec{Src: ip4("10.10.2.2"), Dst: ip4("10.10.2.1"), TTL: 64, Proto: packet.ProtoICMP, ICMPType: packet.ICMPEcho, ICMPID: 9, ICMPSeq: 1})
	f = make([]byte, ethHeaderLen+len(ping))
	putEth(f, ours, testPeerMAC, etherTypeIPv4)
	copy(f[ethHeaderLen:], ping)
	tap.in <- f
	r := waitWritten(t, tap, 1)[0]
	if [6]byte(r[0:6]) != testPeerMAC || packet.IPv4(r[ethHeaderLen:]).Src() != ip4("10.10.2.1") || r[ethHeaderLen+20] != packet.ICMPEchoReply {
		t.Errorf("echo reply %x", r)
	}
	// to another MAC: dropped, counted
	putEth(f, testOtherMAC, testPeerMAC, etherTypeIPv4)
	tap.in <- f
	deadline := time.Now().Add(2 * time.Second)
	for dp.Stats().OtherHost == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s := dp.Stats(); s.OtherHost != 1 || s.ARPRequested != 1 || s.Forwarded != 3 {
		t.Errorf("stats %+v", s)
	}
	if w := tap.take(); len(w) != 0 {
		t.Errorf("wrote %x", w)
	}
}
