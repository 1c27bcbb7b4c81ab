package link

import (
	"encoding/binary"

	"github.com/uswitch-lab/uswitch/packet"
)

// Offloads between a TUN and uswitch: the virtio-net header, software
// segmentation of the super-packets the namespace's kernel hands over
// (GSO), and coalescing of the segments uswitch writes back into
// super-packets (GRO). Written from the virtio spec's struct
// virtio_net_hdr (include/uapi/linux/virtio_net.h) and what the kernel
// does with it (drivers/net/tun.c: tun_put_user, tun_get_user;
// include/linux/virtio_net.h: virtio_net_hdr_from_skb,
// virtio_net_hdr_to_skb; net/ipv4/tcp_offload.c: tcp_gso_segment,
// tcp_gro_receive; net/ipv4/af_inet.c: inet_gso_segment). Prior art:
// wireguard-go (golang.zx2c4.com/wireguard: tun/offload_linux.go,
// tun/tun_linux.go) does the same for its TUN, with TSO/USO splitting,
// TCP and UDP GRO tables and batched Read and Write; uswitch has its
// own because it opens multi-queue TUNs inside the namespace it serves,
// tells conntrack per packet whether the kernel vouched for the
// checksum (Queue.ReadValid), and cuts a super-packet into the
// caller's buffers without allocating, across as many Reads as that
// takes. wireguard-go's splitter and coalescer are unexported (reached
// only through a real TUN's Read and Write), so they serve as no test
// oracle either.
//
//	namespace ──TSO super-packet──> TUN read ──segment──> MSS-sized packets ─> engine
//	namespace <──one GSO packet──── TUN write <─coalesce── segments (datagrams) of a batch <─ engine
//
// The engine only ever sees real packets, each with complete checksums
// (its conntrack tracks windows per segment, NAT rewrites each). What
// uswitch writes as a coalesced packet carries a partial checksum
// (NEEDS_CSUM): the kernel that receives it trusts it
// (CHECKSUM_PARTIAL), so the payload is never summed on that side.

// vnetHdrLen is the size of struct virtio_net_hdr, the TUN's default
// vnet_hdr_sz.
const vnetHdrLen = 10

// virtio_net_hdr flags and gso_type values.
const (
	vnetFlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum from csum_start is partial
	vnetFlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID

	vnetGSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	vnetGSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	vnetGSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO: IP fragments; never offered)
	vnetGSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	vnetGSOUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO: UDP_SEGMENT)
	vnetGSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN: the first segment has CWR
)

// maxGSOPacket bounds a super-packet read from a TUN: the IPv4 total
// length field (the device's gso_max_size is 64 KB; no BIG TCP).
const maxGSOPacket = 65535

// vnetHdr is struct virtio_net_hdr. Its 16-bit fields are in the host's
// byte order: a TUN's vnet header is little-endian only if the host is
// (tun_is_little_endian: virtio_legacy_is_little_endian) unless
// TUNSETVNETLE/BE asked otherwise, which uswitch does not.
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16 // from the kernel: skb_headlen, not the header's length; never trusted
	gsoSize    uint16 // the MSS
	csumStart  uint16 // from the IP header's first byte (a TUN has no link header)
	csumOffset uint16 // of the checksum field, from csumStart
}

// decode reads the header from b (at least vnetHdrLen bytes).
func (h *vnetHdr) decode(b []byte) {
	_ = b[vnetHdrLen-1]
	h.flags = b[0]
	h.gsoType = b[1]
	h.hdrLen = binary.NativeEndian.Uint16(b[2:])
	h.gsoSize = binary.NativeEndian.Uint16(b[4:])
	h.csumStart = binary.NativeEndian.Uint16(b[6:])
	h.csumOffset = binary.NativeEndian.Uint16(b[8:])
}

// encode writes the header into b (at least vnetHdrLen bytes).
func (h *vnetHdr) encode(b []byte) {
	_ = b[vnetHdrLen-1]
	b[0] = h.flags
	b[1] = h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
}

// ipChecksum recomputes an IPv4 header's checksum.
func ipChecksum(ip []byte, ihl int) {
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^packet.Checksum(ip[:ihl], 0))
}

