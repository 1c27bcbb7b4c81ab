package link

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

func TestVnetHdrRoundTrip(t *testing.T) {
	h := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4 | vnetGSOECN, hdrLen: 52, gsoSize: 1448, csumStart: 20, csumOffset: 16}
	var b [vnetHdrLen]byte
	h.encode(b[:])
	// struct virtio_net_hdr: u8 flags, u8 gso_type, then host-order u16s
	want := []byte{1, 0x81}
	want = binary.NativeEndian.AppendUint16(want, 52)
	want = binary.NativeEndian.AppendUint16(want, 1448)
	want = binary.NativeEndian.AppendUint16(want, 20)
	want = binary.NativeEndian.AppendUint16(want, 16)
	if !bytes.Equal(b[:], want) {
		t.Fatalf("encode = %x, want %x", b, want)
	}
	var g vnetHdr
	g.decode(b[:])
	if g != h {
		t.Fatalf("decode = %+v, want %+v", g, h)
	}
}

const (
	tSrc = 0x0a0a0102
	tDst = 0x0a0a0202
)

// superTCP is a TSO super-packet as a namespace's kernel hands it to a
// TUN: headers of the first segment with the whole length, TCP options
// (timestamps), and the pseudo-header sum in the checksum field
// (CHECKSUM_PARTIAL), with its virtio header.
func superTCP(payload int, seq uint32, id uint16, flags uint8, mss int) (vnetHdr, []byte) {
	const doff = 32
	b := make([]byte, 20+doff+payload)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], 0x4000)
	b[8], b[9] = 64, packet.ProtoTCP
	binary.BigEndian.PutUint32(b[12:], tSrc)
	binary.BigEndian.PutUint32(b[16:], tDst)
	packet.IPv4(b).SetChecksum()
	th := b[20:]
	binary.BigEndian.PutUint16(th[0:], 40000)
	binary.BigEndian.PutUint16(th[2:], 9001)
	binary.BigEndian.PutUint32(th[4:], seq)
	binary.BigEndian.PutUint32(th[8:], 0x01020304)
	th[12] = doff / 4 << 4
	th[13] = flags
	binary.BigEndian.PutUint16(th[14:], 502)
	copy(th[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}) // NOP NOP TS
	for i := range payload {
		th[doff+i] = byte(i*7 + i>>8)
	}
	sum := packet.PseudoHeaderSum(tSrc, tDst, packet.ProtoTCP, uint16(len(th)))
	binary.BigEndian.PutUint16(th[16:], packet.Checksum(nil, sum))
	return vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 20 + doff, gsoSize: uint16(mss),
		csumStart: 20, csumOffset: 16}, b
}

// refSegments cuts a TCP super-packet the plain way, each segment
// built and summed on its own with the packet package.
func refSegments(super []byte, mss int) [][]byte {
	hl := 20 + int(super[32]>>4)*4
	pay := super[hl:]
	var out [][]byte
	for k, off := 0, 0; off < len(pay) || k == 0; k, off = k+1, off+mss {
		end := min(off+mss, len(pay))
		s := append(append([]byte(nil), super[:hl]...), pay[off:end]...)
		binary.BigEndian.PutUint16(s[2:], uint16(len(s)))
		binary.BigEndian.PutUint16(s[4:], binary.BigEndian.Uint16(super[4:])+uint16(k))
		packet.IPv4(s).SetChecksum()
		binary.BigEndian.PutUint32(s[24:], binary.BigEndian.Uint32(super[24:])+uint32(off))
		if k > 0 {
			s[33] &^= tcpCWR
		}
		if end < len(pay) {
			s[33] &^= tcpFIN | tcpPSH
		}
		s[36], s[37] = 0, 0
		l4 := s[20:]
		binary.BigEndian.PutUint16(s[36:], ^packet.Checksum(l4, packet.PseudoHeaderSum(tSrc, tDst, packet.ProtoTCP, uint16(len(l4)))))
		out = append(out, s)
		if end == len(pay) {
			break
		}
	}
	return out
}

