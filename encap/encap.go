// Package encap holds the wire formats and the per-device state of the
// tunnels a node's devices play: VXLAN (RFC 7348, the kernel's vxlan
// driver: drivers/net/vxlan/vxlan_core.c), what flannel and Calico use
// between nodes, and IPIP (RFC 2003, net/ipv4/ipip.c and
// net/ipv4/ip_tunnel.c), Calico's other mode.
//
// A tunnel device sends by building an outer IPv4 packet in front of
// what the IP stack routed out of it, which then leaves as the host's own
// packet (iptunnel_xmit -> ip_local_out: OUTPUT and POSTROUTING run for
// the outer packet), and receives what the host delivered to the
// tunnel's socket (VXLAN: a UDP socket bound to 0.0.0.0:PORT, whose
// encap_rcv is vxlan_rcv; IPIP: the protocol 4 handler, ipip_rcv), after
// INPUT; the inner packet then arrives on the device and runs
// PREROUTING with IN= the device:
//
//	                   OUTPUT  POSTROUTING
//	inner ─> route ─> dev vxlan.calico ─> [FDB: dst MAC -> VTEP] ─> outer IPv4/UDP/VXLAN ─> ip_local_out ─> eth0
//	                                                                   (src: local, or the route's source)
//	eth0 ─> PREROUTING ─> INPUT ─> udp 4789 socket ─> vxlan_rcv ─> inner frame on vxlan.calico ─> PREROUTING ...
//
// This package has no I/O: link runs the devices (link/tunnel.go); the
// parsers here are fuzzed (FuzzParseVXLAN, FuzzParseIPIP).
package encap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/internal/kernhash"
	"github.com/uswitch-lab/uswitch/packet"
)

// Header sizes.
const (
	// VXLANHeaderLen is the VXLAN header: flags, reserved, VNI, reserved.
	VXLANHeaderLen = 8
	// VXLANOverhead is VXLAN_HEADROOM: outer IPv4, UDP, VXLAN and the
	// inner Ethernet header, what a vxlan device's MTU is below its
	// lower device's.
	VXLANOverhead = 20 + 8 + VXLANHeaderLen + packet.EtherHeaderLen
	// IPIPOverhead is the outer IPv4 header of IPIP.
	IPIPOverhead = 20
	// ProtoIPIP is IPPROTO_IPIP.
	ProtoIPIP = 4
)

// Ports.
const (
	// PortIANA is VXLAN's IANA port (4789), Calico's.
	PortIANA = 4789
	// PortLinux is the kernel's default destination port (the vxlan
	// module's vxlan_port parameter, 8472), flannel's.
	PortLinux = 8472
)

// LocalPortMin and LocalPortMax are net.ipv4.ip_local_port_range's
// defaults: a device with no srcport range draws its source ports there
// (udp_flow_src_port: min >= max uses inet_get_local_port_range).
const (
	LocalPortMin = 32768
	LocalPortMax = 60999
)

// vxlanFlagI is the I flag (VXLAN_HF_VNI): the VNI is valid.
const vxlanFlagI = 0x08000000

// DF is a vxlan device's df setting (IFLA_VXLAN_DF).
type DF uint8

// The df settings.
const (
	DFUnset   DF = iota // no DF on the outer header (the default)
	DFSet               // always DF
	DFInherit           // the inner IPv4 header's DF
)

func (d DF) String() string { return [...]string{"unset", "set", "inherit"}[d] }

// SrcPort is udp_flow_src_port's mapping of a flow hash into [min, max):
// the hash is folded (hash ^= hash << 16, "to minimize the possibility
// that any useful information ... is leaked") and scaled. min >= max
// means the local port range.
func SrcPort(hash uint32, min, max uint16) uint16 {
	lo, hi := uint32(min), uint32(max)
	if lo >= hi {
		lo, hi = LocalPortMin, LocalPortMax
	}
	hash ^= hash << 16
	return uint16((uint64(hash)*uint64(hi-lo))>>32 + uint64(lo))
}

