package packet

import (
	"math/rand/v2"
	"testing"
)

func TestBuildDecode(t *testing.T) {
	for _, s := range []Spec{
		{Src: 0x0a000001, Dst: 0x0a000002, Proto: ProtoTCP, SrcPort: 1234, DstPort: 80, TCPFlags: TCPSyn, DF: true, Payload: []byte("hello")},
		{Src: 0xc0a80101, Dst: 0x08080808, Proto: ProtoUDP, SrcPort: 5353, DstPort: 53, Payload: []byte("q")},
		{Src: 1, Dst: 2, Proto: ProtoICMP, ICMPType: ICMPEcho, ICMPID: 77, ICMPSeq: 1},
		{Src: 1, Dst: 2, Proto: 47, Payload: []byte{1, 2, 3}},
	} {
		p := &Packet{Data: Build(s)}
		if err := p.Decode(); err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		if p.Src != s.Src || p.Dst != s.Dst || p.Proto != s.Proto || p.SrcPort != s.SrcPort || p.DstPort != s.DstPort {
			t.Errorf("decoded %+v from %+v", p, s)
		}
		if !p.TransportChecksumOK() {
			t.Errorf("%+v: bad transport checksum", s)
		}
	}
}

// TestIncrementalChecksums rewrites addresses and ports at random and
// checks every checksum against a full recomputation.
func TestIncrementalChecksums(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		proto := []uint8{ProtoTCP, ProtoUDP, ProtoICMP}[i%3]
		payload := make([]byte, r.IntN(40))
		for j := range payload {
			payload[j] = byte(r.Uint32())
		}
		s := Spec{Src: r.Uint32(), Dst: r.Uint32(), Proto: proto, SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()),
			ICMPType: ICMPEcho, ICMPID: uint16(r.Uint32()), TTL: uint8(r.Uint32()), Payload: payload}
		p := &Packet{Data: Build(s)}
		if err := p.Decode(); err != nil {
			t.Fatal(err)
		}
		p.SetSrc(r.Uint32())
		p.SetDst(r.Uint32())
		p.SetSrcPort(uint16(r.Uint32()))
		p.SetDstPort(uint16(r.Uint32()))
		p.SetTTL(uint8(r.Uint32()))
		p.SetTOS(uint8(r.Uint32()))
		if p.IP.CalculateChecksum() != 0 && ^Checksum(p.IP[:p.IP.HeaderLen()], 0) != 0 {
			t.Fatalf("IPv4 checksum wrong after rewrite")
		}
		q := &Packet{Data: p.Data}
		if err := q.Decode(); err != nil {
			t.Fatalf("rewritten packet does not decode: %v", err)
		}
		if !q.TransportChecksumOK() {
			t.Fatalf("transport checksum wrong after rewrite (proto %d)", proto)
		}
		if q.Src != p.Src || q.Dst != p.Dst || q.SrcPort != p.SrcPort || q.DstPort != p.DstPort {
			t.Fatalf("fields out of sync after rewrite")
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := Build(Spec{Src: 1, Dst: 2, Proto: ProtoUDP, SrcPort: 1, DstPort: 2})
	bad := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"short":    good[:10],
		"version":  bad(func(b []byte) []byte { b[0] = 0x65; return b }),
		"ihl":      bad(func(b []byte) []byte { b[0] = 0x44; return b }),
		"totallen": bad(func(b []byte) []byte { b[3] = 200; IPv4(b).SetChecksum(); return b }),
		"checksum": bad(func(b []byte) []byte { b[10] ^= 1; return b }),
	} {
		p := &Packet{Data: b}
		if err := p.Decode(); err == nil {
			t.Errorf("%s: decoded", name)
		} else if _, ok := err.(*DecodeError); !ok {
			t.Errorf("%s: %T", name, err)
		}
	}
}

func TestRewriteAllocs(t *testing.T) {
	p := &Packet{Data: Build(Spec{Src: 1, Dst: 2, Proto: ProtoTCP, SrcPort: 1, DstPort: 2})}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(1000, func() {
		p.Decode()
		p.SetDst(p.Dst + 1)
		p.SetDstPort(p.DstPort + 1)
	})
	if n != 0 {
		t.Fatalf("decode+rewrite allocates %v times", n)
	}
}