// completeChecksum finishes a partial checksum (NEEDS_CSUM) as the
// kernel's skb_checksum_help does (net/core/dev.c): the field at
// csum_start+csum_offset holds the pseudo-header's sum; the sum from
// csum_start to the end of the packet, inverted, replaces it (0 is sent
// as 0xffff, CSUM_MANGLED_0, which UDP reads as "a checksum of 0").
// ok is false if the offsets lie outside the packet.
func completeChecksum(h *vnetHdr, pkt []byte) (ok bool) {
	cs, co := int(h.csumStart), int(h.csumOffset)
	if cs+co+2 > len(pkt) {
		return false
	}
	c := ^packet.Checksum(pkt[cs:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[cs+co:], c)
	return true
}

// ipv4Len is the IPv4 packet's length: its total length field, or the
// buffer's if the field is larger (never for a valid packet) or 0.
func ipv4Len(pkt []byte) int {
	if len(pkt) < packet.IPv4MinHeaderLen {
		return len(pkt)
	}
	tl := int(binary.BigEndian.Uint16(pkt[2:]))
	if tl == 0 || tl > len(pkt) {
		return len(pkt)
	}
	return tl
}

// gsoPacket is a super-packet being cut into segments
// (tcp_gso_segment, __udp_gso_segment, inet_gso_segment): every segment
// has the headers of the super-packet with its own IP total length, IP
// ID (the first's plus the segment's index: no FIXEDID over virtio),
// and a full IP and transport checksum; TCP segments have their
// sequence number, CWR only on the first, FIN and PSH only on the last;
// UDP segments their own length. A zero gsoPacket has no segments.
type gsoPacket struct {
	pkt   []byte // the super-packet, IP header first, cut to its total length
	proto uint8
	ihl   int // IP header length
	hlen  int // IP and transport header length
	mss   int // payload bytes per segment
	nseg  int // segments in all
	next  int // the next segment to cut
	id    uint16
	seq   uint32
}

// init prepares pkt, read with the header h whose gso_type is TCPV4 or
// UDP_L4, for cutting; ok is false for a malformed one (wrong version,
// headers outside the packet, a fragment, a gso_type not asked for).
// It does not copy pkt: pkt must stay untouched until the last segment
// is cut.
func (g *gsoPacket) init(h *vnetHdr, pkt []byte) (ok bool) {
	*g = gsoPacket{}
	if len(pkt) < packet.IPv4MinHeaderLen || pkt[0]>>4 != 4 || h.gsoSize == 0 {
		return false
	}
	pkt = pkt[:ipv4Len(pkt)]
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < packet.IPv4MinHeaderLen || ihl > len(pkt) || binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 {
		return false
	}
	g.proto = pkt[9]
	l4 := pkt[ihl:]
	switch {
	case h.gsoType&^vnetGSOECN == vnetGSOTCPv4 && g.proto == packet.ProtoTCP:
		if len(l4) < packet.TCPMinHeaderLen {
			return false
		}
		doff := int(l4[12]>>4) * 4
		if doff < packet.TCPMinHeaderLen || doff > len(l4) {
			return false
		}
		g.hlen = ihl + doff
		g.seq = binary.BigEndian.Uint32(l4[4:])
	case h.gsoType == vnetGSOUDPL4 && g.proto == packet.ProtoUDP:
		if len(l4) < packet.UDPHeaderLen {
			return false
		}
		g.hlen = ihl + packet.UDPHeaderLen
	default:
		return false
	}
	g.pkt, g.ihl, g.mss = pkt, ihl, int(h.gsoSize)
	g.id = binary.BigEndian.Uint16(pkt[4:])
	g.nseg = max(1, (len(pkt)-g.hlen+g.mss-1)/g.mss)
	return true
}

// pending is how many segments are left to cut.
func (g *gsoPacket) pending() int { return g.nseg - g.next }

// segLen is the length of segment k.
func (g *gsoPacket) segLen(k int) int {
	return g.hlen + min(g.mss, len(g.pkt)-g.hlen-k*g.mss)
}

// cut writes the next segment into out and returns its length; ok is
// false (the segment skipped) if out is too small for it.
func (g *gsoPacket) cut(out []byte) (n int, ok bool) {
	k := g.next
	g.next++
	n = g.segLen(k)
	if n > len(out) {
		return 0, false
	}
	start := g.hlen + k*g.mss
	copy(out, g.pkt[:g.hlen])
	copy(out[g.hlen:n], g.pkt[start:])
	ip := out[:g.ihl]
	binary.BigEndian.PutUint16(ip[2:], uint16(n))
	binary.BigEndian.PutUint16(ip[4:], g.id+uint16(k))
	ipChecksum(ip, g.ihl)
	l4 := out[g.ihl:n]
	src, dst := binary.BigEndian.Uint32(ip[12:]), binary.BigEndian.Uint32(ip[16:])
	sum := packet.PseudoHeaderSum(src, dst, g.proto, uint16(len(l4)))
	switch g.proto {
	case packet.ProtoTCP:
		binary.BigEndian.PutUint32(l4[4:], g.seq+uint32(k*g.mss))
		if k > 0 {
			l4[13] &^= tcpCWR
		}
		if k < g.nseg-1 {
			l4[13] &^= tcpFIN | tcpPSH
		}
		l4[16], l4[17] = 0, 0
		binary.BigEndian.PutUint16(l4[16:], ^packet.Checksum(l4, sum))
	case packet.ProtoUDP:
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		l4[6], l4[7] = 0, 0
		c := ^packet.Checksum(l4, sum)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	}
	return n, true
}

// TCP flag bits (byte 13 of the header).
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80
)

