package packet

import (
	"bytes"
	"testing"
)

func TestSCTPBuilders(t *testing.T) {
	c := SCTPChunk(1, 0, SCTPInitValue(0xa1, 10))
	if len(c) != 20 || c[0] != 1 || c[2] != 0 || c[3] != 20 || !bytes.Equal(c[4:8], []byte{0, 0, 0, 0xa1}) {
		t.Fatalf("INIT chunk % x", c)
	}
	if d := SCTPChunk(0, 3, []byte{1, 2, 3}); len(d) != 8 || d[3] != 7 {
		t.Fatalf("padded chunk % x: length field is the unpadded length, the chunk 4-byte aligned", d)
	}
	p := SCTPPacket(5000, 9, 0xb2, c)
	if len(p) != SCTPHeaderLen+20 || p[0] != 0x13 || p[1] != 0x88 || p[3] != 9 || p[7] != 0xb2 || !SCTPChecksumOK(p) {
		t.Fatalf("packet % x", p)
	}
}
