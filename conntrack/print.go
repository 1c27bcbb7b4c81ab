package conntrack

import (
	"strconv"

	"github.com/uswitch-lab/uswitch/packet"
)

// protoName is conntrack-tools' protocol name table.
func protoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoUDPLite:
		return "udplite"
	case packet.ProtoICMP:
		return "icmp"
	case packet.ProtoSCTP:
		return "sctp"
	case packet.ProtoGRE:
		return "gre"
	case packet.ProtoDCCP:
		return "dccp"
	}
	return "unknown"
}

func appendPadded(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for i := len(s); i < width; i++ {
		b = append(b, ' ')
	}
	return b
}

func appendIPv4(b []byte, a uint32) []byte {
	b = strconv.AppendUint(b, uint64(a>>24), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(a>>16&0xff), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(a>>8&0xff), 10)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(a&0xff), 10)
}

func appendKV(b []byte, k string, v uint64) []byte {
	b = append(b, k...)
	b = append(b, '=')
	b = strconv.AppendUint(b, v, 10)
	return append(b, ' ')
}

func appendTuple(b []byte, t Tuple) []byte {
	b = append(b, "src="...)
	b = appendIPv4(b, t.Src)
	b = append(b, " dst="...)
	b = appendIPv4(b, t.Dst)
	b = append(b, ' ')
	switch {
	case hasPorts(t.Proto):
		b = appendKV(b, "sport", uint64(t.SrcPort))
		b = appendKV(b, "dport", uint64(t.DstPort))
	case t.Proto == packet.ProtoICMP:
		b = appendKV(b, "type", uint64(t.ICMPType()))
		b = appendKV(b, "code", uint64(t.ICMPCode()))
		b = appendKV(b, "id", uint64(t.SrcPort))
	case t.Proto == packet.ProtoGRE:
		b = append(b, "srckey=0x"...)
		b = strconv.AppendUint(b, uint64(t.SrcPort), 16)
		b = append(b, " dstkey=0x"...)
		b = strconv.AppendUint(b, uint64(t.DstPort), 16)
		b = append(b, ' ')
	}
	return b
}

// AppendText appends the entry as `conntrack -L` prints it
// (libnetfilter_conntrack's default output, checked against conntrack
// v1.4.7), with the `-o extended` "ipv4     2 " prefix when extended.
// The timeout is the whole seconds left at now (nf_ct_expires / HZ).
//
//	tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1234 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1234 [ASSURED] mark=0 use=1
func (c *Conn) AppendText(b []byte, now int64, extended bool) []byte {
	orig, repl := c.th[Original].tuple, c.th[Reply].tuple
	st := c.Status()
	if extended {
		b = append(b, "ipv4     2 "...)
	}
	b = appendPadded(b, protoName(orig.Proto), 8)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(orig.Proto), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(c.Expires(now)/1e9), 10)
	b = append(b, ' ')
	if orig.Proto == packet.ProtoTCP {
		b = append(b, c.TCPState().String()...)
		b = append(b, ' ')
	}
	b = appendTuple(b, orig)
	if st&StatusSeenReply == 0 {
		b = append(b, "[UNREPLIED] "...)
	}
	b = appendTuple(b, repl)
	if st&StatusOffload != 0 {
		b = append(b, "[OFFLOAD] "...)
	}
	if st&StatusAssured != 0 {
		b = append(b, "[ASSURED] "...)
	}
	b = appendKV(b, "mark", uint64(c.Mark()))
	if z := c.Zone(); z != 0 {
		b = appendKV(b, "zone", uint64(z))
	}
	if c.Helper != "" {
		b = append(b, "helper="...)
		b = append(b, c.Helper...)
		b = append(b, ' ')
	}
	b = append(b, "use=1"...)
	return b
}

// Format returns AppendText as a string.
func (c *Conn) Format(now int64, extended bool) string {
	return string(c.AppendText(nil, now, extended))
}