// FuzzDecode: no input makes Decode panic, and a decoded packet's views
// stay within the buffer.
func FuzzDecode(f *testing.F) {
	f.Add(Build(Spec{Src: 1, Dst: 2, Proto: ProtoTCP, SrcPort: 1, DstPort: 2, TCPFlags: TCPSyn}))
	f.Add(Build(Spec{Src: 1, Dst: 2, Proto: ProtoICMP, ICMPType: 3, Payload: make([]byte, 28)}))
	f.Add([]byte{0x45, 0, 0, 20})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &Packet{Data: b}
		if p.Decode() != nil {
			return
		}
		_ = p.IP.Options()
		_ = p.IP.Payload()
		// the one-pass NAT rewrite writes what its steps write
		sameAddrPort(t, p, len(b)%2 == 0, p.Src^uint32(len(b)), p.SrcPort^uint16(len(b)>>1))
		if p.HasL4 {
			p.SetSrcPort(p.SrcPort ^ 1)
			p.SetSrc(p.Src ^ 1)
			p.SetDst(p.Dst ^ 1)
		}
		p.TransportChecksumOK()
	})
}

func TestFrame(t *testing.T) {
	ip := Build(Spec{Src: 1, Dst: 2, Proto: ProtoUDP, SrcPort: 1, DstPort: 2})
	src := MAC{2, 0, 0, 0, 0, 1}
	b := BuildFrame(Broadcast, src, EtherTypeIPv4, ip)
	f := Frame{Data: b}
	if err := f.Decode(); err != nil || f.Dst != Broadcast || f.Src != src || f.InnerProto != EtherTypeIPv4 || len(f.Payload) != len(ip) || f.VLAN {
		t.Fatalf("%v %+v", err, f)
	}
	tagged := append(append(append([]byte(nil), b[:12]...), 0x81, 0x00, 0x20, 0x05), b[12:]...)
	f = Frame{Data: tagged}
	if err := f.Decode(); err != nil || !f.VLAN || f.VLANID() != 5 || f.VLANPrio() != 1 || f.InnerProto != EtherTypeIPv4 || f.HeaderLen() != 18 {
		t.Fatalf("tagged: %v %+v", err, f)
	}
	for _, n := range []int{0, 13, 15, 17} {
		f = Frame{Data: tagged[:n]}
		if n >= 14 && n < 18 {
			if f.Decode() == nil {
				t.Errorf("%d bytes of a tagged frame decoded", n)
			}
		} else if f.Decode() == nil {
			t.Errorf("%d bytes decoded", n)
		}
	}
	if m, err := ParseMAC("2:0:0:0:0:a"); err != nil || m != (MAC{2, 0, 0, 0, 0, 10}) || m.String() != "02:00:00:00:00:0a" {
		t.Errorf("ParseMAC: %v %v", m, err)
	}
	for _, s := range []string{"", "1:2:3:4:5", "1:2:3:4:5:6:7", "001:2:3:4:5:6", "g:0:0:0:0:0"} {
		if _, err := ParseMAC(s); err == nil {
			t.Errorf("ParseMAC(%q) accepted", s)
		}
	}
}

func FuzzFrame(f *testing.F) {
	f.Add(BuildFrame(Broadcast, MAC{2}, EtherTypeIPv4, Build(Spec{Src: 1, Dst: 2, Proto: ProtoICMP})))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := Frame{Data: b}
		if fr.Decode() == nil && fr.HeaderLen()+len(fr.Payload) != len(b) {
			t.Fatalf("header %d + payload %d != %d", fr.HeaderLen(), len(fr.Payload), len(b))
		}
	})
}