// FlowHash is the flow hash the source port is drawn from: the kernel
// takes skb_get_hash, the flow dissector's hash of the inner addresses,
// protocol and ports under a per-boot random key, which cannot be
// reproduced; this is jhash of the same fields under seed, so one flow
// keeps one source port and flows spread over the range. ip is the
// inner IPv4 packet (nil or short: hash of the frame's MACs, the
// kernel's fallback for a frame without a flow: jhash(eth, 12, proto)).
func FlowHash(ip []byte, frame []byte, seed uint32) uint32 {
	if len(ip) >= 20 && ip[0]>>4 == 4 {
		src, dst := binary.BigEndian.Uint32(ip[12:16]), binary.BigEndian.Uint32(ip[16:20])
		proto := ip[9]
		var ports uint32
		hl := int(ip[0]&0x0f) * 4
		frag := binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0
		if !frag && hl >= 20 && len(ip) >= hl+4 && (proto == packet.ProtoTCP || proto == packet.ProtoUDP || proto == 132 || proto == 33) {
			ports = binary.BigEndian.Uint32(ip[hl : hl+4])
		}
		// __flow_hash_consistentify: the same hash both ways
		if src > dst {
			src, dst = dst, src
			ports = ports<<16 | ports>>16
		}
		h := kernhash.Jhash3Words(src, dst, ports^uint32(proto), seed)
		if h == 0 {
			h = 1
		}
		return h
	}
	if len(frame) >= 14 {
		var w [3]uint32
		w[0] = binary.BigEndian.Uint32(frame[0:4])
		w[1] = binary.BigEndian.Uint32(frame[4:8])
		w[2] = binary.BigEndian.Uint32(frame[8:12])
		return kernhash.Jhash2(w[:], seed^uint32(binary.BigEndian.Uint16(frame[12:14])))
	}
	return seed
}

// ECNEncap is INET_ECN_encapsulate: the outer TOS is tos with the inner
// packet's ECN bits, except that an inner CE becomes ECT(0).
func ECNEncap(tos, inner uint8) uint8 {
	ecn := inner & 3
	if ecn == 3 {
		ecn = 2
	}
	return tos&^3 | ecn
}

// ECNDecap is INET_ECN_decapsulate for an IPv4 inner packet: an outer CE
// marks the inner packet CE (its checksum updated in place), unless the
// inner packet is not ECN-capable, which the kernel drops (drop true:
// "non-ECT from ... with TOS"). inner must hold an IPv4 header.
func ECNDecap(outerTOS uint8, inner []byte) (drop bool) {
	if outerTOS&3 != 3 || len(inner) < 20 {
		return false
	}
	tos := inner[1]
	if tos&3 == 0 {
		return true
	}
	if tos&3 != 3 {
		old := binary.BigEndian.Uint16(inner[0:2])
		inner[1] = tos | 3
		binary.BigEndian.PutUint16(inner[10:12], packet.UpdateChecksum16(binary.BigEndian.Uint16(inner[10:12]), old, binary.BigEndian.Uint16(inner[0:2])))
	}
	return false
}

// Outer is an outer IPv4 header's fields.
type Outer struct {
	Src, Dst uint32
	TOS, TTL uint8
	DF       bool
	ID       uint16
}

// putIPv4 writes a 20-byte IPv4 header of total length n, protocol
// proto, with its checksum (iptunnel_xmit; ip_local_out fills tot_len
// and the checksum).
func putIPv4(b []byte, o Outer, proto uint8, n int) {
	b[0] = 0x45
	b[1] = o.TOS
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	binary.BigEndian.PutUint16(b[4:6], o.ID)
	b[6], b[7] = 0, 0
	if o.DF {
		b[6] = 0x40
	}
	b[8] = o.TTL
	b[9] = proto
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint32(b[12:16], o.Src)
	binary.BigEndian.PutUint32(b[16:20], o.Dst)
	binary.BigEndian.PutUint16(b[10:12], ^packet.Checksum(b[:20], 0))
}

// VXLANHeaders is the room the outer headers of a VXLAN packet take in
// front of its inner frame: IPv4, UDP, VXLAN.
const VXLANHeaders = 20 + 8 + VXLANHeaderLen

