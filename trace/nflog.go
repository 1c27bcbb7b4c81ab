package trace

// The kernel's log lines for IPv4 (nf_log_ipv4 in
// net/netfilter/nf_log_syslog.c, kernel 6.18): what -j LOG writes, and
// what iptables-legacy's -j TRACE writes through nf_log_trace
// (net/ipv4/netfilter/ip_tables.c trace_packet). Each line is the text
// dmesg prints without its timestamp; the syslog level only chooses the
// printk level and is not part of it. The line ends with the space the
// last field is printed with, as the kernel leaves it.
//
//	XLOG IN=tun1 OUT= MAC= SRC=10.0.1.2 DST=10.0.1.1 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=ICMP TYPE=8 CODE=0 ID=7 SEQ=1
//	TRACE: raw:PREROUTING:policy:2 IN=tun1 OUT= MAC= SRC=...

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// nf_log flags (include/net/netfilter/nf_log.h NF_LOG_*, the same bits
// as xt_LOG's XT_LOG_*).
const (
	LogTCPSeq    = 0x01
	LogTCPOpt    = 0x02
	LogIPOpt     = 0x04
	LogUID       = 0x08
	LogNFLog     = 0x10
	LogMACDecode = 0x20
	// LogDefaultMask is NF_LOG_DEFAULT_MASK: the flags of the legacy
	// TRACE logger (ip_tables.c trace_loginfo).
	LogDefaultMask = 0x0f
)

// LogInfo is what nf_log_ip_packet knows besides the packet: the hook's
// devices, the bridge ports, the input device's link header, the
// sending socket and the mark.
type LogInfo struct {
	// Prefix is printed first, as given (a --log-prefix, or
	// LegacyTracePrefix's "TRACE: ..." text).
	Prefix string
	Flags  uint8 // Log* bits
	// In and Out are the hook's devices ("" = none); with no In there is
	// no MAC field.
	In, Out string
	// PhysIn and PhysOut are the bridge ports of a bridged packet
	// (br_netfilter); printed when they differ from In and Out.
	PhysIn, PhysOut string
	// MAC is the input device's link-layer header (its hard_header_len
	// bytes): nil for a device without one (TUN), the 14 bytes of the
	// Ethernet header for Ethernet devices and lo.
	MAC []byte
	// Ether says the input device is ARPHRD_ETHER, where --log-macdecode
	// prints MACSRC/MACDST/MACPROTO; other devices (lo, TUN) print MAC=
	// also then.
	Ether bool
	// HasSocket is a full socket with a file behind the packet (a
	// locally generated packet of a process): UID and GID are its
	// fsuid and fsgid.
	HasSocket bool
	UID, GID  uint32
	Mark      uint32
}

// LoopbackMAC is the link header of a packet received on lo
// (eth_header with lo's all-zero address, type IPv4).
var LoopbackMAC = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00}

// LegacyTracePrefix is the prefix ip_tables.c trace_packet gives
// nf_log_trace: "TRACE: table:chain:type:rulenum ", type being "rule",
// "return" or "policy".
func LegacyTracePrefix(table, chain, kind string, rulenum int) string {
	return "TRACE: " + table + ":" + chain + ":" + kind + ":" + strconv.Itoa(rulenum) + " "
}

// LogLine formats the line nf_log_ip_packet prints for the IPv4 packet ip
// (from its header to its total length; bytes past it are ignored).
func LogLine(li *LogInfo, ip []byte) string {
	var b strings.Builder
	b.Grow(256)
	b.WriteString(li.Prefix)
	b.WriteString("IN=" + li.In + " OUT=" + li.Out + " ")
	if li.PhysIn != "" && li.PhysIn != li.In {
		b.WriteString("PHYSIN=" + li.PhysIn + " ")
	}
	if li.PhysOut != "" && li.PhysOut != li.Out {
		b.WriteString("PHYSOUT=" + li.PhysOut + " ")
	}
	if li.In != "" {
		dumpMAC(&b, li)
	}
	if len(ip) >= packet.IPv4MinHeaderLen {
		if tl := int(binary.BigEndian.Uint16(ip[2:])); tl >= packet.IPv4MinHeaderLen && tl < len(ip) {
			ip = ip[:tl] // ip_rcv trimmed the skb to the total length
		}
	}
	dumpIPv4(&b, li, ip, 0)
	return b.String()
}

// dumpMAC is dump_mac_header.
func dumpMAC(b *strings.Builder, li *LogInfo) {
	if li.Flags&LogMACDecode != 0 && li.Ether {
		if len(li.MAC) < 14 {
			return
		}
		m := li.MAC
		b.WriteString("MACSRC=" + macString(m[6:12]) + " MACDST=" + macString(m[0:6]) + " ")
		fmt.Fprintf(b, "MACPROTO=%04x ", binary.BigEndian.Uint16(m[12:]))
		return
	}
	b.WriteString("MAC=")
	for i, c := range li.MAC {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(b, "%02x", c)
	}
	b.WriteByte(' ')
}

