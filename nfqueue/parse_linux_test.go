package nfqueue

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/uswitch-lab/uswitch/netfilter"
)

// TestParsePacket reads the attributes of an NFQNL_MSG_PACKET as
// nfqnl_build_packet_message lays them out.
func TestParsePacket(t *testing.T) {
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	payload := []byte{0x45, 0, 0, 20, 1, 2, 3}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nfqaPacketHdr, Data: []byte{0, 0, 0x12, 0x34, 0x08, 0x00, byte(netfilter.Forward)}},
		{Type: nfqaMark, Data: be32(0x42)},
		{Type: 4, Data: make([]byte, 16)}, // timestamp: skipped
		{Type: nfqaIfindexIndev, Data: be32(2)},
		{Type: nfqaIfindexOutdev, Data: be32(3)},
		{Type: nfqaPayload, Data: payload},
		{Type: nfqaUID, Data: be32(1000)},
	})
	if err != nil {
		t.Fatal(err)
	}
	q := &queue{free: make(chan []byte, 1)}
	it, ok := parsePacket(attrs, q, true)
	if !ok || it.ID != 0x1234 || it.Hook != netfilter.Forward || it.Mark != 0x42 || it.InDev != 2 || it.OutDev != 3 ||
		!it.HasUID || it.UID != 1000 || string(it.Payload) != string(payload) {
		t.Errorf("parsed %+v, %v", it, ok)
	}
	if &it.Payload[0] == &attrs[len(attrs)-len(payload)] {
		t.Errorf("payload aliases the receive buffer")
	}
	if _, ok := parsePacket(attrs[:8], q, true); ok {
		t.Errorf("a message without a payload parsed")
	}
	if _, ok := parsePacket([]byte{3, 0}, q, true); ok {
		t.Errorf("a truncated message parsed")
	}
}

// TestParseProcQueues reads /proc/net/netfilter/nfnetlink_queue lines as
// nfnetlink_queue.c seq_show prints them ("%5u %6u %5u %1u %5u %5u %5u
// %8u %2d").
func TestParseProcQueues(t *testing.T) {
	in := "    5   1234     3 2 65535     0     0       17  1\n" +
		"65535 4294967295 4096 2 65535     7     9 4294967295  1\n" +
		"garbage line\n"
	m := parseProcQueues([]byte(in))
	if len(m) != 2 {
		t.Fatalf("parsed %v", m)
	}
	if q := m[5]; q != (KernelQueue{PortID: 1234, Depth: 3, IDSequence: 17}) {
		t.Errorf("queue 5: %+v", q)
	}
	if q := m[65535]; q != (KernelQueue{PortID: 4294967295, Depth: 4096, Dropped: 7, UserDropped: 9, IDSequence: 4294967295}) {
		t.Errorf("queue 65535: %+v", q)
	}
}