// PutVXLAN writes the outer IPv4, UDP and VXLAN headers into
// b[:VXLANHeaders], in front of the inner frame, which already is at
// b[VXLANHeaders:]; b is the whole outer packet. csum computes the UDP
// checksum (udp_set_csum: 0 becomes 0xffff); without it the checksum is
// zero (noudpcsum). It returns b. The inner frame is not checked.
func PutVXLAN(b []byte, o Outer, sport, dport uint16, vni uint32, csum bool) ([]byte, error) {
	if len(b) < VXLANHeaders || len(b) > 0xffff {
		return nil, fmt.Errorf("vxlan: outer packet of %d bytes", len(b))
	}
	putIPv4(b, o, packet.ProtoUDP, len(b))
	u := b[20:]
	binary.BigEndian.PutUint16(u[0:2], sport)
	binary.BigEndian.PutUint16(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	u[6], u[7] = 0, 0
	v := u[8:16]
	binary.BigEndian.PutUint32(v[0:4], vxlanFlagI)
	binary.BigEndian.PutUint32(v[4:8], vni<<8)
	if csum {
		c := ^packet.Checksum(u, packet.PseudoHeaderSum(o.Src, o.Dst, packet.ProtoUDP, uint16(len(u))))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(u[6:8], c)
	}
	return b, nil
}

// PutIPIP writes the outer IPv4 header into b[:IPIPOverhead], in front
// of the inner packet at b[IPIPOverhead:]; b is the whole outer packet.
func PutIPIP(b []byte, o Outer) ([]byte, error) {
	if len(b) < IPIPOverhead+20 || len(b) > 0xffff {
		return nil, fmt.Errorf("ipip: outer packet of %d bytes", len(b))
	}
	putIPv4(b, o, ProtoIPIP, len(b))
	return b, nil
}

// Errors of the parsers: why a tunnel packet was not taken (each is a
// kernel drop, or a packet that is not the tunnel's).
var (
	ErrShort    = errors.New("truncated")
	ErrNotUDP   = errors.New("not UDP")
	ErrNotIPIP  = errors.New("not IPIP")
	ErrPort     = errors.New("not the tunnel's port")
	ErrChecksum = errors.New("bad UDP checksum")
	ErrFlags    = errors.New("VXLAN flags: I not set, or reserved bits set")
	ErrFragment = errors.New("a fragment")
	ErrInner    = errors.New("inner packet is not IPv4")
)

// ParseError is a tunnel packet the parser refused, with where.
type ParseError struct {
	Off int // byte offset in the outer packet
	Err error
}

func (e *ParseError) Error() string { return fmt.Sprintf("offset %d: %v", e.Off, e.Err) }
func (e *ParseError) Unwrap() error { return e.Err }

// outerIPv4 checks an outer IPv4 header (the engine decoded it already;
// the parsers stand on their own) and returns its header length and
// total length.
func outerIPv4(b []byte) (hl, tl int, err error) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return 0, 0, &ParseError{0, ErrShort}
	}
	hl = int(b[0]&0x0f) * 4
	tl = int(binary.BigEndian.Uint16(b[2:4]))
	if hl < 20 || tl < hl || tl > len(b) {
		return 0, 0, &ParseError{0, ErrShort}
	}
	if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
		return 0, 0, &ParseError{6, ErrFragment}
	}
	return hl, tl, nil
}

// VXLANPacket is what ParseVXLAN found.
type VXLANPacket struct {
	VNI uint32
	// Frame is the inner Ethernet frame (a subslice of the packet).
	Frame []byte
	// SrcPort is the outer UDP source port.
	SrcPort uint16
}

// ParseVXLAN opens a VXLAN packet to UDP port port: the outer IPv4
// header, UDP (its length; its checksum unless zero, as udp_rcv checks
// before the socket's encap_rcv), the VXLAN header (vxlan_rcv: the I
// flag must be set and every reserved bit clear, else the packet is
// dropped: the kernel diverges from RFC 7348 there, which says to
// ignore them) and an inner frame of at least an Ethernet header. It
// never panics and does not allocate.
func ParseVXLAN(b []byte, port uint16) (VXLANPacket, error) {
	hl, tl, err := outerIPv4(b)
	if err != nil {
		return VXLANPacket{}, err
	}
	if b[9] != packet.ProtoUDP {
		return VXLANPacket{}, &ParseError{9, ErrNotUDP}
	}
	u := b[hl:tl]
	if len(u) < 8 {
		return VXLANPacket{}, &ParseError{hl, ErrShort}
	}
	if binary.BigEndian.Uint16(u[2:4]) != port {
		return VXLANPacket{}, &ParseError{hl + 2, ErrPort}
	}
	ul := int(binary.BigEndian.Uint16(u[4:6]))
	if ul < 8 || ul > len(u) {
		return VXLANPacket{}, &ParseError{hl + 4, ErrShort}
	}
	u = u[:ul]
	if c := binary.BigEndian.Uint16(u[6:8]); c != 0 {
		src, dst := binary.BigEndian.Uint32(b[12:16]), binary.BigEndian.Uint32(b[16:20])
		if packet.Checksum(u, packet.PseudoHeaderSum(src, dst, packet.ProtoUDP, uint16(ul))) != 0xffff {
			return VXLANPacket{}, &ParseError{hl + 6, ErrChecksum}
		}
	}
	if len(u) < 8+VXLANHeaderLen+packet.EtherHeaderLen {
		return VXLANPacket{}, &ParseError{hl + 8, ErrShort}
	}
	v := u[8:16]
	flags, word := binary.BigEndian.Uint32(v[0:4]), binary.BigEndian.Uint32(v[4:8])
	if flags != vxlanFlagI || word&0xff != 0 {
		return VXLANPacket{}, &ParseError{hl + 8, ErrFlags}
	}
	return VXLANPacket{VNI: word >> 8, Frame: u[16:], SrcPort: binary.BigEndian.Uint16(u[0:2])}, nil
}

