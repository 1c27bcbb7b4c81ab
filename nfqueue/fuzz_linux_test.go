package nfqueue

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// within reports whether sub is a part of b (the same memory, not a copy).
func within(sub, b []byte) bool {
	if len(sub) == 0 {
		return true
	}
	for o := 0; o+len(sub) <= len(b); o++ {
		if &b[o] == &sub[0] {
			return true
		}
	}
	return false
}

// parseSeeds are NFQNL_MSG_PACKET attribute runs as in TestParsePacket.
func parseSeeds(f *testing.F) [][]byte {
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nfqaPacketHdr, Data: []byte{0, 0, 0x12, 0x34, 0x08, 0x00, byte(netfilter.Forward)}},
		{Type: nfqaMark, Data: be32(0x42)},
		{Type: 4, Data: make([]byte, 16)},
		{Type: nfqaIfindexIndev, Data: be32(2)},
		{Type: nfqaIfindexOutdev, Data: be32(3)},
		{Type: nfqaPayload, Data: []byte{0x45, 0, 0, 20, 1, 2, 3}},
		{Type: nfqaUID, Data: be32(1000)},
		{Type: nfqaGID, Data: be32(1000)},
	})
	if err != nil {
		f.Fatal(err)
	}
	return [][]byte{attrs, attrs[:8], {3, 0}, {}, {4, 0, nfqaPayload, 0}}
}

// FuzzParsePacket: parsePacket never panics on any attribute run; a
// packet it accepts has a payload lying within the input (or, copied,
// equal to it and not aliasing it).
func FuzzParsePacket(f *testing.F) {
	for _, s := range parseSeeds(f) {
		f.Add(s)
	}
	q := &queue{free: make(chan []byte, 1)}
	f.Fuzz(func(t *testing.T, b []byte) {
		it, ok := parsePacket(b, q, false)
		if !ok {
			if _, ok := parsePacket(b, q, true); ok {
				t.Fatal("accepted only when copying")
			}
			return
		}
		if !within(it.Payload, b) {
			t.Fatalf("payload (%d bytes) is not within the input (%d bytes)", len(it.Payload), len(b))
		}
		c, ok := parsePacket(b, q, true)
		if !ok || !bytes.Equal(c.Payload, it.Payload) || (len(c.Payload) > 0 && within(c.Payload, b)) {
			t.Fatalf("copied payload %x (ok %v), want a copy of %x", c.Payload, ok, it.Payload)
		}
		q.recycle(c.Payload)
		c.Payload, it.Payload = nil, nil
		if !reflect.DeepEqual(c, it) {
			t.Fatalf("copying changed the packet: %+v, %+v", c, it)
		}
	})
}

// FuzzNextPacket: the walk over a datagram's netlink messages never
// panics and always ends; each message's attributes and the rest lie
// within the datagram, the rest a strictly shorter tail of it.
func FuzzNextPacket(f *testing.F) {
	m1, m2 := packetMsg(f, 1), packetMsg(f, 2)
	f.Add(m1)
	f.Add(append(append([]byte(nil), m1...), m2...))
	f.Add(m1[:len(m1)-1])
	f.Add(m1[:16])
	f.Add([]byte{})
	for _, s := range parseSeeds(f) {
		f.Add(s)
	}
	q := &queue{free: make(chan []byte, 1)}
	f.Fuzz(func(t *testing.T, b []byte) {
		cur := b
		for n := 0; ; n++ {
			attrs, rest, ok := nextPacket(cur)
			if !ok {
				break
			}
			if n > len(b) {
				t.Fatal("the walk does not end")
			}
			if !within(attrs, cur) || !within(rest, cur) || len(rest) >= len(cur) {
				t.Fatalf("message %d: attrs %d bytes, rest %d bytes of %d", n, len(attrs), len(rest), len(cur))
			}
			if len(rest) > 0 && &rest[len(rest)-1] != &cur[len(cur)-1] {
				t.Fatalf("message %d: the rest is not the tail", n)
			}
			if attrs != nil {
				if it, ok := parsePacket(attrs, q, false); ok && !within(it.Payload, attrs) {
					t.Fatalf("message %d: payload outside its attributes", n)
				}
			}
			cur = rest
		}
	})
}

// FuzzParseCtErrors: parseCtErrors never panics and reads no error out
// of a message shorter than one.
func FuzzParseCtErrors(f *testing.F) {
	var b []byte
	b = binary.NativeEndian.AppendUint32(b, 36)
	b = binary.NativeEndian.AppendUint16(b, 2)
	b = append(b, make([]byte, 10)...)
	b = binary.NativeEndian.AppendUint32(b, uint32(0xffffffef))
	b = append(b, make([]byte, 16)...)
	f.Add(b)
	f.Add([]byte{16, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, _ := parseCtErrors(b, nil)
		if len(got)*(nlmsgHdrLen+4+nlmsgHdrLen) > len(b) {
			t.Fatalf("%d errors out of %d bytes", len(got), len(b))
		}
	})
}