// groUnit is one write of a coalesced batch: a packet alone, or the
// TCP segments (or UDP datagrams) of one flow made into one
// super-packet (n > 1).
type groUnit struct {
	head, tail int   // indices in the batch; the members chain by groBatch.next
	n          int   // members
	size       int   // IP total length of the super-packet so far
	mss        int   // the head's payload length: gso_size
	closed     bool  // takes no more members
	proto      uint8 // ProtoTCP or ProtoUDP: may take members; 0: alone
}

// groMaxUDPSegs bounds the datagrams of one UDP super-packet
// (UDP_MAX_SEGMENTS was 64 before Linux 6.7, 128 since).
const groMaxUDPSegs = 64

// groBatch coalesces the packets of one write (tcp_gro_receive's rules,
// within one batch): consecutive segments of one TCP flow (same
// addresses, ports, TOS, TTL, DF, ACK number, window, TCP options and
// flags but for PSH and FIN on the last, CWR on the first), in
// sequence, with IP IDs counting up by one, all of the first's payload
// length but the last, which may be shorter, up to 64 KB, become one
// unit. Segments of other flows in between do not stop it; a flow's
// packet that cannot join its flow's open unit closes it and starts
// the next, so no flow's packets are reordered. With udp, UDP
// datagrams of one flow (same addresses, ports, TOS, TTL, DF, IP IDs
// counting up by one, a checksum, all of the first's length but the
// last) become one UDP_L4 super-packet (USO), up to groMaxUDPSegs of
// them: the receiving kernel cuts it into the datagrams again
// (__udp_gso_segment) unless the socket takes it whole (UDP_GRO).
// Scratch state, reused.
type groBatch struct {
	units []groUnit
	next  []int // next[i]: the member after packet i in its unit, -1: none
	hdr   [vnetHdrLen]byte
}

// groScan is how many of the latest open units a packet is matched
// against (a batch rarely holds more flows for one device).
const groScan = 8

// coalesce groups pkts (IPv4 packets, each cut to its total length)
// into units, each packet a unit of its own unless merge (and UDP
// datagrams unless udp); build prepares each unit for writing.
func (g *groBatch) coalesce(pkts [][]byte, merge, udp bool) {
	g.units = g.units[:0]
	if cap(g.next) < len(pkts) {
		g.next = make([]int, len(pkts), max(len(pkts), batchSize))
	}
	g.next = g.next[:len(pkts)]
	for i, p := range pkts {
		g.next[i] = -1
		proto, plen := uint8(0), 0
		if merge {
			proto, plen = groEligible(p, udp)
		}
		if proto != 0 && g.join(pkts, i, proto, plen) {
			continue
		}
		un := groUnit{head: i, tail: i, n: 1, size: len(p), mss: plen, proto: proto}
		un.closed = proto == 0 || proto == packet.ProtoTCP && p[33]&(tcpPSH|tcpFIN) != 0
		g.units = append(g.units, un)
	}
}

// join adds the eligible packet i to the latest open unit of its flow
// if it may follow its tail; if it may not, that unit is closed.
func (g *groBatch) join(pkts [][]byte, i int, proto uint8, plen int) bool {
	p := pkts[i]
	seen := 0
	for u := len(g.units) - 1; u >= 0 && seen < groScan; u-- {
		un := &g.units[u]
		if un.closed {
			continue
		}
		seen++
		if un.proto != proto || string(pkts[un.head][12:24]) != string(p[12:24]) { // addresses and ports (IHL 5)
			continue
		}
		if !g.canAppend(un, pkts, p, plen) {
			un.closed = true
			return false
		}
		g.next[un.tail] = i
		un.tail = i
		un.n++
		un.size += plen
		if plen < un.mss || proto == packet.ProtoTCP && p[33]&(tcpPSH|tcpFIN) != 0 ||
			proto == packet.ProtoUDP && un.n >= groMaxUDPSegs {
			un.closed = true
		}
		return true
	}
	return false
}

