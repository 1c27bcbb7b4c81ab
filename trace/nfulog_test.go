package trace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func sampleRecord() *NFLogRecord {
	return &NFLogRecord{Family: NFProtoIPv4, Group: 5, HWProtocol: 0x0800, Hook: 2,
		Prefix: "nfl-fwd", HasPrefix: true, InDev: 3, OutDev: 4, Mark: 0x10,
		HasHW: true, HWType: ARPHRDNone, HWHeader: []byte{},
		HasTime: true, Sec: 1700000000, Usec: 123456,
		Payload: []byte{0x45, 0, 0, 21, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 9}}
}

// The record's bytes, written out by hand from __build_packet_message's
// order and nla_put's layout.
func TestAppendNFLogBytes(t *testing.T) {
	got := AppendNFLog(nil, sampleRecord())
	want := []byte{
		2, 0, 0, 5, // AF_INET, v0, group 5 big-endian
		8, 0, 1, 0, 0x08, 0x00, 2, 0, // PACKET_HDR: ETH_P_IP, hook FORWARD
		12, 0, 10, 0, 'n', 'f', 'l', '-', 'f', 'w', 'd', 0, // PREFIX with NUL
		8, 0, 4, 0, 0, 0, 0, 3, // INDEV
		8, 0, 5, 0, 0, 0, 0, 4, // OUTDEV
		8, 0, 2, 0, 0, 0, 0, 0x10, // MARK
		6, 0, 15, 0, 0xff, 0xfe, 0, 0, // HWTYPE ARPHRD_NONE, padded
		6, 0, 17, 0, 0, 0, 0, 0, // HWLEN 0
		4, 0, 16, 0, // HWHEADER, empty
		20, 0, 3, 0, 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00, 0, 0, 0, 0, 0, 1, 0xe2, 0x40, // TIMESTAMP
		25, 0, 9, 0, 0x45, 0, 0, 21, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 9, 0, 0, 0, // PAYLOAD, padded
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("record\n% x\nwant\n% x", got, want)
	}
	r, err := DecodeNFLog(got, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	if s := sampleRecord(); !reflect.DeepEqual(r, s) {
		t.Errorf("decoded %+v\nwant %+v", r, s)
	}
}

// The bridge family names the port before its bridge.
func TestAppendNFLogBridgeOrder(t *testing.T) {
	r := &NFLogRecord{Family: NFProtoBridge, Group: 1, HWProtocol: 0x0800, InDev: 9, PhysInDev: 7, L2Hdr: make([]byte, 14), Payload: []byte{1}}
	_, _, _, attrs, err := ParseNFLog(AppendNFLog(nil, r), binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	var types []uint16
	for _, a := range attrs {
		types = append(types, a.Type)
	}
	if want := []uint16{NFULAPacketHdr, NFULAIfindexPhysIn, NFULAIfindexIndev, NFULAL2Hdr, NFULAPayload}; !reflect.DeepEqual(types, want) {
		t.Errorf("attributes %v, want %v", types, want)
	}
}

func TestParseNFLogErrors(t *testing.T) {
	good := AppendNFLog(nil, sampleRecord())
	for _, c := range []struct {
		b   []byte
		off int
	}{
		{good[:3], 0},
		{good[:len(good)-8], 88},             // the payload cut short
		{append(good[:4:4], 2, 0, 1, 0), 4},  // length 2
		{append(good[:4:4], 4, 0, 10, 0), 4}, // a PREFIX without its NUL (decode)
	} {
		_, err := DecodeNFLog(c.b, binary.LittleEndian)
		var ne *NFLogError
		if !errors.As(err, &ne) || ne.Off != c.off {
			t.Errorf("% x: %v, want an error at byte %d", c.b, err, c.off)
		}
	}
}

// FuzzParseNFLog: the parser never panics, and a record it decodes
// encodes to a record that decodes to the same.
func FuzzParseNFLog(f *testing.F) {
	f.Add(AppendNFLog(nil, sampleRecord()))
	f.Add(AppendNFLog(nil, &NFLogRecord{Family: NFProtoBridge, Group: 9, InDev: 1, PhysInDev: 2, OutDev: 3, PhysOutDev: 4,
		HWAddr: []byte{1, 2, 3, 4, 5, 6}, HasUID: true, UID: 1000, GID: 100, L2Hdr: []byte{1, 2}}))
	f.Add([]byte{2, 0, 0, 0, 4, 0, 0x80 | 0, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			ParseNFLog(b, o)
		}
		r, err := DecodeNFLog(b, binary.LittleEndian)
		if err != nil {
			return
		}
		if r.Family != NFProtoBridge {
			r.L2Hdr = nil // only the bridge family sends it
		}
		again, err := DecodeNFLog(AppendNFLog(nil, r), binary.LittleEndian)
		if err != nil {
			t.Fatalf("re-encoded record: %v", err)
		}
		norm := func(x *NFLogRecord) {
			for _, p := range []*[]byte{&x.HWAddr, &x.HWHeader, &x.L2Hdr, &x.Payload} {
				if len(*p) == 0 {
					*p = nil
				}
			}
		}
		norm(r)
		norm(again)
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip\n%+v\n%+v", r, again)
		}
	})
}
