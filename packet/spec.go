package packet

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSpec reads the human form of a packet used by `uswitch trace
// --packet`:
//
//	tcp 10.0.0.1:1234 > 10.96.0.10:80 syn iif eth0
//	udp 10.0.0.1:5353 > 10.0.0.2:53 len 40 ttl 3 mark 0x1 local
//	icmp 10.0.0.1 > 10.0.0.2 type 8 id 7
//	47 10.0.0.1 > 10.0.0.2
//
// The words after the addresses are TCP flags (syn ack fin rst psh urg),
// "iif NAME" (ingress interface), "local" (sent by the host itself),
// "mark N", "ttl N", "tos N", "id N" (IP id, or ICMP id for icmp),
// "type N", "code N", "seq N", "ack N" (numbers), "len N" (payload bytes),
// "df". It returns the Spec, the interface and whether the packet is local.
func ParseSpec(s string) (Spec, Meta, error) {
	var sp Spec
	var meta Meta
	w := strings.Fields(s)
	if len(w) < 4 || w[2] != ">" {
		return sp, meta, fmt.Errorf("packet %q: want PROTO SRC[:PORT] > DST[:PORT] [options]", s)
	}
	switch w[0] {
	case "tcp":
		sp.Proto = ProtoTCP
	case "udp":
		sp.Proto = ProtoUDP
	case "icmp":
		sp.Proto = ProtoICMP
		sp.ICMPType = ICMPEcho
	default:
		n, err := strconv.ParseUint(w[0], 0, 8)
		if err != nil {
			return sp, meta, fmt.Errorf("packet %q: unknown protocol %q", s, w[0])
		}
		sp.Proto = uint8(n)
	}
	var err error
	if sp.Src, sp.SrcPort, err = hostPort(w[1], sp.Proto); err != nil {
		return sp, meta, fmt.Errorf("packet %q: source: %v", s, err)
	}
	if sp.Dst, sp.DstPort, err = hostPort(w[3], sp.Proto); err != nil {
		return sp, meta, fmt.Errorf("packet %q: destination: %v", s, err)
	}
	num := func(i int) (uint64, error) {
		if i+1 >= len(w) {
			return 0, fmt.Errorf("packet %q: %q needs a value", s, w[i])
		}
		return strconv.ParseUint(w[i+1], 0, 32)
	}
	for i := 4; i < len(w); i++ {
		switch w[i] {
		case "syn":
			sp.TCPFlags |= TCPSyn
		case "ack":
			if i+1 < len(w) {
				if v, err := strconv.ParseUint(w[i+1], 0, 32); err == nil {
					sp.Ack = uint32(v)
					sp.TCPFlags |= TCPAck
					i++
					continue
				}
			}
			sp.TCPFlags |= TCPAck
		case "fin":
			sp.TCPFlags |= TCPFin
		case "rst":
			sp.TCPFlags |= TCPRst
		case "psh":
			sp.TCPFlags |= TCPPsh
		case "urg":
			sp.TCPFlags |= TCPUrg
		case "df":
			sp.DF = true
		case "local":
			meta.Local = true
		case "iif":
			if i+1 >= len(w) {
				return sp, meta, fmt.Errorf("packet %q: iif needs a name", s)
			}
			meta.InIf = w[i+1]
			i++
		default:
			v, err := num(i)
			if err != nil {
				return sp, meta, fmt.Errorf("packet %q: unknown word %q", s, w[i])
			}
			switch w[i] {
			case "mark":
				meta.Mark = uint32(v)
			case "ttl":
				sp.TTL = uint8(v)
			case "tos":
				sp.TOS = uint8(v)
			case "id":
				if sp.Proto == ProtoICMP {
					sp.ICMPID = uint16(v)
				} else {
					sp.ID = uint16(v)
				}
			case "type":
				sp.ICMPType = uint8(v)
			case "code":
				sp.ICMPCode = uint8(v)
			case "seq":
				sp.Seq = uint32(v)
				sp.ICMPSeq = uint16(v)
			case "len":
				sp.Payload = make([]byte, v)
			default:
				return sp, meta, fmt.Errorf("packet %q: unknown word %q", s, w[i])
			}
			i++
		}
	}
	return sp, meta, nil
}

func hostPort(s string, proto uint8) (uint32, uint16, error) {
	host, port, hasPort := strings.Cut(s, ":")
	parts := strings.Split(host, ".")
	if len(parts) != 4 {
		return 0, 0, fmt.Errorf("%q is not a dotted IPv4 address", host)
	}
	var a uint32
	for _, p := range parts {
		v, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return 0, 0, fmt.Errorf("%q is not a dotted IPv4 address", host)
		}
		a = a<<8 | uint32(v)
	}
	if !hasPort {
		if proto == ProtoTCP || proto == ProtoUDP {
			return 0, 0, fmt.Errorf("%q needs a :port", s)
		}
		return a, 0, nil
	}
	v, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("bad port %q", port)
	}
	return a, uint16(v), nil
}