// groEligible reports whether p may be coalesced, and as what (0: it
// may not): IPv4 without options, not a fragment, and either a TCP
// segment with payload and no SYN, RST or URG, or (with udp) a UDP
// datagram with payload and a checksum; plen is its payload length.
func groEligible(p []byte, udp bool) (proto uint8, plen int) {
	if len(p) < 28 || p[0] != 0x45 ||
		binary.BigEndian.Uint16(p[6:])&0x3fff != 0 || int(binary.BigEndian.Uint16(p[2:])) != len(p) {
		return 0, 0
	}
	switch p[9] {
	case packet.ProtoTCP:
		if len(p) < 40 {
			return 0, 0
		}
		doff := int(p[32]>>4) * 4
		if doff < 20 || 20+doff >= len(p) || p[33]&(tcpSYN|tcpRST|tcpURG) != 0 {
			return 0, 0
		}
		return packet.ProtoTCP, len(p) - 20 - doff
	case packet.ProtoUDP:
		if !udp || len(p) <= 28 || int(binary.BigEndian.Uint16(p[24:])) != len(p)-20 || binary.BigEndian.Uint16(p[26:]) == 0 {
			return 0, 0
		}
		return packet.ProtoUDP, len(p) - 28
	}
	return 0, 0
}

// canAppend reports whether p (eligible, plen bytes of payload) may
// follow unit un's tail.
func (g *groBatch) canAppend(un *groUnit, pkts [][]byte, p []byte, plen int) bool {
	h, t := pkts[un.head], pkts[un.tail]
	var tlen int
	if un.proto == packet.ProtoUDP {
		tlen = len(t) - 28
	} else {
		tlen = len(t) - 20 - int(t[32]>>4)*4
	}
	switch {
	case tlen != un.mss, plen > un.mss, un.size+plen > maxGSOPacket:
		return false
	case h[1] != p[1] || h[8] != p[8] || h[6] != p[6]: // TOS, TTL, DF
		return false
	case binary.BigEndian.Uint16(p[4:]) != binary.BigEndian.Uint16(t[4:])+1: // IP ID
		return false
	case un.proto == packet.ProtoUDP:
		return true
	case binary.BigEndian.Uint32(p[24:]) != binary.BigEndian.Uint32(t[24:])+uint32(tlen): // seq
		return false
	case p[33]&tcpCWR != 0 || (p[33]^h[33])&^(tcpCWR|tcpPSH|tcpFIN) != 0:
		return false
	case p[32] != h[32] || string(p[28:32]) != string(h[28:32]) || string(p[34:36]) != string(h[34:36]): // doff, ack, window
		return false
	}
	doff := int(p[32]>>4) * 4
	return string(p[40:20+doff]) == string(h[40:20+doff]) // options
}

// build makes unit u's packets one super-packet: the head's headers are
// rewritten for the whole (total length, IP checksum, PSH and FIN of
// the last, the pseudo-header sum as TCP checksum: NEEDS_CSUM, as
// tcp_v4_send_check leaves it) and g.hdr is its virtio header (zero for
// a unit of one packet, written as it is). It appends to iov the
// unit's bytes: the header, the head whole, the others' payloads.
func (g *groBatch) build(u int, pkts [][]byte, iov [][]byte) [][]byte {
	un := &g.units[u]
	hdr := vnetHdr{}
	h := pkts[un.head]
	if un.n > 1 && un.proto == packet.ProtoUDP {
		// udp_send_skb with gso_size leaves the same: the whole
		// length in the UDP header, its pseudo-header sum as checksum
		binary.BigEndian.PutUint16(h[2:], uint16(un.size))
		ipChecksum(h, 20)
		binary.BigEndian.PutUint16(h[24:], uint16(un.size-20))
		src, dst := binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:])
		sum := packet.PseudoHeaderSum(src, dst, packet.ProtoUDP, uint16(un.size-20))
		binary.BigEndian.PutUint16(h[26:], packet.Checksum(nil, sum))
		hdr = vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOUDPL4, hdrLen: 28,
			gsoSize: uint16(un.mss), csumStart: 20, csumOffset: 6}
		hdr.encode(g.hdr[:])
		iov = append(iov, g.hdr[:], h)
		for i := g.next[un.head]; i >= 0; i = g.next[i] {
			iov = append(iov, pkts[i][28:])
		}
		return iov
	}
	if un.n > 1 {
		doff := int(h[32]>>4) * 4
		t := pkts[un.tail]
		binary.BigEndian.PutUint16(h[2:], uint16(un.size))
		ipChecksum(h, 20)
		h[33] |= t[33] & (tcpPSH | tcpFIN)
		src, dst := binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:])
		sum := packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, uint16(un.size-20))
		binary.BigEndian.PutUint16(h[36:], packet.Checksum(nil, sum))
		hdr = vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: uint16(20 + doff),
			gsoSize: uint16(un.mss), csumStart: 20, csumOffset: 16}
		if h[33]&tcpCWR != 0 {
			hdr.gsoType |= vnetGSOECN
		}
		hdr.encode(g.hdr[:])
		iov = append(iov, g.hdr[:], h)
		for i := g.next[un.head]; i >= 0; i = g.next[i] {
			p := pkts[i]
			iov = append(iov, p[20+int(p[32]>>4)*4:])
		}
		return iov
	}
	hdr.encode(g.hdr[:])
	return append(iov, g.hdr[:], h)
}
