package lvs

import (
	"encoding/binary"
	"errors"

	"github.com/uswitch-lab/uswitch/packet"
)

// Outer protocol numbers of the tunnel encapsulations.
const (
	protoIPIP = 4
	protoGRE  = 47
)

// EncapLen is the bytes a dest's tunnel adds in front of the packet.
func EncapLen(d *Dest) int {
	dp := d.P()
	switch dp.TunType {
	case TunGUE:
		return 20 + 8 + 4
	case TunGRE:
		if dp.TunFlags&TunFlagCsum != 0 {
			return 20 + 8
		}
		return 20 + 4
	}
	return 20
}

// Encap is ip_vs_tunnel_xmit's encapsulation: a new outer IPv4 header
// from src (the route's source) to the real server, with the inner
// packet's DSCP/ECN byte, DF bit and TTL (already decremented), and for
// GUE a UDP + GUE header (ipvs_gue_encap) or for GRE a GRE header
// (ipvs_gre_encap). The result is a new buffer (the caller's headroom is
// not assumed); p is re-decoded on it.
func Encap(p *packet.Packet, cp *Conn, src uint32, id uint16) error {
	dest := cp.Dest
	if dest == nil {
		return errors.New("ipvs: tunnel connection without dest")
	}
	inner := p.IP
	hl := EncapLen(dest)
	if len(inner)+hl > 0xffff {
		return errors.New("ipvs: tunnelled packet too long")
	}
	b := make([]byte, hl+len(inner))
	copy(b[hl:], inner)
	next := uint8(protoIPIP)
	dp := dest.P()
	switch dp.TunType {
	case TunGUE:
		next = packet.ProtoUDP
		u := b[20:28]
		// udp_flow_src_port: a port in the local range from the
		// flow's hash, so one flow keeps one outer source port
		h := (p.Src ^ p.Dst ^ uint32(p.SrcPort)<<16 ^ uint32(p.DstPort)) * 0x9e3779b1
		sport := uint16(32768 + (uint32(uint64(h) * (60999 - 32768 + 1) >> 32)))
		binary.BigEndian.PutUint16(u[0:], sport)
		binary.BigEndian.PutUint16(u[2:], dp.TunPort)
		binary.BigEndian.PutUint16(u[4:], uint16(len(b)-20))
		// GUE header: version 0, hlen 0, proto IPIP, no flags
		g := b[28:32]
		g[0], g[1], g[2], g[3] = 0, protoIPIP, 0, 0
		if dp.TunFlags&(TunFlagCsum|TunFlagRemCsum) != 0 {
			binary.BigEndian.PutUint16(u[6:], udpChecksum(src, cp.DAddr, b[20:]))
		}
	case TunGRE:
		next = protoGRE
		g := b[20:]
		if dp.TunFlags&TunFlagCsum != 0 {
			g[0] = 0x80 // C
			binary.BigEndian.PutUint16(g[2:], 0x0800)
			binary.BigEndian.PutUint16(g[4:], ^packet.Checksum(b[20:], 0))
		} else {
			binary.BigEndian.PutUint16(g[2:], 0x0800)
		}
	}
	o := packet.IPv4(b[:20])
	b[0] = 0x45
	b[1] = inner.TOS()
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	if inner.DF() {
		b[6] = 0x40
	}
	b[8] = inner.TTL()
	b[9] = next
	binary.BigEndian.PutUint32(b[12:], src)
	binary.BigEndian.PutUint32(b[16:], cp.DAddr)
	o.SetChecksum()
	p.Data = b
	return p.Decode()
}

func udpChecksum(src, dst uint32, u []byte) uint16 {
	var ph [12]byte
	binary.BigEndian.PutUint32(ph[0:], src)
	binary.BigEndian.PutUint32(ph[4:], dst)
	ph[9] = packet.ProtoUDP
	binary.BigEndian.PutUint16(ph[10:], uint16(len(u)))
	s := packet.Checksum(u, uint32(packet.Checksum(ph[:], 0)))
	c := ^s
	if c == 0 {
		c = 0xffff
	}
	return c
}

// Decap is the real server's side of a tunnel (the kernel's tunl0 for
// IPIP, a fou/GUE port, a gre device): when b is an IPv4 packet that
// carries IPv4 in IPIP, in GUE on the UDP port guePort (0: any GUE is
// not recognised) or in GRE, it returns the inner packet; ok is false
// otherwise. The outer header must be valid; the inner one is returned
// as it is (the receiving stack checks it).
func Decap(b []byte, guePort uint16) (inner []byte, ok bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return nil, false
	}
	hl := int(b[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(b[2:]))
	if hl < 20 || tl < hl || tl > len(b) || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		return nil, false
	}
	l4 := b[hl:tl]
	switch b[9] {
	case protoIPIP:
		return l4, len(l4) >= 20
	case protoGRE:
		if len(l4) < 4 || binary.BigEndian.Uint16(l4[2:]) != 0x0800 {
			return nil, false
		}
		n := 4
		if l4[0]&0x80 != 0 { // checksum present
			n += 4
		}
		if l4[0]&0x20 != 0 { // key
			n += 4
		}
		if l4[0]&0x10 != 0 { // sequence
			n += 4
		}
		if len(l4) < n+20 {
			return nil, false
		}
		return l4[n:], true
	case packet.ProtoUDP:
		if guePort == 0 || len(l4) < 12 || binary.BigEndian.Uint16(l4[2:]) != guePort {
			return nil, false
		}
		g := l4[8:]
		if g[0]>>6 != 0 || g[1] != protoIPIP {
			return nil, false
		}
		n := 4 + int(g[0]&0x1f)*4
		if len(g) < n+20 {
			return nil, false
		}
		return g[n:], true
	}
	return nil, false
}
