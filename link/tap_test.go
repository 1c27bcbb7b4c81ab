package link

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/uswitch-lab/uswitch/link/linktest"
	"github.com/uswitch-lab/uswitch/packet"
)

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
	return newTapPort("tp", testOurMAC, []netip.Prefix{netip.MustParsePrefix("10.10.2.1/24"), netip.MustParsePrefix("192.0.2.1/24")}, 1500)
}

// arpFrame is an ARP frame from the peer.
func arpFrame(ethDst [6]byte, op uint16, sha [6]byte, spa, tpa string, tha [6]byte) []byte {
	var s uint32
	if spa != "" {
		s = packet.MustAddr(spa)
	}
	return putARP(make([]byte, 60), ethDst, sha, packet.ARP{Op: op, SHA: sha, SPA: s, THA: tha, TPA: packet.MustAddr(tpa)})
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
	ip := packet.Build(packet.Spec{Src: packet.MustAddr("10.10.2.2"), Dst: packet.MustAddr("10.10.1.2"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
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
		{"ipv4 multicast", ipFrame(multicastMAC(packet.MustAddr("224.0.0.5")), ip), true, packet.PktMulticast, nil},
		{"ipv4 to another host", ipFrame(testOtherMAC, ip), false, 0, func(p *tapPort) uint64 { return p.otherHost.Load() }},
		{"vlan", vlan, false, 0, func(p *tapPort) uint64 { return p.vlan.Load() }},
		{"ipv6", v6, false, 0, func(p *tapPort) uint64 { return p.notIPv4.Load() }},
		{"802.3 length", dot3, false, 0, func(p *tapPort) uint64 { return p.notIPv4.Load() }},
		{"short", ipFrame(testOurMAC, ip)[:13], false, 0, func(p *tapPort) uint64 { return p.malformed.Load() }},
		{"bad arp", arpFrame(broadcastMAC, 9, testPeerMAC, "10.10.2.2", "10.10.2.1", [6]byte{}), false, 0, func(p *tapPort) uint64 { return p.malformed.Load() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, dev := testTapPort(), linktest.New("tp")
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
			if w := dev.Take(); len(w) != 0 {
				t.Errorf("wrote %x", w)
			}
		})
	}
}

// TestTapARP: the ARP replies uswitch sends, byte for byte, and what it
// learns from which ARP.
func TestTapARP(t *testing.T) {
	tp, dev := testTapPort(), linktest.New("tp")

	// a request for our address: a reply from our MAC, and the sender
	// is learned
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testPeerMAC, "10.10.2.2", "10.10.2.1", [6]byte{}), 1, dev)
	w := dev.Take()
	want := unhex(t, `0abbccddee02 027573000001 0806
		0001 0800 06 04 0002 027573000001 0a0a0201 0abbccddee02 0a0a0202`)
	if len(w) != 1 || string(w[0]) != string(want) {
		t.Fatalf("reply %x, want %x", w, want)
	}
	if mac, ok := peekNeigh(tp, packet.MustAddr("10.10.2.2")); !ok || mac != testPeerMAC {
		t.Errorf("sender not learned: %v %v", mac, ok)
	}
	if tp.arpReplied.Load() != 1 {
		t.Errorf("arpReplied %d", tp.arpReplied.Load())
	}

	// our second address too
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testPeerMAC, "192.0.2.7", "192.0.2.1", [6]byte{}), 1, dev)
	if w := dev.Take(); len(w) != 1 || w[0][ethHeaderLen+7] != arpOpReply {
		t.Errorf("no reply for the second address: %x", w)
	}

	// a duplicate address probe (sender 0.0.0.0): answered with target
	// address 0, nothing learned
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testOtherMAC, "", "10.10.2.1", [6]byte{}), 1, dev)
	w = dev.Take()
	want = unhex(t, `0abbccddee03 027573000001 0806
		0001 0800 06 04 0002 027573000001 0a0a0201 0abbccddee03 00000000`)
	if len(w) != 1 || string(w[0]) != string(want) {
		t.Fatalf("DAD reply %x, want %x", w, want)
	}
	if _, ok := peekNeigh(tp, 0); ok {
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
	if w := dev.Take(); len(w) != 0 {
		t.Errorf("wrote %x", w)
	}
	if _, ok := peekNeigh(tp, packet.MustAddr("10.10.2.3")); ok {
		t.Errorf("learned 10.10.2.3 from unsolicited ARP")
	}

	// any ARP from a known host refreshes (and moves) its entry
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testOtherMAC, "10.10.2.2", "10.10.2.9", [6]byte{}), 5, dev)
	if mac, _ := peekNeigh(tp, packet.MustAddr("10.10.2.2")); mac != testOtherMAC {
		t.Errorf("entry not updated: %v", mac)
	}
}

