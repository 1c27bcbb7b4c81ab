package trace

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// NFLOG records: what nfnetlink_log sends the listener of a group for
// each packet an NFLOG rule (iptables -j NFLOG, nft log group, ebtables
// --nflog) hands it (net/netfilter/nfnetlink_log.c
// __build_packet_message, kernel 6.18), as libpcap's netfilter capture
// (pcap-netfilter-linux.c: NLMSG_DATA of the message) stores it in a
// LINKTYPE_NFLOG pcap record, which `tcpdump -i nflog:N -w` writes:
//
//	family (1) version 0 (1) group (2, big-endian)    struct nfgenmsg
//	length (2) type (2) value, padded to 4 bytes      one per attribute
//
// An attribute's length counts its 4-byte header and its value, not the
// padding; length and type are in the writing host's byte order (the
// pcap file's, whose magic tells a reader), values in network byte
// order (LINKTYPE_NFLOG; libpcap's pcap/nflog.h). uswitch writes
// little-endian files, so the headers are little-endian. The padding
// of the last attribute counts in the record, as it counts in the
// netlink message's length.

// LinkTypeNFLOG is LINKTYPE_NFLOG, the pcap link type of NFLOG records.
const LinkTypeNFLOG = 239

// The attribute types (include/uapi/linux/netfilter/nfnetlink_log.h
// enum nfulnl_attr_type).
const (
	NFULAPacketHdr      = 1
	NFULAMark           = 2
	NFULATimestamp      = 3
	NFULAIfindexIndev   = 4
	NFULAIfindexOutdev  = 5
	NFULAIfindexPhysIn  = 6
	NFULAIfindexPhysOut = 7
	NFULAHWAddr         = 8
	NFULAPayload        = 9
	NFULAPrefix         = 10
	NFULAUID            = 11
	NFULASeq            = 12
	NFULASeqGlobal      = 13
	NFULAGID            = 14
	NFULAHWType         = 15
	NFULAHWHeader       = 16
	NFULAHWLen          = 17
	NFULACT             = 18
	NFULACTInfo         = 19
	NFULAVLAN           = 20
	NFULAL2Hdr          = 21
)

// nfulaNames are the attribute names, for messages.
var nfulaNames = [...]string{"", "PACKET_HDR", "MARK", "TIMESTAMP", "IFINDEX_INDEV", "IFINDEX_OUTDEV",
	"IFINDEX_PHYSINDEV", "IFINDEX_PHYSOUTDEV", "HWADDR", "PAYLOAD", "PREFIX", "UID", "SEQ", "SEQ_GLOBAL",
	"GID", "HWTYPE", "HWHEADER", "HWLEN", "CT", "CT_INFO", "VLAN", "L2HDR"}

// NFULAName is the attribute's name without NFULA_ (its number when
// unknown).
func NFULAName(t uint16) string {
	t &^= 0x8000 // NLA_F_NESTED
	if int(t) < len(nfulaNames) && t != 0 {
		return nfulaNames[t]
	}
	return fmt.Sprintf("%d", t)
}

// The families of NFLOG records (NFPROTO_*).
const (
	NFProtoIPv4   = 2
	NFProtoBridge = 7
)

// ARPHRD_* device types of NFULA_HWTYPE.
const (
	ARPHRDEther    = 1
	ARPHRDLoopback = 772
	ARPHRDNone     = 0xfffe // TUN devices
)

// NFCopyRangeMax is NFULNL_COPY_RANGE_MAX: the most payload a record
// carries (0xffff less an attribute header), and what a listener that
// asks for more, as tcpdump does, gets.
const NFCopyRangeMax = 0xffff - 4

// NFLogRecord is one packet as nfnetlink_log reports it; each field
// says when the kernel sends its attribute.
type NFLogRecord struct {
	// Family is the hook's protocol family (NFPROTO_IPV4, or
	// NFPROTO_BRIDGE for ebtables); Group the NFLOG group.
	Family uint8
	Group  uint16
	// HWProtocol (skb->protocol, ETH_P_IP for IPv4) and Hook (the
	// NF_INET_* or NF_BR_* number) make NFULA_PACKET_HDR, always sent.
	HWProtocol uint16
	Hook       uint8
	// Prefix is NFULA_PREFIX (sent with its NUL) when HasPrefix: the
	// nf_log_packet callers always pass one, "" when the rule has none.
	Prefix    string
	HasPrefix bool
	// InDev, OutDev: the hook's devices' ifindexes (0: none, no
	// attribute). PhysInDev, PhysOutDev: the bridge ports (br_netfilter
	// for IPv4; the ports themselves in the bridge family, where InDev
	// and OutDev are the bridge).
	InDev, OutDev, PhysInDev, PhysOutDev uint32
	// Mark is NFULA_MARK, sent when not 0.
	Mark uint32
	// HWAddr is NFULA_HWADDR's address (dev_parse_header: the Ethernet
	// source), sent when not empty: a packet received with a link
	// header.
	HWAddr []byte
	// HasHW sends NFULA_HWTYPE, NFULA_HWLEN and NFULA_HWHEADER (a packet
	// received on a device, whose MAC header is set): the device type,
	// its hard_header_len and that many bytes of header (none for TUN).
	HasHW    bool
	HWType   uint16
	HWHeader []byte
	// HasTime sends NFULA_TIMESTAMP (hooks up to FORWARD): seconds and
	// microseconds of the wall clock.
	HasTime bool
	Sec     int64
	Usec    int64
	// HasUID sends NFULA_UID and NFULA_GID: a local process's socket.
	HasUID   bool
	UID, GID uint32
	// L2Hdr is NFULA_L2HDR of the bridge family: the frame's link
	// header (sent when not empty).
	L2Hdr []byte
	// Payload is NFULA_PAYLOAD, sent when not empty: the packet from
	// its network header, cut to the copy length.
	Payload []byte
}

