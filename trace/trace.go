// Package trace prints what happens to a packet in the form
// `xtables-monitor --trace` (iptables-nft 1.8.9, iptables/xtables-monitor.c)
// prints the kernel's nftables trace events, so a uswitch trace can be
// diffed line by line against the kernel's.
//
//	PACKET: 2 816be422 OUT=lo SRC=127.0.0.1 DST=127.0.0.1 LEN=84 TOS=0x0 TTL=64 ID=55829 DF
//	 TRACE: 2 816be422 raw:OUTPUT:rule:0x3:CONTINUE  -4 -t raw -A OUTPUT -p icmp -j TRACE
//	 TRACE: 2 816be422 raw:OUTPUT:policy:ACCEPT
//
// (each PACKET field and the verdict word are followed by one space, as
// the C code prints them).
package trace

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/uswitch-lab/uswitch/packet"
)

// FamilyIPv4 is NFPROTO_IPV4, the family number xtables-monitor prints.
const FamilyIPv4 = 2

// Verdict words of a rule event (print_verdict).
const (
	Accept   = "ACCEPT"
	Drop     = "DROP"
	Queue    = "QUEUE"
	Stolen   = "STOLEN"
	Continue = "CONTINUE"
)

// Writer writes trace lines for one packet id.
type Writer struct {
	W  io.Writer
	ID uint32 // the opaque trace id of the packet
}

func addr(a uint32) string {
	return strconv.Itoa(int(a>>24)) + "." + strconv.Itoa(int(a>>16&0xff)) + "." +
		strconv.Itoa(int(a>>8&0xff)) + "." + strconv.Itoa(int(a&0xff))
}

// PacketLine formats the PACKET line for p as it is now (trace_print_packet).
// in and out are the interface names the hook sees ("" = not set); mac,
// when not nil, is the Ethernet header of an L2 packet; loopback marks a
// packet received on lo.
func PacketLine(id uint32, p *packet.Packet, in, out string, loopback bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "PACKET: %d %08x ", FamilyIPv4, id)
	if in != "" {
		b.WriteString("IN=" + in + " ")
	}
	if out != "" {
		b.WriteString("OUT=" + out + " ")
	}
	switch {
	case loopback:
		b.WriteString("LOOPBACK ")
	case len(p.L2) >= 14 && in == "":
		// no input device, no device type: xtables-monitor prints the
		// link-layer header raw, each byte as a signed char would
		// print with %02x (br_netfilter's POSTROUTING of a bridged
		// packet)
		b.WriteString("LL=0x0 ")
		for _, c := range p.L2[:14] {
			if c >= 0x80 {
				b.WriteString("ffffff")
			}
			fmt.Fprintf(&b, "%02x", c)
		}
		b.WriteString(" ")
	case len(p.L2) >= 14:
		e := p.L2
		fmt.Fprintf(&b, "MACSRC=%s MACDST=%s MACPROTO=%04x ", etherNtoa(e[6:12]), etherNtoa(e[0:6]), uint16(e[12])<<8|uint16(e[13]))
	}
	ip := p.IP
	b.WriteString("SRC=" + addr(ip.Src()) + " DST=" + addr(ip.Dst()) + " ")
	fmt.Fprintf(&b, "LEN=%d TOS=0x%x TTL=%d ID=%d ", ip.TotalLen(), ip.TOS(), ip.TTL(), ip.ID())
	if ip.CE() {
		b.WriteString("CE ")
	}
	if ip.DF() {
		b.WriteString("DF ")
	}
	if ip.MF() {
		b.WriteString("MF ")
	}
	if off := ip.FragOffset(); off != 0 {
		fmt.Fprintf(&b, "FRAG:%d ", off)
	}
	if hl := ip.HeaderLen(); hl > packet.IPv4MinHeaderLen {
		b.WriteString("OPT (")
		for _, c := range ip.Options() {
			// xtables-monitor's trace_print_packet prints the option
			// bytes through a (signed) char with %02X: a byte of 0x80
			// or more comes out sign-extended, "FFFFFF83" for 0x83
			if c >= 0x80 {
				b.WriteString("FFFFFF")
			}
			fmt.Fprintf(&b, "%02X", c)
		}
		b.WriteString(") ")
	}
	// the kernel hands the bytes after the IP header over as the
	// transport header also for a fragment that is not the first
	// (nf_trace_fill_pkt_info), and xtables-monitor prints them alike
	{
		l4 := ip[ip.HeaderLen():]
		switch ip.Protocol() {
		case packet.ProtoDCCP, packet.ProtoSCTP, packet.ProtoUDPLite, packet.ProtoUDP:
			if len(l4) >= 4 {
				fmt.Fprintf(&b, "SPORT=%d DPORT=%d ", uint16(l4[0])<<8|uint16(l4[1]), uint16(l4[2])<<8|uint16(l4[3]))
			}
		case packet.ProtoTCP:
			if len(l4) >= packet.TCPMinHeaderLen {
				t := packet.TCP(l4)
				fmt.Fprintf(&b, "SPORT=%d DPORT=%d ", t.SrcPort(), t.DstPort())
				f := t.Flags()
				for _, x := range []struct {
					bit  uint8
					name string
				}{{packet.TCPSyn, "SYN"}, {packet.TCPAck, "ACK"}, {packet.TCPFin, "FIN"}, {packet.TCPRst, "RST"}, {packet.TCPPsh, "PSH"}, {packet.TCPUrg, "URG"}} {
					if f&x.bit != 0 {
						b.WriteString(x.name + " ")
					}
				}
			}
		}
	}
	if p.Mark != 0 {
		fmt.Fprintf(&b, "MARK=0x%x ", p.Mark)
	}
	return b.String()
}