func cutAll(t *testing.T, h vnetHdr, super []byte) [][]byte {
	t.Helper()
	var g gsoPacket
	if !g.init(&h, super) {
		t.Fatal("init refused the super-packet")
	}
	var out [][]byte
	for g.pending() > 0 {
		buf := make([]byte, 1514)
		n, ok := g.cut(buf)
		if !ok {
			t.Fatal("segment does not fit")
		}
		out = append(out, buf[:n])
	}
	return out
}

func checkValid(t *testing.T, segs [][]byte) {
	t.Helper()
	for i, s := range segs {
		p := packet.Packet{Data: s}
		if err := p.Decode(); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if !p.TransportChecksumOK() {
			t.Fatalf("segment %d: bad transport checksum", i)
		}
	}
}

func TestSegmentTCP(t *testing.T) {
	const mss = 1448
	h, super := superTCP(65535-52, 0xffffff00, 0xfff0, tcpACK|tcpPSH|tcpFIN|tcpCWR, mss)
	orig := append([]byte(nil), super...)
	got := cutAll(t, h, super)
	want := refSegments(orig, mss)
	if len(got) != len(want) || len(got) != (65535-52+mss-1)/mss {
		t.Fatalf("%d segments, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("segment %d:\n got %x\nwant %x", i, got[i][:60], want[i][:60])
		}
	}
	checkValid(t, got)
	last := got[len(got)-1]
	if last[33] != tcpACK|tcpPSH|tcpFIN || got[0][33] != tcpACK|tcpCWR || got[1][33] != tcpACK {
		t.Fatalf("flags: first %#x, second %#x, last %#x", got[0][33], got[1][33], last[33])
	}
	if !bytes.Equal(super, orig) {
		t.Fatal("cutting changed the super-packet")
	}
}

func TestSegmentUDP(t *testing.T) {
	const mss = 1000
	pay := make([]byte, 4500)
	for i := range pay {
		pay[i] = byte(i)
	}
	b := packet.Build(packet.Spec{Src: tSrc, Dst: tDst, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, ID: 7, Payload: pay})
	// partial checksum: the pseudo-header's sum over the whole
	binary.BigEndian.PutUint16(b[26:], packet.Checksum(nil, packet.PseudoHeaderSum(tSrc, tDst, packet.ProtoUDP, uint16(len(b)-20))))
	h := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOUDPL4, gsoSize: mss, csumStart: 20, csumOffset: 6}
	got := cutAll(t, h, b)
	if len(got) != 5 {
		t.Fatalf("%d segments, want 5", len(got))
	}
	checkValid(t, got)
	for i, s := range got {
		want := packet.Build(packet.Spec{Src: tSrc, Dst: tDst, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, ID: 7 + uint16(i),
			Payload: pay[i*mss : min(len(pay), (i+1)*mss)]})
		if !bytes.Equal(s, want) {
			t.Fatalf("segment %d:\n got %x\nwant %x", i, s[:40], want[:40])
		}
	}
}