// TestTapARPRequest: the request uswitch sends, from its address in
// the target's subnet, else its first.
func TestTapARPRequest(t *testing.T) {
	tp := testTapPort()
	got := tp.request(make([]byte, 64), packet.MustAddr("192.0.2.9"))
	want := unhex(t, `ffffffffffff 027573000001 0806
		0001 0800 06 04 0001 027573000001 c0000201 000000000000 c0000209`)
	if string(got) != string(want) {
		t.Errorf("request %x, want %x", got, want)
	}
	got = tp.request(make([]byte, 64), packet.MustAddr("198.51.100.1"))
	if src := got[ethHeaderLen+14 : ethHeaderLen+18]; string(src) != "\x0a\x0a\x02\x01" {
		t.Errorf("sender %x, want the first address", src)
	}
}

// TestTapNeighbourQueue: packets to an unresolved next hop wait (at most
// unresQLen, the oldest dropped beyond), one request goes out, and the
// reply flushes them in order; then frames go out at once.
func TestTapNeighbourQueue(t *testing.T) {
	tp, dev := testTapPort(), linktest.New("tp")
	var held []*frameBuf
	pkt := func(id byte) []byte {
		return packet.Build(packet.Spec{Src: packet.MustAddr("10.10.1.2"), Dst: packet.MustAddr("10.10.2.2"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2, Payload: []byte{id}})
	}
	nh := packet.MustAddr("10.10.2.2")
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
	w := dev.Take()
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
	f, req = tp.output(pkt(7), packet.MustAddr("10.10.2.255"), nil, 4, &held)
	if req != nil || f == nil || [6]byte(f[0:6]) != broadcastMAC {
		t.Errorf("broadcast frame %x", f)
	}
}

// peekNeigh is a next hop's MAC in the port's table, if it has one
// (without the lookup's side effects).
func peekNeigh(tp *tapPort, ip uint32) ([6]byte, bool) {
	mac, ok := tp.neigh.entries()[ip]
	return mac, ok
}

// neighState is a next hop's NUD state in the port's table.
func neighState(tp *tapPort, ip uint32) string {
	state := "none"
	tp.neigh.states(func(a uint32, _ [6]byte, s string) {
		if a == ip {
			state = s
		}
	})
	return state
}

// TestTapNeighbourAging: an unanswered next hop is asked once a second,
// three times, then FAILS and its packets are returned for the ICMP
// errors; a learned one goes REACHABLE (a reply to us) -> STALE unused
// -> DELAY when used -> PROBE with unicast requests -> FAILED; a reply
// while probing makes it REACHABLE again.
func TestTapNeighbourAging(t *testing.T) {
	tp, dev := testTapPort(), linktest.New("tp")
	var held []*frameBuf
	pkt := packet.Build(packet.Spec{Src: packet.MustAddr("10.10.1.2"), Dst: packet.MustAddr("10.10.2.9"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	const s = int64(time.Second)
	nh := packet.MustAddr("10.10.2.9")
	tp.output(pkt, nh, nil, 0, &held)
	tp.output(pkt, nh, nil, 0, &held)
	tp.tick(s/2, dev) // too early
	if w := dev.Take(); len(w) != 0 {
		t.Fatalf("re-sent after half a second")
	}
	for i := int64(1); i <= 2; i++ {
		tp.tick(i*s, dev)
		if w := dev.Take(); len(w) != 1 || w[0][ethHeaderLen+7] != arpOpRequest || [6]byte(w[0][:6]) != broadcastMAC {
			t.Fatalf("second %d: wrote %x", i, w)
		}
	}
	failed := tp.tick(3*s, dev)
	if w := dev.Take(); len(w) != 0 || tp.unresolved.Load() != 2 || tp.arpRequested.Load() != 3 || len(failed) != 2 {
		t.Fatalf("after 3 requests: wrote %d, unresolved %d (want 2), requested %d, %d failed", len(w), tp.unresolved.Load(), tp.arpRequested.Load(), len(failed))
	}
	if st := neighState(tp, nh); st != "FAILED" {
		t.Errorf("after the requests: %s, want FAILED", st)
	}
	if string(failed[0]) != string(pkt) {
		t.Errorf("the failed packet is not the one queued")
	}
	// a reply to us: REACHABLE; unused for 30 s: STALE
	peer := packet.MustAddr("10.10.2.2")
	tp.output(pkt, peer, nil, 10*s, &held)
	dev.Take()
	tp.input(arpFrame(testOurMAC, arpOpReply, testPeerMAC, "10.10.2.2", "10.10.2.1", testOurMAC), 10*s, dev)
	if st := neighState(tp, peer); st != "REACHABLE" {
		t.Fatalf("after the reply: %s", st)
	}
	dev.Take()
	tp.tick(39*s, dev)
	if st := neighState(tp, peer); st != "REACHABLE" {
		t.Errorf("at 39 s: %s, want REACHABLE", st)
	}
	tp.tick(41*s, dev)
	if st := neighState(tp, peer); st != "STALE" {
		t.Errorf("at 41 s: %s, want STALE", st)
	}
	// used: the packet goes to the old MAC and the entry is DELAY; 5 s
	// later PROBE, a unicast request a second, three, then FAILED
	if f, _ := tp.output(pkt, peer, nil, 42*s, &held); f == nil || [6]byte(f[:6]) != testPeerMAC {
		t.Fatalf("to a STALE neighbour: %x", f)
	}
	if st := neighState(tp, peer); st != "DELAY" {
		t.Fatalf("after a packet: %s", st)
	}
	for i, at := range []int64{47, 48, 49} {
		tp.tick(at*s, dev)
		w := dev.Take()
		if len(w) != 1 || [6]byte(w[0][:6]) != testPeerMAC || w[0][ethHeaderLen+7] != arpOpRequest || neighState(tp, peer) != "PROBE" {
			t.Fatalf("probe %d at %d s: %x, %s", i, at, w, neighState(tp, peer))
		}
		if f, _ := tp.output(pkt, peer, nil, at*s+1, &held); f == nil {
			t.Fatalf("a packet while probing waits")
		}
	}
	tp.tick(50*s, dev)
	if st := neighState(tp, peer); st != "FAILED" || len(dev.Take()) != 0 {
		t.Errorf("after three unicast probes: %s", st)
	}
	// resolved again; a reply while probing confirms it
	tp.output(pkt, peer, nil, 60*s, &held)
	tp.input(arpFrame(testOurMAC, arpOpReply, testPeerMAC, "10.10.2.2", "10.10.2.1", testOurMAC), 60*s, dev)
	tp.tick(91*s, dev)
	tp.output(pkt, peer, nil, 92*s, &held)
	tp.tick(97*s, dev)
	if st := neighState(tp, peer); st != "PROBE" {
		t.Fatalf("at 97 s: %s, want PROBE", st)
	}
	tp.input(arpFrame(testOurMAC, arpOpReply, testPeerMAC, "10.10.2.2", "10.10.2.1", testOurMAC), 97*s+1, dev)
	dev.Take()
	tp.tick(98*s, dev)
	if st := neighState(tp, peer); st != "REACHABLE" || len(dev.Take()) != 0 {
		t.Errorf("after a reply in PROBE: %s", st)
	}
}

// TestTapOutputNoAllocs: a packet to a resolved next hop is framed in
// its buffer's headroom without allocating.
func TestTapOutputNoAllocs(t *testing.T) {
	tp, dev := testTapPort(), linktest.New("tp")
	tp.input(arpFrame(broadcastMAC, arpOpRequest, testPeerMAC, "10.10.2.2", "10.10.2.1", [6]byte{}), 1, dev)
	own := make([]byte, ethHeaderLen+1500)
	n := copy(own[ethHeaderLen:], packet.Build(packet.Spec{Src: packet.MustAddr("10.10.1.2"), Dst: packet.MustAddr("10.10.2.2"), Proto: packet.ProtoTCP, SrcPort: 1, DstPort: 2}))
	b := own[ethHeaderLen : ethHeaderLen+n]
	held := make([]*frameBuf, 0, 8)
	nh := packet.MustAddr("10.10.2.2")
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

// TestWithTAP: the option makes the device an Ethernet port with the
// MAC and addresses given.
func TestWithTAP(t *testing.T) {
	d := &Datapath{byName: map[string]*port{"t0": {name: "t0", mtu: 1500}}}
	WithTAP("t0", testOurMAC, []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")})(d)
	WithTAP("nosuch", testOurMAC, nil)(d) // no such device: nothing
	if l2 := d.byName["t0"].l2; l2 == nil || l2.mac != testOurMAC || len(l2.addrs) != 1 {
		t.Errorf("tap port %+v", l2)
	}
}