// macString is %pM: six lowercase two-digit hex bytes.
func macString(m []byte) string {
	var a packet.MAC
	copy(a[:], m)
	return a.String()
}

func ip4(b []byte) string {
	return addr(binary.BigEndian.Uint32(b))
}

// ICMP types (include/uapi/linux/icmp.h) and NR_ICMP_TYPES.
const (
	icmpEchoReply      = 0
	icmpDestUnreach    = 3
	icmpSourceQuench   = 4
	icmpRedirect       = 5
	icmpEcho           = 8
	icmpTimeExceeded   = 11
	icmpParameterProb  = 12
	icmpTimestamp      = 13
	icmpTimestampReply = 14
	icmpAddress        = 17
	icmpAddressReply   = 18
	nrICMPTypes        = 18
	icmpFragNeeded     = 4 // code of icmpDestUnreach
)

// IP protocols nf_log names beyond TCP, UDP and ICMP.
const (
	protoESP = 50
	protoAH  = 51
)

// icmpRequiredLen is dump_ipv4_packet's required_len: the bytes of ICMP
// a type needs before its fields are printed.
var icmpRequiredLen = [nrICMPTypes + 1]int{
	icmpEchoReply:      4,
	icmpDestUnreach:    8 + 20,
	icmpSourceQuench:   8 + 20,
	icmpRedirect:       8 + 20,
	icmpEcho:           4,
	icmpTimeExceeded:   8 + 20,
	icmpParameterProb:  8 + 20,
	icmpTimestamp:      20,
	icmpTimestampReply: 20,
	icmpAddress:        12,
	icmpAddressReply:   12,
}

// dumpIPv4 is dump_ipv4_packet for the header at off in skb (off > 0: the
// packet inside an ICMP error, printed once, without UID and MARK).
func dumpIPv4(b *strings.Builder, li *LogInfo, skb []byte, off int) {
	if len(skb)-off < 20 {
		b.WriteString("TRUNCATED")
		return
	}
	ih := skb[off:]
	fmt.Fprintf(b, "SRC=%s DST=%s ", ip4(ih[12:]), ip4(ih[16:]))
	fmt.Fprintf(b, "LEN=%d TOS=0x%02X PREC=0x%02X TTL=%d ID=%d ", binary.BigEndian.Uint16(ih[2:]),
		ih[1]&0x1e, ih[1]&0xe0, ih[8], binary.BigEndian.Uint16(ih[4:]))
	fo := binary.BigEndian.Uint16(ih[6:])
	if fo&0x8000 != 0 {
		b.WriteString("CE ")
	}
	if fo&0x4000 != 0 {
		b.WriteString("DF ")
	}
	if fo&0x2000 != 0 {
		b.WriteString("MF ")
	}
	frag := fo & 0x1fff
	if frag != 0 {
		fmt.Fprintf(b, "FRAG:%d ", frag)
	}
	ihl := int(ih[0]&0x0f) * 4
	if li.Flags&LogIPOpt != 0 && ihl > 20 {
		if len(skb)-off < ihl {
			b.WriteString("TRUNCATED")
			return
		}
		b.WriteString("OPT (")
		hexUpper(b, ih[20:ihl])
		b.WriteString(") ")
	}
	l4 := off + ihl // may lie past the end: each reader checks
	rest := len(skb) - l4
	switch proto := ih[9]; proto {
	case packet.ProtoTCP:
		if dumpTCP(b, skb, l4, frag != 0, li.Flags) {
			return
		}
	case packet.ProtoUDP, packet.ProtoUDPLite:
		if proto == packet.ProtoUDP {
			b.WriteString("PROTO=UDP ")
		} else {
			b.WriteString("PROTO=UDPLITE ")
		}
		if frag == 0 {
			if rest < 8 {
				fmt.Fprintf(b, "INCOMPLETE [%d bytes] ", rest)
				return
			}
			u := skb[l4:]
			fmt.Fprintf(b, "SPT=%d DPT=%d LEN=%d ", binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:]), binary.BigEndian.Uint16(u[4:]))
		}
	case packet.ProtoICMP:
		b.WriteString("PROTO=ICMP ")
		if frag != 0 {
			break
		}
		if rest < 8 {
			fmt.Fprintf(b, "INCOMPLETE [%d bytes] ", rest)
			break
		}
		ic := skb[l4:]
		typ, code := ic[0], ic[1]
		fmt.Fprintf(b, "TYPE=%d CODE=%d ", typ, code)
		if typ <= nrICMPTypes && icmpRequiredLen[typ] != 0 && rest < icmpRequiredLen[typ] {
			fmt.Fprintf(b, "INCOMPLETE [%d bytes] ", rest)
			break
		}
		switch typ {
		case icmpEchoReply, icmpEcho:
			fmt.Fprintf(b, "ID=%d SEQ=%d ", binary.BigEndian.Uint16(ic[4:]), binary.BigEndian.Uint16(ic[6:]))
		case icmpParameterProb:
			fmt.Fprintf(b, "PARAMETER=%d ", ic[4])
		case icmpRedirect, icmpDestUnreach, icmpSourceQuench, icmpTimeExceeded:
			if typ == icmpRedirect {
				fmt.Fprintf(b, "GATEWAY=%s ", ip4(ic[4:]))
			}
			if off == 0 { // only recurse once
				b.WriteString("[")
				dumpIPv4(b, li, skb, l4+8)
				b.WriteString("] ")
			}
			if typ == icmpDestUnreach && code == icmpFragNeeded {
				fmt.Fprintf(b, "MTU=%d ", binary.BigEndian.Uint16(ic[6:]))
			}
		}
	case protoAH:
		if frag != 0 {
			break // before the protocol is named, as the kernel has it
		}
		b.WriteString("PROTO=AH ")
		if rest < 12 {
			fmt.Fprintf(b, "INCOMPLETE [%d bytes] ", rest)
			break
		}
		fmt.Fprintf(b, "SPI=0x%x ", binary.BigEndian.Uint32(skb[l4+4:]))
	case protoESP:
		b.WriteString("PROTO=ESP ")
		if frag != 0 {
			break
		}
		if rest < 8 {
			fmt.Fprintf(b, "INCOMPLETE [%d bytes] ", rest)
			break
		}
		fmt.Fprintf(b, "SPI=0x%x ", binary.BigEndian.Uint32(skb[l4:]))
	default:
		fmt.Fprintf(b, "PROTO=%d ", proto)
	}
	if li.Flags&LogUID != 0 && off == 0 && li.HasSocket {
		fmt.Fprintf(b, "UID=%d GID=%d ", li.UID, li.GID)
	}
	if off == 0 && li.Mark != 0 {
		fmt.Fprintf(b, "MARK=0x%x ", li.Mark)
	}
}