// ParseIPIP opens an IPIP packet (protocol 4): the outer IPv4 header and
// an inner packet that starts as IPv4 (ipip_rcv takes protocol 4 as
// ETH_P_IP; the inner header is checked by the receive path it enters).
// It returns the inner packet (a subslice). It never panics and does
// not allocate.
func ParseIPIP(b []byte) ([]byte, error) {
	hl, tl, err := outerIPv4(b)
	if err != nil {
		return nil, err
	}
	if b[9] != ProtoIPIP {
		return nil, &ParseError{9, ErrNotIPIP}
	}
	in := b[hl:tl]
	if len(in) < 20 {
		return nil, &ParseError{hl, ErrShort}
	}
	if in[0]>>4 != 4 {
		return nil, &ParseError{hl, ErrInner}
	}
	return in, nil
}

// FDBEntry is one `bridge fdb append MAC dev DEV dst IP [port P] [vni
// N]` entry of a vxlan device: frames to MAC go to the VTEP Dst. The
// all-zeros MAC is the default destination (frames to an unknown MAC,
// broadcast and multicast: flooded to every such entry).
type FDBEntry struct {
	MAC  packet.MAC
	Dst  netip.Addr
	Port uint16 // 0: the device's
	VNI  uint32 // 0: the device's
}

func (e FDBEntry) String() string {
	s := e.MAC.String() + " dst " + e.Dst.String()
	if e.Port != 0 {
		s += " port " + strconv.Itoa(int(e.Port))
	}
	if e.VNI != 0 {
		s += " vni " + strconv.FormatUint(uint64(e.VNI), 10)
	}
	return s
}

// ParseFDBEntry parses "MAC dst IP [port P] [vni N]" (bridge fdb's
// arguments after the MAC, without dev).
func ParseFDBEntry(s string) (FDBEntry, error) {
	f := strings.Fields(s)
	fail := func(format string, a ...any) (FDBEntry, error) {
		return FDBEntry{}, fmt.Errorf("fdb %q: %s", s, fmt.Sprintf(format, a...))
	}
	if len(f) < 3 {
		return fail("want MAC dst IP [port P] [vni N]")
	}
	m, err := packet.ParseMAC(f[0])
	if err != nil {
		return fail("%v", err)
	}
	e := FDBEntry{MAC: m}
	for i := 1; i < len(f); i += 2 {
		if i+1 >= len(f) {
			return fail("%q needs a value", f[i])
		}
		v := f[i+1]
		switch f[i] {
		case "dst":
			a, err := netip.ParseAddr(v)
			if err != nil || !a.Is4() || a.IsUnspecified() {
				return fail("dst %q: want an IPv4 address", v)
			}
			e.Dst = a
		case "port", "dst_port":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n == 0 {
				return fail("port %q: want 1-65535", v)
			}
			e.Port = uint16(n)
		case "vni":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n >= 1<<24 {
				return fail("vni %q: want 0-16777215", v)
			}
			e.VNI = uint32(n)
		default:
			return fail("unknown word %q (want dst, port, vni)", f[i])
		}
	}
	if !e.Dst.IsValid() {
		return fail("no dst")
	}
	if m.IsMulticast() {
		return fail("%v: a multicast address has no fdb entry of its own (the all-zeros entry floods)", m)
	}
	return e, nil
}

// Neigh is a static neighbour of a tunnel device (`ip neigh replace IP
// lladdr MAC dev DEV nud permanent`): the next hop IP has the MAC.
type Neigh struct {
	IP  netip.Addr
	MAC packet.MAC
}

func (n Neigh) String() string { return n.IP.String() + " lladdr " + n.MAC.String() }

// ParseNeigh parses "IP lladdr MAC".
func ParseNeigh(s string) (Neigh, error) {
	f := strings.Fields(s)
	if len(f) != 3 || f[1] != "lladdr" {
		return Neigh{}, fmt.Errorf("neighbour %q: want IP lladdr MAC", s)
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil || !a.Is4() {
		return Neigh{}, fmt.Errorf("neighbour %q: %q is not an IPv4 address", s, f[0])
	}
	m, err := packet.ParseMAC(f[2])
	if err != nil {
		return Neigh{}, fmt.Errorf("neighbour %q: %v", s, err)
	}
	if !m.IsValidUnicast() {
		return Neigh{}, fmt.Errorf("neighbour %q: want a unicast MAC", s)
	}
	return Neigh{IP: a, MAC: m}, nil
}
