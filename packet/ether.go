package packet

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Ethernet framing, for the bridge level (bridge/, ebtables) and TAP
// ports: an Ethernet II or 802.3 header, optionally one 802.1Q tag.

// EtherHeaderLen is an Ethernet header without a VLAN tag.
const EtherHeaderLen = 14

// Ethertypes (include/uapi/linux/if_ether.h).
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100 // ETH_P_8021Q
	EtherTypeQinQ = 0x88a8 // ETH_P_8021AD
	EtherTypeIPv6 = 0x86dd
	// EtherTypeMin is ETH_P_802_3_MIN: a type/length field below it is
	// an 802.3 length.
	EtherTypeMin = 0x0600
)

// MAC is an Ethernet address.
type MAC [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// String prints the address as the kernel's %pM does: six lowercase
// two-digit hex bytes with colons.
func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// IsMulticast is the group bit (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsBroadcast is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == Broadcast }

// IsZero is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// IsValidUnicast is is_valid_ether_addr: not multicast, not zero.
func (m MAC) IsValidUnicast() bool { return !m.IsMulticast() && !m.IsZero() }

// ParseMAC parses "aa:bb:cc:dd:ee:ff" (one or two hex digits a byte, as
// ether_aton reads them).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return MAC{}, fmt.Errorf("%q is not a MAC address", s)
	}
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil || len(p) == 0 || len(p) > 2 || p[0] == '+' || p[0] == '-' {
			return MAC{}, fmt.Errorf("%q is not a MAC address", s)
		}
		m[i] = byte(v)
	}
	return m, nil
}

// Frame is one decoded Ethernet frame. Decode fills it; it never panics.
//
// Ownership: Data belongs to the frame's reader until the frame leaves
// the pipeline, as Packet.Data does.
type Frame struct {
	// Data is the frame from its destination MAC on (no FCS).
	Data     []byte
	Dst, Src MAC
	// Proto is the type/length field after the source MAC (h_proto as
	// on the wire: 0x8100 for a tagged frame, a length for 802.3).
	Proto uint16
	// VLAN: the frame carries an 802.1Q (or 802.1ad) tag; TCI is its
	// tag control (priority 3 bits, DEI, VLAN id 12 bits) and
	// InnerProto the type/length after it. Without a tag InnerProto is
	// Proto.
	VLAN       bool
	TCI        uint16
	InnerProto uint16
	// Payload is what follows the header (and the tag): an IPv4 packet
	// when InnerProto is EtherTypeIPv4.
	Payload []byte
}

// VLANID is the tag's 12-bit VLAN id.
func (f *Frame) VLANID() uint16 { return f.TCI & 0x0fff }

// VLANPrio is the tag's 3-bit priority (PCP).
func (f *Frame) VLANPrio() uint8 { return uint8(f.TCI >> 13) }

// Is8023 says the type/length field is an 802.3 length.
func (f *Frame) Is8023() bool { return f.InnerProto < EtherTypeMin }

// HeaderLen is the length of the Ethernet header with its tag.
func (f *Frame) HeaderLen() int { return len(f.Data) - len(f.Payload) }

// Decode reads the Ethernet header of f.Data (and one VLAN tag).
func (f *Frame) Decode() error {
	b := f.Data
	if len(b) < EtherHeaderLen {
		return &DecodeError{Offset: 0, Reason: fmt.Sprintf("%d bytes, shorter than an Ethernet header", len(b))}
	}
	copy(f.Dst[:], b[0:6])
	copy(f.Src[:], b[6:12])
	f.Proto = binary.BigEndian.Uint16(b[12:])
	f.InnerProto, f.VLAN, f.TCI = f.Proto, false, 0
	f.Payload = b[EtherHeaderLen:]
	if f.Proto == EtherTypeVLAN || f.Proto == EtherTypeQinQ {
		if len(b) < EtherHeaderLen+4 {
			return &DecodeError{Offset: EtherHeaderLen, Reason: fmt.Sprintf("%d bytes, shorter than a VLAN-tagged Ethernet header", len(b))}
		}
		f.VLAN = true
		f.TCI = binary.BigEndian.Uint16(b[14:])
		f.InnerProto = binary.BigEndian.Uint16(b[16:])
		f.Payload = b[EtherHeaderLen+4:]
	}
	return nil
}

// BuildFrame makes an untagged Ethernet II frame around payload.
func BuildFrame(dst, src MAC, proto uint16, payload []byte) []byte {
	b := make([]byte, EtherHeaderLen+len(payload))
	copy(b[0:], dst[:])
	copy(b[6:], src[:])
	binary.BigEndian.PutUint16(b[12:], proto)
	copy(b[EtherHeaderLen:], payload)
	return b
}