// setAddrPortSteps is what SetSrcAddrPort (src) or SetDstAddrPort
// stands for: the address, then the port, each when it differs.
func setAddrPortSteps(p *Packet, src bool, a uint32, port uint16) {
	if src {
		if p.Src != a {
			p.SetSrc(a)
		}
		if p.SrcPort != port {
			p.SetSrcPort(port)
		}
		return
	}
	if p.Dst != a {
		p.SetDst(a)
	}
	if p.DstPort != port {
		p.SetDstPort(port)
	}
}

// clonePkt is a copy of the decoded packet p over its own bytes.
func clonePkt(t *testing.T, p *Packet) *Packet {
	t.Helper()
	q := &Packet{Data: append([]byte(nil), p.Data...)}
	if err := q.Decode(); err != nil {
		t.Fatal(err)
	}
	return q
}

// sameAddrPort fails unless SetSrcAddrPort/SetDstAddrPort and the steps
// it stands for leave the same bytes and fields.
func sameAddrPort(t *testing.T, p *Packet, src bool, a uint32, port uint16) {
	t.Helper()
	q, want := clonePkt(t, p), clonePkt(t, p)
	setAddrPortSteps(want, src, a, port)
	if src {
		q.SetSrcAddrPort(a, port)
	} else {
		q.SetDstAddrPort(a, port)
	}
	if string(q.Data) != string(want.Data) || q.Src != want.Src || q.Dst != want.Dst || q.SrcPort != want.SrcPort || q.DstPort != want.DstPort {
		t.Fatalf("src %v %08x:%d on % x:\none pass % x\nsteps    % x", src, a, port, p.Data, q.Data, want.Data)
	}
}

// SetSrcAddrPort and SetDstAddrPort write what SetSrc/SetDst then
// SetSrcPort/SetDstPort write, for every protocol, fragments, cut
// transport headers, any checksum (UDP's 0, results that fold to 0),
// changed and unchanged fields.
func TestSetAddrPort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	zeros := 0
	for i := 0; i < 20000; i++ {
		proto := []uint8{ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP, ProtoDCCP, ProtoICMP, 47}[r.IntN(7)]
		s := Spec{Src: r.Uint32(), Dst: r.Uint32(), Proto: proto, SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()),
			ICMPType: ICMPEcho, ICMPID: uint16(r.Uint32()), Payload: make([]byte, r.IntN(30))}
		b := Build(s)
		switch r.IntN(8) {
		case 0:
			b[6] = 0x20 // first fragment (MF)
		case 1:
			b[7] = 1 + byte(r.IntN(5)) // a later one
		case 2:
			n := 20 + r.IntN(len(b)-19)
			b = b[:n]
			b[2], b[3] = byte(n>>8), byte(n)
		}
		IPv4(b).SetChecksum()
		p := &Packet{Data: b}
		if p.Decode() != nil {
			continue
		}
		if p.HasL4 && (proto == ProtoTCP || proto == ProtoUDP || proto == ProtoUDPLite) && r.IntN(3) == 0 {
			off := 16
			if proto != ProtoTCP {
				off = 6
			}
			p.L4[off], p.L4[off+1] = []byte{0, 0xff, byte(r.Uint32())}[r.IntN(3)], []byte{0, 0xff, byte(r.Uint32())}[r.IntN(3)]
		}
		src := r.IntN(2) == 0
		a, port := r.Uint32(), uint16(r.Uint32())
		if r.IntN(3) == 0 {
			a = p.Src
			if !src {
				a = p.Dst
			}
		}
		if r.IntN(3) == 0 {
			port = p.SrcPort
			if !src {
				port = p.DstPort
			}
		}
		if proto == ProtoUDP && p.HasL4 && i%50 == 0 {
			// a port whose step computes a zero checksum (sent as 0xffff)
			for try := 0; try < 1<<16; try++ {
				w := clonePkt(t, p)
				setAddrPortSteps(w, src, a, uint16(try))
				if c := UDP(w.L4).Checksum(); c == 0xffff && uint16(try) != port {
					port = uint16(try)
					zeros++
					break
				}
			}
		}
		sameAddrPort(t, p, src, a, port)
	}
	if zeros == 0 {
		t.Fatal("no rewrite whose checksum folds to zero")
	}
}