func TestSegmentMalformed(t *testing.T) {
	h, super := superTCP(3000, 1, 1, tcpACK, 1448)
	var g gsoPacket
	for name, f := range map[string]func(h *vnetHdr, b []byte) []byte{
		"short":     func(h *vnetHdr, b []byte) []byte { return b[:30] },
		"ipv6":      func(h *vnetHdr, b []byte) []byte { b[0] = 0x60; return b },
		"ihl":       func(h *vnetHdr, b []byte) []byte { b[0] = 0x4f; return b[:50] },
		"doff":      func(h *vnetHdr, b []byte) []byte { b[32] = 0xf0; return b[:70] },
		"fragment":  func(h *vnetHdr, b []byte) []byte { b[7] = 1; return b },
		"proto":     func(h *vnetHdr, b []byte) []byte { b[9] = packet.ProtoUDP; return b },
		"gso_size":  func(h *vnetHdr, b []byte) []byte { h.gsoSize = 0; return b },
		"gso_type6": func(h *vnetHdr, b []byte) []byte { h.gsoType = vnetGSOTCPv6; return b },
	} {
		hh, b := h, append([]byte(nil), super...)
		b = f(&hh, b)
		if g.init(&hh, b) {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCompleteChecksum(t *testing.T) {
	b := packet.Build(packet.Spec{Src: tSrc, Dst: tDst, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, Payload: []byte("hello, world")})
	want := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(b[26:], packet.Checksum(nil, packet.PseudoHeaderSum(tSrc, tDst, packet.ProtoUDP, uint16(len(b)-20))))
	h := vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 20, csumOffset: 6}
	if !completeChecksum(&h, b) || !bytes.Equal(b, want) {
		t.Fatalf("got %x, want %x", b, want)
	}
	h.csumOffset = 100
	if completeChecksum(&h, b) {
		t.Fatal("offset outside the packet accepted")
	}
}

// flatten is what a writev of the unit's iovecs puts on the wire.
func flatten(iov [][]byte) []byte {
	var b []byte
	for _, v := range iov {
		b = append(b, v...)
	}
	return b
}

// readBack parses a written unit as the receiving kernel would and
// cuts it again: the packets it stands for.
func readBack(t *testing.T, w []byte) [][]byte {
	t.Helper()
	var h vnetHdr
	h.decode(w)
	pkt := w[vnetHdrLen:]
	if h.gsoType == vnetGSONone {
		if h != (vnetHdr{}) {
			t.Fatalf("single packet with header %+v", h)
		}
		return [][]byte{pkt}
	}
	// the partial checksum completes to the right one
	c := append([]byte(nil), pkt...)
	if !completeChecksum(&h, c) {
		t.Fatal("bad checksum offsets")
	}
	p := packet.Packet{Data: c}
	if p.Decode() != nil || !p.TransportChecksumOK() {
		t.Fatal("coalesced packet's partial checksum does not complete to a valid one")
	}
	switch h.gsoType {
	case vnetGSOUDPL4:
		if h.hdrLen != 28 || h.csumStart != 20 || h.csumOffset != 6 || h.flags != vnetFlagNeedsCsum {
			t.Fatalf("header %+v", h)
		}
	default:
		if int(h.hdrLen) != 20+int(pkt[32]>>4)*4 || h.csumStart != 20 || h.csumOffset != 16 || h.flags != vnetFlagNeedsCsum {
			t.Fatalf("header %+v", h)
		}
	}
	return cutAll(t, h, pkt)
}

func TestCoalesceRoundTrip(t *testing.T) {
	const mss = 1448
	h1, s1 := superTCP(40000, 1000, 50, tcpACK|tcpPSH, mss)
	a := cutAll(t, h1, s1)
	h2, s2 := superTCP(10000, 7777, 9, tcpACK, mss)
	s2[23] = 0x03 // another source port: another flow
	packet.IPv4(s2).SetChecksum()
	b := cutAll(t, h2, s2)
	ack := packet.Build(packet.Spec{Src: tDst, Dst: tSrc, Proto: packet.ProtoTCP, SrcPort: 9001, DstPort: 40000, TCPFlags: tcpACK})
	// interleave: a's and b's segments alternate, an ACK in between
	var in [][]byte
	for i := range max(len(a), len(b)) {
		if i < len(a) {
			in = append(in, a[i])
		}
		if i < len(b) {
			in = append(in, b[i])
		}
		if i == 3 {
			in = append(in, ack)
		}
	}
	orig := make([][]byte, len(in))
	for i, p := range in {
		orig[i] = append([]byte(nil), p...)
	}
	var g groBatch
	g.coalesce(in, true, true)
	if len(g.units) != 3 {
		t.Fatalf("%d units, want 3 (flow a, flow b, the ACK)", len(g.units))
	}
	var out [][]byte
	for u := range g.units {
		out = append(out, readBack(t, flatten(g.build(u, in, nil)))...)
	}
	// per flow, the same packets in the same order
	key := func(p []byte) string { return string(p[12:24]) }
	perFlow := func(ps [][]byte) map[string][][]byte {
		m := map[string][][]byte{}
		for _, p := range ps {
			m[key(p)] = append(m[key(p)], p)
		}
		return m
	}
	want, got := perFlow(orig), perFlow(out)
	if len(want) != len(got) {
		t.Fatalf("%d flows out, want %d", len(got), len(want))
	}
	for k, w := range want {
		if len(got[k]) != len(w) {
			t.Fatalf("flow: %d packets out, want %d", len(got[k]), len(w))
		}
		for i := range w {
			if !bytes.Equal(got[k][i], w[i]) {
				t.Fatalf("packet %d:\n got %x\nwant %x", i, got[k][i][:60], w[i][:60])
			}
		}
	}
}

// TestCoalesceUDP: the datagrams of a UDP flow become one UDP_L4
// super-packet whose cutting gives them back; another flow's in
// between, a datagram without checksum, and udp off are left alone.
func TestCoalesceUDP(t *testing.T) {
	dgram := func(sport uint16, id uint16, n int) []byte {
		pay := make([]byte, n)
		for i := range pay {
			pay[i] = byte(int(id)*3 + i)
		}
		return packet.Build(packet.Spec{Src: tSrc, Dst: tDst, Proto: packet.ProtoUDP, SrcPort: sport, DstPort: 9000, ID: id, DF: true, Payload: pay})
	}
	var in [][]byte
	for i := range 80 {
		n := 36
		if i == 79 {
			n = 20 // a shorter last one still joins
		}
		in = append(in, dgram(40000, uint16(100+i), n))
		if i%10 == 0 {
			in = append(in, dgram(40001, uint16(7+i), 36))
		}
	}
	nock := dgram(40002, 1, 36)
	nock[26], nock[27] = 0, 0
	in = append(in, nock)
	orig := make([][]byte, len(in))
	for i, p := range in {
		orig[i] = append([]byte(nil), p...)
	}
	var g groBatch
	g.coalesce(in, true, true)
	// flow 40000: 80 datagrams in units of at most 64; flow 40001: its
	// IDs jump, so alone each; the one without checksum alone
	want := 2 + 8 + 1
	if len(g.units) != want {
		t.Fatalf("%d units, want %d", len(g.units), want)
	}
	var out [][]byte
	for u := range g.units {
		out = append(out, readBack(t, flatten(g.build(u, in, nil)))...)
	}
	if len(out) != len(orig) {
		t.Fatalf("%d datagrams back, want %d", len(out), len(orig))
	}
	perFlow := func(ps [][]byte) map[string][][]byte {
		m := map[string][][]byte{}
		for _, p := range ps {
			m[string(p[12:24])] = append(m[string(p[12:24])], p)
		}
		return m
	}
	w, o := perFlow(orig), perFlow(out)
	for k := range w {
		for i := range w[k] {
			if !bytes.Equal(w[k][i], o[k][i]) {
				t.Fatalf("datagram %d of a flow:\n got %x\nwant %x", i, o[k][i], w[k][i])
			}
		}
	}
	g.coalesce(orig, true, false)
	if len(g.units) != len(orig) {
		t.Fatalf("udp off: %d units for %d datagrams", len(g.units), len(orig))
	}
}

// TestCoalesceBreaks: what must not be merged starts a new unit.
func TestCoalesceBreaks(t *testing.T) {
	h, s := superTCP(5*1448, 1, 1, tcpACK, 1448)
	for name, tc := range map[string]struct {
		f     func(p []byte)
		units int
	}{
		"none":     {func(p []byte) {}, 1},
		"id gap":   {func(p []byte) { p[4]++ }, 2},
		"seq gap":  {func(p []byte) { p[27]++ }, 2},
		"window":   {func(p []byte) { p[35]++ }, 2},
		"ack":      {func(p []byte) { p[31]++ }, 2},
		"ttl":      {func(p []byte) { p[8]-- }, 2},
		"option":   {func(p []byte) { p[51]++ }, 2},
		"syn":      {func(p []byte) { p[33] |= tcpSYN }, 4},
		"cwr":      {func(p []byte) { p[33] |= tcpCWR }, 4},
		"ece":      {func(p []byte) { p[33] |= tcpECE }, 2},
		"psh ends": {func(p []byte) { p[33] |= tcpPSH }, 3},
	} {
		segs := cutAll(t, h, append([]byte(nil), s...))
		for _, p := range segs[2:] { // the change from the third on
			tc.f(p)
		}
		var g groBatch
		g.coalesce(segs, true, true)
		if len(g.units) != tc.units {
			t.Errorf("%s: %d units, want %d", name, len(g.units), tc.units)
		}
	}
	// without merging, every packet alone with a zero header
	segs := cutAll(t, h, append([]byte(nil), s...))
	var g groBatch
	g.coalesce(segs, false, false)
	if len(g.units) != len(segs) {
		t.Fatalf("merge off: %d units for %d packets", len(g.units), len(segs))
	}
}

func TestOffloadNoAllocs(t *testing.T) {
	h, s := superTCP(65535-52, 5, 5, tcpACK, 1448)
	var g gsoPacket
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 1514)
	}
	pkts := make([][]byte, 0, 64)
	var gb groBatch
	var iov [][]byte
	run := func() {
		g.init(&h, s)
		pkts = pkts[:0]
		for i := 0; g.pending() > 0; i++ {
			n, _ := g.cut(bufs[i])
			pkts = append(pkts, bufs[i][:n])
		}
		gb.coalesce(pkts, true, true)
		for u := range gb.units {
			iov = gb.build(u, pkts, iov[:0])
		}
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocations per super-packet, want 0", n)
	}
	if len(gb.units) != 1 {
		t.Fatalf("%d units, want 1", len(gb.units))
	}
}

