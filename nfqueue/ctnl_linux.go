package nfqueue

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/uswitch-lab/uswitch/conntrack"
)

// ctnetlink messages for the offload (offload.go): the kernel's
// conntrack entry of a flow uswitch decided, with uswitch's NAT binding
// and the offload connmark. Attribute numbers from
// include/uapi/linux/netfilter/nfnetlink_conntrack.h; the kernel reads
// them in net/netfilter/nf_conntrack_netlink.c (ctnetlink_new_conntrack,
// ctnetlink_create_conntrack, ctnetlink_setup_nat, ctnetlink_del_conntrack).
const (
	nfnlSubsysCtnetlink = 1
	ipctnlMsgCtNew      = 0
	ipctnlMsgCtDelete   = 2

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaProtoinfo  = 4
	ctaNatSrc     = 6
	ctaTimeout    = 7
	ctaMark       = 8
	ctaNatDst     = 13

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	ctaNatV4MinIP      = 1
	ctaNatV4MaxIP      = 2
	ctaNatProto        = 3
	ctaProtonatPortMin = 1
	ctaProtonatPortMax = 2

	ctaProtoinfoTCP          = 1
	ctaProtoinfoTCPState     = 1
	ctaProtoinfoTCPFlagsOrig = 4
	ctaProtoinfoTCPFlagsRepl = 5
	// ipCtTCPFlagBeLiberal: the kernel does not check this side's
	// window (nf_conntrack_proto_tcp.c tcp_in_window); the entry is
	// made without the windows the first packets would have taught it.
	ipCtTCPFlagBeLiberal = 0x08

	nlaFNested  = 0x8000
	nlmsgHdrLen = 16
)

// ctMsg builds ctnetlink messages into one buffer (one write(2) for a
// round's messages: the kernel handles them in order, nfnetlink_rcv ->
// netlink_rcv_skb). Reused: Reset keeps the buffer.
type ctMsg struct {
	b     []byte
	seq   uint32
	nests []int
	// flows holds, for each message's sequence number - base, the
	// index of the flow it belongs to (the caller's).
	base uint32
	msgs []int32
}

func (m *ctMsg) reset() {
	m.b = m.b[:0]
	m.msgs = m.msgs[:0]
	m.base = m.seq + 1
}

// begin starts a message of type typ with flags (NLM_F_REQUEST added)
// for the caller's flow index flow.
func (m *ctMsg) begin(typ uint16, flags uint16, flow int32) int {
	m.seq++
	m.msgs = append(m.msgs, flow)
	start := len(m.b)
	m.b = binary.NativeEndian.AppendUint32(m.b, 0) // length, set by end
	m.b = binary.NativeEndian.AppendUint16(m.b, nfnlSubsysCtnetlink<<8|typ)
	m.b = binary.NativeEndian.AppendUint16(m.b, flags|0x1) // NLM_F_REQUEST
	m.b = binary.NativeEndian.AppendUint32(m.b, m.seq)
	m.b = binary.NativeEndian.AppendUint32(m.b, 0) // portid: the kernel's
	m.b = append(m.b, 2 /* AF_INET */, 0 /* NFNETLINK_V0 */, 0, 0)
	return start
}

func (m *ctMsg) end(start int) {
	binary.NativeEndian.PutUint32(m.b[start:], uint32(len(m.b)-start))
}

func (m *ctMsg) attr(typ uint16, v []byte) {
	m.b = binary.NativeEndian.AppendUint16(m.b, uint16(4+len(v)))
	m.b = binary.NativeEndian.AppendUint16(m.b, typ)
	m.b = append(m.b, v...)
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *ctMsg) be32(typ uint16, v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	m.attr(typ, b[:])
}

func (m *ctMsg) be16(typ uint16, v uint16) {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	m.attr(typ, b[:])
}

func (m *ctMsg) nest(typ uint16) {
	m.nests = append(m.nests, len(m.b))
	m.b = binary.NativeEndian.AppendUint16(m.b, 0)
	m.b = binary.NativeEndian.AppendUint16(m.b, typ|nlaFNested)
}

func (m *ctMsg) unnest() {
	at := m.nests[len(m.nests)-1]
	m.nests = m.nests[:len(m.nests)-1]
	binary.NativeEndian.PutUint16(m.b[at:], uint16(len(m.b)-at))
}

// tuple writes CTA_TUPLE_ORIG or _REPLY (ctnetlink_parse_tuple: ip and
// proto nests; ports for TCP and UDP).
func (m *ctMsg) tuple(typ uint16, t conntrack.Tuple) {
	m.nest(typ)
	m.nest(ctaTupleIP)
	m.be32(ctaIPv4Src, t.Src)
	m.be32(ctaIPv4Dst, t.Dst)
	m.unnest()
	m.nest(ctaTupleProto)
	m.attr(ctaProtoNum, []byte{t.Proto})
	m.be16(ctaProtoSrc, t.SrcPort)
	m.be16(ctaProtoDst, t.DstPort)
	m.unnest()
	m.unnest()
}

// natRange writes CTA_NAT_SRC or CTA_NAT_DST mapping to exactly addr:port
// (nfnetlink_parse_nat: min = max, NF_NAT_RANGE_PROTO_SPECIFIED).
func (m *ctMsg) natRange(typ uint16, addr uint32, port uint16) {
	m.nest(typ)
	m.be32(ctaNatV4MinIP, addr)
	m.be32(ctaNatV4MaxIP, addr)
	m.nest(ctaNatProto)
	m.be16(ctaProtonatPortMin, port)
	m.be16(ctaProtonatPortMax, port)
	m.unnest()
	m.unnest()
}