// dumpTCP is nf_log_dump_tcp_header; true: the dump ends here.
func dumpTCP(b *strings.Builder, skb []byte, off int, fragment bool, flags uint8) bool {
	b.WriteString("PROTO=TCP ")
	if fragment {
		return false
	}
	if len(skb)-off < 20 {
		fmt.Fprintf(b, "INCOMPLETE [%d bytes] ", len(skb)-off)
		return true
	}
	th := skb[off:]
	fmt.Fprintf(b, "SPT=%d DPT=%d ", binary.BigEndian.Uint16(th), binary.BigEndian.Uint16(th[2:]))
	if flags&LogTCPSeq != 0 {
		fmt.Fprintf(b, "SEQ=%d ACK=%d ", binary.BigEndian.Uint32(th[4:]), binary.BigEndian.Uint32(th[8:]))
	}
	fmt.Fprintf(b, "WINDOW=%d ", binary.BigEndian.Uint16(th[14:]))
	// TCP_RESERVED_BITS is htonl(0x0E000000) since AccECN took the
	// lowest reserved bit (AE)
	fmt.Fprintf(b, "RES=0x%02x ", (th[12]&0x0e)<<2)
	if th[12]&0x01 != 0 {
		b.WriteString("AE ")
	}
	for _, f := range []struct {
		bit  uint8
		name string
	}{{0x80, "CWR "}, {0x40, "ECE "}, {0x20, "URG "}, {0x10, "ACK "}, {0x08, "PSH "}, {0x04, "RST "}, {0x02, "SYN "}, {0x01, "FIN "}} {
		if th[13]&f.bit != 0 {
			b.WriteString(f.name)
		}
	}
	fmt.Fprintf(b, "URGP=%d ", binary.BigEndian.Uint16(th[18:]))
	if doff := int(th[12]>>4) * 4; flags&LogTCPOpt != 0 && doff > 20 {
		if len(skb)-off < doff {
			b.WriteString("OPT (TRUNCATED)")
			return true
		}
		b.WriteString("OPT (")
		hexUpper(b, th[20:doff])
		b.WriteString(") ")
	}
	return false
}

func hexUpper(b *strings.Builder, p []byte) {
	const digits = "0123456789ABCDEF"
	for _, c := range p {
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&15])
	}
}