func BenchmarkSegmentCoalesce(b *testing.B) {
	h, s := superTCP(65535-52, 5, 5, tcpACK, 1448)
	var g gsoPacket
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 1514)
	}
	pkts := make([][]byte, 0, 64)
	var gb groBatch
	var iov [][]byte
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		g.init(&h, s)
		pkts = pkts[:0]
		for i := 0; g.pending() > 0; i++ {
			n, _ := g.cut(bufs[i])
			pkts = append(pkts, bufs[i][:n])
		}
		gb.coalesce(pkts, true, true)
		for u := range gb.units {
			iov = gb.build(u, pkts, iov[:0])
		}
	}
}

// FuzzOffload: whatever a device returns, cutting it never panics and
// every segment fits the size it announced; whatever the engine hands
// Write, coalescing never panics and loses no packet.
func FuzzOffload(f *testing.F) {
	h, s := superTCP(5000, 1, 1, tcpACK|tcpPSH, 1448)
	var hb [vnetHdrLen]byte
	h.encode(hb[:])
	f.Add(append(hb[:], s...))
	hu := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOUDPL4, gsoSize: 100, csumStart: 20, csumOffset: 6}
	hu.encode(hb[:])
	f.Add(append(hb[:], packet.Build(packet.Spec{Src: 1, Dst: 2, Proto: packet.ProtoUDP, Payload: make([]byte, 500)})...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < vnetHdrLen {
			return
		}
		var h vnetHdr
		h.decode(b)
		pkt := b[vnetHdrLen:]
		var segs [][]byte
		var g gsoPacket
		if g.init(&h, pkt) {
			out := make([]byte, 1<<16)
			for g.pending() > 0 {
				n, ok := g.cut(out)
				if !ok || n > g.hlen+g.mss {
					t.Fatalf("segment of %d bytes (ok %v), headers %d, mss %d", n, ok, g.hlen, g.mss)
				}
				if len(segs) < 256 {
					segs = append(segs, append([]byte(nil), out[:n]...))
				}
			}
		} else if h.flags&vnetFlagNeedsCsum != 0 {
			completeChecksum(&h, append([]byte(nil), pkt...))
		}
		segs = append(segs, pkt)
		var gb groBatch
		gb.coalesce(segs, true, true)
		total := 0
		for u := range gb.units {
			total += gb.units[u].n
			gb.build(u, segs, nil)
		}
		if total != len(segs) {
			t.Fatalf("%d packets in units, want %d", total, len(segs))
		}
	})
}