// offloadTimeout is the kernel entry's first timeout in seconds
// (CTA_TIMEOUT, which ctnetlink_create_conntrack requires); the kernel
// sets its own per state with the next packet it tracks.
const offloadTimeout = 120

// install appends the messages that give the kernel flow f with mark:
// without NAT, an update of the kernel's entry (the queued packet's,
// confirmed by the verdict) with the mark; with NAT, that entry's
// deletion and a new one with the binding (the kernel sets NAT up only
// on a new entry: ctnetlink_change_conntrack refuses CTA_NAT_*, and
// nf_nat_setup_info leaves a confirmed entry alone).
func (m *ctMsg) install(f *flowReq, mark uint32, flow int32) {
	if !f.natted() {
		// IPCTNL_MSG_CT_NEW without NLM_F_CREATE on an existing entry:
		// ctnetlink_change_conntrack (CTA_MARK: ctnetlink_change_mark)
		s := m.begin(ipctnlMsgCtNew, 0, flow)
		m.tuple(ctaTupleOrig, f.Orig)
		m.be32(ctaMark, mark)
		m.end(s)
		return
	}
	s := m.begin(ipctnlMsgCtDelete, 0, flow)
	m.tuple(ctaTupleOrig, f.Orig)
	m.end(s)
	// and the entry a reply made when it reached the kernel before
	// this install (its original tuple is uswitch's reply tuple;
	// nf_conntrack_find_get finds either direction): the new entry's
	// reply tuple would clash with it (nf_conntrack_hash_check_insert).
	// A TCP connection is installed after its handshake's replies made
	// one; a UDP flow's first packet rarely has an answer yet (if it
	// did, the create fails with EEXIST and the next packet, not the
	// first, deletes it), and the delete that finds nothing costs an
	// error message.
	if f.Orig.Proto == 6 || !f.First {
		s = m.begin(ipctnlMsgCtDelete, 0, flow)
		m.tuple(ctaTupleOrig, f.Reply)
		m.end(s)
	}
	// NLM_F_CREATE|NLM_F_EXCL: a new entry, never an update
	s = m.begin(ipctnlMsgCtNew, 0x400|0x200, flow)
	m.tuple(ctaTupleOrig, f.Orig)
	inv := conntrack.Tuple{Src: f.Orig.Dst, Dst: f.Orig.Src, SrcPort: f.Orig.DstPort, DstPort: f.Orig.SrcPort, Proto: f.Orig.Proto}
	// the reply before NAT: nf_nat_setup_info derives the NATed reply
	// from the ranges below (and sets IPS_SRC_NAT/IPS_DST_NAT, which
	// nf_nat_packet needs to rewrite the packets)
	m.tuple(ctaTupleReply, inv)
	m.be32(ctaTimeout, offloadTimeout)
	m.be32(ctaMark, mark)
	if f.Orig.Proto == 6 {
		m.nest(ctaProtoinfo)
		m.nest(ctaProtoinfoTCP)
		m.attr(ctaProtoinfoTCPState, []byte{uint8(f.TCPState)})
		m.attr(ctaProtoinfoTCPFlagsOrig, []byte{ipCtTCPFlagBeLiberal, ipCtTCPFlagBeLiberal})
		m.attr(ctaProtoinfoTCPFlagsRepl, []byte{ipCtTCPFlagBeLiberal, ipCtTCPFlagBeLiberal})
		m.unnest()
		m.unnest()
	}
	if f.Reply.Src != f.Orig.Dst || f.Reply.SrcPort != f.Orig.DstPort {
		m.natRange(ctaNatDst, f.Reply.Src, f.Reply.SrcPort)
	}
	if f.Reply.Dst != f.Orig.Src || f.Reply.DstPort != f.Orig.SrcPort {
		m.natRange(ctaNatSrc, f.Reply.Dst, f.Reply.DstPort)
	}
	m.end(s)
}

// ctError is a NLMSG_ERROR the kernel answered a message with.
type ctError struct {
	Seq   uint32
	Errno int32
	Type  uint16 // the failed request's type (its header is echoed)
}

// errAckTrunc: an error message shorter than its header.
var errAckTrunc = errors.New("nfqueue: short netlink error message")

// parseCtErrors reads the NLMSG_ERROR messages of b (netlink_ack: an
// nlmsgerr with the request's header); other messages are skipped.
// Errno 0 is an acknowledgement.
func parseCtErrors(b []byte, out []ctError) ([]ctError, error) {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < nlmsgHdrLen || l > len(b) {
			return out, fmt.Errorf("nfqueue: netlink message length %d at a %d-byte rest", l, len(b))
		}
		if typ == 2 { // NLMSG_ERROR
			if l < nlmsgHdrLen+4+nlmsgHdrLen {
				return out, errAckTrunc
			}
			e := b[nlmsgHdrLen:l]
			out = append(out, ctError{Errno: -int32(binary.NativeEndian.Uint32(e)),
				Type: binary.NativeEndian.Uint16(e[4+4:]), Seq: binary.NativeEndian.Uint32(e[4+8:])})
		}
		b = b[min(nlmsgAlign(l), len(b)):]
	}
	return out, nil
}
