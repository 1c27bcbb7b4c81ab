package trace

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// ebtables --log flags (include/uapi/linux/netfilter_bridge/ebt_log.h
// EBT_LOG_*).
const (
	EbtLogIP    = 0x01
	EbtLogARP   = 0x02
	EbtLogNFLog = 0x04
	EbtLogIP6   = 0x08
)

// EbtLogInfo is what the ebtables log watcher prints besides the frame.
type EbtLogInfo struct {
	Prefix string
	Flags  uint8 // EbtLog* bits
	// In and Out are the bridge ports ("" = none). The bridges (the
	// logical in/out, which ebtables matches with --logical-in/-out) are
	// not part of the line: ebt_log_packet prints only the ports.
	In, Out string
	// LogicalIn and LogicalOut are the bridge devices, kept for callers
	// that print the nf_log form; EbtLogLine ignores them.
	LogicalIn, LogicalOut string
}

// EbtLogLine formats the line net/bridge/netfilter/ebt_log.c
// ebt_log_packet prints (kernel 6.18) for a decoded frame: the legacy
// ebtables log watcher, and ebtables-nft's when the rule runs through
// nft_compat. A VLAN tag counts as the kernel sees it after the receive
// path moved it out of the frame (skb_vlan_untag): the protocol and the
// headers are those after the tag.
//
//	ebt-fwd  IN=veth0 OUT=veth1 MAC source = 02:00:00:00:00:01 MAC dest = 02:00:00:00:00:02 proto = 0x0800 IP SRC=10.77.0.1 IP DST=10.77.0.2, IP tos=0x00, IP proto=1
//
// There is no trailing space; the prefix is followed by one space.
func EbtLogLine(li *EbtLogInfo, f *packet.Frame) string {
	var b strings.Builder
	b.Grow(200)
	proto := f.InnerProto
	fmt.Fprintf(&b, "%s IN=%s OUT=%s MAC source = %s MAC dest = %s proto = 0x%04x",
		li.Prefix, li.In, li.Out, f.Src, f.Dst, proto)
	nh := f.Payload
	switch {
	case li.Flags&EbtLogIP != 0 && proto == packet.EtherTypeIPv4:
		if len(nh) < 20 {
			b.WriteString(" INCOMPLETE IP header")
			break
		}
		fmt.Fprintf(&b, " IP SRC=%s IP DST=%s, IP tos=0x%02X, IP proto=%d", ip4(nh[12:]), ip4(nh[16:]), nh[1], nh[9])
		ebtPorts(&b, nh, nh[9], int(nh[0]&0x0f)*4)
	case li.Flags&EbtLogIP6 != 0 && proto == packet.EtherTypeIPv6:
		if len(nh) < 40 {
			b.WriteString(" INCOMPLETE IPv6 header")
			break
		}
		fmt.Fprintf(&b, " IPv6 SRC=%s IPv6 DST=%s, IPv6 priority=0x%01X, Next Header=%d", ip6Full(nh[8:24]), ip6Full(nh[24:40]), nh[0]&0x0f, nh[6])
		if next, off, ok := ip6SkipExthdr(nh, nh[6], 40); ok {
			ebtPorts(&b, nh, next, off)
		}
	case li.Flags&EbtLogARP != 0 && (proto == etherTypeARP || proto == etherTypeRARP):
		if len(nh) < 8 {
			b.WriteString(" INCOMPLETE ARP header")
			break
		}
		hrd, pro, op := binary.BigEndian.Uint16(nh), binary.BigEndian.Uint16(nh[2:]), binary.BigEndian.Uint16(nh[6:])
		fmt.Fprintf(&b, " ARP HTYPE=%d, PTYPE=0x%04x, OPCODE=%d", hrd, pro, op)
		if hrd == 1 && nh[4] == 6 && nh[5] == 4 {
			if len(nh) < 8+20 {
				b.WriteString(" INCOMPLETE ARP payload")
				break
			}
			ap := nh[8:]
			fmt.Fprintf(&b, " ARP MAC SRC=%s ARP IP SRC=%s ARP MAC DST=%s ARP IP DST=%s",
				macString(ap[0:6]), ip4(ap[6:]), macString(ap[10:16]), ip4(ap[16:]))
		}
	}
	return b.String()
}

const (
	etherTypeARP  = 0x0806
	etherTypeRARP = 0x8035
)

// ebtPorts is ebt_log.c print_ports: the two ports of TCP, UDP,
// UDP-Lite, SCTP and DCCP, also in a fragment that is not the first.
func ebtPorts(b *strings.Builder, nh []byte, proto uint8, off int) {
	switch proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoSCTP, packet.ProtoDCCP:
	default:
		return
	}
	if off < 0 || len(nh)-off < 4 {
		b.WriteString(" INCOMPLETE TCP/UDP header")
		return
	}
	fmt.Fprintf(b, " SPT=%d DPT=%d", binary.BigEndian.Uint16(nh[off:]), binary.BigEndian.Uint16(nh[off+2:]))
}

// ip6Full is %pI6: eight groups of four lowercase hex digits, no
// compression.
func ip6Full(a []byte) string {
	var b strings.Builder
	for i := 0; i < 16; i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02x%02x", a[i], a[i+1])
	}
	return b.String()
}

// ip6SkipExthdr is ipv6_skip_exthdr (net/ipv6/exthdrs_core.c): the
// upper-layer protocol and its offset; a fragment that is not the first
// stops at the fragment header (its protocol is then 44).
func ip6SkipExthdr(nh []byte, next uint8, off int) (uint8, int, bool) {
	for {
		switch next {
		case 0, 43, 44, 51, 60: // hop-by-hop, routing, fragment, AH, destination
		case 59: // no next header
			return 0, 0, false
		default:
			return next, off, true
		}
		if len(nh)-off < 2 {
			return 0, 0, false
		}
		var n int
		switch next {
		case 44:
			if len(nh)-off < 4 {
				return 0, 0, false
			}
			if binary.BigEndian.Uint16(nh[off+2:])&^7 != 0 {
				return next, off, true
			}
			n = 8
		case 51:
			n = (int(nh[off+1]) + 2) << 2
		default:
			n = (int(nh[off+1]) + 1) << 3
		}
		next = nh[off]
		off += n
	}
}