// AppendNFLog appends r's LINKTYPE_NFLOG record (attributes in the
// order __build_packet_message puts them, headers little-endian, padding
// zero) to dst.
func AppendNFLog(dst []byte, r *NFLogRecord) []byte {
	dst = append(dst, r.Family, 0, byte(r.Group>>8), byte(r.Group))
	dst = putAttr(dst, NFULAPacketHdr, []byte{byte(r.HWProtocol >> 8), byte(r.HWProtocol), r.Hook, 0})
	if r.HasPrefix {
		dst = putAttr(dst, NFULAPrefix, append([]byte(r.Prefix), 0))
	}
	in := [][2]uint32{{NFULAIfindexIndev, r.InDev}, {NFULAIfindexPhysIn, r.PhysInDev}}
	out := [][2]uint32{{NFULAIfindexOutdev, r.OutDev}, {NFULAIfindexPhysOut, r.PhysOutDev}}
	if r.Family == NFProtoBridge {
		// the port first, then its bridge
		in[0], in[1] = in[1], in[0]
		out[0], out[1] = out[1], out[0]
	}
	for _, l := range [][][2]uint32{in, out} {
		for _, a := range l {
			if a[1] != 0 {
				dst = putBE32(dst, uint16(a[0]), a[1])
			}
		}
	}
	if r.Mark != 0 {
		dst = putBE32(dst, NFULAMark, r.Mark)
	}
	if len(r.HWAddr) > 0 {
		// struct nfulnl_msg_packet_hw: __be16 hw_addrlen, pad, hw_addr[8]
		v := make([]byte, 12)
		binary.BigEndian.PutUint16(v, uint16(len(r.HWAddr)))
		copy(v[4:], r.HWAddr)
		dst = putAttr(dst, NFULAHWAddr, v)
	}
	if r.HasHW {
		dst = putAttr(dst, NFULAHWType, []byte{byte(r.HWType >> 8), byte(r.HWType)})
		n := uint16(len(r.HWHeader))
		dst = putAttr(dst, NFULAHWLen, []byte{byte(n >> 8), byte(n)})
		dst = putAttr(dst, NFULAHWHeader, r.HWHeader)
	}
	if r.HasTime {
		v := make([]byte, 16)
		binary.BigEndian.PutUint64(v, uint64(r.Sec))
		binary.BigEndian.PutUint64(v[8:], uint64(r.Usec))
		dst = putAttr(dst, NFULATimestamp, v)
	}
	if r.HasUID {
		dst = putBE32(dst, NFULAUID, r.UID)
		dst = putBE32(dst, NFULAGID, r.GID)
	}
	if r.Family == NFProtoBridge && len(r.L2Hdr) > 0 {
		dst = putAttr(dst, NFULAL2Hdr, r.L2Hdr)
	}
	if len(r.Payload) > 0 {
		dst = putAttr(dst, NFULAPayload, r.Payload)
	}
	return dst
}