func etherNtoa(m []byte) string {
	// ether_ntoa prints each byte in hex without leading zeros
	parts := make([]string, 6)
	for i := range parts {
		parts[i] = strconv.FormatUint(uint64(m[i]), 16)
	}
	return strings.Join(parts, ":")
}

func hdr(id uint32, table, chain string) string {
	return fmt.Sprintf(" TRACE: %d %08x %s:%s", FamilyIPv4, id, table, chain)
}

// RuleLine is a rule event: ":rule:0x<handle>:<VERDICT> " then, after one
// more space, the rule as iptables-nft 1.8.9 prints it
// ("-4 -t TABLE -A CHAIN ...").
func RuleLine(id uint32, table, chain string, handle uint64, verdict, rule string) string {
	return fmt.Sprintf("%s:rule:0x%x:%s  -4 -t %s -A %s%s", hdr(id, table, chain), handle, verdict, table, chain, rule)
}

// JumpVerdict is "JUMP:<chain>" / "GOTO:<chain>".
func JumpVerdict(gotoFlag bool, target string) string {
	if gotoFlag {
		return "GOTO:" + target
	}
	return "JUMP:" + target
}

// PolicyLine is a base chain's policy event.
func PolicyLine(id uint32, table, chain, verdict string) string {
	return hdr(id, table, chain) + ":policy:" + verdict + " "
}

// ReturnLine is the event of leaving a user chain (explicit RETURN or
// falling off its end).
func ReturnLine(id uint32, table, chain string) string {
	return hdr(id, table, chain) + ":return:"
}

// IPVSLine is uswitch's own event for an IPVS hook function: the kernel's
// trace has none (IPVS is not nf_tables), so the line names the hook, its
// priority and what IPVS did, in the same frame as the others:
// " TRACE: 2 <id> ipvs:INPUT:99:<event>".
func IPVSLine(id uint32, chain string, prio int, event string) string {
	return fmt.Sprintf("%s:%d:%s", hdr(id, "ipvs", chain), prio, event)
}

// signedHex appends b as xtables-monitor prints header bytes with %02x
// of a signed char: each byte of 0x80 or more as ffffffXX.
func signedHex(sb *strings.Builder, b []byte) {
	for _, c := range b {
		if c >= 0x80 {
			sb.WriteString("ffffff")
		}
		fmt.Fprintf(sb, "%02x", c)
	}
}

// BridgePacketLine is the PACKET line of a bridge-family (7) trace
// event (trace_print_packet): the ports as IN=/OUT=, the MAC header
// (raw as LL=0x0 without an input port), the network header as NH= hex
// (the IPv4 header for IPv4, else up to 40 bytes: the kernel's
// NFT_TRACETYPE_NETWORK_HSIZE), the mark.
func BridgePacketLine(id uint32, f *packet.Frame, in, out string, mark uint32) string {
	var b strings.Builder
	fmt.Fprintf(&b, "PACKET: 7 %08x ", id)
	if in != "" {
		b.WriteString("IN=" + in + " ")
	}
	if out != "" {
		b.WriteString("OUT=" + out + " ")
	}
	if in != "" {
		fmt.Fprintf(&b, "MACSRC=%s MACDST=%s MACPROTO=%04x ", etherNtoa(f.Src[:]), etherNtoa(f.Dst[:]), f.Proto)
	} else {
		b.WriteString("LL=0x0 ")
		signedHex(&b, f.Data[:min(len(f.Data), packet.EtherHeaderLen)])
		b.WriteString(" ")
	}
	nh := f.Payload
	n := min(len(nh), 40)
	if f.InnerProto == packet.EtherTypeIPv4 && len(nh) >= packet.IPv4MinHeaderLen {
		n = min(len(nh), int(nh[0]&0x0f)*4)
	}
	if n > 0 {
		b.WriteString("NH=")
		signedHex(&b, nh[:n])
		b.WriteString(" ")
	}
	if mark != 0 {
		fmt.Fprintf(&b, "MARK=0x%x ", mark)
	}
	return b.String()
}

// BridgeRuleLine is a bridge-family rule event: no rule text follows
// (xtables-monitor prints none for family 7), only two spaces.
func BridgeRuleLine(id uint32, table, chain string, handle uint64, verdict string) string {
	return fmt.Sprintf(" TRACE: 7 %08x %s:%s:rule:0x%x:%s  ", id, table, chain, handle, verdict)
}

// BridgePolicyLine is a bridge-family policy event.
func BridgePolicyLine(id uint32, table, chain, verdict string) string {
	return fmt.Sprintf(" TRACE: 7 %08x %s:%s:policy:%s ", id, table, chain, verdict)
}
