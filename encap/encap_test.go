package encap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/uswitch-lab/uswitch/packet"
)

func vxlanPacket(t testing.TB, vni uint32, csum bool, frame []byte) []byte {
	b := make([]byte, VXLANHeaders+len(frame))
	copy(b[VXLANHeaders:], frame)
	o := Outer{Src: packet.MustAddr("192.168.0.1"), Dst: packet.MustAddr("192.168.0.2"), TTL: 64, ID: 7}
	if _, err := PutVXLAN(b, o, 40000, PortIANA, vni, csum); err != nil {
		t.Fatal(err)
	}
	return b
}

func innerFrame() []byte {
	ip := packet.Build(packet.Spec{Src: packet.MustAddr("10.244.0.5"), Dst: packet.MustAddr("10.244.1.5"), Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2, Payload: []byte("hi")})
	f := make([]byte, 14+len(ip))
	copy(f[0:6], []byte{0x66, 0x6b, 0, 0, 0, 0x0b})
	copy(f[6:12], []byte{0x66, 0x6b, 0, 0, 0, 0x0a})
	f[12], f[13] = 0x08, 0x00
	copy(f[14:], ip)
	return f
}

// TestVXLANRoundTrip: what PutVXLAN builds parses back to its VNI and
// frame, with a valid IPv4 header and UDP checksum; a zero checksum is
// accepted; every refusal of ParseVXLAN is its kernel drop.
func TestVXLANRoundTrip(t *testing.T) {
	f := innerFrame()
	for _, csum := range []bool{true, false} {
		b := vxlanPacket(t, 4096, csum, f)
		p := packet.Packet{Data: b}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		if p.DstPort != PortIANA || p.SrcPort != 40000 || int(p.IP.TotalLen()) != len(b) {
			t.Fatalf("outer %+v", p)
		}
		if got := binary.BigEndian.Uint16(b[26:28]) != 0; got != csum {
			t.Fatalf("csum %v: checksum field %#x", csum, b[26:28])
		}
		v, err := ParseVXLAN(b, PortIANA)
		if err != nil || v.VNI != 4096 || !bytes.Equal(v.Frame, f) || v.SrcPort != 40000 {
			t.Fatalf("csum %v: %+v %v", csum, v, err)
		}
	}
	b := vxlanPacket(t, 1, true, f)
	bad := func(name string, mut func([]byte) []byte, want error) {
		t.Helper()
		c := mut(append([]byte(nil), b...))
		if _, err := ParseVXLAN(c, PortIANA); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	bad("other port", func(c []byte) []byte { return c }, nil)
	if _, err := ParseVXLAN(b, PortLinux); !errors.Is(err, ErrPort) {
		t.Errorf("port 8472: %v", err)
	}
	bad("bad checksum", func(c []byte) []byte { c[len(c)-1] ^= 1; return c }, ErrChecksum)
	bad("no I flag", func(c []byte) []byte { c[28] = 0; return fixCsum(c) }, ErrFlags)
	bad("reserved flag bit", func(c []byte) []byte { c[28] |= 0x80; return fixCsum(c) }, ErrFlags)
	bad("reserved VNI byte", func(c []byte) []byte { c[35] = 1; return fixCsum(c) }, ErrFlags)
	bad("fragment", func(c []byte) []byte { c[6] |= 0x20; return c }, ErrFragment)
	bad("truncated", func(c []byte) []byte { return c[:40] }, ErrShort)
	bad("not udp", func(c []byte) []byte { c[9] = 6; return c }, ErrNotUDP)
}

// fixCsum recomputes the UDP checksum of a VXLAN packet.
func fixCsum(c []byte) []byte {
	c[26], c[27] = 0, 0
	ul := binary.BigEndian.Uint16(c[24:26])
	s := ^packet.Checksum(c[20:20+int(ul)], packet.PseudoHeaderSum(binary.BigEndian.Uint32(c[12:16]), binary.BigEndian.Uint32(c[16:20]), packet.ProtoUDP, ul))
	if s == 0 {
		s = 0xffff
	}
	binary.BigEndian.PutUint16(c[26:28], s)
	return c
}

// TestSrcPort: udp_flow_src_port's mapping stays in [min, max), covers
// the range, and min >= max means the local port range.
func TestSrcPort(t *testing.T) {
	if p := SrcPort(0, 0, 0); p != LocalPortMin {
		t.Errorf("hash 0: %d", p)
	}
	if p := SrcPort(0xffffffff, 0, 0); p < LocalPortMin || p >= LocalPortMax {
		t.Errorf("hash max: %d", p)
	}
	// the kernel's arithmetic for one value: hash ^= hash << 16, then
	// (hash * (max - min)) >> 32 + min
	h := uint32(0x12345678)
	x := h ^ h<<16
	if want := uint16(uint64(x)*uint64(2000-1000)>>32 + 1000); SrcPort(h, 1000, 2000) != want {
		t.Errorf("SrcPort(%#x, 1000, 2000) = %d, want %d", h, SrcPort(h, 1000, 2000), want)
	}
	seen := map[uint16]bool{}
	for i := uint32(0); i < 5000; i++ {
		f := innerFrame()
		binary.BigEndian.PutUint16(f[14+20:], uint16(i)) // the inner source port
		p := SrcPort(FlowHash(f[14:], f, 1), 0, 0)
		if p < LocalPortMin || p >= LocalPortMax {
			t.Fatalf("port %d", p)
		}
		seen[p] = true
	}
	if len(seen) < 4000 {
		t.Errorf("5000 flows took only %d source ports", len(seen))
	}
	f := innerFrame()
	if FlowHash(f[14:], f, 1) != FlowHash(f[14:], f, 1) {
		t.Error("one flow, two hashes")
	}
}

// TestECN: INET_ECN_encapsulate and _decapsulate.
func TestECN(t *testing.T) {
	for _, c := range []struct{ tos, inner, want uint8 }{{0, 0, 0}, {0, 1, 1}, {0, 2, 2}, {0, 3, 2}, {0x10, 3, 0x12}, {0x13, 0, 0x10}} {
		if got := ECNEncap(c.tos, c.inner); got != c.want {
			t.Errorf("ECNEncap(%#x, %#x) = %#x, want %#x", c.tos, c.inner, got, c.want)
		}
	}
	ip := packet.Build(packet.Spec{Src: 1, Dst: 2, Proto: packet.ProtoUDP, TOS: 0x02})
	if ECNDecap(3, ip) || ip[1] != 3 || packet.Checksum(ip[:20], 0) != 0xffff {
		t.Errorf("CE onto ECT(0): tos %#x, header checksum ok %v", ip[1], packet.Checksum(ip[:20], 0) == 0xffff)
	}
	ip = packet.Build(packet.Spec{Src: 1, Dst: 2, Proto: packet.ProtoUDP})
	if !ECNDecap(3, ip) {
		t.Error("CE onto not-ECT is not dropped")
	}
	if ECNDecap(2, ip) || ip[1] != 0 {
		t.Error("ECT(0) outer changed a not-ECT inner")
	}
}

// TestFDB: static entries, the all-zeros default (flooded to each of
// its remotes), learning and moves (static ones drop), ageing.
func TestFDB(t *testing.T) {
	m1, _ := packet.ParseMAC("66:00:00:00:00:01")
	m2, _ := packet.ParseMAC("66:00:00:00:00:02")
	e1, err := ParseFDBEntry("66:00:00:00:00:01 dst 192.168.0.2")
	if err != nil {
		t.Fatal(err)
	}
	z1, _ := ParseFDBEntry("00:00:00:00:00:00 dst 192.168.0.3")
	z2, _ := ParseFDBEntry("00:00:00:00:00:00 dst 192.168.0.4 port 8472 vni 7")
	f := NewFDB([]FDBEntry{e1, z1, z2}, true, 300e9, PortIANA, 4096)
	if r := f.Lookup(m1, 1, nil); len(r) != 1 || r[0] != (Remote{Dst: packet.MustAddr("192.168.0.2"), Port: PortIANA, VNI: 4096}) {
		t.Errorf("static: %+v", r)
	}
	if r := f.Lookup(packet.Broadcast, 1, nil); len(r) != 2 || r[1] != (Remote{Dst: packet.MustAddr("192.168.0.4"), Port: 8472, VNI: 7}) {
		t.Errorf("default: %+v", r)
	}
	if f.Snoop(m2, packet.MustAddr("192.168.0.9"), 5) {
		t.Error("learning a new MAC dropped the frame")
	}
	if r := f.Lookup(m2, 6, nil); len(r) != 1 || r[0].Dst != packet.MustAddr("192.168.0.9") {
		t.Errorf("learned: %+v", r)
	}
	if !f.Snoop(m1, packet.MustAddr("192.168.0.9"), 7) {
		t.Error("a static MAC that moved was not dropped")
	}
	f.Expire(6 + 300e9)
	if r := f.Lookup(m2, 1, nil); len(r) != 2 {
		t.Errorf("after ageing the MAC goes to the default: %+v", r)
	}
	if len(f.Entries()) != 3 {
		t.Errorf("entries %+v", f.Entries())
	}
	for _, s := range []string{"", "66:00:00:00:00:01", "66:00:00:00:00:01 dst", "zz dst 1.2.3.4", "66:00:00:00:00:01 dst ::1",
		"66:00:00:00:00:01 dst 1.2.3.4 vni 16777216", "01:00:5e:00:00:01 dst 1.2.3.4", "66:00:00:00:00:01 via 1.2.3.4"} {
		if _, err := ParseFDBEntry(s); err == nil {
			t.Errorf("ParseFDBEntry(%q) took it", s)
		}
	}
	for _, s := range []string{"", "10.0.0.1", "10.0.0.1 lladdr", "10.0.0.1 mac 66:00:00:00:00:01", "::1 lladdr 66:00:00:00:00:01", "10.0.0.1 lladdr ff:ff:ff:ff:ff:ff"} {
		if _, err := ParseNeigh(s); err == nil {
			t.Errorf("ParseNeigh(%q) took it", s)
		}
	}
	if n, err := ParseNeigh("10.244.1.0 lladdr 66:6b:00:00:00:02"); err != nil || n.IP != netip.MustParseAddr("10.244.1.0") {
		t.Errorf("%+v %v", n, err)
	}
}

// TestIPIP: PutIPIP and ParseIPIP.
func TestIPIP(t *testing.T) {
	in := packet.Build(packet.Spec{Src: 1, Dst: 2, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	b := make([]byte, IPIPOverhead+len(in))
	copy(b[IPIPOverhead:], in)
	if _, err := PutIPIP(b, Outer{Src: 3, Dst: 4, TTL: 64, DF: true}); err != nil {
		t.Fatal(err)
	}
	p := packet.Packet{Data: b}
	if err := p.Decode(); err != nil || p.Proto != ProtoIPIP || !p.IP.DF() {
		t.Fatalf("%v %+v", err, p)
	}
	got, err := ParseIPIP(b)
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("%v", err)
	}
	b[IPIPOverhead] = 0x65
	if _, err := ParseIPIP(b); !errors.Is(err, ErrInner) {
		t.Errorf("IPv6-looking inner: %v", err)
	}
}

// FuzzParseVXLAN: never panics; what it accepts lies inside the packet,
// and a frame it returns, put back in a new packet, parses to itself.
func FuzzParseVXLAN(f *testing.F) {
	fr := innerFrame()
	f.Add(vxlanPacket(f, 4096, true, fr), uint16(PortIANA))
	f.Add(vxlanPacket(f, 1, false, fr), uint16(PortIANA))
	f.Add(vxlanPacket(f, 1, false, fr[:14]), uint16(PortLinux))
	f.Add([]byte{0x45}, uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		v, err := ParseVXLAN(b, port)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Off < 0 || pe.Off > len(b) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(v.Frame) < 14 || v.VNI >= 1<<24 {
			t.Fatalf("accepted %+v", v)
		}
		again := vxlanPacket(t, v.VNI, true, v.Frame)
		w, err := ParseVXLAN(again, PortIANA)
		if err != nil || w.VNI != v.VNI || !bytes.Equal(w.Frame, v.Frame) {
			t.Fatalf("round trip: %v %+v", err, w)
		}
	})
}

// FuzzParseIPIP: never panics; an accepted inner packet is a suffix of
// the outer's payload starting as IPv4.
func FuzzParseIPIP(f *testing.F) {
	in := packet.Build(packet.Spec{Src: 1, Dst: 2, Proto: packet.ProtoUDP, SrcPort: 1, DstPort: 2})
	b := make([]byte, IPIPOverhead+len(in))
	copy(b[IPIPOverhead:], in)
	PutIPIP(b, Outer{Src: 3, Dst: 4, TTL: 64})
	f.Add(b)
	f.Add([]byte{0x46, 0, 0, 24})
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := ParseIPIP(b)
		if err != nil {
			return
		}
		if len(in) < 20 || in[0]>>4 != 4 || len(in) > len(b)-20 {
			t.Fatalf("accepted %x", in)
		}
	})
}
