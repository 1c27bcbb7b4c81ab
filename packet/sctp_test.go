package packet

import "testing"

func TestSCTPChecksumVector(t *testing.T) {
	// RFC 3720 B.4: the CRC32c of 32 zero bytes is 0x8a9136aa.
	if got := SCTPChecksum(make([]byte, 32)); got != 0x8a9136aa {
		t.Fatalf("crc32c of 32 zero bytes = %#x, want 0x8a9136aa", got)
	}
}

func TestSCTPPortRewriteKeepsCRC(t *testing.T) {
	l4 := []byte{0x13, 0x88, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4} // a bare DATA-less chunk header
	SetSCTPChecksum(l4)
	b := Build(Spec{Proto: ProtoSCTP, Src: 0x0a000001, Dst: 0x0a000002, Payload: l4})
	p := &Packet{Data: b}
	if err := p.Decode(); err != nil {
		t.Fatal(err)
	}
	before := SCTPChecksum(p.L4)
	p.SetSrcPort(40000)
	p.SetDstPort(80)
	if p.SrcPort != 40000 || p.DstPort != 80 || !SCTPChecksumOK(p.L4) {
		t.Fatalf("ports %d/%d, crc ok %v", p.SrcPort, p.DstPort, SCTPChecksumOK(p.L4))
	}
	if SCTPChecksum(p.L4) == before {
		t.Fatal("crc unchanged after a port rewrite")
	}
}