func putBE32(dst []byte, typ uint16, v uint32) []byte {
	return putAttr(dst, typ, []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// putAttr appends a netlink attribute: length and type little-endian,
// the value, zero padding to 4 bytes.
func putAttr(dst []byte, typ uint16, v []byte) []byte {
	n := 4 + len(v)
	dst = append(dst, byte(n), byte(n>>8), byte(typ), byte(typ>>8))
	dst = append(dst, v...)
	for n%4 != 0 {
		dst = append(dst, 0)
		n++
	}
	return dst
}

// NFLogAttr is one attribute of a record, as read.
type NFLogAttr struct {
	Type  uint16 // with NLA_F_NESTED when set
	Value []byte // a subslice of the record
	// Off is the attribute's offset in the record.
	Off int
}

// NFLogError is a malformed record: what is wrong and where.
type NFLogError struct {
	Off int
	Msg string
}

func (e *NFLogError) Error() string {
	return fmt.Sprintf("NFLOG record: at byte %d: %s", e.Off, e.Msg)
}

// ParseNFLog splits a LINKTYPE_NFLOG record into its header and
// attributes; order is the byte order of the attribute headers (the
// pcap file's). It never panics; a record cut inside an attribute, or
// an attribute length below 4, is an error naming the offset. Trailing
// padding after the last attribute is allowed.
func ParseNFLog(b []byte, order binary.ByteOrder) (family uint8, version uint8, group uint16, attrs []NFLogAttr, err error) {
	if len(b) < 4 {
		return 0, 0, 0, nil, &NFLogError{0, fmt.Sprintf("%d bytes, shorter than the 4-byte nfgenmsg header", len(b))}
	}
	family, version, group = b[0], b[1], binary.BigEndian.Uint16(b[2:])
	off := 4
	for off < len(b) {
		if len(b)-off < 4 {
			// padding only (the kernel's last attribute is padded)
			if allZero(b[off:]) {
				break
			}
			return family, version, group, attrs, &NFLogError{off, fmt.Sprintf("%d bytes left, too few for an attribute header", len(b)-off)}
		}
		n := int(order.Uint16(b[off:]))
		typ := order.Uint16(b[off+2:])
		if n < 4 {
			return family, version, group, attrs, &NFLogError{off, fmt.Sprintf("attribute length %d below its 4-byte header", n)}
		}
		if n > len(b)-off {
			return family, version, group, attrs, &NFLogError{off, fmt.Sprintf("attribute %s of %d bytes runs past the record's end (%d bytes)", NFULAName(typ), n, len(b))}
		}
		attrs = append(attrs, NFLogAttr{Type: typ, Value: b[off+4 : off+n], Off: off})
		off += (n + 3) &^ 3
	}
	return family, version, group, attrs, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// DecodeNFLog reads a record back into an NFLogRecord (the attributes
// it knows; SEQ, CT and VLAN are skipped), checking each value's size.
func DecodeNFLog(b []byte, order binary.ByteOrder) (*NFLogRecord, error) {
	fam, _, group, attrs, err := ParseNFLog(b, order)
	if err != nil {
		return nil, err
	}
	r := &NFLogRecord{Family: fam, Group: group}
	size := func(a NFLogAttr, n int) error {
		if len(a.Value) != n {
			return &NFLogError{a.Off, fmt.Sprintf("attribute %s has %d bytes, want %d", NFULAName(a.Type), len(a.Value), n)}
		}
		return nil
	}
	be32 := func(a NFLogAttr, p *uint32) error {
		if err := size(a, 4); err != nil {
			return err
		}
		*p = binary.BigEndian.Uint32(a.Value)
		return nil
	}
	for _, a := range attrs {
		var err error
		switch a.Type {
		case NFULAPacketHdr:
			if err = size(a, 4); err == nil {
				r.HWProtocol, r.Hook = binary.BigEndian.Uint16(a.Value), a.Value[2]
			}
		case NFULAPrefix:
			v := a.Value
			i := strings.IndexByte(string(v), 0)
			if i < 0 {
				return nil, &NFLogError{a.Off, "PREFIX without its terminating NUL"}
			}
			r.Prefix, r.HasPrefix = string(v[:i]), true
		case NFULAIfindexIndev:
			err = be32(a, &r.InDev)
		case NFULAIfindexOutdev:
			err = be32(a, &r.OutDev)
		case NFULAIfindexPhysIn:
			err = be32(a, &r.PhysInDev)
		case NFULAIfindexPhysOut:
			err = be32(a, &r.PhysOutDev)
		case NFULAMark:
			err = be32(a, &r.Mark)
		case NFULAHWAddr:
			if err = size(a, 12); err == nil {
				n := int(binary.BigEndian.Uint16(a.Value))
				if n > 8 {
					return nil, &NFLogError{a.Off, fmt.Sprintf("HWADDR length %d over its 8 bytes", n)}
				}
				r.HWAddr = a.Value[4 : 4+n]
			}
		case NFULAHWType:
			if err = size(a, 2); err == nil {
				r.HWType, r.HasHW = binary.BigEndian.Uint16(a.Value), true
			}
		case NFULAHWLen:
			err = size(a, 2)
		case NFULAHWHeader:
			r.HWHeader, r.HasHW = a.Value, true
		case NFULATimestamp:
			if err = size(a, 16); err == nil {
				r.HasTime = true
				r.Sec, r.Usec = int64(binary.BigEndian.Uint64(a.Value)), int64(binary.BigEndian.Uint64(a.Value[8:]))
			}
		case NFULAUID:
			r.HasUID = true
			err = be32(a, &r.UID)
		case NFULAGID:
			r.HasUID = true
			err = be32(a, &r.GID)
		case NFULAL2Hdr:
			r.L2Hdr = a.Value
		case NFULAPayload:
			r.Payload = a.Value
		}
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}
